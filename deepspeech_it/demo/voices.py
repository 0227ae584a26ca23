"""Voices espeak-ng does not ship: each a random perturbation of one of its variants (all formant frequencies by one
factor, as a longer or shorter vocal tract would move them, then each formant's frequency, height and width, the
pitch and its range, the strength of voicing and of consonants by factors of their own), so that the demo's training
speech comes from many hundreds of speakers instead of espeak-ng's few dozen, while dev and test keep variants that
training never hears.

espeak-ng reads variants only from its data folder, and lists at most 349 voices: the new variants go into private
data folders of at most VARIANTS_PER_FOLDER each, beside links to the system's data, to its Italian language and to
its own variants, and ``espeak-ng --path`` points at the folder of a voice (``Voice.data``).
"""

from __future__ import annotations

import functools
import math
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from deepspeech_it.demo.synth import Voice
from deepspeech_it.util.errors import PipelineError

DATA_FOLDER = "espeak-ng-data"
VARIANTS = Path("voices") / "!v"
ITALIAN = Path("lang") / "roa" / "it"
FORMANTS = range(9)                  # espeak-ng's formants 0-8
VARIANTS_PER_FOLDER = 200            # with espeak-ng's ~100 own variants and Italian, under its 349 voices
PREFIX = "rnd"


class VoiceError(PipelineError):
    pass


@functools.cache
def system_data() -> Path:
    """espeak-ng's data folder, as the installed espeak-ng reports it ("Data at: ..."), once per process."""
    try:
        version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as problem:
        raise VoiceError(f"espeak-ng does not run ({problem}); make setup installs it") from None
    found = re.search(r"Data at:\s*(\S+)", version)
    if not found or not (Path(found.group(1)) / ITALIAN).is_file():
        raise VoiceError(f"espeak-ng's data folder with Italian not found in: {version.strip()}")
    return Path(found.group(1))


@dataclass(frozen=True)
class Variant:
    """What a variant file sets (espeak-ng's defaults, 100 %, where it is silent); ``other`` keeps the lines this
    module does not perturb (breath, tone, intonation, klatt, ...) as they are."""

    formants: dict = field(default_factory=lambda: {n: (100.0, 100.0, 100.0, 0.0) for n in FORMANTS})
    pitch: tuple = (82.0, 118.0)                 # base and range, Hz
    voicing: float = 100.0
    consonants: tuple = (100.0, 100.0)
    other: tuple = ()


def read_variant(voice: str, data: Path) -> Variant:
    """The variant of VOICE ("it" or "it+<variant>") in espeak-ng's DATA folder; an unknown variant is an error
    (espeak-ng itself would quietly speak the plain voice instead)."""
    if "+" not in voice:
        return Variant()
    path = data / VARIANTS / voice.split("+", 1)[1]
    if not path.is_file():
        raise VoiceError(f"espeak-ng has no variant {voice} (no {path})")
    defaults = Variant()
    formants, pitch, other = dict(defaults.formants), defaults.pitch, []
    voicing, consonants = defaults.voicing, defaults.consonants
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if not words or words[0] in ("language", "name", "gender"):
            continue
        numbers = [float(w) for w in words[1:] if re.fullmatch(r"-?\d+(\.\d+)?", w)]
        if words[0] == "formant" and len(numbers) >= 4:
            formants[int(numbers[0])] = tuple(numbers[1:5]) + (0.0,) * (5 - len(numbers))
        elif words[0] == "pitch" and len(numbers) >= 2:
            pitch = (numbers[0], numbers[1])
        elif words[0] == "voicing" and numbers:
            voicing = numbers[0]
        elif words[0] == "consonants" and numbers:
            consonants = (numbers[0], numbers[1] if len(numbers) > 1 else numbers[0])
        else:
            other.append(line.strip())
    return Variant(formants, pitch, voicing, consonants, tuple(other))


@dataclass(frozen=True)
class Perturbation:
    """How far a new voice strays from its variant: factors drawn log-uniformly in [1/x, x] (the vocal tract in its
    own range). Wider than this, the demo's training learnt less per epoch and no better (README, "The demo")."""

    vocal_tract: tuple = (0.88, 1.14)
    formant_frequency: float = 1.1
    formant_height: float = 1.4
    formant_width: float = 1.25
    pitch_base: float = 1.25
    pitch_range: float = 1.4
    voicing: float = 1.33
    consonants: float = 1.33


def _factor(rng: random.Random, spread: float) -> float:
    return math.exp(rng.uniform(-math.log(spread), math.log(spread)))


def perturbed(variant: Variant, rng: random.Random, how: Perturbation = Perturbation()) -> str:
    """A variant file: VARIANT with its formants, pitch, voicing and consonants moved at random."""
    tract = math.exp(rng.uniform(*map(math.log, how.vocal_tract)))
    lines = ["language variant", "name random",
             f"pitch {max(20, round(variant.pitch[0] * _factor(rng, how.pitch_base)))} "
             f"{max(20, round(variant.pitch[1] * _factor(rng, how.pitch_range)))}"]
    for number, (frequency, height, width, shift) in sorted(variant.formants.items()):
        lines.append(f"formant {number} {round(frequency * tract * _factor(rng, how.formant_frequency))} "
                     f"{round(height * _factor(rng, how.formant_height))} "
                     f"{round(width * _factor(rng, how.formant_width))}" + (f" {round(shift)}" if shift else ""))
    lines.append(f"voicing {round(variant.voicing * _factor(rng, how.voicing))}")
    lines.append("consonants " + " ".join(str(round(c * _factor(rng, how.consonants))) for c in variant.consonants))
    return "\n".join([*lines, *variant.other]) + "\n"


def _private_folder(root: Path, system: Path) -> Path:
    """ROOT/espeak-ng-data: links to SYSTEM's data, Italian alone among the languages, and SYSTEM's variants."""
    data = root / DATA_FOLDER
    (data / VARIANTS).mkdir(parents=True, exist_ok=True)
    (data / ITALIAN).parent.mkdir(parents=True, exist_ok=True)
    links = [(data / entry.name, entry) for entry in system.iterdir() if entry.name not in ("voices", "lang")]
    links += [(data / ITALIAN, system / ITALIAN)]
    links += [(data / VARIANTS / entry.name, entry) for entry in (system / VARIANTS).iterdir()]
    for link, target in links:
        if not link.is_symlink():
            link.symlink_to(target)
    return data


def write_voices(folder: Path, bases: list[str], count: int, seed: int,
                 how: Perturbation = Perturbation()) -> list[Voice]:
    """COUNT new voices, each perturbing one of BASES in turn, in private data folders under FOLDER (made anew)."""
    system = system_data()
    variants = [read_variant(base, system) for base in bases]
    rng = random.Random(seed)
    if folder.exists():
        shutil.rmtree(folder)
    voices = []
    for index in range(count):
        root = folder / f"{index // VARIANTS_PER_FOLDER:03d}"
        data = _private_folder(root, system)
        name = f"{PREFIX}{index:04d}"
        (data / VARIANTS / name).write_text(perturbed(variants[index % len(variants)], rng, how), encoding="utf-8")
        voices.append(Voice(f"it+{name}", str(root)))
    return voices
