"""Multilingual LibriSpeech, Italian (``mls_italian_opus.tar.gz`` or ``mls_italian.tar.gz``).

Layout: ``mls_italian[_opus]/{train,dev,test}/transcripts.txt`` (``<id>\\t<text>``) with the audio at
``audio/<speaker>/<book>/<id>.opus|.flac``, the id being ``<speaker>_<book>_<segment>``; ``metainfo.txt`` names
each book (``|``-separated, space-padded, header row). The official splits are kept (speaker-disjoint). The book
title is the recording key that the cross-corpus guard compares with M-AILABS (data/splits.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from deepspeech_it.config import SPLITS
from deepspeech_it.data.clips import Row
from deepspeech_it.data.splits import recording_key

AUDIO_EXTENSIONS = (".opus", ".flac")
# A clip whose transcript is another clip's (NVIDIA NeMo's Italian recipe drops it).
FAULTY_CLIPS = frozenset({"1595_5616_000923"})
# Text of the page scans left at the end of a few transcripts; never spoken.
SCAN_LEFTOVER = "content from google book search generated at"
MALFORMED_LINE = "transcript line without id and text"


def find_root(extracted: Path) -> Path | None:
    """The folder holding train/, dev/ and test/: ``mls_italian_opus/`` or ``mls_italian/`` as published."""
    candidates = [extracted] + sorted(extracted.glob("mls_*")) + sorted(extracted.glob("*"))
    return next((c for c in candidates if (c / "train" / "transcripts.txt").is_file()), None)


def book_titles(root: Path) -> dict[tuple[str, str], str]:
    """(speaker, book id) → title, from metainfo.txt (fields read by the names of its header row)."""
    path = root / "metainfo.txt"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return {}
    header = [name.strip().upper() for name in lines[0].split("|")]
    titles = {}
    for line in lines[1:]:
        fields = [value.strip() for value in line.split("|")]
        if len(fields) != len(header):
            continue
        row = dict(zip(header, fields))
        titles[_book(row.get("SPEAKER", ""), row.get("BOOK ID", ""))] = row.get("TITLE", "")
    return titles


def _book(speaker: str, book: str) -> tuple[str, str]:
    # Speaker ids are written with and without leading zeros (ESPnet pads them): compare them as numbers.
    return speaker.lstrip("0"), book.lstrip("0")


def read_rows(root: Path, skipped: Counter) -> list[Row]:
    titles = book_titles(root)
    rows = []
    for split in SPLITS:
        folder = root / split
        for line in (folder / "transcripts.txt").read_text(encoding="utf-8").splitlines():
            clip_id, _, text = line.partition("\t")
            parts = clip_id.strip().split("_")
            if len(parts) != 3 or not text.strip():
                if line.strip():
                    skipped[MALFORMED_LINE] += 1
                continue
            speaker, book, _ = parts
            rows.append(Row(clip_id.strip(), _audio(folder / "audio" / speaker / book, clip_id.strip()),
                            text.replace(SCAN_LEFTOVER, " "), f"mls:{speaker}", split,
                            recording=recording_key(titles.get(_book(speaker, book), "")) or f"mls:{speaker}_{book}",
                            faulty=clip_id.strip() in FAULTY_CLIPS))
    return rows


def _audio(folder: Path, clip_id: str) -> Path:
    candidates = [folder / f"{clip_id}{extension}" for extension in AUDIO_EXTENSIONS]
    return next((path for path in candidates if path.is_file()), candidates[0])
