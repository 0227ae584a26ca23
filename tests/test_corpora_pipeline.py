"""Stages 01-04 on all five corpora at once, tiny settings: every corpus found and imported, the guards hold across
corpora, training runs on the union, and each corpus's own test set is scored."""

import csv
import json
from pathlib import Path

from deepspeech_it.data.splits import recording_key

from conftest import run_script, source_variables

TINY = {"N_HIDDEN": "64", "EPOCHS": "1", "BATCH_SIZE": "4", "AMP": "0", "EARLY_STOP": "0", "LM_ORDER": "3",
        "LM_PRUNE": "0", "CORPORA": "cv mailabs mls voxpopuli voxforge"}
ALL = ("cv", "mailabs", "mls", "voxpopuli", "voxforge")


def transcripts(folder: Path, splits) -> dict[str, str]:
    """wav name → transcript over SPLITS of one corpus's CSVs."""
    found = {}
    for split in splits:
        with open(folder / f"{split}.csv", newline="", encoding="utf-8") as handle:
            found.update({Path(row["wav_filename"]).name: row["transcript"] for row in csv.DictReader(handle)})
    return found


def test_stages_01_to_04_on_every_corpus(tmp_path, cv_archive, corpus_sources):
    data_dir = tmp_path / "data"
    variables = {**TINY, **source_variables(corpus_sources), "CV_ARCHIVE": str(cv_archive.path),
                 "CV_SHA256": cv_archive.sha256}
    outputs = {}
    for script in ("01_check_sources.py", "02_import_cv.py", "03_build_lm.py", "04_train.py"):
        result = run_script(script, data_dir, **variables)
        assert result.returncode == 0, script + result.stdout[-2000:] + result.stderr[-2000:]
        outputs[script[:2]] = result.stdout
    assert "corpora found: cv, mailabs, mls, voxpopuli, voxforge" in outputs["01"]

    folders = {corpus: data_dir / "data" / ("cv-it" if corpus == "cv" else corpus) for corpus in ALL}
    train = {corpus: transcripts(folder, ["train"]) for corpus, folder in folders.items()}
    held_out = {corpus: transcripts(folder, ["dev", "test"]) for corpus, folder in folders.items()}
    held_sentences = {t for found in held_out.values() for t in found.values()}
    assert all(train[corpus] for corpus in ALL)
    assert not held_sentences & {t for found in train.values() for t in found.values()}

    # The same LibriVox book is never trained on through one corpus and tested on through the other.
    def books(corpus, found):
        recordings = corpus_sources[corpus].manifest.recordings
        return {recording_key(recordings[name]) for name in found}
    assert not books("mailabs", train["mailabs"]) & books("mls", held_out["mls"])
    assert not books("mls", train["mls"]) & books("mailabs", held_out["mailabs"])

    report = json.loads((data_dir / "reports" / "import_report.json").read_text())
    guards = report["guards"]
    recordings_removed = next(counts for name, counts in guards.items() if "LibriVox" in name)
    assert recordings_removed["mailabs"] + recordings_removed["mls"] > 0, "the synthetic corpora share a book"
    assert set(report["corpora"]) == set(ALL)

    lm = json.loads((data_dir / "lm" / "lm_report.json").read_text())
    assert lm["corpus"]["dev_test_sentences_removed"] > 0

    for corpus in ALL:
        scored = json.loads((data_dir / "reports" / f"test_greedy_{corpus}.json").read_text())
        assert scored["utterances"] == len(transcripts(folders[corpus], ["test"]))
    main_test = json.loads((data_dir / "reports" / "test_greedy.json").read_text())
    assert main_test["utterances"] == len(transcripts(folders["cv"], ["test"])), "test stays Common Voice's"
    for corpus in ALL:
        assert f"{corpus} test: WER" in outputs["04"]
