"""Stage 03 as the pipeline runs it: corpus, vocabulary, KenLM model, scorer package, report, record."""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy

from . import commonvoice, textnorm
from .atomic import atomic_path, write_json_atomic, write_text_atomic
from .cli import StageError
from .config import Config
from .kenlm_tools import (BINARY_OPTIONS, KenLMError, arpa_ngram_counts, build_binary, estimate_arpa,
                          filter_arpa, kenlm_programs)
from .lm_corpus import (PARALLEL_MIN_BYTES, Source, batched, coverage, csv_transcripts, held_out_sentences,
                        prepare_corpus, text_batches, top_words, tsv_sentences)
from .progress import bars_wanted
from .scorer import ScorerError, build_dictionary, read_scorer, set_default_alpha_beta, write_scorer
from .stage import StageRecord, fingerprint
from .textnorm import Normalizer
from .tools import KENLM_BIN

STAGE = "build_lm"
SCORER_NAME = "kenlm.scorer"
REPORT_NAME = "lm_report.json"
FIGURE_NAME = "lm_vocabulary_coverage.png"
# Parameters that only reach the scorer's header: changing them rewrites 16 bytes, not the model.
HEADER_PARAMS = ("LM_ALPHA", "LM_BETA")
PARAMS = ("LM_ORDER", "LM_PRUNE", "LM_TOP_K", "LM_KEEP_ARPA", "ENGLISH_COMPATIBLE") + HEADER_PARAMS


def build_language_model(config: Config) -> int:
    layout = config.layout
    layout.create()
    lm_dir = layout.lm
    inputs = stage_inputs(config)
    params = {name: config.as_dict()[name] for name in PARAMS}
    params["KENLM"] = _kenlm_version()
    fp = fingerprint(params, inputs.corpus_files + inputs.held_out + [config.alphabet_path, Path(textnorm.__file__)])
    record = StageRecord(lm_dir, STAGE)
    scorer_path = lm_dir / SCORER_NAME
    if record.is_current(fp):
        print(f"stage 03: {scorer_path} is up to date, skipped")
        return 0
    if _only_header_changed(record, fp):
        set_default_alpha_beta(scorer_path, config.lm_alpha, config.lm_beta)
        report = json.loads((lm_dir / REPORT_NAME).read_text(encoding="utf-8"))
        report["scorer"].update(alpha=config.lm_alpha, beta=config.lm_beta)
        write_json_atomic(lm_dir / REPORT_NAME, report)
        previous = record.read()
        record.mark_done(fp, outputs=previous["outputs"], summary=previous["summary"])
        print(f"stage 03: only LM_ALPHA/LM_BETA changed; rewrote the header of {scorer_path}")
        return 0
    try:
        programs = kenlm_programs()
    except KenLMError as problem:
        raise StageError(str(problem)) from None
    record.mark_running(fp)
    work = layout.tmp / "lm"
    shutil.rmtree(work, ignore_errors=True)  # leftovers of an interrupted run
    work.mkdir(parents=True)
    try:
        report = _build(config, programs, inputs, work)
    except KenLMError as problem:
        raise StageError(f"{problem} (logs in {work})") from None
    shutil.rmtree(work, ignore_errors=True)
    outputs = [lm_dir / name for name in report["outputs"].values()]
    record.mark_done(fp, outputs=outputs, summary={key: report[key] for key in ("corpus", "vocabulary", "kenlm")})
    print(format_report(report))
    return 0


@dataclass(frozen=True)
class StageInputs:
    transcripts: list[Path]  # DeepSpeech CSVs whose transcripts join the corpus (train)
    texts: list[Path]  # LM_SOURCES: one sentence a line
    cv_sentences: list[Path]  # Common Voice validated_sentences.tsv, when the release has it
    held_out: list[Path]  # dev/test CSVs: none of their sentences may enter the corpus

    @property
    def corpus_files(self) -> list[Path]:
        return self.transcripts + self.texts + self.cv_sentences

    def sources(self) -> list[Source]:
        return ([Source(f"transcripts {p.name}", batched(csv_transcripts(p))) for p in self.transcripts]
                + [Source(p.name, text_batches(p)) for p in self.texts]
                + [Source(f"Common Voice {p.name}", batched(tsv_sentences(p))) for p in self.cv_sentences])


def stage_inputs(config: Config) -> StageInputs:
    cv_dir = config.layout.cv_dir
    splits = {split: cv_dir / f"{split}.csv" for split in commonvoice.SPLITS}
    missing = [str(path) for path in splits.values() if not path.is_file()]
    if missing:
        raise StageError(f"{', '.join(missing)} missing; run stage 02 (make import-cv) first")
    sentences = validated_sentences_file(config)
    return StageInputs(transcripts=[splits["train"], *config.train_files], texts=list(config.lm_sources),
                       cv_sentences=[sentences] if sentences else [],
                       held_out=[splits["dev"], splits["test"], *config.dev_files, *config.test_files])


def validated_sentences_file(config: Config) -> Path | None:
    corpus_dir = commonvoice.find_corpus_dir(config.layout.extracted, config.model_language)
    if corpus_dir is None or not (corpus_dir / "validated_sentences.tsv").is_file():
        return None
    return corpus_dir / "validated_sentences.tsv"


def _kenlm_version() -> str:
    stamp = KENLM_BIN / ".kenlm-version"
    return stamp.read_text().strip() if stamp.is_file() else "from PATH"


def _only_header_changed(record: StageRecord, fp: dict) -> bool:
    previous = record.read()
    if not previous or previous.get("status") != "done" or not all(Path(p).exists() for p in previous["outputs"]):
        return False
    old = previous["fingerprint"]
    return old["inputs"] == fp["inputs"] and _model_params(old["params"]) == _model_params(fp["params"])


def _model_params(params: dict) -> dict:
    return {name: value for name, value in params.items() if name not in HEADER_PARAMS}


def _build(config: Config, programs: dict[str, Path], inputs: StageInputs, work: Path) -> dict:
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
    memory["corpus"] = _peak_rss_mb()
    if not counts:
        raise StageError(f"the LM corpus is empty after normalisation (rejected: {dict(corpus.rejected)})")

    clock = time.monotonic()
    vocabulary = top_words(counts, config.lm_top_k)
    vocab_name = f"vocab-{config.lm_top_k}.txt"
    write_text_atomic(lm_dir / vocab_name, "\n".join(vocabulary) + "\n")
    vocab_coverage = coverage(counts, vocabulary)
    _plot_coverage(counts, config.lm_top_k, lm_dir / FIGURE_NAME)
    timings["vocabulary"] = time.monotonic() - clock

    print(f"stage 03: lmplz order {config.lm_order}, prune {' '.join(map(str, config.lm_prune))}")
    arpa, filtered = work / "lm.arpa", work / "lm_filtered.arpa"
    lmplz = estimate_arpa(programs["lmplz"], corpus_path, arpa, config.lm_order, config.lm_prune,
                          config.lm_memory, work / "lmplz-")
    corpus_path.unlink()
    runs = {"lmplz": lmplz.run, "filter": filter_arpa(programs["filter"], arpa, lm_dir / vocab_name, filtered)}
    arpa.unlink()
    ngrams = arpa_ngram_counts(filtered)
    with atomic_path(lm_dir / "lm.binary") as binary:
        runs["build_binary"] = build_binary(programs["build_binary"], filtered, binary, config.lm_memory,
                                            work / "build_binary-")
    for name, run in runs.items():
        timings[name], memory[name] = run.seconds, run.peak_rss_mb

    clock = time.monotonic()
    dictionary = build_dictionary(vocabulary, alphabet)
    scorer_size = write_scorer(lm_dir / SCORER_NAME, lm_dir / "lm.binary", dictionary, config.lm_alpha,
                               config.lm_beta)
    check_scorer(lm_dir / SCORER_NAME, config.lm_order, dictionary.num_states)
    timings["scorer"] = time.monotonic() - clock

    outputs = {"vocabulary": vocab_name, "lm_binary": "lm.binary", "scorer": SCORER_NAME, "report": REPORT_NAME,
               "figure": FIGURE_NAME}
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
        "sizes_bytes": {"arpa_filtered": arpa_size, "lm_binary": (lm_dir / "lm.binary").stat().st_size,
                        "scorer": scorer_size},
        "seconds": {name: round(value, 2) for name, value in timings.items()},
        "peak_rss_mb": {name: round(value, 1) for name, value in memory.items()},
        "outputs": outputs,
    }
    write_json_atomic(lm_dir / REPORT_NAME, report)
    return report


def check_scorer(path: Path, order: int, num_states: int) -> None:
    """Reads the package back as the native client does: the KenLM part must load with the expected order and the
    trailer must hold the dictionary just written."""
    import kenlm

    try:
        package = read_scorer(path)
    except ScorerError as problem:
        raise StageError(f"{path} cannot be read back: {problem}") from None
    if len(package.states) != num_states:
        raise StageError(f"{path}: the dictionary read back has {len(package.states)} states, not {num_states}")
    config = kenlm.Config()
    config.load_method = kenlm.LoadMethod.LAZY  # as the native client loads it; a large model is not read in full
    model_order = kenlm.Model(str(path), config).order
    if model_order != order:
        raise StageError(f"{path}: KenLM reports order {model_order}, expected {order}")


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and of its finished children (the normalising workers), the larger."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _plot_coverage(counts, top_k: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    frequencies = numpy.sort(numpy.fromiter(counts.values(), dtype=numpy.int64, count=len(counts)))[::-1]
    covered = numpy.cumsum(frequencies) / frequencies.sum()
    figure, axes = pyplot.subplots(figsize=(7, 4))
    axes.semilogx(numpy.arange(1, len(covered) + 1), covered * 100)
    if top_k < len(covered):
        axes.axvline(top_k, color="tab:red", linestyle="--", label=f"LM_TOP_K = {top_k}")
        axes.legend(loc="lower right")
    axes.set_xlabel("vocabulary size (most frequent words first)")
    axes.set_ylabel("running words covered (%)")
    axes.set_title("LM corpus: vocabulary coverage")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    with atomic_path(path) as temp:
        figure.savefig(temp, format="png", dpi=100)
    pyplot.close(figure)


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
