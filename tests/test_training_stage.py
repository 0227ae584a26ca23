"""scripts/04_train.py on the corpus stage 02 imports from the generated Common Voice archive."""

from __future__ import annotations

import json
import shutil

from conftest import run_script

TINY = {"N_HIDDEN": "24", "BATCH_SIZE": "4", "EPOCHS": "2", "LEARNING_RATE": "0.003", "AMP": "0"}


def test_stage_trains_records_and_skips_when_nothing_changed(imported_corpus, tmp_path):
    data_dir = tmp_path / "work"
    shutil.copytree(imported_corpus, data_dir / "data" / "cv-it")
    first = run_script("04_train.py", data_dir, **TINY)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = data_dir / "checkpoints"
    record = json.loads((checkpoints / "train.stage.json").read_text())
    assert record["status"] == "done" and record["summary"]["epochs_run"] == 2
    assert (checkpoints / "best_dev_checkpoint").exists() and (checkpoints / "flags.json").exists()
    report = json.loads((data_dir / "reports" / "test_greedy.json").read_text())
    assert report["utterances"] > 0 and "wer" in report
    again = run_script("04_train.py", data_dir, **TINY)
    assert again.returncode == 0 and "up to date" in again.stdout
    # More epochs: the stage runs again and continues from its checkpoint instead of starting over.
    more = run_script("04_train.py", data_dir, **{**TINY, "EPOCHS": "3"})
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from train-" in more.stderr
    assert json.loads((checkpoints / "train.stage.json").read_text())["summary"]["epochs_run"] == 1
    # A checkpoint of another geometry is refused with one line, not a traceback.
    wider = run_script("04_train.py", data_dir, **{**TINY, "EPOCHS": "4", "N_HIDDEN": "32"})
    assert wider.returncode == 1 and "N_HIDDEN" in wider.stderr and "Traceback" not in wider.stderr


def test_a_damaged_data_folder_stops_the_stage_before_training(imported_corpus, tmp_path):
    data_dir = tmp_path / "work"
    shutil.copytree(imported_corpus, data_dir / "data" / "cv-it")
    cv_dir = data_dir / "data" / "cv-it"
    first_clip = (cv_dir / "dev.csv").read_text().splitlines()[1].split(",")[0]
    (cv_dir / first_clip).unlink()
    result = run_script("04_train.py", data_dir, **TINY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1 problem(s) in the data folder" in result.stderr and f"{first_clip} does not exist" in result.stderr
    assert not (data_dir / "checkpoints" / "train.stage.json").exists()
