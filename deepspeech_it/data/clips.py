"""What every corpus importer shares once it has read its corpus's own files: one normaliser applied to the raw
text, one conversion of the audio (in JOBS processes, no process per clip), MAX_SECS and DeepSpeech's length rule,
one report by reason and one CSV writer.

A corpus module only turns its files into :class:`Row` objects; :func:`plan_rows` makes them clip tasks (or counts
why not) and :func:`convert_and_write` converts them and writes ``train/dev/test.csv``.
"""

from __future__ import annotations

import multiprocessing
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from deepspeech_it.config import SPLITS
from deepspeech_it.data.audio import AudioError, convert_to_wav, wav_info
from deepspeech_it.data.csvfile import write_rows
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.data.textnorm import REASON_EMPTY, Normalizer, Rejected
from deepspeech_it.util.progress import progress_iter

# Reasons a sample is left out, as they appear in the reports.
MISSING_CLIP = "missing clip"
BAD_AUDIO = "undecodable or empty audio"
TOO_LONG = "longer than MAX_SECS"
TOO_SHORT = "too short for its transcript"
DUPLICATE = "duplicate row"
NO_TRANSCRIPT = REASON_EMPTY
NOT_ENCODABLE = "transcript not encodable"
LISTED_FAULTY = "known faulty clip"
HELD_OUT_SENTENCE = "sentence of a dev/test set"
HELD_OUT_RECORDING = "reading in another corpus's dev/test"

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Row:
    """One utterance as a corpus lists it, before normalisation."""

    clip_id: str            # unique within the corpus; names the wav
    source: Path            # the audio file as published
    text: str               # the raw text (case, punctuation, digits as the corpus writes them)
    speaker: str = ""       # namespaced by corpus ("mls:1595")
    split: str = ""         # official split, or the one assigned by data/splits.py
    recording: str = ""     # what another corpus may cut differently (a LibriVox book), see data/splits.py
    pieces: tuple[tuple[float, float], ...] = ()   # seconds of SOURCE joined into the clip; empty: all of it
    faulty: bool = False    # listed as broken by those who used the corpus before


@dataclass(frozen=True)
class ClipTask:
    split: str
    source: Path
    target: Path
    transcript: str
    speaker: str = ""
    recording: str = ""
    pieces: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class ClipResult:
    task: ClipTask
    frames: int = 0
    problem: str | None = None


@dataclass
class SplitReport:
    kept: int = 0
    seconds: float = 0.0
    rejected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"kept": self.kept, "hours": round(self.seconds / 3600, 4), "rejected": dict(self.rejected),
                "seconds": round(self.seconds, 2)}

    @classmethod
    def from_dict(cls, value: dict) -> "SplitReport":
        return cls(value["kept"], value["seconds"], Counter(value["rejected"]))


def new_reports() -> dict[str, SplitReport]:
    return {split: SplitReport() for split in SPLITS}


def clip_file_name(clip_id: str) -> str:
    """A wav name for CLIP_ID: characters that tools read as separators (VoxPopuli's ':', a '/') become '_'."""
    return _UNSAFE_NAME.sub("_", clip_id) + ".wav"


def plan_rows(rows: Iterable[Row], clips_out: Path, normalizer: Normalizer,
              reports: dict[str, SplitReport]) -> list[ClipTask]:
    """The rows worth converting, in order; every row left out is counted in REPORTS under its split."""
    seen: set[str] = set()
    tasks: list[ClipTask] = []
    for row in rows:
        report = reports[row.split]
        name = clip_file_name(row.clip_id)
        if name in seen:
            report.rejected[DUPLICATE] += 1
            continue
        seen.add(name)
        if row.faulty:
            report.rejected[LISTED_FAULTY] += 1
            continue
        try:
            transcript = normalizer.normalize(row.text)
        except Rejected as rejected:
            report.rejected[NO_TRANSCRIPT if rejected.reason == REASON_EMPTY else NOT_ENCODABLE] += 1
            continue
        if not row.source.is_file():
            report.rejected[MISSING_CLIP] += 1
            continue
        tasks.append(ClipTask(row.split, row.source, clips_out / name, transcript, row.speaker, row.recording,
                              row.pieces))
    return tasks


def convert_clip(task: ClipTask) -> ClipResult:
    """Converts one clip, or reuses a valid wav that an earlier (perhaps interrupted) run wrote."""
    info = wav_info(task.target) if task.target.exists() else None
    if info is not None and info.is_training_format:
        return ClipResult(task, frames=info.frames)
    try:
        return ClipResult(task, frames=convert_to_wav(task.source, task.target, task.pieces))
    except AudioError:
        return ClipResult(task, problem=BAD_AUDIO)


def convert_all(tasks: list[ClipTask], jobs: int, show_progress: bool) -> Iterator[ClipResult]:
    """Converts clips in JOBS processes (one decoder per process, not one process per clip)."""
    if jobs == 1:
        yield from progress_iter(map(convert_clip, tasks), len(tasks), "converting", show_progress)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        results = pool.imap_unordered(convert_clip, tasks, chunksize=max(1, min(64, len(tasks) // (jobs * 8) or 1)))
        yield from progress_iter(results, len(tasks), "converting", show_progress)


def too_short(frames: int, transcript: str) -> bool:
    """DeepSpeech's rule: a clip needs at least 20 ms of audio per character of its transcript."""
    return int(frames / SAMPLE_RATE * 1000 / 10 / 2) < len(transcript)


def _length_problem(frames: int, transcript: str, max_secs: float) -> str | None:
    if frames / SAMPLE_RATE > max_secs:
        return TOO_LONG
    if too_short(frames, transcript):
        return TOO_SHORT
    return None


def convert_and_write(tasks: list[ClipTask], out_dir: Path, reports: dict[str, SplitReport], max_secs: float,
                      jobs: int, show_progress: bool) -> None:
    """Converts TASKS into OUT_DIR/clips, counts what survives in REPORTS and writes OUT_DIR/{train,dev,test}.csv."""
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    kept: set[ClipTask] = set()
    for result in convert_all(tasks, jobs, show_progress):
        report = reports[result.task.split]
        problem = result.problem or _length_problem(result.frames, result.task.transcript, max_secs)
        if problem:
            report.rejected[problem] += 1
            continue
        report.kept += 1
        report.seconds += result.frames / SAMPLE_RATE
        kept.add(result.task)
    # Rows keep the corpus's order whatever order the workers finished in.
    for split in SPLITS:
        write_rows(out_dir / f"{split}.csv", [(t.target, t.transcript) for t in tasks if t.split == split and t in kept])


def format_report(reports: dict[str, dict[str, SplitReport]]) -> str:
    """The end-of-run table: kept clips, hours and rejections by reason, per corpus and split."""
    reasons = sorted({reason for splits in reports.values() for r in splits.values() for reason in r.rejected})
    header = ["corpus", "split", "kept", "hours"] + reasons
    lines = [header] + [
        [corpus, split, str(r.kept), f"{r.seconds / 3600:.2f}"] + [str(r.rejected.get(reason, 0)) for reason in reasons]
        for corpus, splits in reports.items() for split, r in splits.items()
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
