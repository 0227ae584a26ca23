#!/usr/bin/env python3
"""The LSTM's time loop on the CPU: the fused kernel (deepspeech_it/model/lstm_kernel.cc) against the same
recurrence in TensorFlow ops, forward and backward, runs alternating in one process.

* the loop alone at the demo's size (N_HIDDEN=384, batch 32, 3 s clips) and at DeepSpeech's (2048, batch 16);
* a whole training step at the demo's size (forward, CTC, backward, Adam), traced once with each loop.

Usage: benchmarks/bench_lstm.py
"""

from __future__ import annotations

import contextlib
import json
import time

import keras
import numpy as np
import tensorflow as tf

from deepspeech_it.data.framing import SAMPLE_RATE, STEP_SAMPLES, WINDOW_SAMPLES
from deepspeech_it.model import lstm_kernel, network
from deepspeech_it.model.features import N_INPUT
from deepspeech_it.model.steps import ctc_per_utterance, make_optimizer
from deepspeech_it.util.machine import matmul_rate

SECONDS = 3.0
SIZES = ((384, 32), (2048, 16))          # (N_HIDDEN, batch): the demo's, DeepSpeech's
N_CLASSES, LABELS_PER_SECOND = 39, 15
GOAL_SPEEDUP = 1.5                        # of the loop at the demo's size
ROUNDS = 3


def frames() -> int:
    return 1 + (int(SECONDS * SAMPLE_RATE) - WINDOW_SAMPLES) // STEP_SAMPLES


@contextlib.contextmanager
def ops_loop():
    """Traces inside this block take TensorFlow's loop, as on a machine without the kernel."""
    saved = lstm_kernel.load
    lstm_kernel.load = lambda: (None, "benchmark")
    try:
        yield
    finally:
        lstm_kernel.load = saved


def loop_step(recurrence, n_hidden: int, batch: int):
    rng = np.random.default_rng(0)
    projected = tf.Variable(rng.normal(size=(frames(), batch, 4 * n_hidden)).astype(np.float32))
    recurrent = tf.Variable((rng.normal(size=(n_hidden, 4 * n_hidden)) / np.sqrt(n_hidden)).astype(np.float32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(recurrence(projected, recurrent))
        return tape.gradient(loss, [projected, recurrent])
    return step


def training_step(n_hidden: int, batch: int):
    keras.utils.set_random_seed(1)
    model = network.build_model(N_CLASSES, n_hidden=n_hidden, dropout=0.1, seed=1)
    optimizer = make_optimizer(1e-4, float16=False)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    mfcc = tf.constant(rng.normal(size=(batch, frames(), N_INPUT)).astype(np.float32) * 10)
    label_len = int(SECONDS * LABELS_PER_SECOND)
    labels = tf.constant(rng.integers(0, N_CLASSES - 1, size=(batch, label_len)), tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(ctc_per_utterance(model(mfcc, training=True, step=tf.constant(1, tf.int64)),
                                                    tf.fill([batch], frames()), labels, tf.fill([batch], label_len)))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss
    return step


def best_of_alternating(fused, ops) -> tuple[float, float]:
    """Best seconds per call of each, the two alternating so that a drift of the machine's speed hits both."""
    for step in (fused, ops):
        step()
    best = {"fused": float("inf"), "ops": float("inf")}
    for _ in range(ROUNDS):
        for name, step in (("fused", fused), ("ops", ops)):
            started = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - started)
    return best["fused"], best["ops"]


def main() -> dict:
    if lstm_kernel.load()[0] is None:
        raise SystemExit(f"no fused kernel here: {lstm_kernel.load()[1]}")
    results = {"frames": frames(), "matmul_flops_per_second": matmul_rate(), "loop": []}
    for n_hidden, batch in SIZES:
        fused = loop_step(network.lstm_recurrence_fused, n_hidden, batch)
        ops = loop_step(network.lstm_recurrence_ops, n_hidden, batch)
        results["loop"].append((n_hidden, batch, *best_of_alternating(fused, ops)))
    n_hidden, batch = SIZES[0]
    fused = training_step(n_hidden, batch)
    fused()
    with ops_loop():
        ops = training_step(n_hidden, batch)
        ops()
    results["training"] = (n_hidden, batch, *best_of_alternating(fused, ops))
    return results


def run() -> dict:
    results = main()
    audio = lambda batch, seconds: batch * SECONDS / seconds  # noqa: E731 - seconds of audio per second
    rows = [("clip length, frames, float32 matmul rate",
             f"{SECONDS:g} s, {results['frames']}, {results['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s")]
    for n_hidden, batch, fused, ops in results["loop"]:
        rows.append((f"time loop forward + backward, N_HIDDEN={n_hidden}, batch {batch}",
                     f"fused {1000 * fused:.0f} ms, TensorFlow ops {1000 * ops:.0f} ms: {ops / fused:.2f}x"))
    n_hidden, batch, fused, ops = results["training"]
    rows.append((f"training step, N_HIDDEN={n_hidden}, batch {batch}",
                 f"fused {audio(batch, fused):.0f}, TensorFlow ops {audio(batch, ops):.0f} s of audio/s: "
                 f"{ops / fused:.2f}x"))
    demo_speedup = results["loop"][0][3] / results["loop"][0][2]
    return {
        "name": "LSTM time loop on a CPU (stage 04): the fused kernel against TensorFlow ops",
        "rows": rows,
        "goal": f"the fused loop >= {GOAL_SPEEDUP}x as fast as TensorFlow ops at the demo's size",
        "met": demo_speedup >= GOAL_SPEEDUP,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
