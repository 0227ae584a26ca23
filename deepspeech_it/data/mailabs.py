"""M-AILABS Speech Dataset, Italian (``it_IT.tgz``): LibriVox books read by named readers or by many (``mix``).

Layout: ``it_IT/by_book/{female,male}/<reader>/<book>/`` and ``it_IT/by_book/mix/<book>/``, each book with a
``metadata.csv`` (``id|original text|normalised text``, no header) and ``wavs/<id>.wav``. The original text (column
2) is the one read here: column 3 lost the apostrophes (``dell’altra`` → ``dellaltra``) and spelt numbers its own
way, and our normaliser must decide both. There is no official split: whole books go to one split
(data/splits.py), never rows of the same book to two.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from deepspeech_it.data.clips import Row
from deepspeech_it.data.splits import assign_splits, recording_key

GENDER_FOLDERS = ("female", "male")
MIX_FOLDER = "mix"
# Clips whose audio stops before the text does (found by MITADS-Speech's authors).
FAULTY_CLIPS = frozenset([f"novelle06_16_pirandello_f{n:06d}" for n in range(28, 42)]
                         + ["novelle06_17_pirandello_f000387"])
MALFORMED_LINE = "metadata line without id and text"


def find_root(extracted: Path) -> Path | None:
    """The ``by_book`` folder: ``it_IT/by_book`` as published, or one level deeper or shallower."""
    for candidate in (extracted / "it_IT" / "by_book", extracted / "by_book", *sorted(extracted.glob("*/*/by_book"))):
        if candidate.is_dir():
            return candidate
    return None


def book_folders(root: Path) -> list[tuple[Path, str]]:
    """(book folder, speaker) for every book; a ``mix`` book has no reader, so its speaker is the book itself."""
    books = [(book, f"mailabs:{reader.name}") for gender in GENDER_FOLDERS
             for reader in sorted((root / gender).glob("*")) if reader.is_dir() and not _junk(reader)
             for book in sorted(reader.glob("*")) if (book / "metadata.csv").is_file() and not _junk(book)]
    books += [(book, f"mailabs:{MIX_FOLDER}:{book.name}") for book in sorted((root / MIX_FOLDER).glob("*"))
              if (book / "metadata.csv").is_file() and not _junk(book)]
    return books


def _junk(path: Path) -> bool:
    # macOS leaves ._<name> resource forks and __MACOSX folders in archives packed on it.
    return path.name.startswith("._") or path.name == "__MACOSX"


def read_rows(root: Path, skipped: Counter, preferred: dict[str, str] | None = None) -> list[Row]:
    """Every clip of every book, split book by book (PREFERRED: recording key → split from MLS, so that a book both
    corpora hold lands on the same side in both)."""
    rows = []
    for book, speaker in book_folders(root):
        for line in (book / "metadata.csv").read_text(encoding="utf-8").splitlines():
            fields = line.split("|")
            if len(fields) < 2 or not fields[0].strip():
                if line.strip():
                    skipped[MALFORMED_LINE] += 1
                continue
            clip_id = fields[0].strip()
            text = fields[1].strip() or (fields[2].strip() if len(fields) > 2 else "")
            rows.append(Row(clip_id, book / "wavs" / f"{clip_id}.wav", text, speaker,
                            recording=recording_key(book.name), faulty=clip_id in FAULTY_CLIPS))
    return assign_splits(rows, group_of=lambda row: row.source.parent.parent.as_posix(), preferred=preferred)
