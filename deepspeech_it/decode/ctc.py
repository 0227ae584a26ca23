"""CTC decoding of the acoustic model's per-frame probabilities: greedy, and beam search with the scorer.

The beam search is the project's own C++ core (``ctc_beam_search.cc`` beside this module, built with KenLM by
``scripts/build_kenlm.sh``) loaded through ctypes. It follows DeepSpeech 0.9.3's ``ctc_beam_search_decoder`` rule
for rule and in the same floating-point arithmetic, so that a model decoded here and by the native clients gives
the same transcript (tests/test_decoder_matches_deepspeech.py compares the two on the same probabilities):

* characters of the alphabet, CTC blank last, the best ``cutoff_top_n`` (40) characters tried per frame;
* words restricted to the scorer's dictionary: a beam can only spell prefixes of dictionary words, and a space can
  only follow a complete one;
* a word is scored when its closing space is emitted: ``alpha * ln P(word | history) + beta``, the KenLM log10
  probability converted to a natural logarithm as DeepSpeech's ``Scorer::get_log_cond_prob`` does, -1000 for a
  word outside the KenLM vocabulary, no end-of-sentence probability;
* the last word of an utterance (not followed by a space) is scored at the end, and the best prefix wins.

The search is pure C++ with the interpreter lock released, so the utterances of a set decode on threads.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.framing import FRAME_SECONDS
from deepspeech_it.lm.scorer import SPECIAL_TOKENS
from deepspeech_it.paths import DECODER_LIBRARY
from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.progress import progress_iter

CUTOFF_TOP_N = 40                 # native client: cutoff_top_n = 40, cutoff_prob = 1.0 (deepspeech.cc)


class DecodingError(PipelineError, ValueError):
    pass


class InvalidProbabilities(DecodingError):
    """The acoustic model's outputs are not probabilities (NaN, infinite or negative: a diverged model). The C++
    search would hand them to std::sort, whose order NaN breaks, so they are refused before it runs."""


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float       # seconds from the start of the audio: first character of the word
    duration: float    # up to the space after it (or one frame past its last character), as the native client


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float  # the transcript's log score: acoustic, plus alpha/beta terms with the scorer (DeepSpeech's)
    words: tuple[WordTiming, ...]

    def as_dict(self) -> dict:
        return {"transcript": self.text, "confidence": self.confidence,
                "words": [{"word": w.word, "start_time": round(w.start, 4), "duration": round(w.duration, 4)}
                          for w in self.words]}


def characters_to_transcript(alphabet: Alphabet, emitted: Sequence[tuple[int, int]], confidence: float,
                             frame_seconds: float = FRAME_SECONDS) -> Transcript:
    """(label index, frame) of each emitted character -> text and per-word times (client.cc WordsFromMetadata)."""
    words: list[WordTiming] = []
    current, start = "", 0
    for label, frame in emitted:
        char = alphabet.labels[label]
        if char == " ":
            if current:
                words.append(WordTiming(current, start * frame_seconds, (frame - start) * frame_seconds))
            current = ""
            continue
        if not current:
            start = frame
        current += char
        last = frame
    if current:
        words.append(WordTiming(current, start * frame_seconds, (last + 1 - start) * frame_seconds))
    return Transcript(" ".join(w.word for w in words), float(confidence), tuple(words))


def collapse_ctc(tokens: Sequence[int], blank: int) -> list[tuple[int, int]]:
    """Per-frame tokens -> (label, frame) where a character is emitted: blanks dropped, repeats merged."""
    emitted, previous = [], blank
    for frame, token in enumerate(tokens):
        if token != blank and token != previous:
            emitted.append((int(token), frame))
        previous = token
    return emitted


def greedy_decode(probs: np.ndarray, alphabet: Alphabet, frame_seconds: float = FRAME_SECONDS) -> Transcript:
    """Best class per frame, repeats merged, blanks removed; no language model, no dictionary."""
    check_probabilities(probs, alphabet)
    if len(probs) == 0:
        return Transcript("", 0.0, ())
    best = probs.argmax(axis=1)
    with np.errstate(divide="ignore"):
        confidence = float(np.log(probs[np.arange(len(probs)), best]).sum())
    return characters_to_transcript(alphabet, collapse_ctc(best, alphabet.blank_index), confidence, frame_seconds)


def check_probabilities(probs: np.ndarray, alphabet: Alphabet) -> None:
    """Raises DecodingError unless PROBS is frames x (alphabet + blank) of finite, non-negative values."""
    if probs.ndim != 2 or probs.shape[1] != alphabet.size + 1:
        raise DecodingError(f"probabilities of shape {probs.shape} do not fit an alphabet of {alphabet.size} labels "
                            f"plus the blank")
    # In float32, what the search computes with: a finite float64 may overflow to infinity in the conversion.
    with np.errstate(over="ignore", invalid="ignore"):
        valid = np.isfinite(probs.astype(np.float32, copy=False)) & (probs >= 0)      # NaN fails both tests
    if not valid.all():
        frame, label = (int(i[0]) for i in np.nonzero(~valid))
        value = float(probs[frame, label])
        raise InvalidProbabilities(
            f"the acoustic model gave the probability {value:g} (frame {frame}, label {label}; "
            f"{int((~valid).sum())} value(s) NaN, infinite or negative in all): the model has diverged; train it "
            "again or use an earlier checkpoint")


# ---------------------------------------------------------------------------------------------------------------
# beam search with the scorer

@dataclass(frozen=True)
class ScorerSpec:
    """Everything a decoder needs: the language model, the dictionary and the width of the search.

    ``lm_path`` is the scorer file itself (KenLM reads its binary part and ignores the trailing dictionary) or, in
    tests, any file KenLM loads; ``words`` the scorer's dictionary.
    """

    alphabet: Alphabet
    lm_path: Path
    words: tuple[str, ...]
    beam_width: int = 500
    cutoff_top_n: int = CUTOFF_TOP_N


def scorer_spec(scorer_path: str | Path, alphabet: Alphabet, beam_width: int, info=None) -> ScorerSpec:
    """The spec of a DeepSpeech scorer package (KenLM binary + dictionary FST); it is the only file read.
    INFO: the package as ``scorer.read_scorer`` returns it, when the caller has read it already."""
    from deepspeech_it.lm.scorer import read_scorer

    info = info or read_scorer(scorer_path)
    if info.utf8:
        raise DecodingError(f"{scorer_path}: a bytes-output (UTF-8 mode) scorer does not fit a character alphabet")
    return ScorerSpec(alphabet, Path(scorer_path), tuple(info.words(alphabet)), beam_width)


@functools.cache
def _decoder_library() -> ctypes.CDLL:
    if not DECODER_LIBRARY.is_file():
        raise DecodingError(f"the CTC decoder is not built: {DECODER_LIBRARY} is missing; run make setup")
    library = ctypes.CDLL(str(DECODER_LIBRARY))
    pointer, size_t, int64 = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64
    library.ctc_decoder_new.restype = pointer
    library.ctc_decoder_new.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
                                        pointer, pointer, int64, ctypes.c_char_p, size_t]
    library.ctc_decoder_decode.restype = int64
    library.ctc_decoder_decode.argtypes = [pointer, pointer, int64, int64, int64, int64, ctypes.c_float,
                                           ctypes.c_float, pointer, pointer, pointer, ctypes.c_char_p, size_t]
    library.ctc_decoder_free.restype = None
    library.ctc_decoder_free.argtypes = [pointer]
    return library


def kenlm_reason(message: str, limit: int = 200) -> str:
    """KenLM's exception text as one short printable line, without its source location."""
    text = re.sub(r"^\S+:\d+ in .*? threw (\w+)\.\s*", r"\1: ", " ".join(message.split()))
    return "".join(ch if ch.isprintable() and ch != "\ufffd" else "?" for ch in text)[:limit]


class ScorerDecoder:
    """DeepSpeech-style CTC prefix beam search with a word n-gram model and a closed dictionary.

    Building it loads KenLM and the dictionary once; ``decode`` may then be called from several threads.
    """

    def __init__(self, spec: ScorerSpec):
        self.spec = spec
        alphabet = spec.alphabet
        words = [w for w in dict.fromkeys(spec.words) if w not in SPECIAL_TOKENS and alphabet.can_encode(w)
                 and " " not in w]
        if not words:
            raise DecodingError("the scorer's dictionary has no word the alphabet can spell")
        spelt = [alphabet.encode(w) for w in words]
        labels = np.fromiter((label for word in spelt for label in word), dtype=np.int32)
        ends = np.cumsum([len(word) for word in spelt], dtype=np.int64)
        texts = (ctypes.c_char_p * alphabet.size)(*(label.encode("utf-8") for label in alphabet.labels))
        error = ctypes.create_string_buffer(512)
        self._library = _decoder_library()
        handle = self._library.ctc_decoder_new(str(spec.lm_path).encode(), texts, alphabet.size, alphabet.space_index,
                                               labels.ctypes.data, ends.ctypes.data, len(words), error, len(error))
        if not handle:
            raise DecodingError(f"{spec.lm_path}: KenLM cannot load the language model (damaged? build it again "
                                f"with make build-lm): {kenlm_reason(error.value.decode(errors='replace'))}")
        self._handle = ctypes.c_void_p(handle)

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle:
            self._library.ctc_decoder_free(handle)
            self._handle = None

    def decode(self, probs: np.ndarray, alpha: float, beta: float,
               frame_seconds: float = FRAME_SECONDS) -> Transcript:
        check_probabilities(probs, self.spec.alphabet)
        probs = np.ascontiguousarray(probs, dtype=np.float32)
        labels = np.empty(len(probs), dtype=np.int32)
        frames = np.empty(len(probs), dtype=np.int32)
        score = ctypes.c_float()
        error = ctypes.create_string_buffer(512)
        count = self._library.ctc_decoder_decode(
            self._handle, probs.ctypes.data, len(probs), probs.shape[1], self.spec.beam_width, self.spec.cutoff_top_n,
            alpha, beta, labels.ctypes.data, frames.ctypes.data, ctypes.byref(score), error, len(error))
        if count < 0:
            raise DecodingError(error.value.decode(errors="replace"))
        emitted = list(zip(labels[:count].tolist(), frames[:count].tolist()))
        return characters_to_transcript(self.spec.alphabet, emitted, score.value, frame_seconds)


# ---------------------------------------------------------------------------------------------------------------
# many utterances on every core

def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


class DecoderPool:
    """Decodes a fixed set of utterances many times (one alpha/beta pair after another) on JOBS threads sharing
    one decoder (KenLM and the dictionary loaded once). Use as a context manager."""

    def __init__(self, spec: ScorerSpec, utterances: Sequence[np.ndarray], jobs: int | None = None,
                 progress: bool = True):
        self.spec = spec
        self.utterances = list(utterances)
        self.jobs = max(1, min(jobs or default_jobs(), len(self.utterances) or 1))
        self.progress = progress
        self._decoder: ScorerDecoder | None = None
        self._threads: ThreadPoolExecutor | None = None

    def __enter__(self) -> "DecoderPool":
        self._decoder = ScorerDecoder(self.spec)
        self._threads = ThreadPoolExecutor(self.jobs)
        return self

    def __exit__(self, *exc) -> None:
        if self._threads is not None:
            self._threads.shutdown(cancel_futures=exc[0] is not None)
        self._threads = self._decoder = None

    def decode(self, alpha: float | None, beta: float | None, label: str = "decoding") -> list[Transcript]:
        """Every utterance with the scorer at (ALPHA, BETA), in input order; alpha None: greedy, no scorer."""
        if self._threads is None:
            raise RuntimeError("DecoderPool used outside its with-block")
        out: list[Transcript | None] = [None] * len(self.utterances)
        for index, transcript in progress_iter(self._run(alpha, beta), len(out), label, self.progress):
            out[index] = transcript
        return out

    def _run(self, alpha: float | None, beta: float | None) -> Iterator[tuple[int, Transcript]]:
        def one(index: int) -> tuple[int, Transcript]:
            probs = self.utterances[index]
            if alpha is None:
                return index, greedy_decode(probs, self.spec.alphabet)
            return index, self._decoder.decode(probs, alpha, beta)

        # Longest first, so that no thread is left with a long utterance at the end.
        order = sorted(range(len(self.utterances)), key=lambda i: -len(self.utterances[i]))
        yield from self._threads.map(one, order)
