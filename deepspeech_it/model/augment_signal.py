"""DeepSpeech 0.9.3's sample-domain augmentations on the waveform in numpy: overlay, reverb, resample, codec, volume.

They run inside the tf.data map (a py_function per clip, in parallel), on float32 mono samples in [-1, 1] at
16 kHz. Levels are DeepSpeech's peak dBFS: ``20 log10(peak) + 3.0103``, so a full-scale sine is 0 dB and the default
volume target 3.0103 dBFS puts the peak at 1.0. Algorithms, parameters and defaults follow mozilla/DeepSpeech
v0.9.3, training/deepspeech_training/util/augmentations.py and util/audio.py (MPL-2.0); see NOTICE.

Differences, on purpose: overlay takes the clips of its source from a random place per clip (DeepSpeech streamed
them in order through one process, which parallel workers cannot share); resample uses soxr rather than librosa;
codec compensates Opus' lookahead so that the words stay where the transcript's frames expect them.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import soxr

from deepspeech_it.data.audio import AudioError, load_training_samples
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.data.framing import PCM_SCALE, SAMPLE_RATE
from deepspeech_it.data.opus import opus_round_trip
from deepspeech_it.model.augment_spec import Augmentation, ValueRange
from deepspeech_it.util.errors import PipelineError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")
DBFS_OFFSET = 3.0103                 # DeepSpeech's rms_to_dbfs adds it, so a full-scale sine reads 0 dB
REVERB_PRIMES = (17, 19, 23, 29, 31)  # comb delays in these ratios interfere least
MIN_COMB_SAMPLES = 16


class AugmentationError(PipelineError, RuntimeError):
    pass


def pick(value: ValueRange, clock: float, rng: np.random.Generator):
    """DeepSpeech's pick_value_from_range: uniform in (start + clock * (end - start)) ± r; rounded for whole
    numbers."""
    centre = value.centre(clock)
    drawn = rng.uniform(centre - value.r, centre + value.r) if value.r else centre
    return int(round(drawn)) if value.whole else float(drawn)


def peak_dbfs(audio: np.ndarray) -> float:
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * math.log10(max(1e-16, peak)) + DBFS_OFFSET


def gain_ratio(db: float) -> float:
    return 10.0 ** (db / 20.0)


def normalize(audio: np.ndarray, dbfs: float) -> np.ndarray:
    """Scales the peak to DBFS and clips to [-1, 1] (DeepSpeech's normalize_audio)."""
    scaled = audio * gain_ratio(dbfs - peak_dbfs(audio))
    return np.clip(scaled, -1.0, 1.0, out=scaled)    # in place: clipping into a new array costs 6 times as much


# ---- the augmentations: (audio, augmentation, clock, rng) -> audio of the same length -------------------------


def volume(audio, aug: Augmentation, clock: float, rng) -> np.ndarray:
    return normalize(audio, pick(aug["dbfs"], clock, rng))


def reverb(audio, aug: Augmentation, clock: float, rng) -> np.ndarray:
    """Five feedback combs (delays delay * q / 17 ms, each echo ``decay`` dB weaker) added to the dry signal,
    renormalised to the original peak."""
    dry = audio.astype(np.float64)
    delay, decay = pick(aug["delay"], clock, rng), gain_ratio(-pick(aug["decay"], clock, rng))
    result = dry.copy()
    for prime in REVERB_PRIMES:
        step = max(MIN_COMB_SAMPLES, math.floor(delay * prime / REVERB_PRIMES[0] * SAMPLE_RATE / 1000.0))
        result += _comb(dry, step, decay)
    return normalize(result, peak_dbfs(dry)).astype(np.float32)


def _comb(x: np.ndarray, step: int, gain: float) -> np.ndarray:
    """y[n] = x[n] + gain * y[n - step], one block of STEP samples at a time (each block depends on the last)."""
    blocks = -(-len(x) // step)
    y = np.zeros(blocks * step)
    y[:len(x)] = x
    y = y.reshape(blocks, step)
    for block in range(1, blocks):
        y[block] += gain * y[block - 1]
    return y.reshape(-1)[:len(x)]


def resample(audio, aug: Augmentation, clock: float, rng) -> np.ndarray:
    """Down to ``rate`` and back: everything above the new Nyquist frequency is gone."""
    rate = pick(aug["rate"], clock, rng)
    if rate == SAMPLE_RATE:
        return audio
    back = soxr.resample(soxr.resample(audio, SAMPLE_RATE, rate, quality="HQ"), rate, SAMPLE_RATE, quality="HQ")
    return _fit(back.astype(np.float32), len(audio))


def codec(audio, aug: Augmentation, clock: float, rng) -> np.ndarray:
    """Through Opus at ``bitrate`` bit/s and back."""
    pcm = (np.clip(audio, -1.0, 1.0 - PCM_SCALE) / PCM_SCALE).astype(np.int16)
    return opus_round_trip(pcm, SAMPLE_RATE, pick(aug["bitrate"], clock, rng)).astype(np.float32) * PCM_SCALE


def overlay(audio, aug: Augmentation, clock: float, rng) -> np.ndarray:
    """``layers`` layers of clips of the source, each joined to the clip's length, summed, added ``snr`` dB below
    the clip's peak (DeepSpeech's peak-based SNR), renormalised to the original peak."""
    source = overlay_source(aug["source"])
    noise = np.zeros(len(audio), np.float64)
    for _ in range(pick(aug["layers"], clock, rng)):
        noise += source.stretch(len(audio), rng)
    original = peak_dbfs(audio)
    gain = original - peak_dbfs(noise) - pick(aug["snr"], clock, rng)
    return normalize(audio + noise * gain_ratio(gain), original).astype(np.float32)


def _fit(audio: np.ndarray, length: int) -> np.ndarray:
    return audio[:length] if len(audio) >= length else np.pad(audio, (0, length - len(audio)))


SAMPLE_AUGMENTATIONS = {"overlay": overlay, "reverb": reverb, "resample": resample, "codec": codec,
                        "volume": volume}


def apply_sample_augmentations(audio: np.ndarray, augmentations, clock: float, rng: np.random.Generator):
    """Each augmentation in turn, each with its own ``random() < p`` draw (DeepSpeech draws once per clip and
    augmentation too)."""
    for aug in augmentations:
        if rng.random() < aug.p:
            audio = SAMPLE_AUGMENTATIONS[aug.name](audio, aug, clock, rng)
    return audio


# ---- overlay sources ----------------------------------------------------------------------------------------


class OverlaySource:
    """The clips of a CSV (its wav_filename column; transcripts are not needed) or of a folder (recursively)."""

    CACHED_CLIPS = 64          # decoded clips kept in memory; a noise corpus can be far larger than that

    def __init__(self, location: str | Path):
        location = Path(location).expanduser()
        if location.is_dir():
            files = sorted(p for p in location.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        else:
            files = [row.path for row in read_rows(location, labelled=False)]
        if not files:
            raise AugmentationError(f"overlay source {location} holds no audio clips")
        self.location, self.files = location, files
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def clip(self, index: int) -> np.ndarray:
        path = self.files[index % len(self.files)]
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        try:
            samples = load_training_samples(path).astype(np.float32) * PCM_SCALE
        except (AudioError, OSError) as problem:
            raise AugmentationError(f"overlay source {self.location}: {problem}") from None
        with self._lock:
            self._cache[path] = samples
            while len(self._cache) > self.CACHED_CLIPS:
                self._cache.popitem(last=False)
        return samples

    def stretch(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """LENGTH samples of source clips joined end to end, from a random clip and offset on."""
        index = int(rng.integers(len(self.files)))
        current = self.clip(index)              # never empty: decoding refuses clips without samples
        offset = int(rng.integers(len(current)))
        pieces, filled = [], 0
        while filled < length:
            piece = current[offset:offset + length - filled]
            pieces.append(piece)
            filled += len(piece)
            index, offset = index + 1, 0
            if filled < length:
                current = self.clip(index)
        return np.concatenate(pieces)


_sources: dict[str, OverlaySource] = {}
_sources_lock = threading.Lock()


def overlay_source(location: str) -> OverlaySource:
    with _sources_lock:
        if location not in _sources:
            _sources[location] = OverlaySource(location)
        return _sources[location]
