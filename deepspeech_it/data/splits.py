"""Splits where a corpus has none, and the guards that keep dev/test material out of training across corpora.

M-AILABS and VoxForge publish no split. DeepSpeech's importers split by row index (every tenth row to test), which
puts the same reader and the same book in train and test; here whole groups (a speaker, or a book) go to one split,
chosen by a hash of the group's name, so the split is the same on every machine and every run.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import replace
from typing import Callable, Iterable, Mapping

from deepspeech_it.data.clips import HELD_OUT_RECORDING, HELD_OUT_SENTENCE, ClipTask, Row, SplitReport

# Shares of the clips that go to test and to dev (DeepSpeech's importers used a tenth each).
HELD_OUT_SHARES = (("test", 0.1), ("dev", 0.1))
_VOLUME_WORDS = re.compile(r"\b(vol|volume|volumi|tomo|libro|parte)\b|\d+")
_LEADING_ARTICLE = re.compile(r"^\s*(il|lo|la|i|gli|le|l|un|uno|una)\b\s*")


def recording_key(title: str) -> str:
    """The book a LibriVox reading comes from, spelt alike whichever corpus cut it: M-AILABS' folder
    ``malavoglia`` and MLS's title "I Malavoglia" give the same key. A leading article and volume numbers are
    dropped, so every volume of a work counts as one book (a guard that errs on the side of holding more out)."""
    text = unicodedata.normalize("NFKD", re.sub(r"[_'’]", " ", title.lower()))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[^a-z]", "", _LEADING_ARTICLE.sub("", _VOLUME_WORDS.sub(" ", text)))


def _rank(group: str) -> str:
    return hashlib.sha256(group.encode("utf-8")).hexdigest()


def assign_splits(rows: list[Row], group_of: Callable[[Row], str],
                  preferred: Mapping[str, str] | None = None) -> list[Row]:
    """ROWS with a split each: all rows of a group share one. A group named in PREFERRED (recording key → split,
    from a corpus with official splits) takes that split; the others, in hash order, fill test and then dev up to
    their shares of the clips, and the rest is train."""
    preferred = preferred or {}
    sizes = Counter(group_of(row) for row in rows)
    recording_of = {group_of(row): row.recording for row in rows}
    split_of: dict[str, str] = {}
    filled = Counter()
    for group in sizes:
        split = preferred.get(recording_of[group])
        if split:
            split_of[group] = split
            filled[split] += sizes[group]
    total = sum(sizes.values())
    for group in sorted((g for g in sizes if g not in split_of), key=_rank):
        split_of[group] = next((split for split, share in HELD_OUT_SHARES if filled[split] < share * total), "train")
        filled[split_of[group]] += sizes[group]
    return [replace(row, split=split_of[group_of(row)]) for row in rows]


def official_recording_splits(tasks: Iterable[ClipTask]) -> dict[str, str]:
    """Recording key → split, for the recordings that lie in exactly one split of an officially split corpus."""
    seen: dict[str, set[str]] = {}
    for task in tasks:
        if task.recording:
            seen.setdefault(task.recording, set()).add(task.split)
    return {recording: splits.pop() for recording, splits in seen.items() if len(splits) == 1}


def guard_sentences(plans: Mapping[str, list[ClipTask]], reports: Mapping[str, Mapping[str, SplitReport]],
                    also_held_out: Iterable[str] = ()) -> dict[str, int]:
    """Drops from every train set the clips whose transcript is a dev or test transcript of any chosen corpus
    (or one of ALSO_HELD_OUT); returns how many each corpus lost."""
    held = {t.transcript for tasks in plans.values() for t in tasks if t.split != "train"} | set(also_held_out)
    return _drop_train(plans, reports, HELD_OUT_SENTENCE, lambda corpus, task: task.transcript in held)


def guard_recordings(plans: Mapping[str, list[ClipTask]],
                     reports: Mapping[str, Mapping[str, SplitReport]]) -> dict[str, int]:
    """Drops from each corpus's train set the clips of a recording that another corpus holds in dev or test: MLS
    and M-AILABS cut the same LibriVox readings differently, and a book must not be trained on through one and
    tested on through the other."""
    held: dict[str, set[str]] = {}
    for corpus, tasks in plans.items():
        for task in tasks:
            if task.recording and task.split != "train":
                held.setdefault(task.recording, set()).add(corpus)
    return _drop_train(plans, reports, HELD_OUT_RECORDING,
                       lambda corpus, task: bool(task.recording and held.get(task.recording, set()) - {corpus}))


def _drop_train(plans, reports, reason: str, leaks: Callable[[str, ClipTask], bool]) -> dict[str, int]:
    removed = {}
    for corpus, tasks in plans.items():
        kept = [t for t in tasks if t.split != "train" or not leaks(corpus, t)]
        removed[corpus] = len(tasks) - len(kept)
        if removed[corpus]:
            reports[corpus]["train"].rejected[reason] += removed[corpus]
        tasks[:] = kept
    return removed
