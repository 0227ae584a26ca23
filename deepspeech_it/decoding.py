"""CTC decoding of the acoustic model's per-frame probabilities: greedy, and beam search with the scorer.

The beam search reproduces DeepSpeech 0.9.3's ``ctc_beam_search_decoder`` semantics on top of flashlight-text's
compiled ``LexiconDecoder`` (only the glue lives here):

* characters of the alphabet, CTC blank last, the best ``cutoff_top_n`` (40) characters tried per frame;
* words restricted to the scorer's dictionary: the lexicon trie spells every word followed by the space label,
  exactly like DeepSpeech's dictionary FST (arc labels ``index + 1``, each word closed by the space arc), so a
  space can only follow a complete dictionary word and a beam can only spell prefixes of dictionary words;
* a word is scored when its closing space is emitted: ``alpha * ln P(word | history) + beta``, the KenLM log10
  probability converted to a natural logarithm as DeepSpeech's ``Scorer::get_log_cond_prob`` does;
* the last word of an utterance (not followed by a space) is scored at the end, like DeepSpeech's final pass: an
  extra frame that can only be a space is appended, so a beam ending inside a word completes it or drops out;
* a prefix's score is the sum over its alignments (flashlight's beams ending in a blank and in a character are
  added up at the end), and there is no end-of-sentence probability (flashlight's ``decode_end``, which adds it,
  is not called).

The decoder was checked against a plain-Python implementation of these rules (tests/ds_reference.py): on peaky,
model-like outputs they choose the same transcript in about 97 % of the cases; the differences are near ties coming
from what flashlight cannot express: between words (and before the first one) its beam may emit the space again after
a blank, where DeepSpeech allows only the direct repetition of a word's space. With model outputs, whose space
probability outside word boundaries is small, that extra mass is small. The same words ending with and without a
space are one candidate here (their scores added), two prefixes in DeepSpeech. flashlight also always tries the
blank even when it is not among the top 40 characters, and a dictionary word missing from the KenLM vocabulary
gets KenLM's ``<unk>`` probability where DeepSpeech gives -1000.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .alphabet import Alphabet
from .progress import progress_iter

CUTOFF_TOP_N = 40                 # native client: cutoff_top_n = 40, cutoff_prob = 1.0 (deepspeech.cc)
FRAME_SECONDS = 320 / 16000       # one output frame per feature step: audio_win_step / sample_rate
LOG10_TO_LN = math.log(10.0)      # Scorer::get_log_cond_prob returns log10 / log10(e)
SPECIAL_WORDS = frozenset({"<s>", "</s>", "<unk>"})   # never dictionary words (scorer.cpp fill_dictionary)
# DeepSpeech prunes by beam width alone. A beam 30 nats behind the best one has a posterior of e^-30 relative to it
# and never comes back: dropping it early changed no transcript of the demo's test set and cut the search time by
# 40 % (`make bench`, decoding benchmark).
BEAM_THRESHOLD = 30.0


class DecodingError(ValueError):
    pass


@dataclass(frozen=True)
class WordTiming:
    word: str
    start: float       # seconds from the start of the audio: first character of the word
    duration: float    # up to the space after it (or one frame past its last character), as the native client


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float  # acoustic log-probability of the chosen path, LM and word bonuses removed (DeepSpeech's)
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
    _check_shape(probs, alphabet)
    if len(probs) == 0:
        return Transcript("", 0.0, ())
    best = probs.argmax(axis=1)
    with np.errstate(divide="ignore"):
        confidence = float(np.log(probs[np.arange(len(probs)), best]).sum())
    return characters_to_transcript(alphabet, collapse_ctc(best, alphabet.blank_index), confidence, frame_seconds)


def _check_shape(probs: np.ndarray, alphabet: Alphabet) -> None:
    if probs.ndim != 2 or probs.shape[1] != alphabet.size + 1:
        raise DecodingError(f"probabilities of shape {probs.shape} do not fit an alphabet of {alphabet.size} labels "
                            f"plus the blank")


# ---------------------------------------------------------------------------------------------------------------
# beam search with the scorer

@dataclass(frozen=True)
class ScorerSpec:
    """Everything a decoder process needs: picklable, so worker processes build their own decoder from it.

    ``lm_path`` is the scorer file itself (KenLM reads its binary part and ignores the trailing dictionary) or, in
    tests, any file KenLM loads; ``words`` the scorer's dictionary.
    """

    alphabet: Alphabet
    lm_path: Path
    words: tuple[str, ...]
    beam_width: int = 500
    cutoff_top_n: int = CUTOFF_TOP_N


def scorer_spec(scorer_path: str | Path, alphabet: Alphabet, beam_width: int) -> ScorerSpec:
    """The spec of a DeepSpeech scorer package (KenLM binary + dictionary FST); it is the only file read."""
    from .scorer import read_scorer

    info = read_scorer(scorer_path)
    if info.utf8:
        raise DecodingError(f"{scorer_path}: a bytes-output (UTF-8 mode) scorer does not fit a character alphabet")
    return ScorerSpec(alphabet, Path(scorer_path), tuple(info.words(alphabet)), beam_width)


class ScorerDecoder:
    """DeepSpeech-style CTC prefix beam search with a word n-gram model and a closed dictionary."""

    def __init__(self, spec: ScorerSpec):
        from flashlight.lib.text.decoder import Trie
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        self.spec = spec
        alphabet = spec.alphabet
        self.blank = alphabet.blank_index
        # flashlight's "silence" is the space: it is what a beam between words repeats (a space spanning several
        # frames). Words are spelt with their closing space, so a word is complete (and scored) at its space.
        self.silence = alphabet.space_index
        self.n_columns = alphabet.size + 1
        words = [w for w in dict.fromkeys(spec.words) if w not in SPECIAL_WORDS and alphabet.can_encode(w)
                 and " " not in w]
        if not words:
            raise DecodingError("the scorer's dictionary has no word the alphabet can spell")
        self.words = words
        self.unknown = len(words)
        self.word_dictionary = Dictionary(words + ["<unk>"])
        self.lm = KenLM(str(spec.lm_path), self.word_dictionary)
        self.trie = Trie(self.n_columns, self.silence)
        space = alphabet.space_index
        for index, word in enumerate(words):
            self.trie.insert(alphabet.encode(word) + [space], index, 0.0)
        self._decoders: dict[tuple[float, float], object] = {}

    def _decoder(self, alpha: float, beta: float):
        from flashlight.lib.text.decoder import CriterionType, LexiconDecoder, LexiconDecoderOptions

        key = (float(alpha), float(beta))
        if key not in self._decoders:
            options = LexiconDecoderOptions(
                beam_size=self.spec.beam_width, beam_size_token=self.spec.cutoff_top_n,
                beam_threshold=BEAM_THRESHOLD, lm_weight=alpha * LOG10_TO_LN, word_score=beta,
                unk_score=-math.inf, sil_score=0.0, log_add=True, criterion_type=CriterionType.CTC)
            self._decoders.clear()   # one pair at a time is what searches and transcription use
            self._decoders[key] = LexiconDecoder(options, self.trie, self.lm, self.silence, self.blank,
                                                 self.unknown, [], False)
        return self._decoders[key]

    def emissions(self, probs: np.ndarray) -> np.ndarray:
        """log probabilities [T + 1, size + 1]: the model's frames, then the closing frame, a certain space."""
        _check_shape(probs, self.spec.alphabet)
        frames = np.full((len(probs) + 1, self.n_columns), -np.inf, dtype=np.float32)
        with np.errstate(divide="ignore"):
            frames[:-1] = np.log(probs)
        frames[-1, self.spec.alphabet.space_index] = 0.0
        return frames

    def decode(self, probs: np.ndarray, alpha: float, beta: float,
               frame_seconds: float = FRAME_SECONDS) -> Transcript:
        if len(probs) == 0:
            return Transcript("", 0.0, ())
        emissions = self.emissions(probs)
        decoder = self._decoder(alpha, beta)
        # No decode_end: it would add the end-of-sentence probability, which DeepSpeech does not use.
        decoder.decode_begin()
        decoder.decode_step(emissions.ctypes.data, *emissions.shape)
        results = decoder.get_all_final_hypothesis()
        # Beams that end between words; one still inside a word only when there is no other (DeepSpeech would
        # score its partial word as out of vocabulary).
        complete = [r for r in results if self._ends_between_words(r.tokens)] or list(results)
        if not complete:
            return Transcript("", 0.0, ())
        # flashlight keeps beams ending in a blank apart from those ending in a character; the score of a word
        # sequence is the sum over all of them (the closing frame is not part of the transcript).
        prefixes: dict[tuple, list] = {}
        for result in complete:
            emitted = collapse_ctc(list(result.tokens)[1:len(probs) + 1], self.blank)
            key = "".join(self.spec.alphabet.labels[label] for label, _ in emitted).split()
            prefixes.setdefault(tuple(key), []).append((result, emitted))
        members = max(prefixes.values(), key=lambda group: _log_sum(r.score for r, _ in group))
        best, emitted = max(members, key=lambda member: member[0].score)
        n_words = sum(1 for w in best.words if w >= 0)
        confidence = _log_sum(r.score for r, _ in members) - alpha * LOG10_TO_LN * best.lmScore - beta * n_words
        return characters_to_transcript(self.spec.alphabet, emitted, confidence, frame_seconds)

    def _ends_between_words(self, tokens: Sequence[int]) -> bool:
        emitted = [t for t in tokens[1:] if t != self.blank]
        return not emitted or emitted[-1] == self.spec.alphabet.space_index


def _log_sum(values) -> float:
    values = np.fromiter(values, dtype=np.float64)
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum())) if np.isfinite(top) else float(top)


# ---------------------------------------------------------------------------------------------------------------
# many utterances on every core

_worker_decoder: ScorerDecoder | None = None
_worker_utterances: Sequence[np.ndarray] = ()


def _init_worker(spec: ScorerSpec, utterances: Sequence[np.ndarray]) -> None:
    global _worker_decoder, _worker_utterances
    _worker_decoder = ScorerDecoder(spec)
    _worker_utterances = utterances


def _decode_one(task: tuple[int, float | None, float | None]) -> tuple[int, Transcript]:
    index, alpha, beta = task
    probs = _worker_utterances[index]
    if alpha is None:
        return index, greedy_decode(probs, _worker_decoder.spec.alphabet)
    return index, _worker_decoder.decode(probs, alpha, beta)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0))


class DecoderPool:
    """Decodes a fixed set of utterances many times (one alpha/beta pair after another) on JOBS processes.

    Each worker builds the decoder (dictionary trie, KenLM) once and receives the utterances once; a pass then
    only sends indices. JOBS=1 decodes in this process. Use as a context manager.
    """

    def __init__(self, spec: ScorerSpec, utterances: Sequence[np.ndarray], jobs: int | None = None,
                 progress: bool = True):
        self.spec = spec
        self.utterances = list(utterances)
        self.jobs = max(1, min(jobs or default_jobs(), len(self.utterances) or 1))
        self.progress = progress
        self._pool = None
        self._local: ScorerDecoder | None = None

    def __enter__(self) -> "DecoderPool":
        if self.jobs == 1:
            self._local = ScorerDecoder(self.spec)
        else:
            # spawn: the parent may hold TensorFlow's threads, which a fork would copy in an unknown state.
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.jobs, initializer=_init_worker, initargs=(self.spec, self.utterances))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            if exc[0] is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None

    def decode(self, alpha: float | None, beta: float | None, label: str = "decoding") -> list[Transcript]:
        """Every utterance with the scorer at (ALPHA, BETA), in input order; alpha None: greedy, no scorer."""
        tasks = [(i, alpha, beta) for i in range(len(self.utterances))]
        out: list[Transcript | None] = [None] * len(tasks)
        for index, transcript in progress_iter(self._run(tasks), len(tasks), label, self.progress):
            out[index] = transcript
        return out

    def _run(self, tasks) -> Iterator[tuple[int, Transcript]]:
        if self._pool is None:
            if self._local is None:
                raise RuntimeError("DecoderPool used outside its with-block")
            for index, alpha, beta in tasks:
                probs = self.utterances[index]
                yield index, (greedy_decode(probs, self.spec.alphabet) if alpha is None
                              else self._local.decode(probs, alpha, beta))
            return
        chunk = max(1, len(tasks) // (self.jobs * 8))
        yield from self._pool.imap_unordered(_decode_one, tasks, chunksize=chunk)
