"""The native client libraries, installed once at setup time and only read when the pipeline runs.

``make setup`` and the image's build run ``python -m deepspeech_it.export.client_libraries DIR``: pip downloads each
pinned wheel, its sha256 is checked, and the shared libraries inside are extracted into DIR/PACKAGE-VERSION/. A run
never downloads or writes here, so it works without network and with the install tree owned by another user.

The wheels are CPython 3.9 builds; only the C libraries inside are used, so any Python can load them. This module needs
nothing beyond the standard library: the image's build runs it before the project's dependencies are installed.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from deepspeech_it.paths import NATIVE_CLIENTS_DIR
from deepspeech_it.util.atomic import write_bytes_atomic, write_text_atomic
from deepspeech_it.util.errors import PipelineError


@dataclass(frozen=True)
class ClientRelease:
    name: str          # short name used in reports
    package: str       # PyPI distribution
    version: str
    prefix: str        # C API prefix
    libraries: tuple[str, ...]   # paths inside the wheel, in load order (dependencies first)
    wheel_sha256: str  # of the cp39 x86_64 Linux wheel on PyPI

    @property
    def folder_name(self) -> str:
        return f"{self.package}-{self.version}"


DEEPSPEECH = ClientRelease("deepspeech", "deepspeech-tflite", "0.9.3", "DS", ("deepspeech/lib/libdeepspeech.so",),
                           "46b76baf8ea9b5d43c2d8081b1c4a5aa5e45407016ac8365a0bc859072c4f748")
STT = ClientRelease("stt", "stt", "1.4.0", "STT", ("stt/lib/libkenlm.so", "stt/lib/libstt.so"),
                    "d1bde1d719b2685d7703cd31d4d641304407921daa108b7aca60a0b86baab096")
# The TensorFlow build of the same client: it loads protobuf graphs (.pb, .pbmm) instead of TFLite models.
DEEPSPEECH_TF = ClientRelease("deepspeech-tf", "deepspeech", "0.9.3", "DS", ("deepspeech/lib/libdeepspeech.so",),
                              "e2e7295ba4997ab86b4fb1bd7a784319dfcdb508ce26638063515334c11fa05a")
INSTALLED = (DEEPSPEECH, STT, DEEPSPEECH_TF)

# The wheels are tagged manylinux1 (DeepSpeech) and manylinux_2_24 (STT); pip accepts either tag for both.
WHEEL_PLATFORMS = ("manylinux1_x86_64", "manylinux_2_24_x86_64")
WHEEL_PYTHON = "3.9"
STAMP = ".wheel-sha256"


class NativeClientError(PipelineError, RuntimeError):
    pass


class ClientUnavailable(NativeClientError):
    """The client's libraries are not installed (or could not be installed)."""


def is_installed(release: ClientRelease, directory: Path = NATIVE_CLIENTS_DIR) -> bool:
    folder = Path(directory) / release.folder_name
    stamp = folder / STAMP
    return (stamp.is_file() and stamp.read_text().strip() == release.wheel_sha256
            and all((folder / Path(member).name).is_file() for member in release.libraries))


def library_paths(release: ClientRelease, directory: Path = NATIVE_CLIENTS_DIR) -> list[Path]:
    """The release's installed libraries in load order; ClientUnavailable when setup has not installed them."""
    if not is_installed(release, directory):
        raise ClientUnavailable(f"{release.package} {release.version} is not installed in {directory}; "
                                "run `make setup`")
    return [Path(directory) / release.folder_name / Path(member).name for member in release.libraries]


def install(release: ClientRelease, directory: Path) -> bool:
    """Downloads, verifies and extracts RELEASE into DIRECTORY unless it is there; True when it was installed now."""
    if is_installed(release, directory):
        return False
    folder = Path(directory) / release.folder_name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download.") as download:
        wheel = _download_wheel(release, Path(download))
        with zipfile.ZipFile(wheel) as archive:
            for member in release.libraries:
                write_bytes_atomic(folder / Path(member).name, archive.read(member))
    write_text_atomic(folder / STAMP, release.wheel_sha256 + "\n")
    return True


def _download_wheel(release: ClientRelease, target: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", WHEEL_PYTHON, "--dest", str(target)]
    for platform in WHEEL_PLATFORMS:
        command += ["--platform", platform]
    command.append(f"{release.package}=={release.version}")
    result = subprocess.run(command, capture_output=True, text=True)
    found = sorted(target.glob("*.whl"))
    if result.returncode != 0 or len(found) != 1:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no wheel"
        raise ClientUnavailable(f"pip could not download {release.package}=={release.version}: {reason}")
    digest = hashlib.sha256(found[0].read_bytes()).hexdigest()
    if digest != release.wheel_sha256:
        raise ClientUnavailable(f"{found[0].name} has sha256 {digest}, expected {release.wheel_sha256}; "
                                "the download is not the pinned wheel")
    return found[0]



def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deepspeech_it.export.client_libraries DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0]).absolute()
    try:
        for release in INSTALLED:
            fresh = install(release, directory)
            print(f"{release.package} {release.version}: {'installed' if fresh else 'already installed'} in "
                  f"{directory / release.folder_name}")
    except NativeClientError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
