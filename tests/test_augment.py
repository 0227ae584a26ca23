"""What each augmentation does to audio, spectrograms and features, and where the pipeline applies them."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import write_wav
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.model import augment_graph, augment_signal
from deepspeech_it.model.augment import Augmenter
from deepspeech_it.model.augment_spec import parse_spec
from deepspeech_it.model.dataset import EpochClock, Sample, batch_plan, make_dataset, plan_progress, training_plan
from deepspeech_it.model.features import power_spectrogram
from deepspeech_it.paths import ALPHABET_DIR

SECONDS = 2.0
T = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE


def tone(freq=440.0, amplitude=0.5, harmonics=3):
    wave = sum(np.sin(2 * np.pi * freq * k * T) / k for k in range(1, harmonics + 1))
    return (amplitude * wave / np.max(np.abs(wave))).astype(np.float32)


def white(seed=0, amplitude=0.3):
    return (np.random.default_rng(seed).uniform(-1, 1, len(T)) * amplitude).astype(np.float32)


def sample_aug(spec, audio, clock=0.0, seed=0):
    return augment_signal.apply_sample_augmentations(audio, [parse_spec(spec)], clock, np.random.default_rng(seed))


def envelope(audio):
    return np.sqrt(np.mean(audio.reshape(-1, 320) ** 2, axis=1))       # 20 ms frames


def band_energy(audio, low, high):
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return spectrum[(freqs >= low) & (freqs < high)].sum()


def graph_aug(spec, tensor, clock=0.0, seed=(1, 2), min_frames=0):
    return augment_graph.apply_graph_augmentations(parse_spec(spec).domain, tf.constant(tensor), [parse_spec(spec)],
                                                   tf.constant(clock), tf.constant(seed, tf.int64),
                                                   tf.constant(min_frames)).numpy()


def spectrogram_of(audio):
    return power_spectrogram(tf.constant(audio)).numpy()


# ---- sample domain --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [-12.0, -3.0, 3.0103])
def test_volume_sets_the_peak_dbfs(target):
    out = sample_aug(f"volume[dbfs={target}]", tone(amplitude=0.1))
    assert augment_signal.peak_dbfs(out) == pytest.approx(target, abs=0.01)


def test_reverb_adds_a_decaying_tail_and_keeps_the_peak():
    burst = np.zeros_like(T, dtype=np.float32)
    burst[:1600] = tone()[:1600]
    out = sample_aug("reverb[delay=30,decay=6]", burst)
    tail = out[2400:2400 + 4000]
    later = out[12000:16000]
    assert np.sum(tail ** 2) > 1e-3 * np.sum(out[:1600] ** 2) and np.sum(burst[2400:] ** 2) == 0
    assert np.sum(later ** 2) < np.sum(tail ** 2)
    assert augment_signal.peak_dbfs(out) == pytest.approx(augment_signal.peak_dbfs(burst), abs=0.01)


def test_resample_low_passes_at_the_new_nyquist_frequency():
    noise = white()
    out = sample_aug("resample[rate=4000]", noise)
    assert len(out) == len(noise)
    assert band_energy(out, 2500, 8000) < 1e-3 * band_energy(noise, 2500, 8000)
    assert band_energy(out, 100, 1500) > 0.8 * band_energy(noise, 100, 1500)


def test_codec_changes_the_signal_and_keeps_its_length_and_alignment():
    gate = (np.floor(T / 0.25) % 2 == 0).astype(np.float32)         # 250 ms on, 250 ms off
    speech_like = tone(220.0, harmonics=8) * gate
    out = sample_aug("codec[bitrate=3200]", speech_like)
    assert len(out) == len(speech_like)
    assert np.mean(np.abs(out - speech_like)) > 0.01
    assert np.corrcoef(envelope(out), envelope(speech_like))[0, 1] > 0.9


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_overlay_mixes_noise_at_the_peak_snr(tmp_path, snr):
    write_wav(tmp_path / "noise.wav", (white(seed=5, amplitude=0.5)[:12000] * 32767).astype(np.int16))
    clean = tone()
    out = sample_aug(f"overlay[source={tmp_path},snr={snr}]", clean)
    speech = clean * (out @ clean) / (clean @ clean)       # the noise is uncorrelated with the tone
    noise = out - speech
    measured = 20 * np.log10(np.max(np.abs(speech)) / np.max(np.abs(noise)))
    assert measured == pytest.approx(snr, abs=1.0)
    assert augment_signal.peak_dbfs(out) == pytest.approx(augment_signal.peak_dbfs(clean), abs=0.01)


def test_overlay_reads_a_csv_of_unlabelled_clips_and_layers_add_up(tmp_path):
    for i in range(3):
        write_wav(tmp_path / f"n{i}.wav", (white(seed=i, amplitude=0.5)[:5000] * 32767).astype(np.int16))
    (tmp_path / "noise.csv").write_text("wav_filename\n" + "".join(f"n{i}.wav\n" for i in range(3)))
    silent = np.zeros_like(T, dtype=np.float32)
    silent[0] = 0.5        # a peak to keep
    out = sample_aug(f"overlay[source={tmp_path / 'noise.csv'},snr=0,layers=3]", silent)
    assert np.count_nonzero(out[1:]) > 0.99 * (len(out) - 1)


def test_probability_zero_never_and_one_always_applies():
    audio = tone()
    assert all(np.array_equal(sample_aug("reverb[p=0]", audio, seed=s), audio) for s in range(20))
    assert not any(np.array_equal(sample_aug("reverb[p=1]", audio, seed=s), audio) for s in range(5))
    fired = [not np.array_equal(sample_aug("volume[p=0.5,dbfs=-20]", audio, seed=s), audio) for s in range(200)]
    assert 0.35 < np.mean(fired) < 0.65


def test_clock_moves_the_value_from_start_to_end():
    audio = tone(amplitude=0.1)
    assert augment_signal.peak_dbfs(sample_aug("volume[dbfs=-20:-5]", audio, clock=0.0)) == pytest.approx(-20, abs=.01)
    assert augment_signal.peak_dbfs(sample_aug("volume[dbfs=-20:-5]", audio, clock=1.0)) == pytest.approx(-5, abs=.01)
    spectrogram = spectrogram_of(tone())
    assert graph_aug("tempo[factor=1:2]", spectrogram, clock=0.0).shape[1] == spectrogram.shape[1]
    assert graph_aug("tempo[factor=1:2]", spectrogram, clock=1.0).shape[1] == spectrogram.shape[1] // 2


# ---- spectrogram, signal and features domains -------------------------------------------------------------------


def dominant_bin(spectrogram):
    return int(np.argmax(spectrogram[0].mean(axis=0)))


@pytest.mark.parametrize("factor", [0.8, 1.25, 2.0])
def test_tempo_changes_the_duration_by_the_factor_and_keeps_the_pitch(factor):
    spectrogram = spectrogram_of(tone(500.0))
    out = graph_aug(f"tempo[factor={factor}]", spectrogram)
    assert out.shape[1] == int(spectrogram.shape[1] / factor) and out.shape[2] == spectrogram.shape[2]
    assert dominant_bin(out) == dominant_bin(spectrogram)


def test_tempo_keeps_the_frames_ctc_needs_and_obeys_max_time():
    spectrogram = spectrogram_of(tone())
    assert graph_aug("tempo[factor=4]", spectrogram, min_frames=60).shape[1] == 60
    assert graph_aug("tempo[factor=0.5,max_time=1000]", spectrogram).shape[1] == 50


@pytest.mark.parametrize("factor", [0.9, 1.2])
def test_pitch_moves_the_dominant_frequency(factor):
    spectrogram = spectrogram_of(tone(1000.0, harmonics=1))
    out = graph_aug(f"pitch[pitch={factor}]", spectrogram)
    assert out.shape == spectrogram.shape
    assert dominant_bin(out) == pytest.approx(dominant_bin(spectrogram) * factor, abs=1.5)


def test_warp_moves_features_in_time_and_nothing_without_warp():
    spectrogram = spectrogram_of(tone() * np.linspace(0, 1, len(T), dtype=np.float32))
    out = graph_aug("warp[nt=2,wt=0.2]", spectrogram)
    assert out.shape == spectrogram.shape
    assert np.mean(np.abs(out - spectrogram)) > 1e-3 * np.mean(spectrogram)
    np.testing.assert_allclose(graph_aug("warp[wt=0,wf=0]", spectrogram), spectrogram, rtol=1e-5, atol=1e-6)


def zero_columns(spectrogram, axis):
    other = tuple(a for a in range(spectrogram.ndim) if a != axis)
    return int(np.sum(np.all(spectrogram == 0, axis=other)))


def test_frequency_mask_zeroes_n_bands_of_size_bins():
    spectrogram = spectrogram_of(white()) + 1.0
    assert zero_columns(graph_aug("frequency_mask[n=1,size=7]", spectrogram), 2) == 7
    assert 4 <= zero_columns(graph_aug("frequency_mask[n=2,size=4]", spectrogram), 2) <= 8
    assert zero_columns(graph_aug("frequency_mask[n=0]", spectrogram), 2) == 0


def test_time_mask_zeroes_milliseconds_in_each_domain():
    spectrogram = spectrogram_of(white()) + 1.0
    assert zero_columns(graph_aug("time_mask[n=1,size=100]", spectrogram), 1) == 5        # 20 ms frames
    signal = (white() + 2.0).reshape(-1, 1)
    assert zero_columns(graph_aug("time_mask[domain=signal,n=1,size=10]", signal), 0) == 160   # 16 samples/ms
    features = np.ones((100, 26), np.float32)
    assert zero_columns(graph_aug("time_mask[domain=features,n=1,size=60]", features), 0) == 3


def test_dropout_zeroes_about_rate_of_the_elements():
    spectrogram = spectrogram_of(white()) + 1.0
    out = graph_aug("dropout[rate=0.3]", spectrogram)
    assert np.mean(out == 0) == pytest.approx(0.3, abs=0.01)
    np.testing.assert_array_equal(out[out != 0], spectrogram[out != 0])


def test_add_and_multiply_shift_and_scale_features_by_their_stddev():
    features = np.full((400, 26), 3.0, np.float32)
    added = graph_aug("add[stddev=2]", features) - features
    assert abs(added.mean()) < 0.05 and added.std() == pytest.approx(2.0, rel=0.03)
    scaled = graph_aug("multiply[stddev=0.5]", features) / features
    assert abs(scaled.mean() - 1.0) < 0.02 and scaled.std() == pytest.approx(0.5, rel=0.03)


def test_graph_probability_zero_never_one_always():
    features = np.ones((50, 26), np.float32)
    assert all(np.array_equal(graph_aug("add[p=0,stddev=1]", features, seed=(s, 0)), features) for s in range(10))
    assert not any(np.array_equal(graph_aug("add[p=1,stddev=1]", features, seed=(s, 0)), features) for s in range(5))


# ---- the input pipeline -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    samples = []
    for i, text in enumerate(["ciao", "buona sera", "grazie mille", "arrivederci"]):
        path = folder / f"clip{i}.wav"
        write_wav(path, (tone(300.0 + 50 * i) * 32767).astype(np.int16))
        samples.append(Sample(path, path.stat().st_size, text))
    return samples


def features_of(samples, augmenter=None, cache_dir=None):
    """The features of SAMPLES' training batches, augmented at the start of a one-epoch training."""
    alphabet = Alphabet.from_file(ALPHABET_DIR / "it.txt")
    plan = batch_plan(len(samples), 2, 0, 0, shuffle=False)
    clock = EpochClock(augmenter, 0, 1, plan_progress(plan, len(samples))) if augmenter is not None else None
    return [batch[0].numpy() for batch in make_dataset(samples, plan, alphabet, cache_dir=cache_dir, clock=clock)]


def test_augmenter_changes_training_batches_and_nothing_else(clips):
    clean = features_of(clips)
    augmenter = Augmenter((parse_spec("reverb"), parse_spec("frequency_mask[n=2]")), seed=1)
    augmented = features_of(clips, augmenter=augmenter)
    assert all(a.shape == c.shape and not np.allclose(a, c) for a, c in zip(augmented, clean))
    assert all(np.array_equal(a, b) for a, b in zip(augmented, features_of(clips, augmenter=augmenter)))
    assert all(np.array_equal(a, c) for a, c in zip(features_of(clips, augmenter=Augmenter((), 1)), clean))


def test_audio_augmentations_bypass_the_feature_cache_and_feature_ones_apply_after_it(clips, tmp_path):
    audio = Augmenter((parse_spec("volume[dbfs=-20]"),), seed=1)
    features_of(clips, augmenter=audio, cache_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    added = Augmenter((parse_spec("add[stddev=1]"),), seed=1)
    first = features_of(clips, augmenter=added, cache_dir=tmp_path / "f")
    assert len(list((tmp_path / "f").rglob("*.npy"))) == len(clips)
    clean_from_cache = features_of(clips, cache_dir=tmp_path / "f")
    assert all(np.array_equal(c, k) for c, k in zip(clean_from_cache, features_of(clips)))
    assert all(abs(np.std(f - c) - 1.0) < 0.1 for f, c in zip(first, clean_from_cache))


def test_dev_batches_of_a_trainer_are_never_augmented(clips, tmp_path):
    from deepspeech_it.model.trainer import Trainer, TrainParams

    params = TrainParams(n_hidden=8, batch_size=2, epochs=1, amp=False,
                         augment=(parse_spec("add[stddev=3]"), parse_spec("reverb")))
    alphabet = Alphabet.from_file(ALPHABET_DIR / "it.txt")
    trainer = Trainer(clips, clips, alphabet, params, tmp_path / "ckpt", tmp_path / "tb", tmp_path / "rep",
                      progress_enabled=False)
    plan = batch_plan(len(clips), 2, 0, 0, shuffle=False)
    dev = [b[0].numpy() for b in trainer._distributed(clips, plan)]
    clock = EpochClock(trainer.augmenter, 0, 1, plan_progress(plan, len(clips)))
    train = [b[0].numpy() for b in trainer._distributed(clips, plan, clock=clock)]
    clean = features_of(clips)
    assert all(np.array_equal(d, c) for d, c in zip(dev, clean))
    assert not any(np.allclose(t, c) for t, c in zip(train, clean))


def speech_like_clips(folder, count=24, step=0.1):
    """Clips from 0.6 s, each STEP seconds longer than the one before, with transcripts, for batch plans."""
    samples = []
    for i in range(count):
        seconds = 0.6 + step * i
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        path = folder / f"clip{i:02d}.wav"
        write_wav(path, (0.4 * np.sin(2 * np.pi * (200 + 10 * i) * t) * 32767).astype(np.int16))
        samples.append(Sample(path, path.stat().st_size, "ciao"))
    return samples


def test_tempo_plans_batches_by_the_frames_the_pipeline_will_make(tmp_path):
    samples = speech_like_clips(tmp_path, step=0.01)      # similar lengths, as a size-sorted bucket has
    alphabet = Alphabet.from_file(ALPHABET_DIR / "it.txt")
    augmenter = Augmenter((parse_spec("tempo[p=0.6,factor=1~0.3]"), parse_spec("frequency_mask[p=0.5]")), seed=3)
    plan, clock = training_plan(samples, 4, seed=1, epoch=2, augmenter=augmenter, epochs=4)
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(samples)))
    expected = augmenter.trained_frames(np.asarray([s.frames for s in samples]), np.ones(len(samples), np.int32),
                                        (2 + clock.progress) / 4, augmenter.clip_seeds(2, np.arange(len(samples))))
    assert (expected != np.asarray([s.frames for s in samples])).sum() >= 6      # tempo fired and stretched
    made = {}
    for batch, (mfcc, mfcc_len, *_) in zip(plan, make_dataset(samples, plan, alphabet, clock=clock)):
        made.update(zip(batch.tolist(), mfcc_len.numpy().tolist()))
        assert mfcc.shape[1] == max(expected[batch])                  # padded to the longest clip tempo made
    assert [made[i] for i in range(len(samples))] == expected.tolist()

    def padding(batches):
        return sum(len(b) * max(expected[b]) - sum(expected[b]) for b in batches)

    assert padding(plan) < 0.4 * padding(batch_plan(len(samples), 4, 1, 2))


def test_every_epochs_plan_reuses_one_traced_graph(tmp_path, caplog):
    # a graph traced per epoch made TensorFlow warn about retracing from the sixth epoch on
    samples = speech_like_clips(tmp_path, count=12, step=0.05)
    augmenter = Augmenter((parse_spec("tempo[p=0.6,factor=1~0.3]"),), seed=3)
    with caplog.at_level(logging.WARNING):
        for epoch in range(7):
            training_plan(samples[:12 - epoch], 4, 1, epoch, augmenter, epochs=7)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
    assert augmenter._trained_frames_graph.experimental_get_tracing_count() == 1


def test_sorted_epochs_go_from_the_shortest_batch_to_the_longest_then_shuffle(tmp_path):
    samples = speech_like_clips(tmp_path, count=40, step=0.01)
    for augmenter in (None, Augmenter((parse_spec("tempo[p=0.6,factor=1~0.3]"),), seed=3)):
        for epoch in (0, 1):
            plan, clock = training_plan(samples, 4, 1, epoch, augmenter, epochs=4, sorted_epochs=2)
            lengths = (np.asarray([s.frames for s in samples]) if augmenter is None else augmenter.trained_frames(
                np.asarray([s.frames for s in samples]), np.ones(len(samples), np.int32), (epoch + clock.progress) / 4,
                augmenter.clip_seeds(epoch, np.arange(len(samples)))))
            longest = [int(max(lengths[b])) for b in plan]
            assert longest == sorted(longest) and sorted(np.concatenate(plan).tolist()) == list(range(40))
        shuffled, _ = training_plan(samples, 4, 1, 2, augmenter, epochs=4, sorted_epochs=2)
        assert [int(b.min()) for b in shuffled] != sorted(int(b.min()) for b in shuffled)


def test_without_tempo_the_plan_and_clock_are_the_size_sorted_ones(tmp_path):
    samples = speech_like_clips(tmp_path, count=10)
    augmenter = Augmenter((parse_spec("reverb"), parse_spec("tempo[p=0]")), seed=3)
    plan, clock = training_plan(samples, 4, seed=1, epoch=0, augmenter=augmenter, epochs=2)
    assert [b.tolist() for b in plan] == [b.tolist() for b in batch_plan(10, 4, 1, 0)]
    assert clock.progress[np.concatenate(plan)].tolist() == (np.arange(10) / 10).tolist()
    assert training_plan(samples, 4, 1, 0, Augmenter((), 3), 2)[1] is None
