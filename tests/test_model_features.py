"""Features against the raw TensorFlow audio ops DeepSpeech, the exported model and the native clients use."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from deepspeech_it.model.features import audio_to_mfcc, context_windows, pcm16_to_float, wav_bytes_to_mfcc


@pytest.fixture(scope="module")
def italian_wav(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    raw, wav = folder / "raw.wav", folder / "frase.wav"
    subprocess.run(["espeak-ng", "-v", "it", "-w", str(raw), "buongiorno, come stai oggi?"], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True)
    return wav


def raw_ops_mfcc(float_samples: np.ndarray) -> np.ndarray:
    """DeepSpeech feeding.py: audio_spectrogram(512, 320, magnitude_squared) then mfcc(26, upper 8000)."""
    spectrogram = tf.raw_ops.AudioSpectrogram(input=float_samples.reshape(-1, 1), window_size=512, stride=320,
                                              magnitude_squared=True)
    return tf.raw_ops.Mfcc(spectrogram=spectrogram, sample_rate=16000, upper_frequency_limit=8000.0,
                           lower_frequency_limit=20.0, filterbank_channel_count=40,
                           dct_coefficient_count=26).numpy()[0]


def test_mfcc_equal_raw_ops_on_italian_speech(italian_wav):
    samples, rate = soundfile.read(italian_wav, dtype="int16")
    assert rate == 16000
    reference = raw_ops_mfcc(samples.astype(np.float32) / 32768.0)
    ours = audio_to_mfcc(pcm16_to_float(samples)).numpy()
    assert ours.shape == (1 + (len(samples) - 512) // 320, 26)
    np.testing.assert_array_equal(ours, reference)
    from_file = wav_bytes_to_mfcc(tf.io.read_file(str(italian_wav))).numpy()
    np.testing.assert_array_equal(from_file, reference)
    assert np.isfinite(ours).all() and ours[:, 0].std() > 1.0    # speech, not silence


def test_audio_shorter_than_a_window_has_no_frames():
    assert audio_to_mfcc(np.zeros(511, np.float32)).shape == (0, 26)
    assert audio_to_mfcc(np.zeros(512, np.float32)).shape == (1, 26)


def test_context_windows_equal_deepspeech_identity_convolution():
    mfcc = np.random.default_rng(0).normal(size=(2, 23, 26)).astype(np.float32)
    eye = np.eye(19 * 26, dtype=np.float32).reshape(19, 26, 19 * 26)
    reference = tf.nn.conv1d(mfcc, eye, stride=1, padding="SAME").numpy()
    ours = context_windows(tf.constant(mfcc)).numpy()
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    # Spelled out: value k*26 + c at time t is mfcc[t + k - 9, c], zero outside the utterance.
    assert ours[0, 0, 9 * 26 + 5] == mfcc[0, 0, 5]
    assert ours[1, 22, 18 * 26 + 3] == 0.0 and ours[1, 22, 8 * 26 + 3] == mfcc[1, 21, 3]
