"""scripts/04_train.py on the corpus stage 02 imports from the generated Common Voice archive."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import numpy as np

from deepspeech_it.model.checkpoint import latest_checkpoint, read_bundle, read_progress

from conftest import PROJECT_ROOT, run_script, stage_env

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


# Run as the stage script, with a checkpoint after every batch, dying by SIGKILL right after the given save
# ("train-8:2": the second time train-8 is saved, i.e. at the end of its epoch rather than after its last batch).
KILLED_STAGE = """
import collections, dataclasses, os, runpy, signal, sys
from deepspeech_it.model import trainer
from deepspeech_it.pipeline import s04_train
name, occurrence = sys.argv[1].split(":")
chosen = s04_train.training_params
s04_train.training_params = lambda config: dataclasses.replace(chosen(config), checkpoint_secs=0)
save, seen = trainer.save_checkpoint, collections.Counter()
def save_then_die(*args):
    prefix = save(*args)
    seen[prefix.name] += 1
    if (prefix.name, seen[prefix.name]) == (name, int(occurrence)):
        os.kill(os.getpid(), signal.SIGKILL)
    return prefix
trainer.save_checkpoint = save_then_die
runpy.run_path(sys.argv[2], run_name="__main__")
"""


def test_stage_killed_at_several_points_ends_with_the_weights_of_an_uninterrupted_run(imported_corpus, tmp_path):
    """Dropout on, so the masks must follow the step; kills at the epoch boundary, after a checkpoint in the middle
    of the second epoch and after its last batch but before the epoch's end: the resumed run must end bit for bit
    where a straight run does."""
    settings = {**TINY, "DROPOUT": "0.3"}
    runs = {}
    for name in ("straight", "killed"):
        runs[name] = tmp_path / name
        shutil.copytree(imported_corpus, runs[name] / "data" / "cv-it")
    straight = run_script("04_train.py", runs["straight"], **settings)
    assert straight.returncode == 0, straight.stderr[-3000:]
    with open(imported_corpus / "train.csv", encoding="utf-8") as handle:
        per_epoch = -(-(len(handle.read().splitlines()) - 1) // 4)
    checkpoints = runs["killed"] / "checkpoints"
    for point in (f"train-{per_epoch}:2", f"train-{per_epoch + 2}:1", f"train-{2 * per_epoch}:1"):
        killed = subprocess.run([sys.executable, "-c", KILLED_STAGE, point, str(PROJECT_ROOT / "scripts" / "04_train.py")],
                                env=stage_env(runs["killed"], **settings), capture_output=True, text=True, timeout=600)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert latest_checkpoint(checkpoints).name == point.split(":")[0]
    assert read_progress(latest_checkpoint(checkpoints))["batch"] == per_epoch       # the last kill: before the end
    resumed = run_script("04_train.py", runs["killed"], **settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from train-{2 * per_epoch}" in resumed.stderr
    final = f"train-{2 * per_epoch}"
    ours, theirs = (read_bundle(runs[name] / "checkpoints" / final) for name in ("killed", "straight"))
    assert sorted(ours) == sorted(theirs)
    assert [name for name in theirs if not np.array_equal(ours[name], theirs[name])] == []
    ours, theirs = (read_progress(runs[name] / "checkpoints" / final) for name in ("killed", "straight"))
    assert {**ours, "plan_key": ""} == {**theirs, "plan_key": ""}          # the key hashes the clips' paths
    assert (checkpoints / "best_dev_checkpoint").read_text() == \
        (runs["straight"] / "checkpoints" / "best_dev_checkpoint").read_text()
    assert ((runs["killed"] / "reports" / "test_greedy.json").read_text()
            == (runs["straight"] / "reports" / "test_greedy.json").read_text())
