#!/usr/bin/env python3
"""Decoding speed of stage 05's beam search with the scorer: utterances per second and real-time factor per core at
BEAM_WIDTH=500, on one thread and on every core, beside greedy decoding and a narrower beam, in the same run.

Data: the demo's cached dev outputs and scorer when DATA_DIR holds them (after `make demo`: tmp/acoustic_dev_*.npz
and lm/kenlm.scorer); otherwise the project's Italian sentences as noisy hand-made probability matrices (2-4 frames a
character, the right one at 0.25-0.7, the rest spread unevenly over the other labels) and a scorer of their words
padded with pseudo-words to a realistic dictionary size. Goal: a real-time factor per core below 0.25 at beam width
500 with the scorer.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from deepspeech_it.config import load_config
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.textnorm import Normalizer, Rejected
from deepspeech_it.decode.ctc import FRAME_SECONDS, DecoderPool, ScorerDecoder, ScorerSpec, default_jobs, scorer_spec
from deepspeech_it.demo.synth import project_sentences
from deepspeech_it.evaluate.alpha_beta import error_rates
from deepspeech_it.lm.scorer import build_dictionary, write_scorer
from deepspeech_it.paths import find_tool

ALPHABET = Alphabet.from_file(Path(__file__).resolve().parents[1] / "alphabet" / "it.txt")
BEAM_WIDTH = 500
DICTIONARY_WORDS = 100_000
GOAL_RTF_PER_CORE = 0.25


def noisy_probabilities(text: str, rng: np.random.Generator) -> np.ndarray:
    rows = []
    for char in text:
        for _ in range(int(rng.integers(2, 5))):
            row = rng.dirichlet(np.full(ALPHABET.size + 1, 0.3)) * 0.6
            row[ALPHABET.labels.index(char)] += rng.uniform(0.25, 0.7)
            rows.append(row / row.sum())
        for _ in range(int(rng.integers(1, 3))):
            row = rng.dirichlet(np.full(ALPHABET.size + 1, 0.3)) * 0.2
            row[ALPHABET.blank_index] += 0.8
            rows.append(row / row.sum())
    return np.array(rows, dtype=np.float32)


def normalized_sentences() -> list[str]:
    normalizer, out = Normalizer(ALPHABET), []
    for sentence in project_sentences():
        try:
            out.append(normalizer.normalize(sentence))
        except Rejected:
            continue
    return out


def synthetic_data(folder: Path) -> tuple[ScorerSpec, list[np.ndarray], list[str], str]:
    rng = np.random.default_rng(11)
    sentences = normalized_sentences()
    words = sorted({w for s in sentences for w in s.split()})
    letters = list("abcdefghilmnoprstuvz")
    pseudo = {"".join(rng.choice(letters, int(rng.integers(3, 11)))) for _ in range(DICTIONARY_WORDS)}
    vocabulary = sorted(set(words) | pseudo)[:DICTIONARY_WORDS]
    # A bigram model of the sentences: counts, add-one unigrams, backoff -0.5.
    unigram_counts = {w: 1 for w in vocabulary}
    bigram_counts: dict[tuple[str, str], int] = {}
    for sentence in sentences:
        tokens = ["<s>", *sentence.split(), "</s>"]
        for a, b in zip(tokens, tokens[1:]):
            bigram_counts[(a, b)] = bigram_counts.get((a, b), 0) + 1
            if b in unigram_counts:
                unigram_counts[b] += 20
    total = sum(unigram_counts.values())
    lines = ["\\data\\", f"ngram 1={len(unigram_counts) + 3}", f"ngram 2={len(bigram_counts)}", "", "\\1-grams:",
             "-7\t<unk>\t0", "0\t<s>\t-0.5", f"{np.log10(len(sentences) / total):.4f}\t</s>\t0"]
    lines += [f"{np.log10(c / total):.4f}\t{w}\t-0.5" for w, c in unigram_counts.items()]
    lines += ["", "\\2-grams:"]
    firsts: dict[str, int] = {}
    for (a, _), c in bigram_counts.items():
        firsts[a] = firsts.get(a, 0) + c
    lines += [f"{np.log10(0.8 * c / firsts[a]):.4f}\t{a} {b}" for (a, b), c in bigram_counts.items()]
    lines += ["", "\\end\\", ""]
    arpa, binary, scorer = folder / "lm.arpa", folder / "lm.binary", folder / "kenlm.scorer"
    arpa.write_text("\n".join(lines))
    subprocess.run([str(find_tool("build_binary")), "-a", "255", "-q", "8", "-v", "trie", str(arpa), str(binary)],
                   check=True, capture_output=True)
    write_scorer(scorer, binary, build_dictionary(vocabulary, ALPHABET), 0.93, 1.18)
    utterances = [noisy_probabilities(s, rng) for s in sentences[:40]]
    return scorer_spec(scorer, ALPHABET, BEAM_WIDTH), utterances, sentences[:40], (
        f"synthetic: {len(utterances)} noisy utterances of the project's sentences, dictionary of "
        f"{len(vocabulary)} words")


def demo_data(data_dir: Path) -> tuple[ScorerSpec, list[np.ndarray], list[str], str] | None:
    scorer = data_dir / "lm" / "kenlm.scorer"
    caches = sorted((data_dir / "tmp").glob("acoustic_dev_*.npz"))
    if not scorer.is_file() or not caches:
        return None
    utterances, references = [], []
    for cache in caches:
        with np.load(cache) as data:
            offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
            utterances += [data["probabilities"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
            references += [str(t) for t in data["transcripts"]]
    spec = scorer_spec(scorer, ALPHABET, BEAM_WIDTH)
    return spec, utterances, references, f"the demo's dev set: {len(utterances)} utterances, {len(spec.words)} dictionary words"


def timed(pool: DecoderPool, alpha, beta) -> tuple[float, list[str]]:
    started = time.perf_counter()
    texts = [t.text for t in pool.decode(alpha, beta)]
    return time.perf_counter() - started, texts


def run() -> dict:
    data_dir = load_config().data_dir
    with tempfile.TemporaryDirectory() as temp:
        spec, utterances, references, source = demo_data(data_dir) or synthetic_data(Path(temp))
        audio_seconds = sum(len(u) for u in utterances) * FRAME_SECONDS
        started = time.perf_counter()
        ScorerDecoder(spec)
        build_seconds = time.perf_counter() - started
        jobs = default_jobs()
        with DecoderPool(spec, utterances, jobs=1, progress=False) as pool:
            one_core, scored = timed(pool, 0.93, 1.18)
            greedy, greedy_texts = timed(pool, None, None)
        with DecoderPool(ScorerSpec(spec.alphabet, spec.lm_path, spec.words, 100), utterances, jobs=1,
                         progress=False) as pool:
            narrow, _ = timed(pool, 0.93, 1.18)
        with DecoderPool(spec, utterances, jobs=jobs, progress=False) as pool:
            all_cores, parallel = timed(pool, 0.93, 1.18)
    n = len(utterances)
    rtf_per_core = one_core / audio_seconds
    wer, cer = error_rates(references, scored)
    greedy_wer, greedy_cer = error_rates(references, greedy_texts)
    return {
        "name": "Decoding (stage 05): CTC beam search with the scorer",
        "rows": [
            ("data", source),
            ("audio decoded", f"{audio_seconds:.1f} s in {n} utterances"),
            ("decoder start (dictionary trie + KenLM)", f"{build_seconds:.2f} s"),
            (f"beam {BEAM_WIDTH} + scorer, 1 thread", f"{n / one_core:.1f} utt/s, RTF per core {rtf_per_core:.4f}"),
            (f"beam {BEAM_WIDTH} + scorer, {jobs} threads",
             f"{n / all_cores:.1f} utt/s, RTF {all_cores / audio_seconds:.4f} "
             f"(speed-up {one_core / all_cores:.2f}x over 1 thread)"),
            ("beam 100 + scorer, 1 thread", f"{n / narrow:.1f} utt/s, RTF per core {narrow / audio_seconds:.4f}"),
            ("greedy, no scorer, 1 thread", f"{n / greedy:.1f} utt/s, RTF per core {greedy / audio_seconds:.5f}"),
            ("WER / CER with the scorer (alpha 0.93, beta 1.18)", f"{wer:.3f} / {cer:.3f}"),
            ("WER / CER greedy", f"{greedy_wer:.3f} / {greedy_cer:.3f}"),
            ("1 and all threads give the same transcripts", str(scored == parallel)),
        ],
        "goal": f"RTF per core < {GOAL_RTF_PER_CORE} at beam {BEAM_WIDTH} with the scorer",
        "met": rtf_per_core < GOAL_RTF_PER_CORE and scored == parallel,
        "utterances_per_second": n / one_core,
        "rtf_per_core": rtf_per_core,
    }


if __name__ == "__main__":
    from run_all import print_result

    print_result(run())
