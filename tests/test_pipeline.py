"""`make train` end to end on the generated archive: every stage runs once, a rerun skips them all, and a new
LM_ALPHA reruns only what depends on it."""

import subprocess

from conftest import PROJECT_ROOT, stage_env

TINY = {"N_HIDDEN": "24", "EPOCHS": "2", "BATCH_SIZE": "4", "AMP": "0", "EARLY_STOP": "0", "LM_ORDER": "3",
        "LM_PRUNE": "0", "BEAM_WIDTH": "16", "CHECKPOINT_SECS": "600"}


def make_train(data_dir, archive, **variables):
    env = stage_env(data_dir, CV_ARCHIVE=str(archive.path), CV_SHA256=archive.sha256, **TINY, **variables)
    result = subprocess.run(["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "train"], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_make_train_runs_skips_and_reruns_from_the_first_change(tmp_path, cv_archive):
    data_dir = tmp_path / "data"
    first = make_train(data_dir, cv_archive)
    for stage in ("02", "03", "04", "05", "06"):
        assert f"stage {stage}" in first
    release = data_dir / "models"
    for name in ("output_graph.tflite", "kenlm.scorer", "MODEL_CARD.md", "model_tflite_it.tar.xz", "SHA256SUMS"):
        assert (release / name).is_file(), name
    checkpoint_state = (data_dir / "checkpoints" / "checkpoint").read_text()
    model_mtime = (release / "output_graph.tflite").stat().st_mtime_ns

    second = make_train(data_dir, cv_archive)
    for stage in ("02", "03", "04", "05", "06"):
        assert f"stage {stage}: " in second and any(
            line.startswith(f"stage {stage}: ") and line.endswith("skipped") for line in second.splitlines()), stage
    assert (release / "output_graph.tflite").stat().st_mtime_ns == model_mtime

    third = make_train(data_dir, cv_archive, LM_ALPHA="0.5")
    assert "stage 02: " in third and "stage 04: " in third
    skipped = {line[6:8] for line in third.splitlines() if line.startswith("stage ") and line.endswith("skipped")}
    assert {"02", "04"} <= skipped and not {"03", "05", "06"} & skipped
    assert "rewrote the header" in third
    assert (data_dir / "checkpoints" / "checkpoint").read_text() == checkpoint_state, "no retraining"
