#!/usr/bin/env python3
"""LM corpus preparation (read + normalise + count, all cores) against lmplz on the same corpus, in the same run,
each in its own process so that its peak memory is its own. Goal: preparation is not the slower of the two."""

from __future__ import annotations

import itertools
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.demo.synth import project_sentences
from deepspeech_it.lm.corpus import Source, prepare_corpus, text_batches
from deepspeech_it.lm.kenlm_tools import estimate_arpa, kenlm_programs, run_tool
from deepspeech_it.paths import ALPHABET_DIR

LINES = 200_000
ROUNDS = 2  # the machine may be shared: each side keeps its best of ROUNDS runs, taken in turns
# lmplz as stage 03 runs it by default (LM_ORDER, LM_PRUNE, LM_MEMORY); the memory bound changes its speed, since
# lmplz sizes its buffers from it.
ORDER, PRUNE, MEMORY = 5, (0, 0, 1), "50%"


def raw_corpus(path: Path, lines: int, seed: int = 4568) -> None:
    """Italian-looking raw text the way web and book corpora have it: capitals, punctuation, numbers, typographic
    and old-style apostrophe accents, and a long-tailed vocabulary (the project's sentences plus made-up words with
    Zipf-like frequencies), so that lmplz sees a realistic number of distinct n-grams."""
    rng = random.Random(seed)
    sentences = project_sentences()
    words = sorted({w.strip(".,;:!?«»\"").lower() for s in sentences for w in s.split()} - {""})
    syllables = ["ca", "re", "to", "mi", "la", "pa", "ne", "so", "di", "ri", "vo", "ta", "le", "men", "te", "gio",
                 "chia", "sti", "zio", "ro", "bu", "fe", "gna", "po"]
    invented = ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 5))) for _ in range(60_000)]
    lexicon = words + invented
    cumulative = list(itertools.accumulate(1 / (rank + 1) ** 1.05 for rank in range(len(lexicon))))
    decorations = ["{}.", "{}!", "«{}»", "{}?", "{} (2020).", "{}: perche' e' cosi'", "{}, l’anno scorso.", "{}"]
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(lines):
            if rng.random() < 0.3:
                text = rng.choice(sentences)
            else:
                text = " ".join(rng.choices(lexicon, cum_weights=cumulative, k=rng.randint(5, 18)))
            out.write(rng.choice(decorations).format(text[0].upper() + text[1:]) + "\n")


def prepare_in_child(raw: Path, corpus: Path, jobs: int) -> None:
    """The child process's work: the stage's corpus preparation with JOBS processes; prints its report."""
    cpu_started = time.process_time()
    report, counts = prepare_corpus([Source(raw.name, text_batches(raw))], corpus,
                                    Alphabet.from_file(ALPHABET_DIR / "it.txt"), False, frozenset(), jobs)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu_started + children.ru_utime + children.ru_stime
    print(json.dumps({"lines": report.total_in, "kept": report.total_kept, "distinct_words": len(counts),
                      "seconds": report.seconds, "cpu_seconds": cpu}))


def run(lines: int = LINES) -> dict:
    jobs = len(os.sched_getaffinity(0))
    lmplz = kenlm_programs()["lmplz"]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        raw, corpus = work / "raw.txt", work / "corpus.txt"
        raw_corpus(raw, lines)
        prepared, lmplz_runs = [], []
        for _ in range(ROUNDS):
            child = run_tool([sys.executable, __file__, "--prepare", raw, corpus, str(jobs)], work / "prepare.log")
            figures = json.loads((work / "prepare.log").read_text().strip().splitlines()[-1])
            prepared.append(dict(figures, peak_rss_mb=child.peak_rss_mb))
            lmplz_runs.append(estimate_arpa(lmplz, corpus, work / "lm.arpa", ORDER, PRUNE, MEMORY, work / "t-").run)
        raw_mb = raw.stat().st_size / 1e6
    figures = min(prepared, key=lambda f: f["seconds"])
    estimated = min(lmplz_runs, key=lambda r: r.seconds)
    # The child's own timing leaves out interpreter start-up, which lmplz (a native program) hardly has.
    prepare_rate = figures["lines"] / figures["seconds"]
    lmplz_rate = figures["kept"] / estimated.seconds
    ratio = prepare_rate / lmplz_rate
    cpu_ratio = (figures["lines"] / figures["cpu_seconds"]) / (figures["kept"] / estimated.cpu_seconds)
    return {
        "name": "LM corpus (stage 03): preparation against lmplz",
        "rows": [
            ("corpus", f"{figures['lines']} lines, {raw_mb:.0f} MB, {figures['distinct_words']} distinct words"),
            ("preparation (read + normalise + count)", f"{prepare_rate:,.0f} lines/s with {jobs} processes, "
                                                        f"peak {figures['peak_rss_mb']:.0f} MB (all processes)"),
            (f"lmplz order {ORDER}, prune {' '.join(map(str, PRUNE))}, memory {MEMORY}",
             f"{lmplz_rate:,.0f} lines/s, peak {estimated.peak_rss_mb:.0f} MB"),
            ("ratio preparation / lmplz (wall clock)", f"{ratio:.2f}x"),
            ("ratio per CPU-second (independent of other load)", f"{cpu_ratio:.2f}x"),
        ],
        "goal": "preparation at least as fast as lmplz (ratio >= 1)",
        "met": ratio >= 1.0,
        "prepare_lines_per_second": prepare_rate,
        "lmplz_lines_per_second": lmplz_rate,
        "prepare_peak_rss_mb": figures["peak_rss_mb"],
        "lmplz_peak_rss_mb": estimated.peak_rss_mb,
    }


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--prepare":
        prepare_in_child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        from run_all import print_result

        print_result(run())
