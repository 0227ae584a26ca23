#!/usr/bin/env python3
"""Does the augmented input pipeline keep up with training? Side by side in one run, at N_HIDDEN=2048:

* training throughput (seconds of audio per second) of the real input pipeline (wav -> features -> padded
  batches) feeding training steps, without AUGMENT and with a realistic one (overlay + reverb + tempo +
  frequency_mask + time_mask);
* the augmented input pipeline alone, and the plain one, in seconds of audio per second.

The clips are written here: speech-like harmonic tones with a syllable rhythm, 0.6 to 1.4 times SECONDS long, and
coloured noise for overlay. The two trainings alternate epoch by epoch on one model.
Usage: benchmarks/bench_augment.py [--clips 256] [--batch 32] [--seconds 3] [--n-hidden 2048] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import write_wav
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.demo.noise import write_coloured_noise
from deepspeech_it.model.augment import Augmenter
from deepspeech_it.model.augment_spec import parse_augment
from deepspeech_it.model.dataset import Sample, make_dataset, training_plan
from deepspeech_it.model.network import build_model, keras_policy, on_gpu
from deepspeech_it.model.steps import ctc_per_utterance, make_optimizer
from deepspeech_it.paths import ALPHABET_DIR

GOAL_RATIO = 0.9
REALISTIC = ("overlay[p=0.5,source={noise},snr=12~6] reverb[p=0.3,delay=20~15,decay=10~4] tempo[p=0.5,factor=1~0.15] "
             "frequency_mask[p=0.5,n=1:3,size=1:5] time_mask[p=0.5,n=1:3,size=10:40]")
TRANSCRIPT = "questa è una frase di prova per misurare la velocità"


def write_clips(folder: Path, count: int, seconds: float) -> list[Sample]:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(count):
        t = np.arange(int(seconds * rng.uniform(0.6, 1.4) * SAMPLE_RATE)) / SAMPLE_RATE     # lengths vary
        pitch = rng.uniform(90, 250)
        voiced = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in range(1, 9))
        syllables = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
        audio = 0.3 * voiced / np.max(np.abs(voiced)) * syllables
        path = folder / f"clip{i:04d}.wav"
        write_wav(path, (audio * 32767).astype(np.int16))
        samples.append(Sample(path, path.stat().st_size, TRANSCRIPT))
    return samples


def datasets(samples, alphabet, batch, augmenter, epochs) -> tuple[list, float]:
    """One dataset per epoch, as the trainer builds them, and the seconds building them took (tracing the map
    function: a fixed cost per epoch, kept out of the throughput)."""
    started = time.perf_counter()
    plans = [training_plan(samples, batch, 1, epoch, augmenter, epochs) for epoch in range(epochs)]
    built = [make_dataset(samples, plan, alphabet, clock=clock) for plan, clock in plans]
    return built, (time.perf_counter() - started) / epochs


def pipeline_rate(samples, alphabet, batch, augmenter, epochs) -> tuple[float, float]:
    built, setup = datasets(samples, alphabet, batch, augmenter, epochs)
    seconds, started = 0.0, time.perf_counter()
    for data in built:
        for *_, durations, _weights in data:
            seconds += float(tf.reduce_sum(durations))
    return seconds / (time.perf_counter() - started), setup


def training_rates(samples, alphabet, batch, n_hidden, augmenter, epochs) -> tuple[float, float]:
    """Seconds of audio trained per second, plain and augmented: one model, its epochs alternating between the two
    input pipelines, so that a machine whose speed drifts during the run weighs on both alike."""
    keras.utils.set_random_seed(1)
    model = build_model(alphabet.size + 1, n_hidden=n_hidden, dropout=0.4, dtype_policy=keras_policy(False, on_gpu()))
    optimizer = make_optimizer(1e-4, float16=False)
    optimizer.build(model.trainable_variables)

    def step(mfcc, mfcc_len, labels, label_len):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(ctc_per_utterance(model(mfcc, training=True), mfcc_len, labels, label_len))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    built = {"plain": datasets(samples, alphabet, batch, None, epochs)[0],
             "augmented": datasets(samples, alphabet, batch, augmenter, epochs)[0]}
    # One trace for every batch shape (as the trainer's steps), outside the timing.
    step = tf.function(step, input_signature=list(built["plain"][0].element_spec[:4]))
    step(*next(iter(built["plain"][0]))[:4]).numpy()
    audio, elapsed = {"plain": 0.0, "augmented": 0.0}, {"plain": 0.0, "augmented": 0.0}
    for epoch in range(epochs):
        # Each goes first in every other round: the first to meet a batch shape pays for its kernels.
        for kind in ("plain", "augmented")[::1 if epoch % 2 == 0 else -1]:
            started = time.perf_counter()
            for mfcc, mfcc_len, labels, label_len, durations, _weights in built[kind][epoch]:
                loss = step(mfcc, mfcc_len, labels, label_len)
                audio[kind] += float(tf.reduce_sum(durations))
            loss.numpy()
            elapsed[kind] += time.perf_counter() - started
    return audio["plain"] / elapsed["plain"], audio["augmented"] / elapsed["augmented"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--n-hidden", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    alphabet = Alphabet.from_file(ALPHABET_DIR / "it.txt")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        (work / "clips").mkdir()
        samples = write_clips(work / "clips", args.clips, args.seconds)
        write_coloured_noise(work / "noise", clips=4, seconds=10.0, seed=3)
        spec = REALISTIC.format(noise=work / "noise")
        augmenter = Augmenter(parse_augment(spec), seed=1)
        plain_pipeline, plain_setup = pipeline_rate(samples, alphabet, args.batch, None, args.epochs)
        augmented_pipeline, augmented_setup = pipeline_rate(samples, alphabet, args.batch, augmenter, args.epochs)
        plain, augmented = training_rates(samples, alphabet, args.batch, args.n_hidden, augmenter, args.epochs)
    results = {"augment": REALISTIC.format(noise="<noise folder>"), "clips": args.clips, "batch": args.batch,
               "seconds": args.seconds, "n_hidden": args.n_hidden, "epochs": args.epochs,
               "pipeline_plain": plain_pipeline, "pipeline_augmented": augmented_pipeline,
               "setup_plain": plain_setup, "setup_augmented": augmented_setup,
               "training_plain": plain, "training_augmented": augmented, "ratio": augmented / plain}
    print(f"input pipeline: {plain_pipeline:.0f} s audio/s plain, {augmented_pipeline:.0f} augmented")
    print(f"training: {plain:.2f} s audio/s plain, {augmented:.2f} augmented: {100 * results['ratio']:.0f} %")
    return results


def run() -> dict:
    r = main([])
    rows = [("AUGMENT", f"`{r['augment']}`"),
            ("clips, batch, mean clip length, N_HIDDEN, epochs",
             f"{r['clips']}, {r['batch']}, {r['seconds']:g} s, {r['n_hidden']}, {r['epochs']}"),
            ("input pipeline alone", f"{r['pipeline_plain']:.0f} s of audio/s plain, "
                                     f"{r['pipeline_augmented']:.0f} s of audio/s augmented"),
            ("building an epoch's pipeline (once per epoch)", f"{r['setup_plain']:.1f} s plain, "
                                                              f"{r['setup_augmented']:.1f} s augmented"),
            ("training fed by the pipeline", f"{r['training_plain']:.2f} s of audio/s plain, "
                                             f"{r['training_augmented']:.2f} augmented"),
            ("augmented / plain training throughput", f"{100 * r['ratio']:.0f} %")]
    return {"name": "Augmentation (stage 04): the augmented input pipeline keeps up with training", "rows": rows,
            "goal": f"training throughput with AUGMENT >= {GOAL_RATIO:.0%} of it without, at N_HIDDEN=2048",
            "met": r["ratio"] >= GOAL_RATIO}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
