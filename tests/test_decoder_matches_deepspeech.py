"""Our beam search against DeepSpeech 0.9.3's own, on the very same probabilities.

A playback model (tests/export_helpers.py) hands both libdeepspeech.so and our ``transcribe`` the same table of
model-like probabilities, frame for frame, with nothing computed on the way. With the same scorer, beam width and
alpha/beta, the two must then choose the same transcript, emit its characters at the same frames and give it the
same confidence: any difference is a difference between the decoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import wav_bytes
from deepspeech_it.data.textnorm import Normalizer
from deepspeech_it.decode.ctc import characters_to_transcript
from deepspeech_it.export import native_clients
from deepspeech_it.export.transcribe import Transcriber
from deepspeech_it.paths import PROJECT_ROOT

from export_helpers import build_test_scorer, confusable_frames, playback_tflite

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
BEAM_WIDTH = 500
CASES = 24
SENTENCES = [Normalizer(ALPHABET).normalize(line)
             for line in (PROJECT_ROOT / "deepspeech_it" / "demo" / "frasi.txt").read_text().splitlines()
             if line and not line.startswith("#")]


@dataclass(frozen=True)
class Case:
    model: Path
    audio: Path
    text: str
    alpha: float
    beta: float
    beam_width: int


def _misspelt(word: str, rng: np.random.Generator) -> str:
    position = int(rng.integers(len(word)))
    return word[:position] + str(rng.choice(list("aeiolnrst"))) + word[position + 1:]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return build_test_scorer(tmp_path_factory.mktemp("lm"), SENTENCES, ALPHABET)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[Case]:
    folder = tmp_path_factory.mktemp("playback")
    rng = np.random.default_rng(11)
    out = []
    for i in range(CASES):
        # Sentences of the LM, some words misspelt so that the dictionary has to overrule the acoustics.
        words = " ".join(rng.choice(SENTENCES, int(rng.integers(1, 3)))).split()
        text = " ".join(_misspelt(w, rng) if rng.random() < 0.15 else w for w in words)
        frames = confusable_frames(text, ALPHABET, rng)
        # Blank frames after the speech: the client reads up to 15 rows past the audio's last frame.
        tail = np.full((64, ALPHABET.size + 1), 0.01 / ALPHABET.size, np.float32)
        tail[:, ALPHABET.blank_index] = 0.99
        model = playback_tflite(folder / f"case{i}" / "output_graph.tflite", np.vstack([frames, tail]), ALPHABET,
                                BEAM_WIDTH)
        audio = folder / f"case{i}.wav"
        audio.write_bytes(wav_bytes(rng.integers(-300, 300, len(frames) * 320).astype(np.int16)))
        # Narrow beams too, where pruning decides more.
        out.append(Case(model, audio, text, float(rng.uniform(0.3, 2.5)), float(rng.uniform(-1.0, 3.0)),
                        int(rng.choice([8, 32, BEAM_WIDTH]))))
    return out


def test_transcripts_timings_and_confidences_are_deepspeechs(cases, scorer):
    differences = []
    for case in cases:
        ours = Transcriber(case.model, scorer, alpha=case.alpha, beta=case.beta,
                           beam_width=case.beam_width).transcribe_file(case.audio)
        run = native_clients.run_client(native_clients.DEEPSPEECH, case.model, [case.audio], scorer_path=scorer,
                                        beam_width=case.beam_width, alpha=case.alpha, beta=case.beta, metadata=True)
        theirs = run.results[0]
        assert run.beam_width == case.beam_width
        emitted = [(ALPHABET.labels.index(char), frame) for char, frame in zip(theirs["text"], theirs["timesteps"])]
        expected = characters_to_transcript(ALPHABET, emitted, theirs["confidence"])
        if (ours.text, ours.words) != (expected.text, expected.words):
            differences.append(f"{case.text!r}: ours {ours.text!r}, DeepSpeech {expected.text!r}")
        assert ours.confidence == pytest.approx(expected.confidence, rel=1e-6, abs=1e-4), case.text
    assert not differences, "\n".join(differences)
    # The cases must be hard enough to matter: the scorer changes what the greedy path says.
    greedy = [Transcriber(case.model).transcribe_file(case.audio).text for case in cases]
    assert sum(g != c.text for g, c in zip(greedy, cases)) >= CASES // 2
