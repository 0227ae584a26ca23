#!/usr/bin/env python3
"""The LSTM's time loop on the CPU: the fused kernel (deepspeech_it/model/lstm_kernel.cc) against the same
recurrence in TensorFlow ops, forward and backward, runs alternating in one process.

* the loop alone in float32 at the demo's size (N_HIDDEN=384, batch 32, 3 s clips) and at DeepSpeech's (2048,
  batch 16), the kernel with its float32 products and with the portable ones (Eigen) it has without AVX-512;
* the loop alone in bfloat16 at both sizes, where AMP trains in bfloat16: the kernel with what it takes for
  bfloat16 here against TensorFlow's bfloat16 ops, and whether stage 04's own timing (network.recurrence_for)
  chose the faster;
* a whole training step at the demo's size (forward, CTC, backward, Adam) in the precision AMP=1 takes here, traced
  once with each loop.

Usage: benchmarks/bench_lstm.py
"""

from __future__ import annotations

import contextlib
import functools
import json
import time

import keras
import numpy as np
import tensorflow as tf

from deepspeech_it.data.framing import SAMPLE_RATE, STEP_SAMPLES, WINDOW_SAMPLES
from deepspeech_it.model import lstm_kernel, network
from deepspeech_it.model.features import N_INPUT
from deepspeech_it.model.steps import ctc_per_utterance, make_optimizer
from deepspeech_it.util.machine import best_of_alternating, matmul_rate

SECONDS = 3.0
SIZES = ((384, 32), (2048, 16))          # (N_HIDDEN, batch): the demo's, DeepSpeech's
N_CLASSES, LABELS_PER_SECOND = 39, 15
GOAL_SPEEDUP = 1.5                        # of the loop at the demo's size, in the precision the demo trains in
CHOICE_TOLERANCE = 1.1                    # the chosen bfloat16 loop against the faster of the two, measured here
ROUNDS = 3


def frames() -> int:
    return 1 + (int(SECONDS * SAMPLE_RATE) - WINDOW_SAMPLES) // STEP_SAMPLES


@contextlib.contextmanager
def loop(products: str | None):
    """Traces inside this block take the kernel with PRODUCTS, or TensorFlow's loop (None)."""
    saved = network.recurrence_for
    network.recurrence_for = lambda dtype, units: (products, "benchmark")
    try:
        yield
    finally:
        network.recurrence_for = saved


def loop_step(products: str | None, n_hidden: int, batch: int, dtype):
    """Forward and backward through the recurrence alone, in DTYPE, as network.lstm_hoisted runs it."""
    rng = np.random.default_rng(0)
    projected = tf.Variable(rng.normal(size=(frames(), batch, 4 * n_hidden)).astype(np.float32))
    recurrent = tf.Variable((rng.normal(size=(n_hidden, 4 * n_hidden)) / np.sqrt(n_hidden)).astype(np.float32))
    if products is None:
        recurrence = lambda p, r: network.lstm_recurrence_ops(tf.cast(p, dtype), tf.cast(r, dtype))  # noqa: E731
    else:
        fused = network.fused_recurrence(products)
        recurrence = lambda p, r: tf.cast(fused(tf.cast(tf.cast(p, dtype), tf.float32), r), dtype)  # noqa: E731

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.cast(recurrence(projected, recurrent), tf.float32))
        return tape.gradient(loss, [projected, recurrent])
    return step


def training_step(n_hidden: int, batch: int, policy: str):
    keras.utils.set_random_seed(1)
    model = network.build_model(N_CLASSES, n_hidden=n_hidden, dropout=0.1, seed=1, dtype_policy=policy)
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


def seconds_of(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def best_of(steps: dict) -> dict:
    """Best seconds per call of each step (each run once first, untimed), the steps alternating."""
    for step in steps.values():
        step()
    return best_of_alternating({name: functools.partial(seconds_of, step) for name, step in steps.items()}, ROUNDS)


def main() -> dict:
    if lstm_kernel.load()[0] is None:
        raise SystemExit(f"no fused kernel here: {lstm_kernel.load()[1]}")
    policy = network.keras_policy(amp=True, on_gpu=False)
    half = lstm_kernel.loop_for("bfloat16")[0]
    results = {"frames": frames(), "matmul_flops_per_second": matmul_rate(), "policy": policy,
               "float32": lstm_kernel.loop_for("float32")[1], "bfloat16": lstm_kernel.loop_for("bfloat16")[1],
               "loops": []}
    for n_hidden, batch in SIZES:
        steps = {"kernel": loop_step("float32", n_hidden, batch, tf.float32),
                 "portable": loop_step("portable", n_hidden, batch, tf.float32),
                 "ops": loop_step(None, n_hidden, batch, tf.float32)}
        results["loops"].append(("float32", n_hidden, batch, best_of(steps)))
        if half is not None:
            steps = {"kernel": loop_step(half, n_hidden, batch, tf.bfloat16),
                     "ops": loop_step(None, n_hidden, batch, tf.bfloat16)}
            best = best_of(steps)
            best["chosen"] = "kernel" if network.recurrence_for("bfloat16", n_hidden)[0] else "ops"
            results["loops"].append(("bfloat16", n_hidden, batch, best))
    n_hidden, batch = SIZES[0]
    dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    steps = {}
    for name, products in (("kernel", lstm_kernel.loop_for(dtype)[0]), ("ops", None)):
        with loop(products):
            steps[name] = training_step(n_hidden, batch, policy)
            steps[name]()
    results["training"] = (policy, n_hidden, batch, best_of(steps))
    return results


def run() -> dict:
    results = main()
    audio = lambda batch, seconds: batch * SECONDS / seconds  # noqa: E731 - seconds of audio per second
    rows = [("clip length, frames, float32 matmul rate",
             f"{SECONDS:g} s, {results['frames']}, {results['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s"),
            ("the kernel's products here", f"float32: {results['float32']}; bfloat16: {results['bfloat16']}")]
    demo_dtype = "bfloat16" if results["policy"] == "mixed_bfloat16" else "float32"
    demo_speedup = None
    well_chosen = True
    for dtype, n_hidden, batch, best in results["loops"]:
        portable = f", its portable products {1000 * best['portable']:.0f} ms" if "portable" in best else ""
        chosen = f"; stage 04 takes the {best['chosen']} loop here" if "chosen" in best else ""
        rows.append((f"time loop forward + backward in {dtype}, N_HIDDEN={n_hidden}, batch {batch}",
                     f"fused {1000 * best['kernel']:.0f} ms{portable}, TensorFlow ops {1000 * best['ops']:.0f} ms: "
                     f"{best['ops'] / best['kernel']:.2f}x{chosen}"))
        if "chosen" in best:
            well_chosen &= best[best["chosen"]] <= CHOICE_TOLERANCE * min(best["kernel"], best["ops"])
        if (dtype, n_hidden) == (demo_dtype, SIZES[0][0]):
            demo_speedup = best["ops"] / best["kernel"]
    policy, n_hidden, batch, best = results["training"]
    rows.append((f"training step in {policy} (AMP=1 here), N_HIDDEN={n_hidden}, batch {batch}",
                 f"fused {audio(batch, best['kernel']):.0f}, TensorFlow ops {audio(batch, best['ops']):.0f} s of "
                 f"audio/s: {best['ops'] / best['kernel']:.2f}x"))
    return {
        "name": "LSTM time loop on a CPU (stage 04): the fused kernel against TensorFlow ops",
        "rows": rows,
        "goal": f"the fused loop >= {GOAL_SPEEDUP}x as fast as TensorFlow ops at the demo's size, in the precision "
                f"AMP=1 trains in here; in bfloat16, the loop stage 04 chooses within {CHOICE_TOLERANCE:g}x of the "
                "faster at each size",
        "met": demo_speedup is not None and demo_speedup >= GOAL_SPEEDUP and well_chosen,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
