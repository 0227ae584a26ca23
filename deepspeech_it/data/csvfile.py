"""DeepSpeech's CSV (wav_filename, wav_filesize, transcript): the one reader, writer and validator.

Wav paths are written relative to the CSV's folder, so a data folder can move; they are read back as absolute paths.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.errors import PipelineError

CSV_FIELDS = ("wav_filename", "wav_filesize", "transcript")
REQUIRED_FIELDS = ("wav_filename", "transcript")


class CsvError(PipelineError):
    """A data folder a stage must not trust: the stage stops with this one line."""


@dataclass(frozen=True)
class CsvRow:
    path: Path          # absolute (a relative wav_filename is resolved against the CSV's folder)
    size: int           # wav_filesize as recorded; 0 when the column is missing or empty
    transcript: str
    written: str        # wav_filename as the CSV has it


def read_rows(path: str | Path, labelled: bool = True) -> list[CsvRow]:
    """The rows of a DeepSpeech CSV; CsvError names the file when it cannot be read as one. LABELLED=False reads
    CSVs of clips without transcripts too (an overlay's noise list), with empty transcripts."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            required = REQUIRED_FIELDS if labelled else REQUIRED_FIELDS[:1]
            missing = [name for name in required if name not in (reader.fieldnames or ())]
            if missing:
                raise CsvError(f"{path}: not a DeepSpeech CSV (no column {', '.join(missing)})")
            return [_row(path, number, row) for number, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as problem:
        raise CsvError(f"{path}: cannot be read as a DeepSpeech CSV ({problem})") from None


def _row(path: Path, number: int, row: dict) -> CsvRow:
    written, transcript, size = row["wav_filename"], row.get("transcript", ""), (row.get("wav_filesize") or "").strip()
    if written is None or transcript is None:
        raise CsvError(f"{path}:{number}: fewer fields than the header names")
    try:
        recorded = int(size) if size else 0
    except ValueError:
        raise CsvError(f"{path}:{number}: wav_filesize {size!r} is not a whole number") from None
    wav = Path(written)
    return CsvRow((wav if wav.is_absolute() else path.parent / wav).resolve(), recorded, transcript, written)


def write_rows(path: Path, rows: Iterable[tuple[Path, str]]) -> None:
    """A DeepSpeech CSV of (wav path, transcript) rows, sizes read from the files, paths relative to PATH's folder."""
    with atomic_path(path) as temp, open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for wav, transcript in rows:
            writer.writerow((os.path.relpath(wav, path.parent), Path(wav).stat().st_size, transcript))


def validate(path: Path, alphabet) -> list[str]:
    """Problems that make a DeepSpeech CSV unfit for training, one line each (empty: fit).

    Checked before a stage trusts a data folder it did not write itself: columns, existing wav files of the
    recorded size, transcripts the alphabet encodes.
    """
    if not path.is_file():
        return [f"{path}: missing; run stage 02 (make import-cv)"]
    try:
        rows = read_rows(path)
    except CsvError as problem:
        return [str(problem)]
    if not rows:
        return [f"{path}: no rows"]
    problems = []
    for number, row in enumerate(rows, start=2):
        if not row.path.is_file():
            problems.append(f"{path.name}:{number}: {row.written} does not exist")
        elif row.size and row.size != row.path.stat().st_size:
            problems.append(f"{path.name}:{number}: {row.written} is not the size the CSV records")
        if not alphabet.can_encode(row.transcript):
            problems.append(f"{path.name}:{number}: transcript {row.transcript!r} is not encodable")
    return problems


def check(paths: Iterable[Path], alphabet, shown: int = 5) -> None:
    """Raises CsvError with the first SHOWN problems of the CSVs PATHS (see validate) and their number."""
    problems = [problem for path in paths for problem in validate(Path(path), alphabet)]
    if problems:
        more = f" (and {len(problems) - shown} more)" if len(problems) > shown else ""
        raise CsvError(f"{len(problems)} problem(s) in the data folder: " + "; ".join(problems[:shown]) + more)
