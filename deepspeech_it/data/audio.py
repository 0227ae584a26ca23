"""Audio decoding and conversion to what DeepSpeech trains on: 16 kHz, mono, 16-bit PCM wav.

Everything happens in-process (libsndfile 1.1+ decodes MP3, FLAC, Ogg Vorbis and Opus; soxr resamples), so
converting a clip costs no process start, which is what made the one-sox-per-clip importer slow.
"""

from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from deepspeech_it.data.framing import PCM_SCALE, SAMPLE_RATE, WAV_HEADER_BYTES
from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.errors import PipelineError


class AudioError(PipelineError, ValueError):
    """The file is not audio that can be decoded, or holds no samples."""


@dataclass(frozen=True)
class WavInfo:
    frames: int
    sample_rate: int
    channels: int
    subtype: str

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0

    @property
    def is_training_format(self) -> bool:
        return self.sample_rate == SAMPLE_RATE and self.channels == 1 and self.subtype == "PCM_16" and self.frames > 0


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1], shape (frames, channels), and the file's sample rate."""
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, EOFError) as problem:
        raise AudioError(f"cannot decode {Path(path).name}: {problem}") from None
    if samples.size == 0:
        raise AudioError(f"{Path(path).name} holds no audio")
    return samples, rate


def read_audio_pieces(path: str | Path, pieces: tuple[tuple[float, float], ...]) -> tuple[np.ndarray, int]:
    """The stretches PIECES (start, end in seconds) of a long recording, joined; only they are decoded, so cutting
    a segment out of an hour-long session costs a seek, not the whole file."""
    try:
        with soundfile.SoundFile(str(path)) as handle:
            rate, parts = handle.samplerate, []
            for start, end in pieces:
                first = min(int(start * rate), handle.frames)
                handle.seek(first)
                parts.append(handle.read(max(0, min(int(end * rate), handle.frames) - first), dtype="float32",
                                         always_2d=True))
    except (soundfile.LibsndfileError, RuntimeError, EOFError) as problem:
        raise AudioError(f"cannot decode {Path(path).name}: {problem}") from None
    samples = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)
    if samples.size == 0:
        raise AudioError(f"{Path(path).name} holds no audio in the pieces asked for")
    return samples, rate


def to_training_samples(samples: np.ndarray, rate: int) -> np.ndarray:
    """Down-mixes to mono and resamples to 16 kHz; returns int16 samples."""
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return (np.clip(mono, -1.0, 1.0 - PCM_SCALE) / PCM_SCALE).astype(np.int16)


def load_training_samples(path: str | Path, pieces: tuple[tuple[float, float], ...] = ()) -> np.ndarray:
    """Any audio file (or the PIECES of it, see read_audio_pieces) as 16 kHz mono int16 samples."""
    return to_training_samples(*(read_audio_pieces(path, pieces) if pieces else read_audio(path)))


def _canonical_header(data_bytes: int) -> bytes:
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 1, 1, SAMPLE_RATE,
                       SAMPLE_RATE * 2, 2, 16, b"data", data_bytes)


def wav_bytes(samples: np.ndarray) -> bytes:
    """A canonical 44-byte-header PCM wav of int16 mono samples at 16 kHz."""
    data = samples.astype("<i2", copy=False).tobytes()
    return _canonical_header(len(data)) + data


def canonical_wav_frames(path: str | Path) -> int | None:
    """The frames of PATH when it is already exactly what ``write_wav`` would write (16 kHz mono 16-bit PCM behind
    the 44-byte header, its data filling the file), else None."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(WAV_HEADER_BYTES)
            size = Path(path).stat().st_size
    except OSError:
        return None
    data_bytes = size - WAV_HEADER_BYTES
    if data_bytes <= 0 or data_bytes % 2 or header != _canonical_header(data_bytes):
        return None
    return data_bytes // 2


def write_wav(path: str | Path, samples: np.ndarray) -> None:
    """Writes int16 mono samples as a 16 kHz wav, atomically.

    Written by hand rather than through libsndfile, whose close() syncs every file to disk: on an import of a
    hundred thousand clips that sync, not the conversion, would set the pace.
    """
    with atomic_path(path) as temp:
        temp.write_bytes(wav_bytes(samples))


def convert_to_wav(source: str | Path, target: str | Path, pieces: tuple[tuple[float, float], ...] = ()) -> int:
    """Converts SOURCE (or the PIECES of it) to a training wav at TARGET; returns the number of frames written.

    A whole SOURCE that is already a canonical training wav (M-AILABS and most of VoxForge publish them) is copied:
    decoding and writing it again would give the same bytes, slower."""
    frames = None if pieces else canonical_wav_frames(source)
    if frames:
        with atomic_path(target) as temp:
            shutil.copyfile(source, temp)
        return frames
    samples = load_training_samples(source, pieces)
    if samples.size == 0:
        raise AudioError(f"{Path(source).name} holds no audio")
    write_wav(target, samples)
    return int(samples.size)


def wav_info(path: str | Path) -> WavInfo | None:
    """The header of a wav file, or None when it is missing or unreadable."""
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    return WavInfo(frames=info.frames, sample_rate=info.samplerate, channels=info.channels, subtype=info.subtype)
