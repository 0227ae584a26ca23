"""Italian speech from another synthesis engine: Festival's two Italian diphone voices (Debian's festvox-italp16k
and festvox-itapc16k), which concatenate recorded human diphones where espeak-ng synthesises formants. The demo
never trains on them, so a test set in their voices measures how much the model depends on espeak-ng's sound."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.evaluate.robustness import Degradation, RobustnessError

FESTIVAL_VOICES = ("lp_diphone", "pc_diphone")       # a woman's and a man's voice
TEXT2WAVE = "text2wave"


def festival_speak(text: str, voice: str) -> np.ndarray:
    """TEXT spoken by Festival's VOICE, float32 samples at 16 kHz."""
    with tempfile.TemporaryDirectory() as work:
        script, wav = Path(work) / "text.txt", Path(work) / "speech.wav"
        try:
            # Festival's Italian letter-to-sound rules read Latin-1, which holds every letter of the Italian alphabet
            script.write_bytes(text.encode("latin-1"))
            subprocess.run([TEXT2WAVE, "-eval", f"(voice_{voice})", str(script), "-o", str(wav)],
                           capture_output=True, check=True)
            samples, rate = soundfile.read(wav, dtype="float32")
        except UnicodeEncodeError:
            raise RobustnessError(f"festival cannot speak {text!r}: its Italian voices read Latin-1 text only") from None
        except (OSError, subprocess.CalledProcessError, soundfile.LibsndfileError) as problem:
            raise RobustnessError(f"festival's {TEXT2WAVE} with voice {voice} failed: {problem}; are festival, "
                                  "festvox-italp16k and festvox-itapc16k installed (make setup)?") from None
    return samples if rate == SAMPLE_RATE else soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)


def other_engine_set() -> Degradation:
    """The test transcripts spoken by Festival, its two voices taking turns."""
    def speak(text: str, index: int) -> np.ndarray:
        return festival_speak(text, FESTIVAL_VOICES[index % len(FESTIVAL_VOICES)])

    return Degradation("festival", "Festival voices (other engine)",
                       f"text2wave {', '.join(FESTIVAL_VOICES)} taking turns", speak=speak, goal=False)
