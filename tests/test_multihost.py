"""Stage 04 on two hosts: two processes on the loopback address joined by TF_CONFIG, against one host alone.

The story: a training started on one host (epoch 1) continues on two (epoch 2). The second host has the data but
no checkpoint, so it must take the chief's state; the last batch of every epoch holds fewer utterances than there
are replicas; only the chief may write; the hosts' CPUs would choose different precisions. The result must be what
one host computes with the same global batch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from deepspeech_it.config import load_config
from deepspeech_it.data.csvfile import read_rows, write_rows
from deepspeech_it.model.training import train_and_test
from deepspeech_it.pipeline.s04_train import csv_inputs, training_params

from conftest import PROJECT_ROOT, stage_env

# 9 train utterances in batches of 4, 4, 1 and 5 dev ones in 4, 1: the single ones leave a replica without a sample.
TINY = {"N_HIDDEN": "16", "BATCH_SIZE": "4", "LEARNING_RATE": "0.003", "AMP": "0", "DROPOUT": "0",
        "EARLY_STOP": "0"}
KEPT = {"train": 9, "dev": 5, "test": 3}
STEPS_PER_EPOCH = 3


def data_folder(corpus: Path, folder: Path) -> Path:
    cv_dir = folder / "data" / "cv-it"
    shutil.copytree(corpus, cv_dir)
    for split, count in KEPT.items():
        rows = read_rows(cv_dir / f"{split}.csv")
        assert len(rows) >= count
        write_rows(cv_dir / f"{split}.csv", [(row.path, row.transcript) for row in rows[:count]])
    return folder


def train_here(data_dir: Path, epochs: int) -> dict:
    """Stage 04's training on this process alone, with the parameters the stage derives from the same variables."""
    config = load_config({**TINY, "DATA_DIR": str(data_dir), "EPOCHS": str(epochs), "PROGRESS": "0"})
    splits, layout = csv_inputs(config), config.layout
    return train_and_test(splits["train"], splits["dev"], splits["test"], config.alphabet, training_params(config),
                          layout.checkpoints, layout.tboard_logs, layout.reports, progress_enabled=False)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def pretend_bfloat16_speedup(folder: Path, speedup: float) -> dict[str, str]:
    """The environment of a host whose CPU multiplies bfloat16 SPEEDUP times as fast as float32 (a sitecustomize
    replaces the probe before the project is imported)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text("import deepspeech_it.util.machine as machine\n"
                                             f"machine.bfloat16_speedup = lambda: {speedup!r}\n")
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}


def train_on_two_hosts(folders: list[Path], epochs: int, host_env=None) -> list[subprocess.CompletedProcess]:
    hosts = [f"127.0.0.1:{port}" for port in free_ports(len(folders))]
    processes = []
    for index, folder in enumerate(folders):
        tf_config = json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
        own = (host_env or [{}] * len(folders))[index]
        env = stage_env(folder, **{**TINY, "EPOCHS": str(epochs), "TF_CONFIG": tf_config, **own})
        processes.append(subprocess.Popen([sys.executable, str(PROJECT_ROOT / "scripts" / "04_train.py")], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=300)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def epoch_lines(stderr: str) -> list[str]:
    return re.findall(r"^epoch \d+/\d+: train loss \S+, dev loss \S+", stderr, re.M)


def files_under(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_hosts_continue_a_training_like_one_host(imported_corpus, tmp_path):
    chief, other = data_folder(imported_corpus, tmp_path / "host0"), data_folder(imported_corpus, tmp_path / "host1")
    train_here(chief, epochs=1)
    alone = tmp_path / "alone"
    shutil.copytree(chief, alone)
    expected = train_here(alone, epochs=2)
    other_before = files_under(other)

    # AMP=1 on a chief whose bfloat16 is slow (float32) and on a host where it is fast: both must train in the
    # chief's float32, or the losses below would not be the single float32 host's.
    results = train_on_two_hosts([chief, other], epochs=2,
                                 host_env=[{"AMP": "1", **pretend_bfloat16_speedup(tmp_path / f"site{i}", speedup)}
                                           for i, speedup in enumerate([0.5, 4.0])])

    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
    record = json.loads((chief / "checkpoints" / "train.stage.json").read_text())
    summary = record["summary"]
    assert record["status"] == "done" and summary["epochs_run"] == 1
    assert summary["global_step"] == expected["global_step"] == 2 * STEPS_PER_EPOCH
    assert (chief / "checkpoints" / f"train-{summary['global_step']}.index").exists()
    assert (chief / "reports" / "test_greedy.json").exists()
    # The sums over both hosts' shares are the single host's sums, up to the order of float additions.
    np.testing.assert_allclose(summary["train_losses"], expected["train_losses"], rtol=1e-3)
    np.testing.assert_allclose(summary["dev_losses"], expected["dev_losses"], rtol=1e-3)
    # Both hosts saw the same losses, which decide best checkpoints, early stops and learning rates alike.
    lines = [epoch_lines(result.stderr) for result in results]
    assert len(lines[0]) == 1 and lines[0] == lines[1]
    assert "took the chief's training state (epoch 1, batch 0)" in results[1].stderr
    assert "runs 4.00x as fast as float32 here; training runs in float32" in results[1].stderr
    assert files_under(other) == other_before, "a host other than the chief wrote into its DATA_DIR"


def test_a_bad_tf_config_stops_stage_04_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "04_train.py")],
                            env=stage_env(tmp_path, TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:1"]}}'),
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("configuration error: TF_CONFIG=")
    assert not any(tmp_path.iterdir())
