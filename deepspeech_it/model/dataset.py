"""Training input: DeepSpeech CSVs -> length-bucketed, padded batches of MFCC and label ids (tf.data).

Each epoch's order is a plan fixed by (seed, epoch): utterances sorted by file size (DeepSpeech's order) are cut into
batches of similar length, so padding stays small, and the batches are shuffled. Because the plan is reproducible, a
resumed run skips exactly the batches it has already trained on, before any audio is decoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.data.framing import SAMPLE_RATE, STEP_SAMPLES, WAV_HEADER_BYTES, WINDOW_SAMPLES
from deepspeech_it.model.augment import Augmenter
from deepspeech_it.model.features import N_INPUT, wav_bytes_to_mfcc
from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.tf_runtime import tf

CACHE_VERSION = "mfcc26-v1"      # part of every cache key: change it when the feature definition changes


@dataclass(frozen=True)
class Sample:
    path: Path
    size: int                 # bytes of the wav file
    transcript: str

    @property
    def seconds(self) -> float:
        """Duration estimated from the size of a 16 kHz mono 16-bit wav."""
        return max(0, self.size - WAV_HEADER_BYTES) / (2 * SAMPLE_RATE)

    @property
    def frames(self) -> int:
        samples = max(0, self.size - WAV_HEADER_BYTES) // 2
        return 0 if samples < WINDOW_SAMPLES else 1 + (samples - WINDOW_SAMPLES) // STEP_SAMPLES


def read_csvs(paths, alphabet: Alphabet) -> tuple[list[Sample], list[tuple[Sample, str]]]:
    """Rows of DeepSpeech CSVs, sorted by file size as DeepSpeech does, and those that cannot train with why.

    A row is unusable when its audio file is missing, its transcript is empty or not encodable, or the audio has
    fewer frames than CTC needs for the transcript (one per label plus a blank between repeated labels).
    """
    samples, rejected = [], []
    for row in (row for csv_path in paths for row in read_rows(csv_path)):
        if not row.path.is_file():
            rejected.append((Sample(row.path, 0, row.transcript), "audio file missing"))
            continue
        sample = Sample(row.path, row.size or row.path.stat().st_size, row.transcript)
        problem = _unusable(sample, alphabet)
        if problem:
            rejected.append((sample, problem))
        else:
            samples.append(sample)
    samples.sort(key=lambda s: s.size)
    return samples, rejected


def _unusable(sample: Sample, alphabet: Alphabet) -> str | None:
    if not alphabet.can_encode(sample.transcript):
        return "transcript empty or not in the alphabet"
    needed = ctc_frames(sample.transcript)
    if sample.frames < needed:
        return f"{sample.frames} frames for {needed} CTC steps"
    return None


def batch_plan(n_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[np.ndarray]:
    """Index batches over size-sorted samples: neighbours share a batch; full batches in a shuffled order, the
    partial one (if any) last so that every other batch keeps the global batch size."""
    order = np.arange(n_samples)
    full = n_samples // batch_size
    batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(full)]
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        batches = [batches[i] for i in rng.permutation(full)]
    if n_samples % batch_size:
        batches.append(order[full * batch_size:])
    return batches


def cache_file(cache_dir: Path, wav: Path) -> Path:
    stat = wav.stat()
    key = hashlib.sha1(f"{CACHE_VERSION}|{wav.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    return cache_dir / key[:2] / f"{key}.npy"


def _store_features(path, mfcc):
    # Written under a temporary name and renamed, so an interrupted run never leaves a truncated cache entry.
    with atomic_path(path.numpy().decode()) as temp, open(temp, "wb") as handle:
        np.save(handle, mfcc.numpy(), allow_pickle=False)
    return mfcc


def _load_cached(path):
    return np.load(path.numpy().decode(), allow_pickle=False)


def ctc_frames(transcript: str) -> int:
    """Frames CTC needs for a transcript: one per label plus a blank between repeated labels."""
    return len(transcript) + sum(1 for a, b in zip(transcript, transcript[1:]) if a == b)


def make_dataset(samples: list[Sample], plan: list[np.ndarray], alphabet: Alphabet, batch_size: int,
                 skip_batches: int = 0, cache_dir: Path | None = None, augmenter: Augmenter | None = None,
                 epoch: int = 0, epochs: int = 1) -> tf.data.Dataset:
    """Batches ``(mfcc [B, T, 26], mfcc_len [B], labels [B, L], label_len [B], seconds [B])`` in plan order;
    ``seconds`` is the audio duration estimated from the file size (for throughput figures).

    With an AUGMENTER (training batches only) each clip is augmented at clock (EPOCH + position / clips) / EPOCHS.
    Features of clips that an audio-domain augmentation changes are computed afresh every time and never taken
    from or written to CACHE_DIR; with features-domain augmentations alone the cache holds the clean features and
    the augmentations apply after it.
    """
    order = np.concatenate(plan) if plan else np.zeros(0, np.int64)
    positions = np.arange(len(order))
    if skip_batches:
        order, positions = order[skip_batches * batch_size:], positions[skip_batches * batch_size:]
    chosen = [samples[i] for i in order]
    encoded = [alphabet.encode(s.transcript) for s in chosen]
    labels = tf.RaggedTensor.from_row_lengths(np.asarray([i for e in encoded for i in e], np.int32),
                                              np.asarray([len(e) for e in encoded], np.int64))
    paths = [str(s.path) for s in chosen]
    augmenter = augmenter or None          # no augmentations: the plain pipeline
    if augmenter is not None and augmenter.needs_audio:
        cache_dir = None
    if cache_dir is None:
        caches, cached = [""] * len(chosen), [False] * len(chosen)
    else:
        files = [cache_file(cache_dir, s.path) for s in chosen]
        caches, cached = [str(f) for f in files], [f.exists() for f in files]
    seconds = tf.constant([s.seconds for s in chosen], tf.float32)
    clocks = (epoch + positions / max(sum(len(b) for b in plan), 1)) / max(epochs, 1)
    seeds = augmenter.clip_seeds(epoch, order) if augmenter else np.zeros((len(chosen), 2), np.int64)
    needed = np.asarray([ctc_frames(s.transcript) for s in chosen], np.int32)
    data = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), labels, seconds,
                                               tf.constant(caches, tf.string), tf.constant(cached, tf.bool),
                                               tf.constant(clocks, tf.float32), tf.constant(seeds, tf.int64),
                                               tf.constant(needed, tf.int32)))

    def load(path, label, duration, cache, is_cached, clock, seed, min_frames):
        def compute():
            if augmenter is None or cache_dir is not None:
                return wav_bytes_to_mfcc(tf.io.read_file(path))
            audio, rate = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=1)
            return augmenter.audio_to_features(audio[:, 0], rate, clock, seed, min_frames)

        if cache_dir is None:
            mfcc = compute()
        else:
            mfcc = tf.cond(is_cached,
                           lambda: tf.py_function(_load_cached, [cache], tf.float32),
                           lambda: tf.py_function(_store_features, [cache, compute()], tf.float32))
            mfcc = tf.reshape(mfcc, [-1, N_INPUT])
            if augmenter is not None:
                mfcc = augmenter.features(mfcc, clock, seed, min_frames)
        return mfcc, tf.shape(mfcc)[0], label, tf.shape(label)[0], duration

    return (data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .padded_batch(batch_size, padded_shapes=([None, N_INPUT], [], [None], [], []))
            .prefetch(tf.data.AUTOTUNE))
