"""The demo's own data: noise for overlay, and the name its model card gives the corpus."""

from __future__ import annotations

import json

import numpy as np

from deepspeech_it.demo.noise import COLOURS, coloured, write_coloured_noise
from deepspeech_it.demo.synth import SYNTHETIC_RELEASE
from deepspeech_it.pipeline.s06_export import corpus_source


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
