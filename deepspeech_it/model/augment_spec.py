"""AUGMENT: DeepSpeech 0.9.3's ``--augment`` specifications, parsed and checked before any work.

A specification is ``name`` or ``name[key=value,...]``; several are separated by spaces (spaces inside the brackets
are allowed, as DeepSpeech strips them). Every parameter but ``p``, ``source``, ``domain`` and ``max_time`` is a
range: ``v``, ``v~r``, ``a:b`` or ``a:b~r``. At training progress ``clock`` (0 at the start, 1 at the end of EPOCHS)
the value is drawn uniformly from ``start + clock * (end - start) ± r``, rounded for whole-number parameters.

The catalogue, defaults and domains follow mozilla/DeepSpeech v0.9.3,
training/deepspeech_training/util/augmentations.py and util/helpers.py (MPL-2.0); see NOTICE.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

SPEC = re.compile(r"(?P<name>[a-z_]+)(\[(?P<params>[^\[\]]*)\])?")
DOMAINS = ("signal", "spectrogram", "features")
SAMPLE = "sample"           # the waveform in numpy, before any TensorFlow op


@dataclass(frozen=True)
class ValueRange:
    start: float
    end: float
    r: float
    whole: bool = False      # a whole-number parameter: picked values are rounded

    def centre(self, clock: float) -> float:
        return self.start + min(1.0, max(0.0, clock)) * (self.end - self.start)


@dataclass(frozen=True)
class Param:
    default: str
    kind: str                # "int", "float" (both ranges), "number" (a plain float), "text"


@dataclass(frozen=True)
class Kind:
    params: dict
    domain: str | None       # fixed domain; None: chosen by the ``domain`` parameter
    aliases: dict | None = None


_P = Param("1.0", "number")
CATALOGUE: dict[str, Kind] = {
    "overlay": Kind({"p": _P, "source": Param("", "text"), "snr": Param("3.0", "float"),
                     "layers": Param("1", "int")}, SAMPLE),
    "reverb": Kind({"p": _P, "delay": Param("20.0", "float"), "decay": Param("10.0", "float")}, SAMPLE),
    "resample": Kind({"p": _P, "rate": Param("8000", "int")}, SAMPLE),
    "codec": Kind({"p": _P, "bitrate": Param("3200", "int")}, SAMPLE),
    "volume": Kind({"p": _P, "dbfs": Param("3.0103", "float")}, SAMPLE),
    "pitch": Kind({"p": _P, "pitch": Param("1.075~0.125", "float")}, "spectrogram"),
    "tempo": Kind({"p": _P, "factor": Param("1.1", "float"), "max_time": Param("-1", "number")}, "spectrogram"),
    # Coqui STT renamed warp's parameters; both spellings are accepted so either project's flags paste.
    "warp": Kind({"p": _P, "nt": Param("1", "int"), "nf": Param("1", "int"), "wt": Param("0.1", "float"),
                  "wf": Param("0.0", "float")}, "spectrogram",
                 {"num_t": "nt", "num_f": "nf", "warp_t": "wt", "warp_f": "wf"}),
    "frequency_mask": Kind({"p": _P, "n": Param("3", "int"), "size": Param("2", "int")}, "spectrogram"),
    "time_mask": Kind({"p": _P, "domain": Param("spectrogram", "text"), "n": Param("3", "int"),
                       "size": Param("10.0", "float")}, None),
    "dropout": Kind({"p": _P, "domain": Param("spectrogram", "text"), "rate": Param("0.05", "float")}, None),
    "add": Kind({"p": _P, "domain": Param("features", "text"), "stddev": Param("5", "float")}, None),
    "multiply": Kind({"p": _P, "domain": Param("features", "text"), "stddev": Param("5", "float")}, None),
}
# Values that would make an augmentation meaningless or crash deep inside the input pipeline.
POSITIVE = {("reverb", "delay"), ("resample", "rate"), ("codec", "bitrate"), ("tempo", "factor"),
            ("pitch", "pitch"), ("overlay", "layers")}
NON_NEGATIVE = {("frequency_mask", "n"), ("frequency_mask", "size"), ("time_mask", "n"), ("time_mask", "size"),
                ("warp", "nt"), ("warp", "nf"), ("add", "stddev"), ("multiply", "stddev"), ("reverb", "decay")}


@dataclass(frozen=True)
class Augmentation:
    name: str
    p: float
    domain: str
    values: dict             # parameter -> ValueRange, or a plain value for number/text parameters
    text: str                # the specification as written

    def __getitem__(self, key):
        return self.values[key]


def parse_range(text: str, whole: bool) -> ValueRange:
    """``v``, ``v~r``, ``a:b`` or ``a:b~r`` -> ValueRange (ValueError when the text is none of them)."""
    convert = int if whole else float
    body, *radius = text.split("~")
    bounds = body.split(":")
    if len(radius) > 1 or len(bounds) > 2:
        raise ValueError
    start, end = bounds[0], bounds[-1]
    radius = radius[0] if radius else "0"
    return ValueRange(convert(start), convert(end), convert(radius), whole)


def _value(name: str, key: str, text: str, param: Param):
    kinds = {"int": "a whole number or range such as 2, 1:3 or 2~1",
             "float": "a number or range such as 0.5, 0.2:0.8 or 1.1~0.1", "number": "a number", "text": "text"}
    try:
        if param.kind in ("int", "float"):
            value = parse_range(text, param.kind == "int")
            low, numbers = min(value.start, value.end) - abs(value.r), (value.start, value.end, value.r)
        elif param.kind == "number":
            value = low = float(text)
            numbers = (value,)
        else:
            value, low, numbers = text, None, ()
        finite = all(math.isfinite(n) for n in numbers)
    except ValueError:
        finite = False
    if not finite:
        raise ValueError(f"{name} parameter {key}={text!r}: allowed: {kinds[param.kind]}")
    if (name, key) in POSITIVE and low is not None and low <= 0:
        raise ValueError(f"{name} parameter {key}={text!r}: allowed: values > 0")
    if (name, key) in NON_NEGATIVE and low is not None and low < 0:
        raise ValueError(f"{name} parameter {key}={text!r}: allowed: values >= 0")
    return value


def parse_spec(text: str) -> Augmentation:
    """One specification such as ``reverb[delay=20:40,decay=10]`` -> Augmentation (ValueError saying what is
    allowed)."""
    match = SPEC.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r}: allowed: name or name[key=value,...] with one of {', '.join(CATALOGUE)}")
    name = match.group("name")
    kind = CATALOGUE.get(name)
    if kind is None:
        raise ValueError(f"{text!r}: unknown augmentation {name!r}; allowed: {', '.join(CATALOGUE)}")
    given: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (match.group("params") or "").split(","))):
        key, equals, value = (part.strip() for part in item.partition("="))
        key = (kind.aliases or {}).get(key, key)
        if not equals or not value or "=" in value:
            raise ValueError(f"{text!r}: {item!r} is not key=value")
        if key not in kind.params:
            raise ValueError(f"{text!r}: {name} has no parameter {key!r}; allowed: {', '.join(kind.params)}")
        given[key] = value
    try:
        values = {key: _value(name, key, given.get(key, param.default), param) for key, param in kind.params.items()}
    except ValueError as problem:
        raise ValueError(f"{text!r}: {problem}") from None
    p = values.pop("p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{text!r}: p={p:g}: allowed: a probability from 0 to 1")
    domain = kind.domain or values.pop("domain")
    if kind.domain is None and domain not in DOMAINS:
        raise ValueError(f"{text!r}: domain={domain!r}: allowed: {', '.join(DOMAINS)}")
    if name == "overlay":
        _check_source(text, values["source"])
        # Absolute, so that the clips are found whatever folder the training runs in.
        values["source"] = str(Path(values["source"]).expanduser().absolute())
    return Augmentation(name, p, domain, values, text)


def _check_source(text: str, source: str) -> None:
    if not source:
        raise ValueError(f"{text!r}: overlay needs source=<CSV file or folder of clips>")
    path = Path(source).expanduser()
    if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv")):
        raise ValueError(f"{text!r}: source {source!r}: allowed: an existing CSV file or folder of audio clips")


def split_specs(text: str) -> list[str]:
    """Splits on spaces outside brackets, so ``reverb[delay=20, decay=10]`` stays one specification."""
    specs, depth, current = [], 0, []
    for char in text:
        depth += (char == "[") - (char == "]")
        if char.isspace() and depth == 0:
            if current:
                specs.append("".join(current))
            current = []
        else:
            current.append(char)
    if current:
        specs.append("".join(current))
    return specs


def parse_augment(text: str) -> tuple[Augmentation, ...]:
    """The AUGMENT variable: specifications in the order given (each domain keeps it)."""
    return tuple(parse_spec(spec) for spec in split_specs(text))
