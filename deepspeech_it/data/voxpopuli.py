"""VoxPopuli, Italian transcribed speech: European Parliament sessions.

Two forms are accepted in VOXPOPULI_DIR:

- as published: the session archives ``original_<year>.tar`` (sessions of every language; only the ones the
  Italian annotations name are extracted) and ``asr_it.tsv.gz`` (``|``-separated, header row, read by name). A
  segment is its VAD pieces (``vad``: a list of ``[start, end]`` seconds) cut from ``<session>_original.ogg`` and
  joined, as VoxPopuli's own ``get_asr_data`` does; the pieces are decoded straight from the session file.
- already processed by ``get_asr_data``: ``transcribed_data/it/asr_{train,dev,test}.tsv`` (tab-separated, header
  row whose columns changed between releases, read by name) and ``transcribed_data/it/<year>/<id>.ogg``.

The official splits are kept; ``raw_text``/``original_text`` is the text read (case, digits and apostrophes as
spoken), ``normalized_text`` only where it is empty. Ids hold ``:``, which never reaches a file name.
"""

from __future__ import annotations

import ast
import csv
import gzip
from collections import Counter
from pathlib import Path

from deepspeech_it.config import SPLITS
from deepspeech_it.data.clips import Row

ANNOTATIONS = "asr_it.tsv.gz"
SESSION_ARCHIVES = "original_*.tar"
PROCESSED = Path("transcribed_data") / "it"
NOT_IN_A_SPLIT = "row outside train/dev/test"
BAD_VAD = "row whose vad is not a list of [start, end]"


def processed_root(folder: Path) -> Path | None:
    """The folder holding asr_train.tsv when FOLDER is (or contains) get_asr_data's output, else None."""
    for candidate in (folder / PROCESSED, folder):
        if all((candidate / f"asr_{split}.tsv").is_file() for split in SPLITS):
            return candidate
    return None


def session_archives(folder: Path) -> list[Path]:
    return sorted(folder.glob(SESSION_ARCHIVES))


def _speaker(value: str | None, session: str) -> str:
    # speaker_id is "None" for unidentified speakers: they are kept apart per session rather than merged into one.
    value = (value or "").strip()
    return f"voxpopuli:{value}" if value and value != "None" else f"voxpopuli:unknown:{session}"


def annotation_rows(folder: Path) -> list[dict[str, str]]:
    with gzip.open(folder / ANNOTATIONS, "rt", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="|"))


def wanted_sessions(annotations: list[dict[str, str]]) -> set[str]:
    """File names of the session recordings the annotations cut segments from."""
    return {f"{row['session_id']}_original.ogg" for row in annotations if row.get("split") in SPLITS}


def raw_rows(annotations: list[dict[str, str]], extracted: Path, skipped: Counter) -> list[Row]:
    """Segments of the session recordings extracted under EXTRACTED (found by file name, wherever the tar put
    them)."""
    sessions = {path.name: path for path in extracted.rglob("*_original.ogg")}
    rows = []
    for row in annotations:
        split = row.get("split", "")
        if split not in SPLITS:
            skipped[NOT_IN_A_SPLIT] += 1
            continue
        session = row["session_id"]
        pieces = _pieces(row.get("vad", ""))
        if not pieces:
            skipped[BAD_VAD] += 1
            continue
        name = f"{session}_original.ogg"
        rows.append(Row(f"{session}-{row['id_']}", sessions.get(name, extracted / name),
                        row.get("original_text") or row.get("normed_text", ""), _speaker(row.get("speaker_id"), session),
                        split, pieces=pieces))
    return rows


def _pieces(text: str) -> tuple[tuple[float, float], ...]:
    try:
        value = ast.literal_eval(text)
        pieces = tuple((float(start), float(end)) for start, end in value)
    except (ValueError, SyntaxError, TypeError):
        return ()
    return pieces if pieces and all(end > start >= 0 for start, end in pieces) else ()


def processed_rows(root: Path) -> list[Row]:
    rows = []
    for split in SPLITS:
        with open(root / f"asr_{split}.tsv", newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                clip_id = row["id"]
                rows.append(Row(clip_id, root / clip_id[:4] / f"{clip_id}.ogg",
                                row.get("raw_text") or row.get("normalized_text") or "",
                                _speaker(row.get("speaker_id"), clip_id.split("_")[0]), split))
    return rows
