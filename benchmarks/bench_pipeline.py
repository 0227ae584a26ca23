#!/usr/bin/env python3
"""The end of an epoch's input: how long the training loop waits, after its last batch, for the input pipeline to
say it has no more, with tf.data's autotuner on (its default) and off (what make_dataset sets, PIPELINE_OPTIONS).

Stage 04 builds a new pipeline every epoch and trains while it runs. With the autotuner on, about half the epochs on
a 2-core machine waited some 18 s after their last batch. Here each epoch's batches (the real pipeline over
speech-like clips) feed TensorFlow work of about the demo's step time, the two settings alternating epoch by epoch.

Usage: benchmarks/bench_pipeline.py [--clips 1024] [--batch 32] [--step-seconds 0.2] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from bench_augment import write_clips
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.model.dataset import PIPELINE_OPTIONS, make_dataset, training_plan
from deepspeech_it.paths import ALPHABET_DIR

GOAL_SECONDS = 1.0          # the longest wait for the end of an epoch's data with the autotuner off


def busy(seconds: float) -> None:
    """TensorFlow work for SECONDS on every core, as a training step keeps them busy."""
    started = time.perf_counter()
    ones = tf.ones([512, 512])
    while time.perf_counter() - started < seconds:
        tf.matmul(ones, ones).numpy()


def epoch_end_wait(data: tf.data.Dataset, step_seconds: float) -> tuple[float, float]:
    """(seconds from the last batch's step to the end of the loop, seconds of the whole epoch)."""
    started = time.perf_counter()
    last = started
    for _ in data:
        busy(step_seconds)
        last = time.perf_counter()
    ended = time.perf_counter()
    return ended - last, ended - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--step-seconds", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    alphabet = Alphabet.from_file(ALPHABET_DIR / "it.txt")
    autotuned = tf.data.Options()
    autotuned.autotune.enabled = True
    waits = {"on": [], "off": []}
    epochs = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as work:
        samples = write_clips(Path(work), args.clips, 3.0)
        for epoch in range(args.epochs):
            plan, _ = training_plan(samples, args.batch, 1, epoch, None, args.epochs)
            for setting in ("on", "off")[::1 if epoch % 2 == 0 else -1]:
                data = make_dataset(samples, plan, alphabet)
                if setting == "on":
                    data = data.with_options(autotuned)
                wait, whole = epoch_end_wait(data, args.step_seconds)
                waits[setting].append(wait)
                epochs[setting].append(whole)
    results = {"clips": args.clips, "batch": args.batch, "step_seconds": args.step_seconds, "epochs": args.epochs,
               "waits": waits, "epoch_seconds": epochs, "options_off": not PIPELINE_OPTIONS.autotune.enabled}
    print(json.dumps(results, indent=2))
    return results


def run() -> dict:
    r = main([])
    listed = lambda values: ", ".join(f"{v:.1f}" for v in values)  # noqa: E731
    rows = [("clips, batch, step, epochs per setting",
             f"{r['clips']}, {r['batch']}, {r['step_seconds']:g} s of TensorFlow work per batch, {r['epochs']}"),
            ("wait for the end of the data after the last batch, autotuner on (tf.data's default)",
             f"{listed(r['waits']['on'])} s"),
            ("the same, autotuner off (make_dataset)", f"{listed(r['waits']['off'])} s"),
            ("whole epochs, on / off", f"{listed(r['epoch_seconds']['on'])} / {listed(r['epoch_seconds']['off'])} s")]
    return {"name": "Input pipeline (stage 04): the end of an epoch's data, tf.data's autotuner on and off",
            "rows": rows,
            "goal": f"with the autotuner off (as make_dataset sets it), no epoch waits more than {GOAL_SECONDS:g} s "
                    "for the end of its data",
            "met": r["options_off"] and max(r["waits"]["off"]) <= GOAL_SECONDS}


if __name__ == "__main__":
    main()
