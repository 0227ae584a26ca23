"""The demo's own data: noise for overlay, and the name its model card gives the corpus."""

from __future__ import annotations

import json

import numpy as np

from deepspeech_it.data.audio import load_training_samples
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.demo.noise import COLOURS, coloured, write_coloured_noise
from deepspeech_it.demo.synth import SYNTHETIC_RELEASE, Utterance, Variety, plan_utterances, speak_mp3
from deepspeech_it.pipeline.s06_export import corpus_source

from export_helpers import fundamental_hz


def test_coloured_noise_has_its_spectral_slope():
    rng = np.random.default_rng(0)
    for exponent in COLOURS.values():
        noise = coloured(4.0, exponent, rng)
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(len(noise), 1 / 16000)
        low, high = power[(freqs > 200) & (freqs < 400)].mean(), power[(freqs > 3200) & (freqs < 6400)].mean()
        # An octave count of 4 (200-400 Hz against 3.2-6.4 kHz): 1/f**e falls by 16**e.
        assert abs(np.log(low / high) / np.log(16) - exponent) < 0.15


def test_noise_folder_is_an_overlay_source(tmp_path):
    files = write_coloured_noise(tmp_path, clips=1, seconds=1.0, seed=1)
    assert len(files) == len(COLOURS) and all(f.stat().st_size > 30000 for f in files)


def test_the_model_card_names_synthetic_data_truthfully(tmp_path):
    report = tmp_path / "import_report.json"
    report.write_text(json.dumps({"source": f"/x/extracted/{SYNTHETIC_RELEASE}/it"}))
    assert "synthetic" in corpus_source(report, tmp_path / "it.tar.gz") and \
        "Common Voice cv-corpus" not in corpus_source(report, tmp_path / "it.tar.gz")
    report.write_text(json.dumps({"source": "/x/extracted/cv-corpus-17.0-2024-03-15/it"}))
    assert corpus_source(report, tmp_path / "it.tar.gz") == "Common Voice cv-corpus-17.0-2024-03-15"


def test_variety_varies_training_clips_only():
    sentences = {split: [f"frase {split}"] for split in ("train", "dev", "test")}
    voices = {"train": ["it", "it+m3"], "dev": ["it+f5"], "test": ["it+Gene"]}
    variety = Variety(pitch=(25, 75), amplitude=(60, 160), word_gap=(0, 4))
    plan = plan_utterances(sentences, voices, [150], {"train": 40, "dev": 4, "test": 4}, variety, seed=3)
    train = [u for u in plan if u.split == "train"]
    assert all(25 <= u.pitch <= 75 and 60 <= u.amplitude <= 160 and 0 <= u.word_gap <= 4 for u in train)
    assert len({(u.pitch, u.amplitude, u.word_gap) for u in train}) > 30
    assert all(u.pitch is u.amplitude is u.word_gap is None for u in plan if u.split != "train")
    assert plan == plan_utterances(sentences, voices, [150], {"train": 40, "dev": 4, "test": 4}, variety, seed=3)


def test_pitch_amplitude_and_word_gap_reach_espeak(tmp_path):
    def spoken(name: str, **options) -> np.ndarray:
        clip = tmp_path / f"{name}.mp3"
        speak_mp3(Utterance("train", "la luna illumina la notte serena", "it", 160, clip.name, SAMPLE_RATE,
                            **options), clip)
        return load_training_samples(clip).astype(np.float64)

    plain, high, quiet, gapped = (spoken("plain"), spoken("high", pitch=90), spoken("quiet", amplitude=40),
                                  spoken("gapped", word_gap=20))
    assert fundamental_hz(high) > 1.2 * fundamental_hz(plain)
    assert np.sqrt(np.mean(quiet ** 2)) < 0.6 * np.sqrt(np.mean(plain ** 2))
    assert len(gapped) > len(plain) + 4 * 0.15 * SAMPLE_RATE        # 5 gaps of 200 ms, allowing for espeak's own


def test_a_clip_ends_its_closing_pause_after_the_last_word_and_keeps_its_padding(tmp_path):
    from deepspeech_it.demo.synth import CLOSING_PAUSE_SECONDS

    def spoken(name: str, **options) -> np.ndarray:
        clip = tmp_path / f"{name}.mp3"
        speak_mp3(Utterance("train", "domani andremo al mare", "it", 170, clip.name, SAMPLE_RATE, **options), clip)
        return load_training_samples(clip).astype(np.float64)

    def closing_pause(samples: np.ndarray) -> float:
        loud = np.flatnonzero(np.abs(samples) > 0.01 * np.max(np.abs(samples)))
        return (len(samples) - loud[-1]) / SAMPLE_RATE

    plain, padded = spoken("plain"), spoken("padded", pad_seconds=1.0)
    # MP3's frames and the word's fading end add a little; espeak-ng's own pause was about 0.35 s.
    assert CLOSING_PAUSE_SECONDS <= closing_pause(plain) < CLOSING_PAUSE_SECONDS + 0.1
    assert closing_pause(padded) > closing_pause(plain) + 0.95


def test_the_model_card_says_the_demo_was_tested_on_its_own_data_not_common_voice(tmp_path):
    from deepspeech_it.config import load_config
    from deepspeech_it.pipeline.s06_export import corpora_data

    config = load_config({"DATA_DIR": str(tmp_path)})
    report = config.layout.cv_dir / "import_report.json"
    report.parent.mkdir(parents=True)
    report.write_text(json.dumps({"source": f"/x/extracted/{SYNTHETIC_RELEASE}/it"}))
    evaluation = corpora_data(config)["evaluation"]
    assert "synthetic" in evaluation and "Common Voice" not in evaluation.replace("Common Voice's shape", "")
    report.write_text(json.dumps({"source": "/x/extracted/cv-corpus-17.0-2024-03-15/it"}))
    assert corpora_data(config)["evaluation"] == "dev and test sets of Common Voice cv-corpus-17.0-2024-03-15"
