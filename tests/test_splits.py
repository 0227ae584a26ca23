"""Splits where a corpus has none, and the leak guards across corpora (data/splits.py)."""

from collections import Counter
from pathlib import Path

from deepspeech_it.data.clips import HELD_OUT_RECORDING, HELD_OUT_SENTENCE, ClipTask, Row, new_reports
from deepspeech_it.data.splits import (assign_splits, guard_recordings, guard_sentences, official_recording_splits,
                                       recording_key)


def rows(groups: dict[str, int], recording=lambda group: "") -> list[Row]:
    return [Row(f"{group}-{i}", Path(f"{group}/{i}.wav"), "testo", group, recording=recording(group))
            for group, count in groups.items() for i in range(count)]


def test_groups_stay_whole_and_the_split_does_not_depend_on_row_order():
    groups = {f"speaker{n}": 3 + n % 4 for n in range(40)}
    first = assign_splits(rows(groups), group_of=lambda row: row.speaker)
    again = assign_splits(list(reversed(rows(groups))), group_of=lambda row: row.speaker)
    split_of = {}
    for row in first:
        assert split_of.setdefault(row.speaker, row.split) == row.split
    assert {row.clip_id: row.split for row in again} == {row.clip_id: row.split for row in first}
    sizes = Counter(row.split for row in first)
    total = sum(sizes.values())
    for split in ("dev", "test"):
        assert 0.1 * total <= sizes[split] <= 0.1 * total + max(groups.values())


def test_preferred_splits_are_followed():
    groups = {"mailabs:malavoglia": 5, "mailabs:galatea": 5, "mailabs:cuore": 5}
    assigned = assign_splits(rows(groups, recording=lambda g: g.split(":")[1]), group_of=lambda row: row.speaker,
                             preferred={"galatea": "test", "malavoglia": "train"})
    split_of = {row.speaker: row.split for row in assigned}
    assert split_of["mailabs:galatea"] == "test" and split_of["mailabs:malavoglia"] == "train"


def task(split: str, transcript: str, recording: str = "") -> ClipTask:
    return ClipTask(split, Path("a.wav"), Path(f"{split}-{transcript}.wav"), transcript, recording=recording)


def test_sentence_guard_removes_train_clips_of_any_dev_or_test_sentence():
    plans = {"cv": [task("train", "uno"), task("train", "due"), task("test", "tre")],
             "voxforge": [task("train", "tre"), task("dev", "uno"), task("train", "quattro")]}
    reports = {corpus: new_reports() for corpus in plans}
    removed = guard_sentences(plans, reports, also_held_out={"quattro"})
    assert removed == {"cv": 1, "voxforge": 2}
    assert [t.transcript for t in plans["cv"]] == ["due", "tre"]
    assert [t.transcript for t in plans["voxforge"]] == ["uno"]
    assert reports["voxforge"]["train"].rejected[HELD_OUT_SENTENCE] == 2


def test_recording_guard_keeps_a_book_out_of_train_when_another_corpus_tests_on_it():
    plans = {"mls": [task("train", "a", "malavoglia"), task("test", "b", "galatea"), task("train", "c", "cuore")],
             "mailabs": [task("test", "d", "malavoglia"), task("train", "e", "galatea"), task("train", "f", "cuore")]}
    reports = {corpus: new_reports() for corpus in plans}
    removed = guard_recordings(plans, reports)
    assert removed == {"mls": 1, "mailabs": 1}
    assert {t.recording for t in plans["mls"] if t.split == "train"} == {"cuore"}
    assert {t.recording for t in plans["mailabs"] if t.split == "train"} == {"cuore"}
    assert reports["mls"]["train"].rejected[HELD_OUT_RECORDING] == 1


def test_official_recording_splits_leave_out_books_in_two_splits():
    tasks = [task("train", "a", "cuore"), task("test", "b", "malavoglia"), task("train", "c", "malavoglia")]
    assert official_recording_splits(tasks) == {"cuore": "train"}


def test_recording_keys_match_across_the_two_corpora():
    assert recording_key("il_fu_mattia_pascal") == recording_key("Il fu Mattia Pascal")
    assert recording_key("malavoglia") == recording_key("I Malavoglia")
    assert recording_key("novelle_per_un_anno_06") == recording_key("Novelle per un anno, vol. 1")
    assert recording_key("galatea") != recording_key("Cuore")
