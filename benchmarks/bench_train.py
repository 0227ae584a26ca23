#!/usr/bin/env python3
"""Training throughput of the DeepSpeech model at N_HIDDEN=2048 against this machine's dense-matmul roofline.

One run measures, side by side:
* the training step (forward, CTC, backward, Adam) on a realistic batch (BATCH_SIZE utterances of SECONDS each),
  in float32 and in AMP's half precision (bfloat16 on CPUs, float16 on GPUs): seconds of audio trained per
  second (AMP=1 takes bfloat16 on a CPU only where it is faster, see network.keras_policy);
* the dense-matmul rate of the same device and dtype (a large square matmul): the roofline;
* utilisation = (matmul FLOPs of one training step, counted from the layer sizes) / step time / roofline;
* at the demo's size (N_HIDDEN=384, batch 32), float32 against the half precision, steps alternating;
* the feature pipeline alone (wav decode + MFCC), to show it keeps up;
* peak memory (process RSS on CPUs, allocator peak on GPUs).

Usage: benchmarks/bench_train.py [--batch 64] [--seconds 3] [--steps 3] [--n-hidden 2048]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import keras
import numpy as np
import tensorflow as tf

from deepspeech_it.data.audio import wav_bytes
from deepspeech_it.data.framing import SAMPLE_RATE, STEP_SAMPLES, WINDOW_SAMPLES
from deepspeech_it.model.features import N_INPUT, wav_bytes_to_mfcc
from deepspeech_it.model.network import build_model, dense_flops_per_frame, on_gpu
from deepspeech_it.model.steps import ctc_per_utterance, make_optimizer
from deepspeech_it.util.machine import matmul_rate

N_CLASSES = 39          # Italian alphabet (38 labels) + blank
LABELS_PER_SECOND = 15  # characters per second of read speech


GOAL_UTILISATION = 0.5
DEMO_N_HIDDEN, DEMO_BATCH = 384, 32     # the Makefile's DEMO_SETTINGS


def half_policy() -> str:
    """The half precision AMP can choose, measured here whether or not this CPU's bfloat16 rate makes AMP choose it."""
    return "mixed_float16" if on_gpu() else "mixed_bfloat16"


def training_step(batch: int, seconds: float, n_hidden: int, amp: bool):
    """A compiled training step on a synthetic batch of BATCH clips of SECONDS, its frames and its matmul FLOPs."""
    frames = 1 + (int(seconds * SAMPLE_RATE) - WINDOW_SAMPLES) // STEP_SAMPLES
    keras.utils.set_random_seed(1)
    model = build_model(N_CLASSES, n_hidden=n_hidden, dropout=0.4, dtype_policy=half_policy() if amp else "float32")
    optimizer = make_optimizer(1e-4, float16=amp and on_gpu())
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    mfcc = tf.constant(rng.normal(size=(batch, frames, N_INPUT)).astype(np.float32) * 10)
    mfcc_len = tf.fill([batch], frames)
    label_len = int(seconds * LABELS_PER_SECOND)
    labels = tf.constant(rng.integers(0, N_CLASSES - 1, size=(batch, label_len)), tf.int32)
    labels_len = tf.fill([batch], label_len)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(ctc_per_utterance(model(mfcc, training=True), mfcc_len, labels, labels_len))
            scaled = optimizer.scale_loss(loss)
        optimizer.apply(tape.gradient(scaled, model.trainable_variables), model.trainable_variables)
        return loss

    step().numpy()                                  # trace and warm up
    # Backward costs two matmuls per forward matmul (gradients of inputs and of weights).
    return step, frames, 3 * dense_flops_per_frame(n_hidden, N_CLASSES) * frames * batch


def seconds_per_step(step, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.numpy()
    return (time.perf_counter() - started) / steps


def training_rate(batch: int, seconds: float, steps: int, n_hidden: int, amp: bool) -> dict:
    step, frames, flops = training_step(batch, seconds, n_hidden, amp)
    per_step = seconds_per_step(step, steps)
    return {"step_seconds": per_step, "audio_seconds_per_second": batch * seconds / per_step,
            "model_flops_per_second": flops / per_step, "flops_per_step": flops, "frames": frames}


def float32_against_amp(batch: int, seconds: float, n_hidden: int, rounds: int = 3, steps: int = 4) -> dict:
    """Both precisions at one model size, their steps alternating so that a change in the machine's speed during
    the run weighs on both alike."""
    steps_by_label = {label: training_step(batch, seconds, n_hidden, amp)[0]
                      for label, amp in (("float32", False), ("amp", True))}
    timings = {label: [] for label in steps_by_label}
    for _ in range(rounds):
        for label, step in steps_by_label.items():
            timings[label].append(seconds_per_step(step, steps))
    best = {label: min(times) for label, times in timings.items()}
    return {label: batch * seconds / per_step for label, per_step in best.items()}


def feature_rate(seconds: float, count: int = 64) -> float:
    samples = (np.random.default_rng(0).normal(size=int(seconds * SAMPLE_RATE)) * 3000).astype(np.int16)
    wav = tf.constant(wav_bytes(samples))
    data = tf.data.Dataset.from_tensors(wav).repeat(count).map(wav_bytes_to_mfcc, num_parallel_calls=tf.data.AUTOTUNE)
    for _ in data.take(4):
        pass
    started = time.perf_counter()
    for _ in data:
        pass
    return count * seconds / (time.perf_counter() - started)


def peak_memory_bytes() -> int:
    if on_gpu():
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--n-hidden", type=int, default=2048)
    args = parser.parse_args(argv)
    device = "GPU" if on_gpu() else "CPU"
    amp_dtype = tf.as_dtype(keras.mixed_precision.Policy(half_policy()).compute_dtype)
    results = {"device": device, "batch": args.batch, "utterance_seconds": args.seconds, "n_hidden": args.n_hidden}
    for label, amp, dtype in (("float32", False, tf.float32), ("amp", True, amp_dtype)):
        # The roofline is taken around the training run, the better of the two, so a neighbour's load on a shared
        # machine does not flatter the utilisation.
        before = matmul_rate(dtype)
        run = training_rate(args.batch, args.seconds, args.steps, args.n_hidden, amp)
        roofline = max(before, matmul_rate(dtype))
        results[label] = {**run, "matmul_dtype": dtype.name, "matmul_flops_per_second": roofline,
                          "utilisation": run["model_flops_per_second"] / roofline}
        print(f"{label:8s} {run['audio_seconds_per_second']:8.2f} s audio/s  step {run['step_seconds']:.2f} s  "
              f"model {run['model_flops_per_second'] / 1e9:7.1f} GFLOP/s  {dtype.name} matmul "
              f"{roofline / 1e9:7.1f} GFLOP/s  utilisation {100 * results[label]['utilisation']:.0f} %")
    demo = float32_against_amp(DEMO_BATCH, args.seconds, DEMO_N_HIDDEN)
    results["demo_size"] = {"n_hidden": DEMO_N_HIDDEN, "batch": DEMO_BATCH, **demo}
    print(f"N_HIDDEN={DEMO_N_HIDDEN}, batch {DEMO_BATCH}: float32 {demo['float32']:.1f}, amp {demo['amp']:.1f} s audio/s "
          f"(float32 {demo['float32'] / demo['amp']:.2f}x amp)")
    results["features_audio_seconds_per_second"] = feature_rate(args.seconds)
    results["peak_memory_bytes"] = peak_memory_bytes()
    print(f"features {results['features_audio_seconds_per_second']:8.1f} s audio/s (decode + MFCC)")
    print(f"peak memory {results['peak_memory_bytes'] / 2**30:.2f} GiB ({'GPU' if on_gpu() else 'process RSS'})")
    return results


def run() -> dict:
    results = main([])
    rows = [("device, batch, clip length, N_HIDDEN",
             f"{results['device']}, {results['batch']}, {results['utterance_seconds']:g} s, {results['n_hidden']}")]
    for label in ("float32", "amp"):
        figures = results[label]
        rows += [
            (f"{label}: training", f"{figures['audio_seconds_per_second']:.1f} s of audio/s, step "
                                   f"{figures['step_seconds']:.2f} s, model {figures['model_flops_per_second'] / 1e9:.0f} GFLOP/s"),
            (f"{label}: {figures['matmul_dtype']} matmul roofline", f"{figures['matmul_flops_per_second'] / 1e9:.0f} GFLOP/s"),
            (f"{label}: utilisation of the roofline", f"{100 * figures['utilisation']:.0f} %"),
        ]
    demo = results["demo_size"]
    rows.append((f"N_HIDDEN={demo['n_hidden']}, batch {demo['batch']} (the demo's size): float32 against amp",
                 f"{demo['float32']:.1f} against {demo['amp']:.1f} s of audio/s: float32 "
                 f"{demo['float32'] / demo['amp']:.2f}x amp"))
    rows += [("features (decode + MFCC)", f"{results['features_audio_seconds_per_second']:.0f} s of audio/s"),
             ("peak memory", f"{results['peak_memory_bytes'] / 2**30:.2f} GiB")]
    return {
        "name": "Training (stage 04): throughput against the dense-matmul roofline",
        "rows": rows,
        "goal": "utilisation >= 50 % of the matmul roofline, in float32 and with AMP",
        "met": min(results[label]["utilisation"] for label in ("float32", "amp")) >= GOAL_UTILISATION,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
