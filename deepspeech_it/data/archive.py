"""Safe, resumable extraction of the tar archives corpora are published as (Common Voice, M-AILABS, MLS,
VoxPopuli's session tars, VoxForge's per-session archives): members that would land outside the destination are
skipped and counted, never written."""

from __future__ import annotations

import lzma
import shutil
import tarfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.errors import PipelineError, one_line
from deepspeech_it.util.progress import progress_iter


class ArchiveError(PipelineError):
    """An archive that cannot be read to its end (not a tar archive, truncated, damaged), or extracting it fails;
    the message names it."""


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
    return ArchiveError(f"{archive} is {reason}; download it again")


def probe_archive(archive: Path) -> ArchiveError | None:
    """Whether ARCHIVE opens as a tar archive and its first member can be read: the problem, else None. Cheap;
    only reading it to the end (stage 02) shows a truncated one."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            if tar.next() is None:
                return ArchiveError(f"{archive} is an empty tar archive; download it again")
    except _DAMAGE + (OSError,) as problem:
        return _damage(archive, problem)
    return None


# Archive members left out, as they appear in the report.
UNSAFE_PATH = "path leaving the folder"
UNSAFE_LINK = "link leaving the folder"
SPECIAL_FILE = "device, fifo or other special file"


@dataclass
class ExtractionReport:
    files: int = 0
    reused: int = 0
    not_needed: int = 0
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


def extract_archive(archive: Path, destination: Path, show_progress: bool,
                    wanted: Callable[[PurePosixPath], bool] | None = None) -> ExtractionReport:
    """Extracts every safe member of ARCHIVE under DESTINATION; unsafe members are skipped and counted. With
    WANTED, only the files it accepts (by their path inside the archive) are written.

    Each file is written under a temporary name and renamed, and files already present with the member's size
    are kept, so an interrupted extraction resumes where it stopped. A damaged archive raises ArchiveError.
    """
    destination.mkdir(parents=True, exist_ok=True)
    try:
        return _extract(archive, destination.resolve(), show_progress, wanted)
    except _DAMAGE + (OSError,) as problem:
        raise _damage(archive, problem) from None


def _extract(archive: Path, root: Path, show_progress: bool, wanted) -> ExtractionReport:
    report = ExtractionReport()
    with tarfile.open(archive, "r:*") as tar:
        for member in progress_iter(tar, None, "extracting", show_progress):
            relative = _safe_relative(member.name)
            if relative is None:
                report.skipped[UNSAFE_PATH] += 1
                continue
            if wanted is not None and not member.isdir() and not wanted(relative):
                report.not_needed += 1
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
    return report


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
