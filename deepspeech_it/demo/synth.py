"""A generator of Common Voice-shaped Italian archives, spoken by espeak-ng, for the tests and the demo.

The archive has the layout of a real release (old: files at the top; new: ``cv-corpus-<release>/it/``), MP3
clips written by lame, and TSVs with the columns of that era. On request it also carries the hostile cases the
importer must survive, and :class:`Manifest` says what the importer should make of each of them.
"""

from __future__ import annotations

import io
import multiprocessing
import random
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from deepspeech_it.config import SPLITS
from deepspeech_it.util.progress import progress_iter

# The release folder of every generated archive: it says what the corpus is, and the export names it from there.
SYNTHETIC_RELEASE = "cv-corpus-synthetic-espeak-ng"
NEW_COLUMNS = ("client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age",
               "gender", "accents", "variant", "locale", "segment")
OLD_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent")


def project_sentences() -> list[str]:
    """The Italian sentences written for the project (one per line in frasi.txt beside this module)."""
    text = resources.files("deepspeech_it.demo").joinpath("frasi.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class Voice(NamedTuple):
    """An espeak-ng voice ("it" or "it+<variant>") and the folder holding its espeak-ng-data ("": the system's)."""

    name: str
    data: str = ""


@dataclass(frozen=True)
class Utterance:
    split: str
    sentence: str
    voice: str
    speed: int
    clip: str
    sample_rate: int = 48000
    stereo: bool = False
    pad_seconds: float = 0.0
    pitch: int | None = None         # espeak-ng -p (0-99, its default 50)
    amplitude: int | None = None     # espeak-ng -a (0-200, its default 100)
    word_gap: int | None = None      # espeak-ng -g, pause between words in 10 ms units (default 0)
    espeak_data: str = ""            # espeak-ng --path: the folder of the voice's espeak-ng-data (demo/voices.py)

    def espeak_options(self) -> list[str]:
        flags = (("-p", self.pitch), ("-a", self.amplitude), ("-g", self.word_gap))
        path = [f"--path={self.espeak_data}"] if self.espeak_data else []
        return path + [part for flag, value in flags if value is not None for part in (flag, str(value))]


@dataclass(frozen=True)
class Variety:
    """Ranges (inclusive) from which each training clip draws its espeak-ng pitch, amplitude and word gap."""

    pitch: tuple[int, int] = (25, 75)
    amplitude: tuple[int, int] = (60, 160)
    word_gap: tuple[int, int] = (0, 4)

    def draw(self, rng: random.Random) -> dict[str, int]:
        return {name: rng.randint(*getattr(self, name)) for name in ("pitch", "amplitude", "word_gap")}


@dataclass
class Manifest:
    """What the importer should find: clips it must keep per split and rows it must reject, by reason."""

    kept: dict[str, list[Utterance]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    rejected: dict[str, dict[str, int]] = field(default_factory=lambda: {s: {} for s in SPLITS})
    unsafe_members: dict[str, int] = field(default_factory=dict)
    corpus_prefix: str = ""

    def reject(self, split: str, reason: str) -> None:
        self.rejected[split][reason] = self.rejected[split].get(reason, 0) + 1


def split_sentences(sentences: list[str], per_split: dict[str, int], seed: int) -> dict[str, list[str]]:
    """Disjoint sentence pools per split, sized in proportion to the clips each split gets."""
    rng = random.Random(seed)
    shuffled = sentences[:]
    rng.shuffle(shuffled)
    total = sum(per_split.values())
    start, pools = 0, {}
    for split in SPLITS:
        share = max(1, round(len(shuffled) * per_split[split] / total))
        pools[split] = shuffled[start:start + share] or shuffled[:1]
        start += share
    return pools


def plan_utterances(sentences: dict[str, list[str]], voices: dict[str, list[str | Voice]], speeds: list[int],
                    per_split: dict[str, int], variety: Variety | None = None, seed: int = 1) -> list[Utterance]:
    """Assigns sentences, voices (names of the system's voices, or Voices) and speeds to clips; each split draws on
    its own sentences and voices. With VARIETY, training clips also draw pitch, amplitude and word gap (dev and test
    keep espeak-ng's defaults, so they stay voices training never heard)."""
    plan, rng = [], random.Random(seed)
    for split in SPLITS:
        for i in range(per_split[split]):
            chosen = voices[split][i % len(voices[split])]
            voice = Voice(chosen) if isinstance(chosen, str) else chosen
            speed = speeds[(i // len(voices[split])) % len(speeds)]
            sentence = sentences[split][i % len(sentences[split])]
            rate = 48000 if i % 2 else 32000
            drawn = variety.draw(rng) if variety and split == "train" else {}
            plan.append(Utterance(split, sentence, voice.name, speed, f"common_voice_it_{split}_{i:05d}.mp3", rate,
                                  espeak_data=voice.data, **drawn))
    return plan


# espeak-ng ends every clip with about 0.35 s of digital silence; cut to this, the corpus trains 8 % cheaper per epoch.
CLOSING_PAUSE_SECONDS = 0.1
TRIM_THRESHOLD = "-70d"     # far below the quietest word ending, far above espeak-ng's zeros

# lame's faster psychoacoustics: encoding is most of the time it takes to speak a corpus, and the clips are decoded
# back to 16 kHz anyway.
LAME_QUALITY = "7"


def speak_mp3(utterance: Utterance, target: Path) -> None:
    """espeak-ng speaks the sentence; sox cuts its closing pause to CLOSING_PAUSE_SECONDS, adds the padding and
    channels asked for and converts to the clip's rate (faster than lame's own resampler); lame encodes the MP3."""
    with tempfile.TemporaryDirectory() as work:
        wav, shaped = Path(work) / "speech.wav", Path(work) / "shaped.wav"
        subprocess.run(["espeak-ng", "-v", utterance.voice, "-s", str(utterance.speed),
                        *utterance.espeak_options(), "-w", str(wav), utterance.sentence],
                       check=True, capture_output=True)
        closing = ["reverse", "silence", "1", "0.005", TRIM_THRESHOLD, "reverse",
                   "pad", "0", f"{CLOSING_PAUSE_SECONDS + utterance.pad_seconds:g}"]
        subprocess.run(["sox", str(wav), "-c", "2" if utterance.stereo else "1", "-r", str(utterance.sample_rate),
                        str(shaped), *closing], check=True, capture_output=True)
        mode = ["-m", "j"] if utterance.stereo else ["-m", "m"]
        subprocess.run(["lame", "--quiet", "-q", LAME_QUALITY, *mode, str(shaped), str(target)], check=True,
                       capture_output=True)


def _speak_task(task: tuple[Utterance, Path]) -> None:
    speak_mp3(*task)


def hostile_utterances(voice: str) -> list[tuple[Utterance, str | None]]:
    """Real clips that test the importer, each with the reason it must be rejected (None: kept)."""
    return [
        (Utterance("train", "ho comprato 3 mele e 12 pere nel 2021", voice, 160, "common_voice_it_digits.mp3"), None),
        (Utterance("train", "l’insegnante disse «bravo» a tutti", voice, 160, "common_voice_it_quotes.mp3"), None),
        (Utterance("train", "la parola greca λόγος significa discorso", voice, 160, "common_voice_it_greek.mp3"),
         "transcript not encodable"),
        (Utterance("dev", "questa registrazione è stereo", voice, 160, "common_voice_it_stereo.mp3", 44100,
                   stereo=True), None),
        (Utterance("train", "questa frase è seguita da un lungo silenzio", voice, 160, "common_voice_it_long.mp3",
                   pad_seconds=11.0), "longer than MAX_SECS"),
    ]


def build_archive(target: Path, *, sentences: dict[str, list[str]] | None = None, voices: dict[str, list[str]] | None = None,
                  speeds: tuple[int, ...] = (150, 175), per_split: dict[str, int] | None = None, layout: str = "new",
                  release: str = SYNTHETIC_RELEASE, hostile: bool = False, seed: int = 1, jobs: int = 2,
                  variety: Variety | None = None, show_progress: bool = False) -> Manifest:
    """Writes a Common Voice-shaped Italian archive (tar.gz) to TARGET and returns what it holds.

    SENTENCES gives each split its own sentences (default: the project's sentences, split at random with SEED);
    VARIETY varies the training clips' pitch, amplitude and word gap (see plan_utterances).
    """
    if layout not in ("new", "old"):
        raise ValueError("layout is 'new' or 'old'")
    voices = voices or {"train": ["it", "it+m3", "it+f2"], "dev": ["it+m1"], "test": ["it+f4"]}
    per_split = per_split or {"train": 12, "dev": 4, "test": 4}
    sentences = sentences or split_sentences(project_sentences(), per_split, seed)
    plan = plan_utterances(sentences, voices, list(speeds), per_split, variety, seed)
    manifest = Manifest(corpus_prefix="" if layout == "old" else f"{release}/it/")
    expected = [(u, None) for u in plan] + (hostile_utterances(voices["train"][0]) if hostile else [])
    with tempfile.TemporaryDirectory() as work:
        clips = Path(work) / "clips"
        clips.mkdir()
        tasks = [(u, clips / u.clip) for u, _ in expected]
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for _ in progress_iter(pool.imap_unordered(_speak_task, tasks), len(tasks), "speaking", show_progress):
                pass
        rows = {s: [] for s in SPLITS}
        for utterance, reason in expected:
            rows[utterance.split].append(utterance)
            if reason:
                manifest.reject(utterance.split, reason)
            else:
                manifest.kept[utterance.split].append(utterance)
        extra_rows = _add_hostile_files(clips, manifest, voices) if hostile else {s: [] for s in SPLITS}
        _write_tar(target, clips, rows, extra_rows, manifest, layout, hostile)
    return manifest


def _add_hostile_files(clips: Path, manifest: Manifest, voices: dict[str, list[str]]) -> dict[str, list[Utterance]]:
    """Broken clips and rows: a corrupt MP3, an empty one, a missing clip and a duplicated row."""
    (clips / "common_voice_it_corrupt.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 8)
    (clips / "common_voice_it_empty.mp3").write_bytes(b"")
    voice = voices["train"][0]
    corrupt = Utterance("train", "questo file è rovinato", voice, 160, "common_voice_it_corrupt.mp3")
    empty = Utterance("dev", "questo file è vuoto", voice, 160, "common_voice_it_empty.mp3")
    missing = Utterance("test", "questo file non esiste", voice, 160, "common_voice_it_missing.mp3")
    duplicate = manifest.kept["train"][0]
    manifest.reject("train", "undecodable or empty audio")
    manifest.reject("dev", "undecodable or empty audio")
    manifest.reject("test", "missing clip")
    manifest.reject("train", "duplicate row")
    return {"train": [corrupt, duplicate], "dev": [empty], "test": [missing]}


def _tsv(rows: list[Utterance], layout: str) -> bytes:
    columns = NEW_COLUMNS if layout == "new" else OLD_COLUMNS
    lines = ["\t".join(columns)]
    for index, u in enumerate(rows):
        values = {"client_id": f"speaker-{u.voice}-{u.speed}", "path": u.clip, "sentence_id": f"s{index}",
                  "sentence": u.sentence, "sentence_domain": "", "up_votes": "2", "down_votes": "0", "age": "",
                  "gender": "", "accents": "", "accent": "", "variant": "", "locale": "it", "segment": ""}
        lines.append("\t".join(values[c] for c in columns))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _write_tar(target: Path, clips: Path, rows: dict[str, list[Utterance]], extra: dict[str, list[Utterance]],
               manifest: Manifest, layout: str, hostile: bool) -> None:
    prefix = manifest.corpus_prefix
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:gz") as tar:
        for clip in sorted(clips.iterdir()):
            tar.add(clip, arcname=f"{prefix}clips/{clip.name}")
        all_rows = []
        for split in SPLITS:
            split_rows = rows[split] + extra[split]
            all_rows += split_rows
            _add_bytes(tar, f"{prefix}{split}.tsv", _tsv(split_rows, layout))
        _add_bytes(tar, f"{prefix}validated.tsv", _tsv(all_rows, layout))
        if layout == "new":
            sentences = "sentence_id\tsentence\tsentence_domain\tsource\tis_used\tclips_count\n" + "".join(
                f"v{i}\t{s}\t\tproject\t1\t1\n" for i, s in enumerate(sorted({u.sentence for u in all_rows})))
            _add_bytes(tar, f"{prefix}validated_sentences.tsv", sentences.encode("utf-8"))
        if hostile:
            _add_bytes(tar, "../escaped.txt", b"outside\n")
            _add_bytes(tar, "/tmp/absolute-escape.txt", b"outside\n")
            link = tarfile.TarInfo(f"{prefix}clips/link-out")
            link.type, link.linkname = tarfile.SYMTYPE, "../../../../../etc/passwd"
            tar.addfile(link)
            manifest.unsafe_members = {"path leaving the folder": 2, "link leaving the folder": 1}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
