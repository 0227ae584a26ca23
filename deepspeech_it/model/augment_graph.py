"""DeepSpeech 0.9.3's augmentations of the signal, spectrogram and feature tensors, as TensorFlow ops.

Shapes as DeepSpeech has them: the signal ``[N, 1]``, the power spectrogram ``[1, T, 257]``, the features
``[T, 26]``. Every random draw is stateless, from a per-clip seed folded with the augmentation's position, so a
clip's augmentation depends only on (RANDOM_SEED, epoch, clip) and a resumed run repeats it exactly. Algorithms,
parameters and defaults follow mozilla/DeepSpeech v0.9.3, training/deepspeech_training/util/augmentations.py
(MPL-2.0); see NOTICE. Resizing uses TF1's ResizeBilinear/ResizeBicubic (no half-pixel centres) as DeepSpeech did.

Differences, on purpose: DeepSpeech seeded every draw with the clock alone (so all TF augmentations with the same
``p`` fired together and a whole batch shared values); here each clip and augmentation has its own draws.
``dropout`` zeroes each element with probability ``rate``, as DeepSpeech documents it (its 0.9.3 code kept elements
with that probability, DeepSpeech issue 3092). ``time_mask`` in the features domain masks frames (DeepSpeech's
read the coefficient axis of ``[T, 26]``).
"""

from __future__ import annotations

from deepspeech_it.data.framing import FRAME_SECONDS, SAMPLE_RATE
from deepspeech_it.model.augment_spec import Augmentation, ValueRange
from deepspeech_it.util.tf_runtime import tf

FRAMES_PER_MS = 1.0 / (1000.0 * FRAME_SECONDS)
SAMPLES_PER_MS = SAMPLE_RATE / 1000.0


def fold(seed: tf.Tensor, *salts: int) -> tf.Tensor:
    for salt in salts:
        seed = tf.random.experimental.stateless_fold_in(seed, salt)
    return seed


def pick(value: ValueRange, clock: tf.Tensor, seed: tf.Tensor, shape=()) -> tf.Tensor:
    """Uniform in (start + clock * (end - start)) ± r, rounded to int32 for whole-number parameters."""
    clock = tf.clip_by_value(tf.cast(clock, tf.float32), 0.0, 1.0)
    centre = value.start + clock * (value.end - value.start)
    drawn = tf.random.stateless_uniform(shape, seed, centre - value.r, centre + value.r) if value.r else \
        tf.fill(shape, centre)
    return tf.cast(tf.round(drawn), tf.int32) if value.whole else drawn


def _resize(spectrogram: tf.Tensor, size) -> tf.Tensor:
    resized = tf.raw_ops.ResizeBilinear(images=spectrogram[..., tf.newaxis], size=size, align_corners=False,
                                        half_pixel_centers=False)
    return resized[..., 0]


def pitch(spectrogram, aug: Augmentation, clock, seed, min_frames):
    """Stretches the frequency axis by ``pitch``; cropped to the original bins, or zero-padded at the top."""
    shape = tf.shape(spectrogram)
    bins = tf.maximum(1, tf.cast(tf.cast(shape[2], tf.float32) * pick(aug["pitch"], clock, seed), tf.int32))
    resized = _resize(spectrogram, tf.stack([shape[1], bins]))[:, :, :shape[2]]
    return tf.pad(resized, [[0, 0], [0, 0], [0, shape[2] - tf.shape(resized)[2]]])


def tempo(spectrogram, aug: Augmentation, clock, seed, min_frames):
    """Resizes the time axis to T / factor frames, never below what CTC needs for the transcript; a positive
    ``max_time`` (ms) caps the frames."""
    shape = tf.shape(spectrogram)
    return _resize(spectrogram, tf.stack([tempo_frames(shape[1], aug, clock, seed, min_frames), shape[2]]))


def tempo_frames(frames, aug: Augmentation, clock, seed, min_frames) -> tf.Tensor:
    """The frames ``tempo`` makes of FRAMES (also what the batch plan expects of a clip, see
    ``Augmenter.trained_frames``)."""
    frames = tf.cast(tf.cast(frames, tf.float32) / pick(aug["factor"], clock, seed), tf.int32)
    frames = tf.maximum(tf.maximum(frames, min_frames), 1)
    if aug["max_time"] > 0:
        frames = tf.minimum(frames, int(aug["max_time"] * FRAMES_PER_MS))
    return frames


def warp(spectrogram, aug: Augmentation, clock, seed, min_frames):
    """SpecAugment's time/frequency warp: normal displacements on an (nt+2) x (nf+2) grid with a zero border,
    upsampled bicubically to [T, F] and applied as a dense image warp."""
    shape = tf.shape(spectrogram)
    size_t, size_f = shape[1], shape[2]
    num_t, num_f = pick(aug["nt"], clock, fold(seed, 1)), pick(aug["nf"], clock, fold(seed, 2))

    def flows(n, size, value, salt):
        stddev = pick(value, clock, fold(seed, salt)) * tf.cast(size, tf.float32) / tf.cast(2 * (n + 1), tf.float32)
        grid = tf.random.stateless_normal(tf.stack([num_t, num_f]), fold(seed, salt + 1)) * stddev
        return tf.pad(grid, [[1, 1], [1, 1]])

    grid = tf.stack([flows(num_t, size_t, aug["wt"], 3), flows(num_f, size_f, aug["wf"], 5)], axis=2)
    dense = tf.raw_ops.ResizeBicubic(images=grid[tf.newaxis], size=tf.stack([size_t, size_f]), align_corners=False,
                                     half_pixel_centers=False)[0]
    return dense_image_warp(spectrogram[0], dense)[tf.newaxis]


def dense_image_warp(image: tf.Tensor, flow: tf.Tensor) -> tf.Tensor:
    """``out[t, f] = image[t - flow[t, f, 0], f - flow[t, f, 1]]``, bilinear, clamped at the edges (the rule of
    TensorFlow Addons' dense_image_warp, for one 2-D image)."""
    shape = tf.shape(image)
    grid_t, grid_f = tf.meshgrid(tf.range(shape[0]), tf.range(shape[1]), indexing="ij")
    query_t = tf.cast(grid_t, tf.float32) - flow[..., 0]
    query_f = tf.cast(grid_f, tf.float32) - flow[..., 1]

    def corners(query, size):
        low = tf.clip_by_value(tf.floor(query), 0.0, tf.cast(tf.maximum(size - 2, 0), tf.float32))
        alpha = tf.clip_by_value(query - low, 0.0, 1.0)
        low = tf.cast(low, tf.int32)
        return low, tf.minimum(low + 1, size - 1), alpha

    t0, t1, at = corners(query_t, shape[0])
    f0, f1, af = corners(query_f, shape[1])

    def at_(t, f):
        return tf.gather_nd(image, tf.stack([t, f], axis=-1))

    top = at_(t0, f0) + af * (at_(t0, f1) - at_(t0, f0))
    bottom = at_(t1, f0) + af * (at_(t1, f1) - at_(t1, f0))
    return top + at * (bottom - top)


def _bands(length, aug: Augmentation, size, clock, seed) -> tf.Tensor:
    """A bool [length] mask of ``n`` bands of SIZE units at uniform random starts, sizes clamped to
    [1, length - 1]."""
    n = tf.maximum(pick(aug["n"], clock, fold(seed, 1)), 0)
    sizes = tf.clip_by_value(size(pick(aug["size"], clock, fold(seed, 2), tf.reshape(n, [1]))), 1,
                             tf.maximum(length - 1, 1))
    starts = tf.cast(tf.random.stateless_uniform(tf.reshape(n, [1]), fold(seed, 3)) *
                     tf.cast(length - sizes, tf.float32), tf.int32)
    positions = tf.range(length)[tf.newaxis]
    inside = (positions >= starts[:, tf.newaxis]) & (positions < (starts + sizes)[:, tf.newaxis])
    return tf.reduce_any(inside, axis=0)


def frequency_mask(spectrogram, aug: Augmentation, clock, seed, min_frames):
    """Zeroes ``n`` bands of ``size`` FFT bins (31.25 Hz each at 16 kHz)."""
    masked = _bands(tf.shape(spectrogram)[2], aug, lambda s: s, clock, seed)
    return spectrogram * tf.cast(~masked, spectrogram.dtype)[tf.newaxis, tf.newaxis, :]


def time_mask(tensor, aug: Augmentation, clock, seed, min_frames):
    """Zeroes ``n`` intervals of ``size`` ms: samples of the signal, frames of a spectrogram or of the features."""
    per_ms = SAMPLES_PER_MS if aug.domain == "signal" else FRAMES_PER_MS
    axis = {"signal": 0, "spectrogram": 1, "features": 0}[aug.domain]
    masked = _bands(tf.shape(tensor)[axis], aug, lambda ms: tf.cast(ms * per_ms, tf.int32), clock, seed)
    keep = tf.cast(~masked, tensor.dtype)
    return tensor * (keep[:, tf.newaxis] if axis == 0 else keep[tf.newaxis, :, tf.newaxis])


def dropout(tensor, aug: Augmentation, clock, seed, min_frames):
    """Zeroes each element with probability ``rate`` (no rescaling)."""
    rate = tf.maximum(0.0, pick(aug["rate"], clock, fold(seed, 1)))
    return tensor * tf.cast(tf.random.stateless_uniform(tf.shape(tensor), fold(seed, 2)) >= rate, tensor.dtype)


def add(tensor, aug: Augmentation, clock, seed, min_frames):
    stddev = pick(aug["stddev"], clock, fold(seed, 1))
    return tensor + tf.random.stateless_normal(tf.shape(tensor), fold(seed, 2)) * stddev


def multiply(tensor, aug: Augmentation, clock, seed, min_frames):
    stddev = pick(aug["stddev"], clock, fold(seed, 1))
    return tensor * (1.0 + tf.random.stateless_normal(tf.shape(tensor), fold(seed, 2)) * stddev)


GRAPH_AUGMENTATIONS = {"pitch": pitch, "tempo": tempo, "warp": warp, "frequency_mask": frequency_mask,
                       "time_mask": time_mask, "dropout": dropout, "add": add, "multiply": multiply}


def apply_graph_augmentations(domain: str, tensor, augmentations, clock, seed, min_frames):
    """The augmentations of DOMAIN in order, each applied with probability ``p`` (its own draw per clip)."""
    for index, aug in enumerate(augmentations):
        if aug.domain != domain:
            continue
        own = own_seed(seed, index)
        function = GRAPH_AUGMENTATIONS[aug.name]
        if aug.p >= 1.0:
            tensor = function(tensor, aug, clock, own, min_frames)
        elif aug.p > 0.0:
            tensor = tf.cond(fires(aug, own), lambda f=function, a=aug, s=own, t=tensor: f(t, a, clock, s, min_frames),
                             lambda t=tensor: t)
    return tensor


def own_seed(seed: tf.Tensor, index: int) -> tf.Tensor:
    """The seed of the augmentation at INDEX of the graph augmentations, for one clip."""
    return fold(seed, 1000 + index)


def fires(aug: Augmentation, own: tf.Tensor) -> tf.Tensor:
    """Whether AUG applies to the clip whose own seed is OWN (its probability ``p``)."""
    return tf.random.stateless_uniform([], fold(own, 0)) < aug.p
