"""Acoustic features exactly as DeepSpeech 0.9.3 computes them (training, export and native clients agree).

26 MFCC per 20 ms step over 32 ms windows: ``AudioSpectrogram(512, 320, magnitude_squared)`` then
``Mfcc(26 coefficients, 20 Hz .. 8 kHz, 40 filterbank channels)``, no normalisation. The acoustic model sees each
frame with 9 frames of context on either side (zeros beyond the ends), 19 * 26 = 494 values per step.
"""

from __future__ import annotations

from deepspeech_it.data.framing import PCM_SCALE, SAMPLE_RATE, STEP_SAMPLES, WINDOW_SAMPLES
from deepspeech_it.util.tf_runtime import tf

N_INPUT = 26                  # MFCC coefficients per frame
N_CONTEXT = 9                 # frames of context on each side
UPPER_FREQUENCY_LIMIT = 8000.0
WINDOW_FRAMES = 2 * N_CONTEXT + 1
WINDOWED_INPUT = WINDOW_FRAMES * N_INPUT   # 494, the width of layer_1's input


def pcm16_to_float(samples: tf.Tensor) -> tf.Tensor:
    """int16 samples -> float32 in [-1, 1), the scaling of tf.audio.decode_wav."""
    return tf.cast(samples, tf.float32) * PCM_SCALE


def power_spectrogram(samples: tf.Tensor) -> tf.Tensor:
    """float32 mono samples [N] or [N, 1] -> power spectrogram [1, T, 257] (DeepSpeech's spectrogram domain)."""
    audio = tf.reshape(tf.cast(samples, tf.float32), [-1, 1])
    return tf.raw_ops.AudioSpectrogram(input=audio, window_size=WINDOW_SAMPLES, stride=STEP_SAMPLES,
                                       magnitude_squared=True)


def spectrogram_to_mfcc(spectrogram: tf.Tensor, sample_rate: int | tf.Tensor = SAMPLE_RATE) -> tf.Tensor:
    """Power spectrogram [1, T, 257] -> MFCC [T, 26]."""
    mfcc = tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=tf.cast(sample_rate, tf.int32),
                           upper_frequency_limit=UPPER_FREQUENCY_LIMIT, lower_frequency_limit=20.0,
                           filterbank_channel_count=40, dct_coefficient_count=N_INPUT)
    return tf.reshape(mfcc, [-1, N_INPUT])


def audio_to_mfcc(samples: tf.Tensor, sample_rate: int | tf.Tensor = SAMPLE_RATE) -> tf.Tensor:
    """float32 mono samples [N] -> MFCC [T, 26] with T = 1 + (N - 512) // 320 (0 when shorter than a window)."""
    return spectrogram_to_mfcc(power_spectrogram(samples), sample_rate)


def wav_bytes_to_mfcc(wav_bytes: tf.Tensor) -> tf.Tensor:
    """Contents of a 16-bit PCM wav file -> MFCC [T, 26] (of the first channel, as decode_wav with one channel)."""
    audio, sample_rate = tf.audio.decode_wav(wav_bytes, desired_channels=1)
    return audio_to_mfcc(audio[:, 0], sample_rate)


def context_windows(mfcc: tf.Tensor) -> tf.Tensor:
    """MFCC [B, T, 26] -> [B, T, 494]; value ``k*26 + c`` at time t is ``mfcc[t + k - 9, c]`` (zero outside).

    The same layout DeepSpeech builds with its identity conv1d filter during training and that the native
    client builds from its ring buffer when streaming.
    """
    padded = tf.pad(mfcc, [[0, 0], [N_CONTEXT, N_CONTEXT], [0, 0]])
    frames = tf.signal.frame(padded, frame_length=WINDOW_FRAMES, frame_step=1, axis=1)   # [B, T, 19, 26]
    shape = tf.shape(mfcc)
    return tf.reshape(frames, [shape[0], shape[1], WINDOWED_INPUT])
