"""The demo's Italian text: sentences from Debian's fortunes-it and the project's own, split so that dev and test
sentences never appear in train, while every word they use stays in the language model's text."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

from deepspeech_it.data.textnorm import Normalizer, Rejected
from deepspeech_it.demo.synth import project_sentences

FORTUNES_IT = Path("/usr/share/games/fortunes/it")
MIN_WORDS, MAX_WORDS = 4, 12


def fortune_sentences(folder: Path, normalizer: Normalizer) -> list[str]:
    """Normalised sentences of MIN_WORDS..MAX_WORDS words from the fortune files in FOLDER (attributions left out)."""
    found: set[str] = set()
    for path in sorted(folder.iterdir()):
        if path.suffix in (".dat", ".u8") or not path.is_file():
            continue
        for fortune in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            body = " ".join(line for line in fortune.splitlines() if not line.strip().startswith("--"))
            for sentence in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", body)):
                try:
                    text = normalizer.normalize(sentence)
                except Rejected:
                    continue
                if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
                    found.add(text)
    return sorted(found)


def split_demo_sentences(sentences: list[str], train_count: int, held_out_count: int,
                         seed: int) -> dict[str, list[str]]:
    """Train gets TRAIN_COUNT sentences; dev and test get HELD_OUT_COUNT each among the others, chosen so that every
    word they use still occurs in the sentences left for the language model (the decoder's dictionary can spell
    them; the acoustic model has to, as on real data, generalise to new sentences)."""
    rng = random.Random(seed)
    pool = sentences[:]
    rng.shuffle(pool)
    train, rest = pool[:train_count], pool[train_count:]
    sentence_frequency = Counter(word for sentence in pool for word in set(sentence.split()))
    held_out: list[str] = []
    taken: Counter = Counter()
    for sentence in rest:
        words = set(sentence.split())
        if all(sentence_frequency[w] - taken[w] >= 2 for w in words):
            held_out.append(sentence)
            taken.update(words)
            if len(held_out) == 2 * held_out_count:
                break
    if len(held_out) < 2 * held_out_count:
        raise ValueError(f"only {len(held_out)} held-out sentences keep their words in the LM text; "
                         f"{2 * held_out_count} needed")
    return {"train": train, "dev": held_out[:held_out_count], "test": held_out[held_out_count:]}


def demo_text(normalizer: Normalizer, train_count: int, held_out_count: int, seed: int,
              fortunes: Path = FORTUNES_IT) -> tuple[dict[str, list[str]], list[str]]:
    """Sentences per split for the demo's archive, and every sentence for its language model (stage 03 removes the
    dev and test ones itself)."""
    everything = sorted(set(fortune_sentences(fortunes, normalizer)) |
                        {normalizer.normalize(s) for s in project_sentences()})
    return split_demo_sentences(everything, train_count, held_out_count, seed), everything
