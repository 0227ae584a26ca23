"""Training input: DeepSpeech CSVs -> length-bucketed, padded batches of MFCC and label ids (tf.data).

Each epoch's order is a plan fixed by (seed, epoch): utterances sorted by file size (DeepSpeech's order) are cut into
batches of similar length, so padding stays small, and the batches are shuffled (after the SortaGrad epochs, which
go from the shortest batch to the longest). Because the plan is reproducible, a
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

# tf.data's autotuner off: with it, about half of the epochs of a training on 2 cores waited some 18 s after their last
# batch for the end of the data (benchmarks/bench_pipeline.py measures epochs both ways).
PIPELINE_OPTIONS = tf.data.Options()
PIPELINE_OPTIONS.autotune.enabled = False


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


def batch_plan(n_samples: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
               lengths: np.ndarray | None = None) -> list[np.ndarray]:
    """Index batches over size-sorted samples (or in the order of LENGTHS): neighbours share a batch; full batches
    in a shuffled order, the partial one (if any) last so that every other batch keeps the global batch size."""
    order = np.arange(n_samples) if lengths is None else np.argsort(lengths, kind="stable")
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


@dataclass(frozen=True)
class Shard:
    """The replicas one input pipeline feeds: ``count`` of them from ``first``, out of ``replicas`` in all."""

    first: int = 0
    count: int = 1
    replicas: int = 1


@dataclass(frozen=True)
class EpochClock:
    """Where training batches stand, for the augmentations' clock: (EPOCH + PROGRESS[clip]) / EPOCHS, PROGRESS being
    each clip's place in the epoch over the clips, by sample index (``plan_progress``)."""

    augmenter: Augmenter
    epoch: int
    epochs: int
    progress: np.ndarray


def plan_progress(plan: list[np.ndarray], n_samples: int) -> np.ndarray:
    """Each sample's place in PLAN over N_SAMPLES, by sample index."""
    progress = np.zeros(n_samples)
    if plan:
        progress[np.concatenate(plan)] = np.arange(n_samples) / max(n_samples, 1)
    return progress


def training_plan(samples: list[Sample], batch_size: int, seed: int, epoch: int, augmenter: Augmenter | None,
                  epochs: int, sorted_epochs: int = 0) -> tuple[list[np.ndarray], EpochClock | None]:
    """An epoch's training batches and the augmentations' clock; the first SORTED_EPOCHS epochs go from the shortest
    batch to the longest (SortaGrad, Amodei et al. 2016: short clips first get CTC past its all-blank start sooner).

    Without tempo this is ``batch_plan``. Tempo stretches each clip by its own factor, so size-sorted neighbours
    would pad to the most stretched clip of their batch (up to 1 / (1 - r) of the frames, 15 % more work at
    ``factor=1~0.15``). Then the clips keep the clock of their place in the size-sorted plan, and the batches are
    cut again by the lengths tempo will give them (``Augmenter.trained_frames``): the padding of an unaugmented
    epoch, at the cost of the clock being that of another place in the same epoch.
    """
    shuffle = epoch >= sorted_epochs
    plan = batch_plan(len(samples), batch_size, seed, epoch, shuffle)
    if not augmenter:
        return plan, None
    progress = plan_progress(plan, len(samples))
    clock = EpochClock(augmenter, epoch, epochs, progress)
    if not augmenter.changes_length:
        return plan, clock
    ids = np.arange(len(samples))
    lengths = augmenter.trained_frames(np.asarray([s.frames for s in samples]),
                                       np.asarray([ctc_frames(s.transcript) for s in samples]),
                                       (epoch + progress) / max(epochs, 1), augmenter.clip_seeds(epoch, ids))
    return batch_plan(len(samples), batch_size, seed, epoch, shuffle, lengths=lengths), clock


def replica_shares(batch: np.ndarray, replicas: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """One global batch as REPLICAS shares of one size, each ``(sample indices, weights)``: the samples spread
    evenly, and a share short of the size (a last batch smaller than the replicas) is filled with a copy of the
    batch's last sample at weight 0, so that every replica always has a batch and the sums stay the batch's own."""
    size = -(-len(batch) // replicas)
    shares = []
    for part in np.array_split(np.asarray(batch), replicas):
        fill = size - len(part)
        shares.append((np.concatenate([part, np.full(fill, batch[-1])]).astype(np.int64),
                       np.concatenate([np.ones(len(part)), np.zeros(fill)]).astype(np.float32)))
    return shares


def make_dataset(samples: list[Sample], plan: list[np.ndarray], alphabet: Alphabet, shard: Shard = Shard(),
                 cache_dir: Path | None = None, skip_batches: int = 0,
                 clock: EpochClock | None = None) -> tf.data.Dataset:
    """Batches ``(mfcc [B, T, 26], mfcc_len [B], labels [B, L], label_len [B], seconds [B], weight [B])`` in plan
    order from batch SKIP_BATCHES on, for each batch of the plan one per replica of SHARD (that replica's share);
    ``seconds`` is the audio duration estimated from the file size (for throughput figures), ``weight`` 0 marks a
    filler sample.

    With a CLOCK (training batches only) each clip is augmented at its place in the whole epoch, so a resumed epoch
    draws what an uninterrupted one would. Features of clips that an audio-domain augmentation changes are computed
    afresh every time and never taken from or written to CACHE_DIR; with features-domain augmentations alone the
    cache holds the clean features and the augmentations apply after it.
    """
    runs: list[tuple[int, list, list]] = []    # consecutive shares of one size: indices, weights
    chosen = slice(shard.first, shard.first + shard.count)
    for batch in plan[skip_batches:]:
        for indices, weights in replica_shares(batch, shard.replicas)[chosen]:
            if not runs or runs[-1][0] != len(indices):
                runs.append((len(indices), [], []))
            runs[-1][1].append(indices)
            runs[-1][2].append(weights)
    data = None
    for size, indices, weights in runs or [(1, [], [])]:
        order = np.concatenate(indices or [[]]).astype(np.int64)
        progress = clock.progress[order] if clock is not None else np.zeros(len(order))
        part = _batches([samples[i] for i in order], order, np.concatenate(weights or [[]]).astype(np.float32),
                        progress, alphabet, size, cache_dir, clock)
        data = part if data is None else data.concatenate(part)
    return data.prefetch(tf.data.AUTOTUNE).with_options(PIPELINE_OPTIONS)


def _batches(chosen: list[Sample], order: np.ndarray, weights: np.ndarray, progress: np.ndarray, alphabet: Alphabet,
             size: int, cache_dir: Path | None, clock: EpochClock | None) -> tf.data.Dataset:
    encoded = [alphabet.encode(s.transcript) for s in chosen]
    labels = tf.RaggedTensor.from_row_lengths(np.asarray([i for e in encoded for i in e], np.int32),
                                              np.asarray([len(e) for e in encoded], np.int64))
    paths = [str(s.path) for s in chosen]
    augmenter = clock.augmenter if clock is not None and clock.augmenter else None
    if augmenter is not None and augmenter.needs_audio:
        cache_dir = None
    if cache_dir is None:
        caches, cached = [""] * len(chosen), [False] * len(chosen)
    else:
        files = [cache_file(cache_dir, s.path) for s in chosen]
        caches, cached = [str(f) for f in files], [f.exists() for f in files]
    seconds = tf.constant([s.seconds for s in chosen], tf.float32)
    if augmenter is not None:
        clocks = (clock.epoch + progress) / max(clock.epochs, 1)
        seeds = augmenter.clip_seeds(clock.epoch, order)
    else:
        clocks, seeds = np.zeros(len(chosen)), np.zeros((len(chosen), 2), np.int64)
    needed = np.asarray([ctc_frames(s.transcript) for s in chosen], np.int32)
    data = tf.data.Dataset.from_tensor_slices((tf.constant(paths, tf.string), labels, seconds,
                                               tf.constant(weights, tf.float32),
                                               tf.constant(caches, tf.string), tf.constant(cached, tf.bool),
                                               tf.constant(clocks, tf.float32), tf.constant(seeds, tf.int64),
                                               tf.constant(needed, tf.int32)))

    def load(path, label, duration, weight, cache, is_cached, clip_clock, seed, min_frames):
        def compute():
            if augmenter is None or cache_dir is not None:
                return wav_bytes_to_mfcc(tf.io.read_file(path))
            audio, rate = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=1)
            return augmenter.audio_to_features(audio[:, 0], rate, clip_clock, seed, min_frames)

        if cache_dir is None:
            mfcc = compute()
        else:
            mfcc = tf.cond(is_cached,
                           lambda: tf.py_function(_load_cached, [cache], tf.float32),
                           lambda: tf.py_function(_store_features, [cache, compute()], tf.float32))
            mfcc = tf.reshape(mfcc, [-1, N_INPUT])
            if augmenter is not None:
                mfcc = augmenter.features(mfcc, clip_clock, seed, min_frames)
        return mfcc, tf.shape(mfcc)[0], label, tf.shape(label)[0], duration, weight

    return (data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .padded_batch(size, padded_shapes=([None, N_INPUT], [], [None], [], [], [])))
