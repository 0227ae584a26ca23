"""Common Voice archives: safe extraction, reading the TSVs by column name, and the import to DeepSpeech CSVs."""

from __future__ import annotations

import csv
import lzma
import multiprocessing
import shutil
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import pandas

from deepspeech_it.config import SPLITS
from deepspeech_it.data.audio import AudioError, convert_to_wav, wav_info
from deepspeech_it.data.csvfile import write_rows
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.data.textnorm import Normalizer, Rejected
from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.errors import PipelineError, one_line
from deepspeech_it.util.progress import progress_iter

# Reasons a sample is left out, as they appear in the report.
MISSING_CLIP = "missing clip"
BAD_AUDIO = "undecodable or empty audio"
TOO_LONG = "longer than MAX_SECS"
TOO_SHORT = "too short for its transcript"
DUPLICATE = "duplicate row"
NO_TRANSCRIPT = "empty transcript"
NOT_ENCODABLE = "transcript not encodable"

# Archive members left out, as they appear in the report.
UNSAFE_PATH = "path leaving the folder"
UNSAFE_LINK = "link leaving the folder"
SPECIAL_FILE = "device, fifo or other special file"


# ---- extraction ------------------------------------------------------------------------------------------------


@dataclass
class ExtractionReport:
    files: int = 0
    reused: int = 0
    skipped: Counter = field(default_factory=Counter)


def _safe_relative(name: str) -> PurePosixPath | None:
    """The member's path inside the destination, or None if it is absolute or climbs out with '..'."""
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("\\") or ".." in path.parts:
        return None
    parts = [p for p in path.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _inside(root: Path, path: Path) -> bool:
    """Whether PATH, with every symbolic link on the way resolved, is ROOT or below it."""
    return path.resolve().is_relative_to(root)


def _link_stays_inside(member: tarfile.TarInfo, target: Path, root: Path) -> bool:
    # Resolving through links already extracted catches chains of links that together climb out.
    if PurePosixPath(member.linkname).is_absolute():
        return False
    pointed = (target.parent / member.linkname) if member.issym() else (root / member.linkname)
    return _inside(root, pointed)


class ArchiveError(PipelineError):
    """CV_ARCHIVE cannot be read to its end (not a tar archive, truncated, damaged), or extracting it fails."""


# What the tar, gzip, bzip2 and xz readers raise on bytes that are not, or no longer, an archive; their OSErrors
# (a bad gzip header, a bad bzip2 stream) carry no errno, unlike a failing disk.
_DAMAGE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def _damage(archive: Path, problem: Exception) -> ArchiveError:
    if isinstance(problem, OSError) and problem.errno is not None:
        return ArchiveError(f"extracting {archive} failed: {problem.filename}: {problem.strerror}")
    if isinstance(problem, EOFError) or "unexpected end of data" in str(problem):
        reason = "truncated: it ends in the middle of its data"
    elif isinstance(problem, tarfile.ReadError) and "could not be opened successfully" in str(problem):
        reason = "not a tar archive (plain, gzip, bzip2 or xz)"
    else:
        reason = f"damaged ({one_line(problem)})"
    return ArchiveError(f"CV_ARCHIVE {archive} is {reason}; download it again")


def probe_archive(archive: Path) -> ArchiveError | None:
    """Whether ARCHIVE opens as a tar archive and its first member can be read: the problem, else None. Cheap;
    only reading it to the end (stage 02) shows a truncated one."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            if tar.next() is None:
                return ArchiveError(f"CV_ARCHIVE {archive} is an empty tar archive; download it again")
    except _DAMAGE + (OSError,) as problem:
        return _damage(archive, problem)
    return None


def extract_archive(archive: Path, destination: Path, show_progress: bool) -> ExtractionReport:
    """Extracts every safe member of ARCHIVE under DESTINATION; unsafe members are skipped and counted. Raises
    ArchiveError when the archive turns out to be damaged.

    Each file is written under a temporary name and renamed, and files already present with the member's size
    are kept, so an interrupted extraction resumes where it stopped.
    """
    report = ExtractionReport()
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            _extract_members(tar, root, report, show_progress)
    except _DAMAGE + (OSError,) as problem:
        raise _damage(archive, problem) from None
    return report


def _extract_members(tar: tarfile.TarFile, root: Path, report: ExtractionReport, show_progress: bool) -> None:
    for member in progress_iter(tar, None, "extracting", show_progress):
        relative = _safe_relative(member.name)
        if relative is None:
            report.skipped[UNSAFE_PATH] += 1
            continue
        target = root / relative
        if not _inside(root, target.parent):
            report.skipped[UNSAFE_PATH] += 1
            continue
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.issym() or member.islnk():
            if not _link_stays_inside(member, target, root):
                report.skipped[UNSAFE_LINK] += 1
                continue
            _extract_link(member, root, target)
            report.files += 1
        elif member.isfile():
            if target.is_file() and target.stat().st_size == member.size:
                report.reused += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, atomic_path(target) as temp, open(temp, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            report.files += 1
        else:
            report.skipped[SPECIAL_FILE] += 1
    _check_end(tar)


def _check_end(tar: tarfile.TarFile) -> None:
    """tarfile takes a damaged member header for the end of the archive and stops without a word: what follows
    the last member must be the zero blocks of the end-of-archive marker. Reading them to the end of the file
    also makes the decompressor check its trailer (gzip's CRC and length)."""
    tar.fileobj.seek(tar.offset)
    while block := tar.fileobj.read(1 << 20):
        if block.strip(b"\0"):
            raise tarfile.ReadError(f"a damaged member header at byte {tar.offset} of the unpacked archive")


def _extract_link(member: tarfile.TarInfo, root: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    if member.issym():
        target.symlink_to(member.linkname)
    else:
        # A hard link names another member by its path in the archive; copying it keeps the tree self-contained.
        shutil.copyfile(root / PurePosixPath(member.linkname), target)


def find_corpus_dir(extracted: Path, language: str) -> Path | None:
    """The folder holding train.tsv: the top of the archive (release 4 and older) or cv-corpus-*/<language>/."""
    if (extracted / "train.tsv").is_file():
        return extracted
    candidates = sorted(extracted.glob(f"cv-corpus-*/{language}/train.tsv")) or sorted(extracted.glob("*/*/train.tsv"))
    return candidates[-1].parent if candidates else None


def read_tsv(path: Path) -> pandas.DataFrame:
    """A Common Voice TSV with every column as text; quotes inside sentences are kept as written. Raises
    ArchiveError naming the file when it is missing, not UTF-8 or not a TSV with the columns needed."""
    try:
        frame = pandas.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False,
                                na_filter=False, encoding="utf-8")
    except OSError as problem:
        raise ArchiveError(f"{path}: cannot be read: {problem.strerror}; is CV_ARCHIVE complete?") from None
    except (ValueError, pandas.errors.ParserError) as problem:       # UnicodeDecodeError is a ValueError
        raise ArchiveError(f"{path}: not a UTF-8 TSV file ({one_line(problem)[:200]})") from None
    missing = {"path", "sentence"} - set(frame.columns)
    if missing:
        raise ArchiveError(f"{path}: no column {', '.join(sorted(missing))}; is CV_ARCHIVE a Common Voice archive?")
    return frame


# ---- import ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipTask:
    split: str
    source: Path
    target: Path
    transcript: str


@dataclass(frozen=True)
class ClipResult:
    task: ClipTask
    frames: int = 0
    problem: str | None = None


def convert_clip(task: ClipTask) -> ClipResult:
    """Converts one clip, or reuses a valid wav that an earlier (perhaps interrupted) run wrote."""
    info = wav_info(task.target)
    if info is not None and info.is_training_format:
        return ClipResult(task, frames=info.frames)
    try:
        return ClipResult(task, frames=convert_to_wav(task.source, task.target))
    except AudioError:
        return ClipResult(task, problem=BAD_AUDIO)


def too_short(frames: int, transcript: str) -> bool:
    """DeepSpeech's rule: a clip needs at least 20 ms of audio per character of its transcript."""
    return int(frames / SAMPLE_RATE * 1000 / 10 / 2) < len(transcript)


@dataclass
class SplitReport:
    kept: int = 0
    seconds: float = 0.0
    rejected: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"kept": self.kept, "hours": round(self.seconds / 3600, 4), "rejected": dict(self.rejected)}


def plan_clips(corpus_dir: Path, clips_out: Path, normalizer: Normalizer,
               reports: dict[str, SplitReport]) -> list[ClipTask]:
    """Reads the split TSVs and returns the clips to convert; rows left out already are counted in REPORTS."""
    seen: set[str] = set()
    tasks: list[ClipTask] = []
    for split in SPLITS:
        for row in read_tsv(corpus_dir / f"{split}.tsv").itertuples(index=False):
            report = reports[split]
            if row.path in seen:
                report.rejected[DUPLICATE] += 1
                continue
            seen.add(row.path)
            try:
                transcript = normalizer.normalize(row.sentence)
            except Rejected as rejected:
                report.rejected[NO_TRANSCRIPT if rejected.reason == NO_TRANSCRIPT else NOT_ENCODABLE] += 1
                continue
            source = corpus_dir / "clips" / row.path
            if not source.is_file():
                report.rejected[MISSING_CLIP] += 1
                continue
            tasks.append(ClipTask(split, source, clips_out / (Path(row.path).stem + ".wav"), transcript))
    return tasks


def convert_all(tasks: list[ClipTask], jobs: int, show_progress: bool) -> Iterator[ClipResult]:
    """Converts clips in JOBS processes (one decoder per process, not one process per clip)."""
    if jobs == 1:
        yield from progress_iter(map(convert_clip, tasks), len(tasks), "converting", show_progress)
        return
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        results = pool.imap_unordered(convert_clip, tasks, chunksize=max(1, min(64, len(tasks) // (jobs * 8) or 1)))
        yield from progress_iter(results, len(tasks), "converting", show_progress)


def import_corpus(corpus_dir: Path, out_dir: Path, normalizer: Normalizer, max_secs: float, jobs: int,
                  show_progress: bool) -> dict[str, SplitReport]:
    """Converts the official splits of CORPUS_DIR into OUT_DIR/clips and writes OUT_DIR/{train,dev,test}.csv."""
    clips_out = out_dir / "clips"
    clips_out.mkdir(parents=True, exist_ok=True)
    reports = {split: SplitReport() for split in SPLITS}
    tasks = plan_clips(corpus_dir, clips_out, normalizer, reports)
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
    # Rows keep the TSV order whatever order the workers finished in.
    for split in SPLITS:
        write_rows(out_dir / f"{split}.csv", [(t.target, t.transcript) for t in tasks if t.split == split and t in kept])
    return reports


def _length_problem(frames: int, transcript: str, max_secs: float) -> str | None:
    if frames / SAMPLE_RATE > max_secs:
        return TOO_LONG
    if too_short(frames, transcript):
        return TOO_SHORT
    return None


def format_report(reports: dict[str, SplitReport]) -> str:
    """The end-of-run table: kept and rejected samples per split and reason."""
    reasons = sorted({reason for r in reports.values() for reason in r.rejected})
    header = ["split", "kept", "hours"] + reasons
    lines = [header] + [
        [split, str(r.kept), f"{r.seconds / 3600:.2f}"] + [str(r.rejected.get(reason, 0)) for reason in reasons]
        for split, r in reports.items()
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines)
