"""Noise for the overlay augmentation when nothing can be downloaded: coloured noise and babble, as wav clips and a
CSV that ``overlay[source=...]`` reads (a real corpus such as MUSAN is pointed at the same way)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np

from deepspeech_it.data.audio import load_training_samples, write_wav
from deepspeech_it.data.framing import PCM_SCALE, SAMPLE_RATE
from deepspeech_it.demo.synth import Utterance, speak_mp3
from deepspeech_it.util.atomic import write_text_atomic

COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}     # power falls as 1 / f**exponent
NOISE_CSV = "noise.csv"


def coloured(seconds: float, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped to a 1/f**exponent power spectrum, peak 0.5."""
    spectrum = np.fft.rfft(rng.normal(size=int(seconds * SAMPLE_RATE)))
    freqs = np.fft.rfftfreq(int(seconds * SAMPLE_RATE), 1 / SAMPLE_RATE)
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** (exponent / 2)
    noise = np.fft.irfft(spectrum, int(seconds * SAMPLE_RATE))
    return 0.5 * noise / np.max(np.abs(noise))


def _write(folder: Path, name: str, audio: np.ndarray) -> Path:
    path = folder / f"{name}.wav"
    write_wav(path, (np.clip(audio, -1, 1 - PCM_SCALE) / PCM_SCALE).astype(np.int16))
    return path


def write_coloured_noise(folder: Path, clips: int, seconds: float, seed: int) -> list[Path]:
    """CLIPS clips per colour in FOLDER."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    return [_write(folder, f"{colour}-{i}", coloured(seconds, exponent, rng))
            for colour, exponent in COLOURS.items() for i in range(clips)]


def babble(sentences: list[str], voices: list[str], talkers: int, seconds: float, rng: random.Random) -> np.ndarray:
    """TALKERS espeak-ng voices saying training sentences at once, each looped to SECONDS from its own offset."""
    length = int(seconds * SAMPLE_RATE)
    mix = np.zeros(length)
    with tempfile.TemporaryDirectory() as work:
        for talker in range(talkers):
            text = " ".join(rng.sample(sentences, 3))
            clip = Path(work) / f"talker{talker}.mp3"
            speak_mp3(Utterance("train", text, rng.choice(voices), rng.choice((150, 175, 200)), clip.name, SAMPLE_RATE), clip)
            speech = load_training_samples(clip).astype(np.float64) * PCM_SCALE
            mix += np.roll(np.resize(speech, length), rng.randrange(length))
    return 0.5 * mix / np.max(np.abs(mix))


def write_noise_corpus(folder: Path, sentences: list[str], voices: list[str], seed: int, babble_clips: int = 4,
                       colour_clips: int = 2, seconds: float = 20.0) -> Path:
    """Coloured noise and babble of the training voices in FOLDER, listed in FOLDER/noise.csv; returns the CSV."""
    files = write_coloured_noise(folder, colour_clips, seconds, seed)
    rng = random.Random(seed)
    files += [_write(folder, f"babble-{i}", babble(sentences, voices, 4 + i % 3, seconds, rng))
              for i in range(babble_clips)]
    write_text_atomic(folder / NOISE_CSV, "wav_filename,wav_filesize\n" +
                      "".join(f"{f.name},{f.stat().st_size}\n" for f in files))
    return folder / NOISE_CSV
