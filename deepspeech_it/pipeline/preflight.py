"""Stage 01: is everything the pipeline needs there before hours of work start?

Each check returns :class:`Finding` lines: a problem says how to fix it, and ``blocking`` problems stop the run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

from deepspeech_it.export import client_libraries
from deepspeech_it.paths import KENLM_PROGRAMS, find_tool
from deepspeech_it.util.progress import progress_bar

# Published sha256 of the Italian per-locale archives (Common Voice dataset metadata, key locales.it.checksum).
KNOWN_SHA256 = {
    "7189297db22597f5ea4a777b46788ceff8b94694a0ffb0f491ea552774d888ed": "cv-corpus-5-2020-06-22",
    "a304332d1dfdb772ae75859441f46a88438305d2f5420680c3c64fba62ea6830": "cv-corpus-5.1-2020-06-22",
    "947f2bd67cd202f9fcba1ed9ca4fc7bbaa4fbc43364dc7dad0f6e66a5e502eb6": "cv-corpus-6.0-2020-12-11",
    "3a75b1631958af1487ee49b13cd27efc951183737ed515832cf714ed20c97808": "cv-corpus-6.1-2020-12-11",
    "c2ccf746740c0ca0e4cf2f57e9b749a2c8574d0828e6ba73c34e921136fef91b": "cv-corpus-7.0-2021-07-21",
    "55d734e2269fb843b3d63e27fcd8ca51349551db1dedf1f9e3d6bc3f1ae0e1ef": "cv-corpus-8.0-2022-01-19",
    "3c97337d99684cda8c3c383b68555f1124fd8646df61e03b7578212580d71f1b": "cv-corpus-9.0-2022-04-27",
    "ae01f1b6fd93a65d964c274c4aee182ea00d861f0a4f9e98bc5c06fe55a4a1b5": "cv-corpus-10.0-2022-07-04",
    "a976f2e7ab10c7dbee95f1271c1221bb2d42ab52589bfefd28cf63b3a4fae520": "cv-corpus-11.0-2022-09-21",
    "00e4954197195361dbf0a919afbe99c735ac3128ce66e085037b13eba24a8d41": "cv-corpus-12.0-2022-12-07",
    "38d09ee666b8b813415e37d2c149d804c25f1d4dc149e602325554c7ed5f2580": "cv-corpus-13.0-2023-03-09",
    "bb1ea6b826ec4f133b7b3c1437b0de91070a61069dad6cb6a8f4330fe67d0a8f": "cv-corpus-14.0-2023-06-23",
    "25b668a1166fd668702bf22dbdaea7c4b47b6bb8aea1c8c0d299c3e045515a5e": "cv-corpus-15.0-2023-09-08",
    "4f4b804424c85b4bf73c51159ebc3f5cba72b16d7d5029f358534f222cc0825d": "cv-corpus-16.0-2023-12-06",
    "8d308ac010e04d1a4a2117ad71b6124ac0bcc63fa0aa7fa270ed326ec4af613f": "cv-corpus-16.1-2023-12-06",
    "2c437c7dc197f5e7240318e366a4bf5c602ed0686f7f7452515504bba172cce0": "cv-corpus-17.0-2024-03-15",
    "4bcec1c73da03e73d1ffec3717d568ce7d78703e1138c4b7a9b8714b383d39a9": "cv-corpus-18.0-2024-06-14",
    "633c5e41211a31f2fb32182bd715f6a21eb79217fb6f2923f55c45d9b10e7d90": "cv-corpus-19.0-2024-09-13",
    "9c578e0e3a99b171e1ff160d19e39f7c8bb6d121cd7012b63aa9a24e8313d2a2": "cv-corpus-20.0-2024-12-06",
    "5b36aeebc1df11b438f22a8801ac10b55db59974db5274dc7c08128696590798": "cv-corpus-21.0-2025-03-14",
    "15314a3e90501d28db8f63432332a07d61e0fd6594b7ff65582f62c6548d5dd4": "cv-corpus-22.0-2025-06-20",
    "5116fbc5b6500272bb65428798c18bcfb3df01b2f8c0c5235ec7d442fd272043": "cv-corpus-23.0-2025-09-05",
    "1371f22127b7ff142c10084ef36278631dd50c39564254729e568d9a19782ec5": "cv-corpus-24.0-2025-12-05",
    "486958feed03d52d2cccc7aa35807c8bf7b118011c1c672b762107c4bc59a80f": "cv-corpus-25.0-2026-03-09",
}
# The original Italian pipeline pinned this sha1; it dates from December 2019 and no published checksum confirms it.
KNOWN_SHA1 = {"5949823c7531695fefc3bcab5a56f43552eb7d89": "cv-corpus-4-2019-12-10 (sha1 of the original pipeline)"}

FREE_SPACE_FACTOR = 3


@dataclass(frozen=True)
class Finding:
    ok: bool
    message: str
    blocking: bool = True

    def line(self) -> str:
        mark = "ok     " if self.ok else ("ERROR  " if self.blocking else "warning")
        return f"[{mark}] {self.message}"


@dataclass(frozen=True)
class Digests:
    sha256: str
    sha1: str
    damage: str | None = None    # what decompressing the gzip stream found wrong, None when it is whole


class GzipCheck:
    """Decompresses a gzip stream block by block and throws the output away: a truncated or damaged archive shows
    in the pass that checksums it, before stage 02 has unpacked gigabytes of it. A checksum that vouches for a
    file does not say the download was complete."""

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(wbits=31)
        self.damage: str | None = None

    def feed(self, block: bytes) -> None:
        while block and self.damage is None:
            try:
                self._inflater.decompress(block, 1 << 24)
            except zlib.error as problem:
                self.damage = f"damaged ({problem})"
                return
            block = self._inflater.unconsumed_tail
            if self._inflater.eof and self._inflater.unused_data:     # the next member of a multi-member file
                block, self._inflater = self._inflater.unused_data, zlib.decompressobj(wbits=31)

    def result(self) -> str | None:
        if self.damage is None and not self._inflater.eof:
            return "truncated: its gzip stream ends early"
        return self.damage


def archive_digests(path: Path, show_progress: bool) -> Digests:
    """sha256 and sha1 of PATH in one streamed pass, and for a gzip file whether its stream is whole."""
    digests, damage = _stream(path, ("sha256", "sha1"), show_progress, check_gzip=True)
    return Digests(digests["sha256"], digests["sha1"], damage)


def hash_file(path: Path, algorithms: tuple[str, ...], show_progress: bool) -> dict[str, str]:
    """The ALGORITHMS' hex digests of PATH (hashlib names), in one streamed pass."""
    return _stream(path, algorithms, show_progress, check_gzip=False)[0]


def _stream(path: Path, algorithms: tuple[str, ...], show_progress: bool,
            check_gzip: bool) -> tuple[dict[str, str], str | None]:
    hashes = {name: hashlib.new(name) for name in algorithms}
    gzip_check = None
    bar = progress_bar(path.stat().st_size, "checksum", show_progress)
    bar.start()
    done = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            if check_gzip and done == 0 and block.startswith(b"\x1f\x8b"):
                gzip_check = GzipCheck()
            for digest in hashes.values():
                digest.update(block)
            if gzip_check:
                gzip_check.feed(block)
            done += len(block)
            bar.update(done)
    bar.finish()
    return {name: digest.hexdigest() for name, digest in hashes.items()}, gzip_check.result() if gzip_check else None


def identify_archive(digests: Digests, expected_sha256: str, expected_sha1: str) -> Finding:
    """Matches the archive against the expected sums, or, when none is given, against the known releases."""
    if expected_sha256 or expected_sha1:
        wrong = [f"{name} is {actual}, expected {expected}"
                 for name, actual, expected in (("sha256", digests.sha256, expected_sha256),
                                                ("sha1", digests.sha1, expected_sha1)) if expected and actual != expected]
        if wrong:
            return Finding(False, f"archive checksum mismatch: {'; '.join(wrong)}; download the archive again or "
                                  "correct CV_SHA256/CV_SHA1")
        release = KNOWN_SHA256.get(digests.sha256) or KNOWN_SHA1.get(digests.sha1) or "release not in the known list"
        return Finding(True, f"archive checksum matches the expected value ({release})")
    release = KNOWN_SHA256.get(digests.sha256) or KNOWN_SHA1.get(digests.sha1)
    if release:
        return Finding(True, f"archive is Common Voice Italian {release}")
    return Finding(False, f"archive is not a known Common Voice Italian release (sha256 {digests.sha256}); "
                          f"to accept it, set CV_SHA256={digests.sha256}")


def check_archive_present(path: Path) -> Finding:
    if path.is_file():
        return Finding(True, f"archive {path} ({path.stat().st_size / 1e9:.2f} GB)")
    return Finding(False, f"archive {path} not found; download Common Voice Italian (it.tar.gz) there or set "
                          "CV_ARCHIVE to its path")


def check_archive_readable(path: Path) -> Finding:
    from deepspeech_it.data.archive import probe_archive

    problem = probe_archive(path)
    return Finding(False, str(problem)) if problem else Finding(True, f"archive {path.name} opens as a tar archive")


def check_data_dir(data_dir: Path, archive_size: int) -> list[Finding]:
    """Free space; that DATA_DIR is writable the stage runner has checked before any stage starts."""
    free = shutil.disk_usage(data_dir).free
    needed = FREE_SPACE_FACTOR * archive_size
    text = f"{free / 1e9:.1f} GB free in DATA_DIR {data_dir}, {needed / 1e9:.1f} GB needed ({FREE_SPACE_FACTOR}x the sources)"
    if free < needed:
        return [Finding(False, text + "; free some space or point DATA_DIR at a larger disk")]
    return [Finding(True, text)]


def check_tools() -> list[Finding]:
    findings = []
    for program in KENLM_PROGRAMS:
        found = find_tool(program)
        findings.append(Finding(True, f"KenLM {program}: {found}") if found else
                        Finding(False, f"KenLM {program} not found; run `make setup` (it builds KenLM into tools/)"))
    for release in client_libraries.INSTALLED:
        try:
            client_libraries.library_paths(release)
            findings.append(Finding(True, f"native client {release.package} {release.version}"))
        except client_libraries.ClientUnavailable as problem:
            findings.append(Finding(False, str(problem)))
    for module, purpose in (("tensorflow", "training"), ("soundfile", "audio decoding"), ("kenlm", "LM queries")):
        if importlib.util.find_spec(module) is None:
            findings.append(Finding(False, f"Python module {module} ({purpose}) missing; run `make setup`"))
        else:
            findings.append(Finding(True, f"Python module {module} ({purpose})"))
    if importlib.util.find_spec("tensorflow") is not None:
        # Imported here, where TensorFlow is known to be there. Not a failure: training without the kernel is correct,
        # only slower on a CPU (a GPU runs cuDNN's LSTM instead).
        from deepspeech_it.model import lstm_kernel
        findings.append(Finding(True, f"LSTM time loop on a CPU: {lstm_kernel.loop_for('float32')[1]}"))
    import soundfile

    if "MP3" not in soundfile.available_formats():
        findings.append(Finding(False, f"libsndfile {soundfile.__libsndfile_version__} cannot decode MP3; "
                                       "reinstall soundfile (>= 0.12) with `make setup`"))
    return findings


def check_gpus() -> list[Finding]:
    from deepspeech_it.util.tf_runtime import tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return [Finding(False, "no GPU visible to TensorFlow: training will run on the CPU (slow)", blocking=False)]
    return [Finding(True, f"GPU {gpu.name}") for gpu in gpus]


def check_transfer_checkpoint(folder: Path) -> list[Finding]:
    """A DeepSpeech/Coqui checkpoint folder: a `checkpoint` (or `best_dev_checkpoint`) descriptor whose model path
    has readable index and data files."""
    descriptors = [folder / name for name in ("best_dev_checkpoint", "checkpoint") if (folder / name).is_file()]
    if not folder.is_dir() or not descriptors:
        return [Finding(False, f"TRANSFER_CHECKPOINT_DIR {folder} has no `checkpoint` descriptor; mount the "
                               "DeepSpeech 0.9.x / Coqui STT 1.x checkpoint folder there or set TRANSFER_LEARNING=0")]
    findings = []
    for descriptor in descriptors:
        match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', descriptor.read_text(errors="replace"), re.M)
        if not match:
            findings.append(Finding(False, f"{descriptor} names no model_checkpoint_path; the folder is damaged"))
            continue
        # Descriptors often hold the absolute path of the machine that trained; the files sit beside them.
        prefix = folder / Path(match.group(1)).name
        findings.append(_check_checkpoint_files(descriptor, prefix))
    return findings


def _check_checkpoint_files(descriptor: Path, prefix: Path) -> Finding:
    index = Path(f"{prefix}.index")
    data = sorted(prefix.parent.glob(f"{prefix.name}.data-*-of-*"))
    unreadable = [p for p in [index, *data] if not (p.is_file() and os.access(p, os.R_OK))]
    if not data or unreadable:
        missing = ", ".join(p.name for p in unreadable) or f"{prefix.name}.data-*"
        return Finding(False, f"{descriptor.name} points at {prefix.name} but {missing} is missing or unreadable")
    try:
        from deepspeech_it.util.tf_runtime import tf

        variables = tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map()
    except Exception as problem:  # noqa: BLE001 - any reader failure means the same thing to the user
        return Finding(False, f"{prefix.name} cannot be read as a TensorFlow checkpoint: {str(problem).splitlines()[0]}")
    return Finding(True, f"transfer checkpoint {prefix.name} ({len(variables)} variables, via {descriptor.name})")
