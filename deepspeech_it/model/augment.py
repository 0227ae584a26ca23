"""AUGMENT in the training input pipeline: wav -> sample -> signal -> spectrogram -> features, in DeepSpeech
0.9.3's fixed order of domains (the order of AUGMENT within a domain).

Everything runs inside the tf.data map that computes features, which runs clips in parallel: the sample domain as
a numpy py_function (numpy and soxr release the interpreter lock for the heavy loops), the other domains as
TensorFlow ops. Only training batches are augmented; dev and test never pass through here.

The clock is training progress, (epoch + position in the epoch / clips) / EPOCHS, as DeepSpeech's: ``a:b`` ranges
move from a to b over EPOCHS (with early stopping the end values may never be reached).
"""

from __future__ import annotations

import functools

import numpy as np

from deepspeech_it.model.augment_graph import apply_graph_augmentations, fires, own_seed, tempo_frames
from deepspeech_it.model.augment_signal import apply_sample_augmentations
from deepspeech_it.model.augment_spec import SAMPLE, Augmentation
from deepspeech_it.model.features import power_spectrogram, spectrogram_to_mfcc
from deepspeech_it.util.tf_runtime import tf

AUDIO_DOMAINS = (SAMPLE, "signal", "spectrogram")


class Augmenter:
    """The augmentations of one training run and the function that turns a clip into augmented features."""

    def __init__(self, augmentations: tuple[Augmentation, ...], seed: int):
        self.augmentations = tuple(augmentations)
        self.seed = int(seed)
        self.sample = tuple(a for a in self.augmentations if a.domain == SAMPLE)
        self.graph = tuple(a for a in self.augmentations if a.domain != SAMPLE)

    def __bool__(self) -> bool:
        return bool(self.augmentations)

    @property
    def needs_audio(self) -> bool:
        """True when features must be computed from the audio each time (a feature cache cannot hold them)."""
        return any(a.domain in AUDIO_DOMAINS for a in self.augmentations)

    @property
    def _tempos(self) -> tuple[tuple[int, Augmentation], ...]:
        """The tempo augmentations that can fire, with their index among the graph augmentations (their seed)."""
        return tuple((index, a) for index, a in enumerate(self.graph) if a.name == "tempo" and a.p > 0)

    @property
    def changes_length(self) -> bool:
        """True when clips leave the augmentations with another number of frames than they came with (tempo)."""
        return bool(self._tempos)

    def trained_frames(self, frames: np.ndarray, min_frames: np.ndarray, clocks: np.ndarray,
                       seeds: np.ndarray) -> np.ndarray:
        """The frames each clip will have after ``tempo``, drawn exactly as the input pipeline will draw them
        (same seeds, same clock), so that a batch plan can put clips of similar trained length together. FRAMES are
        the clips' own: a sample-domain augmentation that changes a clip's length (resample, codec, by a few
        samples) is not foreseen, and only makes that batch's padding differ from the plan's."""
        return self._trained_frames_graph(tf.constant(frames, tf.int32), tf.constant(min_frames, tf.int32),
                                          tf.constant(clocks, tf.float32), tf.constant(seeds, tf.int64)).numpy()

    @functools.cached_property
    def _trained_frames_graph(self):
        """trained_frames as one graph, traced once for every epoch's plan (its signature admits any clip count)."""
        tempos = self._tempos

        def one(clip):
            length, needed, clock, seed = clip
            for index, aug in tempos:
                own = own_seed(seed, index)
                changed = tempo_frames(length, aug, clock, own, needed)
                length = changed if aug.p >= 1.0 else tf.where(fires(aug, own), changed, length)
            return length

        signature = (tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                     tf.TensorSpec([None], tf.float32), tf.TensorSpec([None, 2], tf.int64))
        return tf.function(lambda *clips: tf.map_fn(one, clips, fn_output_signature=tf.int32),
                           input_signature=signature)

    def clip_seeds(self, epoch: int, ids: np.ndarray) -> np.ndarray:
        """[n, 2] int64 stateless seeds, one per clip of the epoch."""
        return np.stack([np.full(len(ids), self.seed, np.int64), epoch * (1 << 32) + np.asarray(ids, np.int64)],
                        axis=1)

    def _sample_domain(self, audio, clock, seed):
        rng = np.random.default_rng([int(s) & 0xFFFFFFFFFFFFFFFF for s in seed.numpy()])
        return apply_sample_augmentations(audio.numpy(), self.sample, float(clock.numpy()), rng).astype(np.float32)

    def audio_to_features(self, audio: tf.Tensor, sample_rate, clock: tf.Tensor, seed: tf.Tensor,
                          min_frames: tf.Tensor) -> tf.Tensor:
        """float32 samples [N] -> augmented MFCC [T, 26] (T >= MIN_FRAMES after tempo)."""
        if self.sample:
            audio = tf.py_function(self._sample_domain, [audio, clock, seed], tf.float32)
        signal = tf.reshape(audio, [-1, 1])
        signal = apply_graph_augmentations("signal", signal, self.graph, clock, seed, min_frames)
        spectrogram = apply_graph_augmentations("spectrogram", power_spectrogram(signal), self.graph, clock, seed,
                                                min_frames)
        return self.features(spectrogram_to_mfcc(spectrogram, sample_rate), clock, seed, min_frames)

    def features(self, mfcc: tf.Tensor, clock, seed, min_frames) -> tf.Tensor:
        """The features-domain augmentations alone (what still applies to cached features)."""
        return apply_graph_augmentations("features", mfcc, self.graph, clock, seed, min_frames)
