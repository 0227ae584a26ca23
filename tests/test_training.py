"""Training on Italian speech spoken by espeak-ng: it learns, resumes after SIGKILL, transfers, runs AMP and mirrored.

The models are tiny (N_HIDDEN 32) so that the whole file runs in about a minute on two cores.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.model.checkpoint import latest_checkpoint, load_weights_by_ds_name, read_progress
from deepspeech_it.model.dataset import batch_plan, make_dataset, read_csvs, replica_shares
from deepspeech_it.model.trainer import FINAL_FRACTION, scheduled_rate
from deepspeech_it.model.training import Trainer, TrainParams, train_and_test

from conftest import GPU_VISIBLE

ROOT = Path(__file__).resolve().parents[1]
ALPHABET = Alphabet.from_file(ROOT / "alphabet" / "it.txt")
SENTENCES = ["ciao come stai", "buongiorno a tutti", "la casa è bella", "oggi piove molto", "il gatto dorme",
             "andiamo al mare", "mi piace la pizza", "che ore sono", "buona notte amici", "grazie mille",
             "il treno è in ritardo", "domani vado a roma", "la mela è rossa", "parliamo italiano"]
TINY = TrainParams(n_hidden=32, dropout=0.0, learning_rate=3e-3, batch_size=4, epochs=3, amp=False,
                   early_stop=False, checkpoint_secs=600, random_seed=4568)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """10 training and 4 dev/test utterances, 16 kHz mono 16-bit, in DeepSpeech CSVs with relative paths."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "clips").mkdir()
    rows = []
    for i, sentence in enumerate(SENTENCES):
        raw, wav = folder / f"raw{i}.wav", folder / "clips" / f"frase{i}.wav"
        subprocess.run(["espeak-ng", "-v", "it", "-s", "150", "-w", str(raw), sentence], check=True)
        subprocess.run(["sox", "-q", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
        raw.unlink()
        rows.append((f"clips/{wav.name}", wav.stat().st_size, sentence))
    for split, part in (("train", rows[:10]), ("dev", rows[10:]), ("test", rows[10:])):
        with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["wav_filename", "wav_filesize", "transcript"])
            writer.writerows(part)
    return folder


def run(corpus: Path, out: Path, params: TrainParams, **kwargs) -> dict:
    return train_and_test([corpus / "train.csv"], [corpus / "dev.csv"], [corpus / "test.csv"], ALPHABET, params,
                          out / "checkpoints", out / "tboard", out / "reports", progress_enabled=False, **kwargs)


def run_child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


# ------------------------------------------------------------------------------------------------ data

def test_batch_plan_groups_neighbours_and_is_reproducible():
    plans = [batch_plan(10, 4, seed=1, epoch=e) for e in (0, 0, 1)]
    assert [b.tolist() for b in plans[0]] == [b.tolist() for b in plans[1]]
    assert sorted(np.concatenate(plans[0]).tolist()) == list(range(10))
    assert [len(b) for b in plans[0]] == [4, 4, 2]           # the partial batch comes last
    assert all(b.max() - b.min() == len(b) - 1 for b in plans[0])   # neighbours in size order
    many = [batch_plan(40, 4, seed=1, epoch=e) for e in range(2)]
    assert [b.tolist() for b in many[0]] != [b.tolist() for b in many[1]]


@pytest.mark.parametrize("size,replicas", [(4, 2), (3, 2), (1, 2), (1, 3), (5, 3), (64, 8), (2, 1)])
def test_every_replica_gets_a_share_of_every_batch(size, replicas):
    batch = np.arange(10, 10 + size)
    shares = replica_shares(batch, replicas)
    assert len(shares) == replicas and len({len(indices) for indices, _ in shares}) == 1
    real = np.concatenate([indices[weights == 1] for indices, weights in shares])
    assert sorted(real.tolist()) == batch.tolist()             # each sample once at full weight
    fillers = np.concatenate([indices[weights == 0] for indices, weights in shares])
    assert set(fillers.tolist()) <= set(batch.tolist())        # fillers are copies, weighing nothing
    assert len(fillers) == len(shares[0][0]) * replicas - size < replicas


def test_the_input_pipeline_runs_without_the_autotuner_and_keeps_the_plans_order(corpus):
    """tf.data's autotuner made about half the epochs of a 2-core training wait some 18 s after their last batch
    (benchmarks/bench_pipeline.py); without it the batches still come in the plan's order, each padded to its
    longest clip."""
    samples, _ = read_csvs([corpus / "train.csv"], ALPHABET)
    plan = batch_plan(len(samples), 4, 4568, 1)
    data = make_dataset(samples, plan, ALPHABET)
    assert data.options().autotune.enabled is False
    for batch, (mfcc, mfcc_len, *_) in zip(plan, data, strict=True):
        assert list(mfcc_len.numpy()) == [samples[i].frames for i in batch]
        assert mfcc.shape[1] == max(samples[i].frames for i in batch)


def test_rows_that_cannot_train_are_rejected(corpus, tmp_path):
    rows = list(csv.reader(open(corpus / "train.csv", encoding="utf-8")))
    rows[1][2] = "ciao ДОМ"                                  # not in the Italian alphabet
    rows[2][2] = "parola " * 60                              # far more labels than frames
    rows[3][0] = str((corpus / rows[3][0]).resolve())        # absolute paths are allowed
    rows[4][0] = "clips/assente.wav"                         # no such file
    with open(tmp_path / "train.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    (tmp_path / "clips").symlink_to(corpus / "clips")
    samples, rejected = read_csvs([tmp_path / "train.csv"], ALPHABET)
    assert len(samples) == 7 and len(rejected) == 3
    assert [s.size for s in samples] == sorted(s.size for s in samples)   # DeepSpeech's size order


# ------------------------------------------------------------------------------------------------ training

def test_tiny_model_learns_and_writes_deepspeech_layout(corpus, tmp_path):
    summary = run(corpus, tmp_path, replace(TINY, epochs=4), flags={"n_hidden": 32})
    dev = summary["dev_losses"]
    assert summary["epochs_run"] == 4 and summary["global_step"] == 12          # 3 batches of 4 per epoch
    assert dev[-1] < 0.8 * dev[0], dev
    checkpoints = tmp_path / "checkpoints"
    for name in ("checkpoint", "best_dev_checkpoint", "flags.json", "flags.txt", "alphabet.txt",
                 "train-12.index", f"{summary['best_checkpoint']}.index"):
        assert (checkpoints / name).exists(), name
    assert json.loads((checkpoints / "flags.txt").read_text())["n_hidden"] == 32
    assert Alphabet.from_file(checkpoints / "alphabet.txt") == ALPHABET
    report = json.loads((tmp_path / "reports" / "test_greedy.json").read_text())
    assert report["utterances"] == 4 and 0 <= report["cer"] and len(report["worst"]) == 4
    assert {"reference", "hypothesis", "wer", "cer"} <= set(report["worst"][0])
    assert (tmp_path / "reports" / "training_loss.png").read_bytes()[:4] == b"\x89PNG"
    events = [e for f in (tmp_path / "tboard").glob("events.out.tfevents.*")
              for e in tf.compat.v1.train.summary_iterator(str(f))]
    scalars = {v.tag: v.metadata.plugin_data.plugin_name for e in events for v in e.summary.value}
    assert {"loss/train", "loss/dev", "learning_rate", "audio_hours_per_second"} <= set(scalars)
    assert set(scalars.values()) == {"scalars"}                     # what TensorBoard's scalar dashboard reads
    # A finished training resumes to nothing and does not train again.
    again = run(corpus, tmp_path, replace(TINY, epochs=4))
    assert again["epochs_run"] == 0 and again["global_step"] == 12


def test_cosine_schedule_falls_from_the_rate_to_its_final_fraction():
    rates = [scheduled_rate(2e-3, "cosine", x / 10) for x in range(11)]
    assert rates[0] == pytest.approx(2e-3) and rates[-1] == pytest.approx(2e-3 * FINAL_FRACTION)
    assert rates[5] == pytest.approx(2e-3 * (1 + FINAL_FRACTION) / 2)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    assert scheduled_rate(2e-3, "cosine", 1.5) == rates[-1] and scheduled_rate(2e-3, "constant", 0.7) == 2e-3


def test_tail_schedule_keeps_the_rate_then_falls_in_a_straight_line_over_its_last_epochs():
    # 10 epochs, the last 4 falling: positions 0.6 to 1.0
    rates = [scheduled_rate(2e-3, "tail", x / 10, 0.4) for x in range(11)]
    assert rates[:7] == [2e-3] * 7
    assert rates[8] == pytest.approx(2e-3 * (1 + FINAL_FRACTION) / 2)
    assert rates[10] == pytest.approx(2e-3 * FINAL_FRACTION)
    steps = [a - b for a, b in zip(rates[6:], rates[7:])]
    assert steps == pytest.approx([steps[0]] * 4) and steps[0] > 0
    assert scheduled_rate(2e-3, "tail", 1.5, 0.4) == rates[-1]
    # a tail as long as the training falls from the first batch
    assert scheduled_rate(2e-3, "tail", 0.5, 1.0) == pytest.approx(2e-3 * (1 + FINAL_FRACTION) / 2)


def test_tail_training_falls_over_its_last_epochs_only(corpus, tmp_path):
    train, _ = read_csvs([corpus / "train.csv"], ALPHABET)
    rates = []
    params = replace(TINY, lr_schedule="tail", lr_tail_epochs=1)
    trainer = Trainer(train, [], ALPHABET, params, tmp_path / "c", tmp_path / "t", tmp_path / "r",
                      progress_enabled=False)
    trainer.restore()
    schedule = trainer._schedule_rate

    def recorded(position):
        schedule(position)
        rates.append(trainer.learning_rate)
    trainer._schedule_rate = recorded
    trainer.run()
    assert len(rates) == 9                                          # 3 epochs of 3 batches
    assert rates[:7] == pytest.approx([3e-3] * 7, rel=1e-6)         # the last epoch starts at the full rate
    assert rates[8] == pytest.approx(3e-3 * (1 - (1 - FINAL_FRACTION) * 2 / 3), rel=1e-5)


def test_cosine_training_ends_at_the_scheduled_rate_and_plateaus_scale_it(corpus, tmp_path):
    train, _ = read_csvs([corpus / "train.csv"], ALPHABET)
    params = replace(TINY, lr_schedule="cosine", plateau_reduction=0.5)
    trainer = Trainer(train, [], ALPHABET, params, tmp_path / "c", tmp_path / "t", tmp_path / "r",
                      progress_enabled=False)
    trainer.restore()
    trainer.run()
    last_batch = (2 + 2 / 3) / 3                                    # 3 epochs of 3 batches
    assert trainer.learning_rate == pytest.approx(scheduled_rate(3e-3, "cosine", last_batch), rel=1e-5)
    assert trainer._reduce_rate() == pytest.approx(0.5 * scheduled_rate(3e-3, "cosine", last_batch), rel=1e-5)
    trainer._schedule_rate(0.0)
    assert trainer.learning_rate == pytest.approx(1.5e-3, rel=1e-5)     # the schedule keeps the reduction
    assert trainer.progress.rate_scale == 0.5


def test_sigkilled_run_resumes_at_the_right_step_and_matches_an_uninterrupted_one(corpus, tmp_path):
    # A checkpoint after every batch; the cosine schedule must also resume at the killed batch's rate.
    params = replace(TINY, checkpoint_secs=0, dropout=0.3, lr_schedule="cosine")
    killed = run_child(f"""
        import os, signal
        from pathlib import Path
        from deepspeech_it.model import training
        from deepspeech_it.data.alphabet import Alphabet
        save = training.Trainer.save
        def save_or_die(self, kind):
            if self.global_step == 5:                    # during the 2nd batch of the 2nd epoch
                os.kill(os.getpid(), signal.SIGKILL)
            return save(self, kind)
        training.Trainer.save = save_or_die
        c, out = Path({str(corpus)!r}), Path({str(tmp_path / "killed")!r})
        training.train_and_test([c / "train.csv"], [c / "dev.csv"], [c / "test.csv"],
                                Alphabet.from_file("alphabet/it.txt"), training.{params!r}, out / "checkpoints",
                                out / "tboard", out / "reports", progress_enabled=False)
    """.replace("PosixPath", "Path"))
    assert killed.returncode == -9, killed.stderr
    last = latest_checkpoint(tmp_path / "killed" / "checkpoints")
    assert last.name == "train-4"
    progress = read_progress(last)
    assert (progress["epoch"], progress["batch"]) == (1, 1)
    resumed = run(corpus, tmp_path / "killed", params)
    assert resumed["global_step"] == 9 and len(resumed["train_losses"]) == 3
    straight = run(corpus, tmp_path / "straight", params)
    ours = load_weights_by_ds_name(tmp_path / "killed" / "checkpoints" / "train-9")
    reference = load_weights_by_ds_name(tmp_path / "straight" / "checkpoints" / "train-9")
    assert [name for name, value in reference.items() if not np.array_equal(ours[name], value)] == []
    assert resumed["dev_losses"] == straight["dev_losses"]


def test_transfer_learning_drops_the_output_layer_once(corpus, tmp_path):
    run(corpus, tmp_path / "source", replace(TINY, epochs=1))
    source = load_weights_by_ds_name(tmp_path / "source" / "checkpoints")
    params = replace(TINY, epochs=1, learning_rate=1e-3, transfer_checkpoint=tmp_path / "source" / "checkpoints",
                     drop_source_layers=1, random_seed=99)
    train, _ = read_csvs([corpus / "train.csv"], ALPHABET)
    target = tmp_path / "target"
    trainer = Trainer(train, [], ALPHABET, params, target / "checkpoints", target / "tb", target / "reports",
                      progress_enabled=False)
    message = trainer.restore()
    assert "transfer learning" in message and "layer_6" in message
    weights = {t: np.asarray(v) for t, v in _ds(trainer).items()}
    np.testing.assert_array_equal(weights["layer_5/weights"], source["layer_5/weights"])
    assert not np.array_equal(weights["layer_6/weights"], source["layer_6/weights"])
    assert trainer.learning_rate == pytest.approx(1e-3)      # ours, not the source's 3e-3
    trainer.run()
    saved = load_weights_by_ds_name(latest_checkpoint(target / "checkpoints"))
    again = Trainer(train, [], ALPHABET, replace(params, epochs=2), target / "checkpoints", target / "tb",
                    target / "reports", progress_enabled=False)
    assert again.restore().startswith("resumed")
    np.testing.assert_array_equal(_ds(again)["layer_6/weights"], saved["layer_6/weights"])


def _ds(trainer):
    from deepspeech_it.model.network import get_ds_weights
    return get_ds_weights(trainer.model)


def test_amp_on_a_cpu_takes_bfloat16_only_where_it_multiplies_faster(monkeypatch):
    from deepspeech_it.model import network

    for speedup, expected in ((0.6, "float32"), (network.MIN_BFLOAT16_SPEEDUP, "mixed_bfloat16"), (1.9, "mixed_bfloat16")):
        monkeypatch.setattr(network, "bfloat16_speedup", lambda: speedup)
        assert network.keras_policy(True, on_gpu=False) == expected
        assert network.keras_policy(True, on_gpu=True) == "mixed_float16"
        assert network.keras_policy(False, on_gpu=False) == "float32"


def test_amp_trains_in_the_devices_half_precision(corpus, tmp_path, monkeypatch):
    """AMP: float16 with loss scaling on a GPU, bfloat16 (same range as float32, no scaling) on a CPU, here on every
    CPU whatever its bfloat16 rate (the test above checks that choice)."""
    from deepspeech_it.model import network

    monkeypatch.setattr(network, "bfloat16_speedup", lambda: 2.0)
    train, _ = read_csvs([corpus / "train.csv"], ALPHABET)
    dev, _ = read_csvs([corpus / "dev.csv"], ALPHABET)
    trainer = Trainer(train, dev, ALPHABET, replace(TINY, amp=True), tmp_path / "c", tmp_path / "t", tmp_path / "r",
                      progress_enabled=False)
    half = "float16" if GPU_VISIBLE else "bfloat16"
    assert trainer.model.layer_1.compute_dtype == half and trainer.model.lstm.compute_dtype == half
    assert (type(trainer.optimizer).__name__ == "LossScaleOptimizer") == GPU_VISIBLE
    assert trainer.model.layer_6.compute_dtype == "float32"
    assert trainer.model.layer_1.kernel.dtype == "float32"            # float32 master weights
    result = trainer.run()
    assert np.isfinite(result.dev_losses).all() and result.dev_losses[-1] < result.dev_losses[0]


def test_feature_cache_gives_the_same_training(corpus, tmp_path):
    cache = tmp_path / "cache"
    cached = run(corpus, tmp_path / "cached", replace(TINY, epochs=2, feature_cache=cache))
    assert len(list(cache.rglob("*.npy"))) == 14                      # train + dev utterances
    plain = run(corpus, tmp_path / "plain", replace(TINY, epochs=2))
    np.testing.assert_allclose(cached["dev_losses"], plain["dev_losses"], rtol=1e-4)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_two_replica_mirrored_run_trains(corpus, tmp_path, policy):
    """Two CPU replicas, dropout on; mixed_float16 is what AMP picks on GPUs, with dynamic loss scaling."""
    child = run_child(f"""
        import json
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pathlib import Path
        from deepspeech_it.model import trainer as loop, training
        from deepspeech_it.model.distribute import Workers
        loop.keras_policy = lambda amp, gpu: {policy!r}
        from deepspeech_it.data.alphabet import Alphabet
        from deepspeech_it.model.dataset import read_csvs
        c, out = Path({str(corpus)!r}), Path({str(tmp_path)!r})
        alphabet = Alphabet.from_file("alphabet/it.txt")
        train, _ = read_csvs([c / "train.csv"], alphabet)
        dev, _ = read_csvs([c / "dev.csv"], alphabet)
        params = training.{replace(TINY, epochs=3, batch_size=3, dropout=0.3)!r}
        trainer = training.Trainer(train, dev, alphabet, params, out / "c", out / "t", out / "r",
                                   progress_enabled=False, workers=Workers(devices=["/cpu:0", "/cpu:1"]))
        result = trainer.run()
        print(json.dumps({{"replicas": trainer.strategy.num_replicas_in_sync, "dev": result.dev_losses,
                          "step": result.global_step, "optimizer": type(trainer.optimizer).__name__,
                          "dtype": trainer.model.layer_2.compute_dtype}}))
    """.replace("PosixPath", "Path"))
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["step"] == 12      # 10 utterances: batches 3, 3, 3, 1
    assert result["dtype"] == ("float16" if policy == "mixed_float16" else "float32")
    assert (result["optimizer"] == "LossScaleOptimizer") == (policy == "mixed_float16")
    assert np.isfinite(result["dev"]).all()
    assert result["dev"][-1] < result["dev"][0]
