"""Robustness sets: the held-out test clips degraded as real recordings are (noise, a room, a telephone line, a
low-bitrate codec, faster and slower speakers), each written once as a DeepSpeech CSV of wav clips and scored like
the clean test set, greedy and with the scorer.

A set may instead speak each test transcript anew (``Degradation.speak``: the demo report's voices of another
engine), and may be measured without the demo's goal (``Degradation.goal``).

The reverberation and the 8 kHz resampling are the training augmentations' own functions (model/augment_signal.py)
at fixed settings, so a set measures the conditions the augmentation claims to teach; the band-pass, the tempo
change (pitch kept) and the MP3 codec are sox and lame, as a user's recordings would have met them.
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from deepspeech_it.data.audio import load_training_samples, write_wav
from deepspeech_it.data.csvfile import read_rows, write_rows
from deepspeech_it.data.framing import PCM_SCALE, SAMPLE_RATE
from deepspeech_it.model import augment_signal
from deepspeech_it.model.augment_spec import parse_spec
from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.digest import file_digest
from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.progress import progress_iter

Noise = Callable[[int, np.random.Generator], np.ndarray]     # samples wanted -> noise of that length
Degrade = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Speak = Callable[[str, int], np.ndarray]     # transcript, clip index -> float32 samples at 16 kHz

SNR_DB = 10.0
REVERB_SPEC = "reverb[delay=40,decay=3]"     # echoes 40-73 ms apart, each 3 dB weaker: a bare, echoing room
REVERB_TAIL_SECONDS = 0.5                     # silence appended so that the room is heard after the last word
TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300, 3400)                  # Hz, the band of the analogue telephone line (ITU-T G.712)
MP3_KBPS = 16
TEMPO_FACTORS = (0.8, 1.25)
MP3_MAX_DELAY = 4096                          # samples: lame's encoder delay plus the decoder's is about 1100
MADE_FROM = "made_from.json"


class RobustnessError(PipelineError, RuntimeError):
    pass


@dataclass(frozen=True)
class Degradation:
    name: str           # the set's folder and CSV name
    label: str          # what the report's table shows
    settings: str       # what makes the set: recorded with it, so that a set made otherwise is made again
    degrade: Degrade | None = None      # the test clip made worse ...
    speak: Speak | None = None          # ... or its transcript spoken anew
    goal: bool = True                   # whether the demo's robustness goal applies to the set


# ---- the degradations: float32 samples in [-1, 1] at 16 kHz in, float32 out ---------------------------------


def power(audio: np.ndarray) -> float:
    return float(np.mean(np.square(audio, dtype=np.float64)))


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """NOISE scaled to SNR_DB below the clip's mean power (the usual, power-based SNR: DeepSpeech's overlay uses
    peaks, which says little about how loud noise sounds), the sum scaled down only if it would clip."""
    gain = math.sqrt(power(audio) / max(power(noise), 1e-20) / 10.0 ** (snr_db / 10.0))
    mix = audio + gain * noise
    peak = float(np.max(np.abs(mix)))
    return (mix / peak if peak > 1.0 else mix).astype(np.float32)


def reverberate(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    padded = np.pad(audio, (0, int(REVERB_TAIL_SECONDS * SAMPLE_RATE)))
    return augment_signal.reverb(padded, parse_spec(REVERB_SPEC), 0.0, rng)


def sox(audio: np.ndarray, *effects: str) -> np.ndarray:
    """AUDIO through sox EFFECTS (raw float32 in and out, so nothing is quantised on the way)."""
    raw = ["-t", "raw", "-r", str(SAMPLE_RATE), "-e", "floating-point", "-b", "32", "-c", "1"]
    try:
        done = subprocess.run(["sox", *raw, "-", *raw, "-", *effects], input=audio.astype("<f4").tobytes(),
                              capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as problem:
        raise RobustnessError(f"sox {' '.join(effects)} failed: {problem}; is sox installed (make setup)?") from None
    return np.frombuffer(done.stdout, "<f4").copy()


def telephone(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    narrow = augment_signal.resample(audio, parse_spec(f"resample[rate={TELEPHONE_RATE}]"), 0.0, rng)
    low, high = TELEPHONE_BAND
    return sox(narrow, "sinc", f"{low}-{high}")


def tempo(factor: float) -> Degrade:
    def change(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return sox(audio, "tempo", "-s", f"{factor:g}")
    return change


def mp3(audio: np.ndarray, rng: np.random.Generator, kbps: int = MP3_KBPS) -> np.ndarray:
    """Through lame at KBPS kbit/s and back, with the codec's delay taken out so the words stay in place."""
    pcm = (np.clip(audio, -1.0, 1.0 - PCM_SCALE) / PCM_SCALE).astype(np.int16)
    with tempfile.TemporaryDirectory() as work:
        wav, coded = Path(work) / "in.wav", Path(work) / "coded.mp3"
        write_wav(wav, pcm)
        try:
            subprocess.run(["lame", "--quiet", "-b", str(kbps), str(wav), str(coded)], capture_output=True,
                           check=True)
        except (OSError, subprocess.CalledProcessError) as problem:
            raise RobustnessError(f"lame -b {kbps} failed: {problem}; is lame installed (make setup)?") from None
        decoded = load_training_samples(coded).astype(np.float32) * PCM_SCALE
    delay = codec_delay(audio, decoded)
    out = decoded[delay:delay + len(audio)]
    return np.pad(out, (0, len(audio) - len(out)))


def codec_delay(original: np.ndarray, decoded: np.ndarray) -> int:
    """The lag (0..MP3_MAX_DELAY samples) at which DECODED best matches ORIGINAL (cross-correlation by FFT)."""
    size = 1 << math.ceil(math.log2(len(original) + len(decoded)))
    spectrum = np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(original, size))
    correlation = np.fft.irfft(spectrum, size)[:MP3_MAX_DELAY + 1]
    return int(np.argmax(correlation))


def degradations(noise: Noise) -> tuple[Degradation, ...]:
    """The robustness sets of the demo report, NOISE supplying the noise of the first."""
    def noisy(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # resize: a noise made from a duration in seconds can come out a sample short
        return add_noise(audio, np.resize(noise(len(audio), rng), len(audio)), SNR_DB)

    low, high = TELEPHONE_BAND
    return (Degradation(f"noise_{SNR_DB:g}db", f"noise {SNR_DB:g} dB SNR", f"power snr={SNR_DB:g} dB", noisy),
            Degradation("reverb", "reverberation", f"{REVERB_SPEC}, tail {REVERB_TAIL_SECONDS:g} s", reverberate),
            Degradation("telephone", f"telephone {TELEPHONE_RATE // 1000} kHz {low}-{high} Hz",
                        f"resample[rate={TELEPHONE_RATE}], sox sinc {low}-{high}", telephone),
            Degradation(f"mp3_{MP3_KBPS}k", f"MP3 {MP3_KBPS} kbit/s", f"lame -b {MP3_KBPS}, delay removed", mp3),
            *(Degradation(f"tempo_{f:g}", f"tempo {f:g}x", f"sox tempo -s {f:g}", tempo(f)) for f in TEMPO_FACTORS))


def source_noise(csv_or_folder: str | Path) -> Noise:
    """Noise joined from the clips of an overlay source (a noise CSV or folder), from a random place per clip."""
    source = augment_signal.OverlaySource(csv_or_folder)
    return lambda length, rng: source.stretch(length, rng).astype(np.float64)


# ---- the sets ------------------------------------------------------------------------------------------------


def make_set(degradation: Degradation, test_csv: Path, folder: Path, seed: int, jobs: int = 2,
             progress: bool = False) -> Path:
    """FOLDER/<name>/<name>.csv and its wav clips: every clip of TEST_CSV degraded; written once per test set
    (the folder records the digest of the CSV it was made from) and atomically."""
    target = folder / degradation.name
    csv_path = target / f"{degradation.name}.csv"
    made_from = {"test_csv": file_digest(test_csv), "seed": seed, "settings": degradation.settings}
    if csv_path.is_file() and _recorded(target / MADE_FROM) == made_from:
        return csv_path
    rows = read_rows(test_csv)
    with atomic_path(target, directory=True) as temp:
        def one(index: int) -> tuple[Path, str]:
            if degradation.speak is not None:
                degraded = degradation.speak(rows[index].transcript, index)
            else:
                clean = load_training_samples(rows[index].path).astype(np.float32) * PCM_SCALE
                degraded = degradation.degrade(clean, np.random.default_rng([seed, index]))
            wav = temp / f"{rows[index].path.stem}.wav"
            write_wav(wav, (np.clip(degraded, -1.0, 1.0 - PCM_SCALE) / PCM_SCALE).astype(np.int16))
            return wav, rows[index].transcript

        with ThreadPoolExecutor(jobs) as threads:
            written = list(progress_iter(threads.map(one, range(len(rows))), len(rows), degradation.name, progress))
        write_rows(temp / csv_path.name, written)
        (temp / MADE_FROM).write_text(json.dumps(made_from) + "\n", encoding="utf-8")
    return csv_path


def _recorded(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class SetScore:
    name: str
    label: str
    settings: str
    clips: int
    greedy_wer: float
    greedy_cer: float
    scorer_wer: float
    scorer_cer: float
    goal: bool = True

    def as_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "settings": self.settings, "clips": self.clips,
                "goal": self.goal,
                "greedy": {"wer": self.greedy_wer, "cer": self.greedy_cer},
                "with_scorer": {"wer": self.scorer_wer, "cer": self.scorer_cer}}


def score_set(degradation: Degradation, references: Sequence[str], probabilities: Sequence[np.ndarray], spec,
              alpha: float, beta: float, progress: bool = False) -> SetScore:
    """Greedy and scorer (ALPHA, BETA) WER/CER of one set's acoustic outputs (decode/ctc.DecoderPool on every
    core)."""
    from deepspeech_it.decode.ctc import DecoderPool
    from deepspeech_it.evaluate.report import error_rates

    with DecoderPool(spec, probabilities, progress=progress) as pool:
        greedy = [t.text for t in pool.decode(None, None, label=f"{degradation.name} greedy")]
        scored = [t.text for t in pool.decode(alpha, beta, label=f"{degradation.name} with the scorer")]
    return SetScore(degradation.name, degradation.label, degradation.settings, len(references),
                    *error_rates(references, greedy), *error_rates(references, scored), goal=degradation.goal)


def plot_scores(path: Path, scores: Sequence[dict], goal: float) -> None:
    """Bars of WER per set, greedy beside with the scorer, and the goal line."""
    from deepspeech_it.util.plots import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    places = np.arange(len(scores))
    for shift, key, name in ((-0.2, "greedy", "greedy"), (0.2, "with_scorer", "with the scorer")):
        bars = axes.bar(places + shift, [s[key]["wer"] for s in scores], 0.4, label=name)
        axes.bar_label(bars, fmt="%.2f", fontsize=7)
    axes.axhline(goal, color="black", linestyle="--", linewidth=1, label=f"goal (scorer WER <= {goal:.0%})")
    axes.set_xticks(places, [s["label"] for s in scores], rotation=20, ha="right", fontsize=8)
    axes.set_ylabel("test WER")
    axes.set_title("The held-out test clips, degraded")
    axes.legend(fontsize=8)
    save_figure(figure, path)
