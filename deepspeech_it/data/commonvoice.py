"""Common Voice archives: where the TSVs are, reading them by column name, and their rows for the importer."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas

from deepspeech_it.config import SPLITS
from deepspeech_it.data.archive import ArchiveError
from deepspeech_it.data.clips import Row
from deepspeech_it.util.errors import one_line


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


def read_rows(corpus_dir: Path) -> list[Row]:
    """The clips of the official splits, in TSV order; the wav is named after the clip."""
    missing = [f"{split}.tsv" for split in SPLITS if not (corpus_dir / f"{split}.tsv").is_file()]
    if missing:
        raise ArchiveError(f"{corpus_dir} has no {', '.join(missing)}; is CV_ARCHIVE a complete Common Voice archive?")
    return [Row(Path(row.path).stem, corpus_dir / "clips" / row.path, row.sentence,
                f"cv:{getattr(row, 'client_id', '')}", split)
            for split in SPLITS for row in read_tsv(corpus_dir / f"{split}.tsv").itertuples(index=False)]
