"""LM_EVALUATE_RANGE: the (lm_alpha, lm_beta) pairs a grid search tries, parsed once for the configuration and
stage 05."""

from __future__ import annotations

import itertools
import math

import numpy as np

Pair = tuple[float, float]
# The decoder adds alpha * ln P (-1000 for a word outside the model) and beta in float32: weights up to 1000 keep
# every score finite, where an infinite one would turn into NaN and break the ordering of the beam.
MAX_WEIGHT = 1000.0
# Each pair decodes the whole dev set once; more than this would run for weeks (and fill memory when expanded).
MAX_PAIRS = 10000
RANGE_HELP = ("allowed: space-separated alpha,beta pairs, each side a number or start:stop:count "
              "(count evenly spaced values), e.g. '0.5,1.5 0.6,1.4' or '0:2:5,0:3:4'; 0 <= alpha <= 1000, "
              f"-1000 <= beta <= 1000, at most {MAX_PAIRS} pairs")


def parse_evaluate_range(text: str) -> tuple[Pair, ...]:
    """'a,b a1:a2:n,b ...' -> the (alpha, beta) pairs in the order given, ranges expanded to grids, repeats dropped.

    Raises ValueError with a one-line message for anything malformed; empty text is no pair at all.
    """
    pairs: list[Pair] = []
    for item in text.split():
        sides = item.split(",")
        if len(sides) != 2:
            raise ValueError(f"{item!r} is not an alpha,beta pair; {RANGE_HELP}")
        alphas, betas = (_axis(side, item) for side in sides)
        if any(not 0 <= a <= MAX_WEIGHT for a in alphas) or any(abs(b) > MAX_WEIGHT for b in betas):
            raise ValueError(f"{item!r} has a weight out of range; {RANGE_HELP}")
        if len(pairs) + len(alphas) * len(betas) > MAX_PAIRS:
            raise ValueError(f"{text!r} makes more than {MAX_PAIRS} pairs; {RANGE_HELP}")
        pairs.extend(itertools.product(alphas, betas))
    return tuple(dict.fromkeys(pairs))


def _axis(text: str, item: str) -> list[float]:
    parts = text.split(":")
    try:
        if len(parts) == 1:
            values = [float(parts[0])]
        elif len(parts) == 3:
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
            if not 1 <= count <= MAX_PAIRS or (count == 1 and start != stop) or stop < start:
                raise ValueError
            values = [float(v) for v in np.linspace(start, stop, count)] if count > 1 else [start]
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"{text!r} in {item!r} is not a number or start:stop:count; {RANGE_HELP}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{text!r} in {item!r} is not finite; {RANGE_HELP}")
    return [round(v, 10) for v in values]
