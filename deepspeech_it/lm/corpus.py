"""The language-model corpus: sentences from text files and Common Voice, normalised like the transcripts, with
every dev/test sentence kept out, counted by reason; and the vocabulary of the most frequent words."""

from __future__ import annotations

import bz2
import collections
import csv
import gzip
import io
import lzma
import multiprocessing
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.data.textnorm import Normalizer, Rejected
from deepspeech_it.util.errors import PipelineError, one_line
from deepspeech_it.util.progress import progress_bar

REASON_LEAK = "dev/test sentence"
# Lines handed to a worker at a time: large enough that pickling costs little next to normalising.
BATCH_LINES = 4000
BATCH_BYTES = 256 * 1024
# Below this much input text the corpus is normalised in this process: worker start-up would cost more than it saves.
PARALLEL_MIN_BYTES = 4 << 20


@dataclass(frozen=True)
class Source:
    """A named stream of sentences: NAME appears in the report, BATCHES yields lists of raw lines (blank lines are
    skipped without being counted)."""

    name: str
    batches: Iterable[list[str]]


@dataclass
class CorpusReport:
    lines_in: dict[str, int] = field(default_factory=dict)  # per source
    lines_kept: dict[str, int] = field(default_factory=dict)  # per source
    rejected: collections.Counter = field(default_factory=collections.Counter)  # per reason, leak guard included
    words: int = 0
    distinct_words: int = 0
    seconds: float = 0.0

    @property
    def total_in(self) -> int:
        return sum(self.lines_in.values())

    @property
    def total_kept(self) -> int:
        return sum(self.lines_kept.values())

    @property
    def leaked(self) -> int:
        return self.rejected[REASON_LEAK]

    def as_dict(self) -> dict:
        return {
            "lines_in": self.total_in,
            "lines_out": self.total_kept,
            "rejected": dict(sorted(self.rejected.items())),
            "dev_test_sentences_removed": self.leaked,
            "sources": {name: {"lines_in": self.lines_in[name], "lines_out": self.lines_kept.get(name, 0)}
                        for name in self.lines_in},
            "words": self.words,
            "distinct_words": self.distinct_words,
            "seconds": round(self.seconds, 2),
            "lines_per_second": round(self.total_in / self.seconds) if self.seconds else None,
        }


# ---- reading ----------------------------------------------------------------------------------------------------


def open_text(path: str | Path) -> io.TextIOBase:
    """A text file, plain or compressed (.gz, .xz, .bz2), as UTF-8; undecodable bytes become U+FFFD, which the
    normaliser then rejects with its sentence instead of stopping the run."""
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8", errors="replace", newline=None)


class CorpusError(PipelineError):
    """An LM_SOURCES file that cannot be read as text: not UTF-8, or damaged compression."""


# What the gzip, bzip2 and xz readers raise on a damaged or truncated stream (their OSErrors carry no errno).
_DAMAGE = (EOFError, zlib.error, lzma.LZMAError)
SNIFF_CHARACTERS = 1 << 20


def check_text(path: str | Path) -> None:
    """Raises CorpusError unless the start of PATH (a megabyte of text, decompressed) is UTF-8: a file in another
    encoding is refused before any work, while a stray bad byte further on only costs its sentence (U+FFFD)."""
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}.get(path.suffix, open)
    try:
        with opener(path, "rt", encoding="utf-8", errors="strict", newline=None) as handle:
            handle.read(SNIFF_CHARACTERS)
    except UnicodeDecodeError as problem:
        raise CorpusError(f"LM_SOURCES file {path} is not UTF-8 text (byte {problem.start} of the text: "
                          f"{problem.object[problem.start:problem.start + 1]!r}); convert it, e.g. with "
                          "iconv -f latin1 -t utf-8") from None
    except _DAMAGE + (OSError,) as problem:
        raise _damaged(path, problem) from None


def _damaged(path: Path, problem: Exception) -> CorpusError:
    if isinstance(problem, OSError) and problem.errno is not None:
        return CorpusError(f"LM_SOURCES file {path} cannot be read: {problem.strerror}")
    reason = "truncated" if isinstance(problem, EOFError) else f"damaged ({one_line(problem)})"
    return CorpusError(f"LM_SOURCES file {path} is {reason}: its {path.suffix or 'text'} compression does not "
                       "decode; get it again")


def text_batches(path: str | Path) -> Iterator[list[str]]:
    """The lines of a text file in batches, read by the C line reader: the process that feeds the workers must
    not spend per-line Python time. A damaged compressed stream raises CorpusError."""
    try:
        with open_text(path) as handle:
            while lines := handle.readlines(BATCH_BYTES):
                yield lines
    except _DAMAGE + (OSError,) as problem:
        raise _damaged(Path(path), problem) from None


def batched(lines: Iterable[str], size: int = BATCH_LINES) -> Iterator[list[str]]:
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def csv_transcripts(path: str | Path) -> Iterator[str]:
    """The transcript column of a DeepSpeech CSV."""
    for row in read_rows(path):
        yield row.transcript


def tsv_sentences(path: str | Path) -> Iterator[str]:
    """The sentence column of a Common Voice TSV (validated_sentences.tsv and the clip lists); quotes are text."""
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            sentence = row.get("sentence")
            if sentence:
                yield sentence


# ---- normalising --------------------------------------------------------------------------------------------------


def held_out_sentences(normalizer: Normalizer, sentences: Iterable[str]) -> frozenset[str]:
    """The dev/test sentences as the corpus will spell them, for the leak guard."""
    held_out = set()
    for sentence in sentences:
        try:
            held_out.add(normalizer.normalize(sentence))
        except Rejected:
            pass
    return frozenset(held_out)


class _Batcher:
    """Normalises batches of lines; one instance per worker process (or in this process for small corpora)."""

    instance: "_Batcher | None" = None

    def __init__(self, alphabet: Alphabet, english_compatible: bool, held_out: frozenset[str]):
        self.normalizer = Normalizer(alphabet, english_compatible)
        self.held_out = held_out

    def __call__(self, batch: tuple[str, list[str]]) -> tuple[str, int, list[str], collections.Counter]:
        name, lines = batch
        kept, rejected, lines_in = [], collections.Counter(), 0
        for line in lines:
            line = line.strip()
            if not line:
                continue
            lines_in += 1
            try:
                text = self.normalizer.normalize(line)
            except Rejected as problem:
                rejected[problem.reason] += 1
                continue
            if text in self.held_out:
                rejected[REASON_LEAK] += 1
            else:
                kept.append(text)
        return name, lines_in, kept, rejected


def _start_worker(alphabet: Alphabet, english_compatible: bool, held_out: frozenset[str]) -> None:
    _Batcher.instance = _Batcher(alphabet, english_compatible, held_out)


def _work(batch: tuple[str, list[str]]):
    return _Batcher.instance(batch)


def _batches(sources: Iterable[Source]) -> Iterator[tuple[str, list[str]]]:
    for source in sources:
        for batch in source.batches:
            yield source.name, batch


def prepare_corpus(sources: list[Source], output: str | Path, alphabet: Alphabet, english_compatible: bool,
                   held_out: frozenset[str], jobs: int, show_progress: bool = False
                   ) -> tuple[CorpusReport, collections.Counter]:
    """Normalises every line of SOURCES into OUTPUT (one sentence a line, the order of the sources kept), leaving out
    rejected lines and the HELD_OUT (dev/test) sentences, with JOBS processes (1: in this one; see
    PARALLEL_MIN_BYTES). Returns the report and the word counts."""
    started = time.monotonic()
    report, counts = CorpusReport(), collections.Counter()
    for source in sources:
        report.lines_in.setdefault(source.name, 0)
    bar = progress_bar(None, "LM corpus lines", show_progress)
    bar.start()
    with open(output, "w", encoding="utf-8", newline="\n") as out:
        if jobs > 1:
            context = multiprocessing.get_context("fork")
            with context.Pool(jobs, _start_worker, (alphabet, english_compatible, held_out)) as pool:
                _collect(pool.imap(_work, _batches(sources)), out, report, counts, bar)
        else:
            batcher = _Batcher(alphabet, english_compatible, held_out)
            _collect(map(batcher, _batches(sources)), out, report, counts, bar)
    bar.finish(dirty=True)
    report.words = sum(counts.values())
    report.distinct_words = len(counts)
    report.seconds = time.monotonic() - started
    return report, counts


def _collect(results, out, report: CorpusReport, counts: collections.Counter, bar) -> None:
    for name, lines_in, kept, rejected in results:
        report.lines_in[name] += lines_in
        report.lines_kept[name] = report.lines_kept.get(name, 0) + len(kept)
        report.rejected.update(rejected)
        if kept:
            text = "\n".join(kept)
            out.write(text + "\n")
            counts.update(text.split())
        bar.update(report.total_in)


# ---- vocabulary ---------------------------------------------------------------------------------------------------


def top_words(counts: collections.Counter, k: int) -> list[str]:
    """The K most frequent words, ties broken alphabetically so the choice never depends on reading order."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [word for word, _ in ranked[:k]]


def coverage(counts: collections.Counter, vocabulary: Iterable[str]) -> float:
    """Share of the corpus' running words that the vocabulary contains."""
    total = sum(counts.values())
    return sum(counts[w] for w in vocabulary) / total if total else 0.0
