"""Stage 03's work: the normalised LM corpus, the vocabulary, the KenLM model and DeepSpeech's scorer package."""

from __future__ import annotations

import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

from deepspeech_it.config import LM_BINARY_FILE, LM_COVERAGE_FIGURE, LM_REPORT_FILE, SCORER_FILE, Config
from deepspeech_it.data.textnorm import Normalizer
from deepspeech_it.lm.corpus import (PARALLEL_MIN_BYTES, Source, batched, coverage, csv_transcripts, held_out_sentences,
                                     prepare_corpus, text_batches, top_words, tsv_sentences)
from deepspeech_it.lm.kenlm_tools import BINARY_OPTIONS, arpa_ngram_counts, build_binary, estimate_arpa, filter_arpa
from deepspeech_it.lm.scorer import ScorerError, build_dictionary, read_scorer, write_scorer
from deepspeech_it.util.atomic import atomic_path, write_json_atomic, write_text_atomic
from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.plots import pyplot, save_figure
from deepspeech_it.util.progress import bars_wanted


class LmBuildError(PipelineError):
    """The language model cannot be built from these inputs."""


@dataclass(frozen=True)
class LmInputs:
    """The files stage 03 reads: what goes into the LM corpus and what must stay out of it."""

    transcripts: list[Path]  # DeepSpeech CSVs whose transcripts join the corpus (every chosen corpus's train)
    texts: list[Path]  # LM_SOURCES: one sentence a line
    cv_sentences: list[Path]  # Common Voice validated_sentences.tsv, when the release has it
    held_out: list[Path]  # every chosen corpus's dev/test CSVs: none of their sentences may enter the corpus

    @property
    def corpus_files(self) -> list[Path]:
        return self.transcripts + self.texts + self.cv_sentences

    def sources(self) -> list[Source]:
        return ([Source(f"transcripts {p.name}", batched(csv_transcripts(p))) for p in self.transcripts]
                + [Source(p.name, text_batches(p)) for p in self.texts]
                + [Source(f"Common Voice {p.name}", batched(tsv_sentences(p))) for p in self.cv_sentences])



def build(config: Config, programs: dict[str, Path], inputs: LmInputs, work: Path) -> dict:
    """Corpus, vocabulary, KenLM model and scorer package in the LM folder, using WORK for intermediate files;
    returns the report it also writes."""
    lm_dir = config.layout.lm
    alphabet = config.alphabet
    timings, memory = {}, {}

    normalizer = Normalizer(alphabet, config.english_compatible)
    held_out = held_out_sentences(normalizer, (s for p in inputs.held_out for s in csv_transcripts(p)))
    input_bytes = sum(p.stat().st_size for p in inputs.corpus_files)
    jobs = len(os.sched_getaffinity(0)) if input_bytes >= PARALLEL_MIN_BYTES else 1
    corpus_path = work / "corpus.txt"
    print(f"stage 03: normalising the LM corpus ({len(inputs.corpus_files)} file(s), {input_bytes / 1e6:.1f} MB) "
          f"with {jobs} process(es); {len(held_out)} dev/test sentences held out")
    corpus, counts = prepare_corpus(inputs.sources(), corpus_path, alphabet, config.english_compatible,
                                    held_out, jobs, bars_wanted(config.progress))
    timings["corpus"] = corpus.seconds
    memory["corpus"] = peak_rss_mb()
    if not counts:
        raise LmBuildError(f"the LM corpus is empty after normalisation (rejected: {dict(corpus.rejected)})")

    clock = time.monotonic()
    vocabulary = top_words(counts, config.lm_top_k)
    vocab_name = f"vocab-{config.lm_top_k}.txt"
    write_text_atomic(lm_dir / vocab_name, "\n".join(vocabulary) + "\n")
    vocab_coverage = coverage(counts, vocabulary)
    plot_coverage(counts, config.lm_top_k, lm_dir / LM_COVERAGE_FIGURE)
    timings["vocabulary"] = time.monotonic() - clock

    print(f"stage 03: lmplz order {config.lm_order}, prune {' '.join(map(str, config.lm_prune))}")
    arpa, filtered = work / "lm.arpa", work / "lm_filtered.arpa"
    lmplz = estimate_arpa(programs["lmplz"], corpus_path, arpa, config.lm_order, config.lm_prune,
                          config.lm_memory, work / "lmplz-")
    corpus_path.unlink()
    runs = {"lmplz": lmplz.run, "filter": filter_arpa(programs["filter"], arpa, lm_dir / vocab_name, filtered)}
    arpa.unlink()
    ngrams = arpa_ngram_counts(filtered)
    with atomic_path(lm_dir / LM_BINARY_FILE) as binary:
        runs["build_binary"] = build_binary(programs["build_binary"], filtered, binary, config.lm_memory,
                                            work / "build_binary-")
    for name, run in runs.items():
        timings[name], memory[name] = run.seconds, run.peak_rss_mb

    clock = time.monotonic()
    dictionary = build_dictionary(vocabulary, alphabet)
    scorer_size = write_scorer(lm_dir / SCORER_FILE, lm_dir / LM_BINARY_FILE, dictionary, config.lm_alpha,
                               config.lm_beta)
    check_scorer(lm_dir / SCORER_FILE, config.lm_order, dictionary.num_states)
    timings["scorer"] = time.monotonic() - clock

    outputs = {"vocabulary": vocab_name, "lm_binary": LM_BINARY_FILE, "scorer": SCORER_FILE, "report": LM_REPORT_FILE,
               "figure": LM_COVERAGE_FIGURE}
    arpa_size = filtered.stat().st_size
    if config.lm_keep_arpa:
        with atomic_path(lm_dir / "lm.arpa") as kept:
            shutil.move(filtered, kept)
        outputs["arpa"] = "lm.arpa"
    else:
        (lm_dir / "lm.arpa").unlink(missing_ok=True)
    report = {
        "corpus": corpus.as_dict(),
        "vocabulary": {"top_k": config.lm_top_k, "size": len(vocabulary), "corpus_coverage": round(vocab_coverage, 5)},
        "kenlm": {"order": config.lm_order, "prune": list(config.lm_prune), "memory": config.lm_memory,
                  "discount_fallback": lmplz.discount_fallback, "ngrams": ngrams,
                  "binary_options": " ".join(BINARY_OPTIONS)},
        "dictionary": {"words": dictionary.words_added, "words_not_spellable": dictionary.words_skipped,
                       "states": dictionary.num_states, "arcs": dictionary.num_arcs},
        "scorer": {"alpha": config.lm_alpha, "beta": config.lm_beta, "english_compatible": config.english_compatible},
        "sizes_bytes": {"arpa_filtered": arpa_size, "lm_binary": (lm_dir / LM_BINARY_FILE).stat().st_size,
                        "scorer": scorer_size},
        "seconds": {name: round(value, 2) for name, value in timings.items()},
        "peak_rss_mb": {name: round(value, 1) for name, value in memory.items()},
        "outputs": outputs,
    }
    write_json_atomic(lm_dir / LM_REPORT_FILE, report)
    return report


def check_scorer(path: Path, order: int, num_states: int) -> None:
    """Reads the package back as the native client does: the KenLM part must load with the expected order and the
    trailer must hold the dictionary just written."""
    import kenlm

    try:
        package = read_scorer(path)
    except ScorerError as problem:
        raise LmBuildError(f"the scorer just written cannot be read back: {problem}") from None
    if len(package.states) != num_states:
        raise LmBuildError(f"{path}: the dictionary read back has {len(package.states)} states, not {num_states}")
    config = kenlm.Config()
    config.load_method = kenlm.LoadMethod.LAZY  # as the native client loads it; a large model is not read in full
    model_order = kenlm.Model(str(path), config).order
    if model_order != order:
        raise LmBuildError(f"{path}: KenLM reports order {model_order}, expected {order}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its finished children (the normalising workers), the larger."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def plot_coverage(counts, top_k: int, path: Path) -> None:
    frequencies = numpy.sort(numpy.fromiter(counts.values(), dtype=numpy.int64, count=len(counts)))[::-1]
    covered = numpy.cumsum(frequencies) / frequencies.sum()
    figure, axes = pyplot().subplots(figsize=(7, 4))
    axes.semilogx(numpy.arange(1, len(covered) + 1), covered * 100)
    if top_k < len(covered):
        axes.axvline(top_k, color="tab:red", linestyle="--", label=f"LM_TOP_K = {top_k}")
        axes.legend(loc="lower right")
    axes.set_xlabel("vocabulary size (most frequent words first)")
    axes.set_ylabel("running words covered (%)")
    axes.set_title("LM corpus: vocabulary coverage")
    axes.grid(True, which="both", alpha=0.3)
    save_figure(figure, path)


def format_report(report: dict) -> str:
    corpus, kenlm, sizes = report["corpus"], report["kenlm"], report["sizes_bytes"]
    rejected = ", ".join(f"{reason}: {count}" for reason, count in corpus["rejected"].items()) or "none"
    ngrams = ", ".join(f"{order}-grams {count}" for order, count in sorted(kenlm["ngrams"].items()))
    lines = [
        f"LM corpus: {corpus['lines_in']} lines in, {corpus['lines_out']} kept; rejected: {rejected}",
        f"  dev/test sentences kept out: {corpus['dev_test_sentences_removed']}",
        f"vocabulary: {report['vocabulary']['size']} words (top {report['vocabulary']['top_k']} of "
        f"{corpus['distinct_words']}), covering {report['vocabulary']['corpus_coverage']:.1%} of the corpus",
        f"KenLM: {ngrams}" + ("  [discount fallback: small corpus]" if kenlm["discount_fallback"] else ""),
        f"dictionary: {report['dictionary']['words']} words, {report['dictionary']['words_not_spellable']} not "
        f"spellable with the alphabet, {report['dictionary']['states']} states",
        f"scorer: {sizes['scorer'] / 1e6:.1f} MB (lm.binary {sizes['lm_binary'] / 1e6:.1f} MB); "
        + ", ".join(f"{name} {seconds:.1f}s" for name, seconds in report["seconds"].items()),
    ]
    return "\n".join(lines)
