"""Hand-made probability matrices and tiny KenLM models for the decoding and lm_alpha/lm_beta tests."""

import subprocess
from pathlib import Path

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.lm.scorer import build_dictionary, write_scorer
from deepspeech_it.paths import find_tool

ALPHABET = Alphabet.from_file(Path(__file__).resolve().parents[1] / "alphabet" / "it.txt")
BLANK = "_"


def write_arpa(path: Path, unigrams: dict[str, float], bigrams: dict[tuple[str, str], float] = {}) -> Path:
    """A tiny ARPA bigram model: log10 probabilities given by hand, every backoff -0.3."""
    bigrams = dict(bigrams) or {("<s>", "</s>"): -3.0}   # KenLM wants at least one bigram
    lines = ["\\data\\", f"ngram 1={len(unigrams) + 3}", f"ngram 2={len(bigrams)}"]
    lines += ["", "\\1-grams:", "-2.0\t<unk>\t0", "0\t<s>\t-0.3", "-1.0\t</s>\t0"]
    lines += [f"{p}\t{w}\t-0.3" for w, p in unigrams.items()]
    lines += ["", "\\2-grams:"] + [f"{p}\t{a} {b}" for (a, b), p in bigrams.items()]
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def probabilities(frames: list) -> np.ndarray:
    """One frame per item: a character (0.9, the rest spread), or a {character: probability} dict."""
    rows = []
    for frame in frames:
        row = np.full(ALPHABET.size + 1, 1e-4)
        spec = frame if isinstance(frame, dict) else {frame: 0.9}
        for char, p in spec.items():
            row[ALPHABET.blank_index if char == BLANK else ALPHABET.labels.index(char)] = p
        rows.append(row / row.sum())
    return np.array(rows, dtype=np.float32)


def spelled(text: str) -> list:
    """Clean frames for TEXT, a blank after every character."""
    return [f for ch in text for f in (ch, BLANK)]


def write_scorer_package(folder: Path, unigrams: dict[str, float], words, alpha: float, beta: float,
                         bigrams: dict[tuple[str, str], float] = {}) -> Path:
    """A DeepSpeech scorer package: the ARPA model made binary (trie, no vocabulary strings) plus the dictionary."""
    arpa = write_arpa(folder / "package.arpa", unigrams, bigrams)
    binary = folder / "lm.binary"
    subprocess.run([str(find_tool("build_binary")), "-a", "255", "-q", "8", "-v", "trie", str(arpa), str(binary)],
                   check=True, capture_output=True)
    scorer = folder / "kenlm.scorer"
    write_scorer(scorer, binary, build_dictionary(words, ALPHABET), alpha, beta)
    return scorer
