"""Proof that DeepSpeech 0.9.3 and Coqui STT 1.4 run our models: the real libraries, through ctypes.

The libraries of the wheels ``deepspeech-tflite==0.9.3`` and ``stt==1.4.0`` are installed by `make setup` into
``tools/native-clients``.
Each client runs in a child process (``deepspeech_it.export.native_clients.run_client``).
"""

from __future__ import annotations

import jiwer
import numpy as np
import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.decode.ctc import greedy_decode
from deepspeech_it.export import graph as export
from deepspeech_it.export import native_clients
from deepspeech_it.export.transcribe import Transcriber, load_audio
from deepspeech_it.paths import PROJECT_ROOT

from conftest import LM_SENTENCES
from export_helpers import build_test_scorer, clients_beam_one, write_tflite

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
BEAM_WIDTH = 256


@pytest.fixture(scope="module")
def models(weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {kind: write_tflite(folder / kind / "output_graph.tflite", weights, ALPHABET, BEAM_WIDTH, kind == "quantized")
            for kind in ("float", "quantized")}


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return build_test_scorer(tmp_path_factory.mktemp("lm"), LM_SENTENCES, ALPHABET)


@pytest.mark.parametrize("release", native_clients.RELEASES, ids=lambda r: r.name)
@pytest.mark.parametrize("kind", ["float", "quantized"])
def test_client_loads_our_model(models, release, kind):
    run = native_clients.run_client(release, models[kind])
    assert run.version == release.version
    assert run.sample_rate == 16000
    assert run.beam_width == BEAM_WIDTH


# Beam widths equal to another metadata value (graph version, sample rate, window and step in ms) made both clients
# crash (SIGSEGV) while loading; run_client loads in a child process, so a crash fails the test.
@pytest.mark.parametrize("beam_width", [6, 16000, 32, 20])
def test_clients_load_a_model_whose_beam_width_equals_another_metadata_value(beam_width, tmp_path):
    model = write_tflite(tmp_path / "output_graph.tflite", export.random_weights(8, ALPHABET), ALPHABET, beam_width,
                         quantize=False)
    for release in native_clients.RELEASES:
        run = native_clients.run_client(release, model)
        assert (run.sample_rate, run.beam_width) == (16000, beam_width), release.name


def test_clients_accept_our_scorer_without_the_mapping_warning(models, scorer):
    evidence = native_clients.verify_model(models["float"], scorer, expected_beam_width=BEAM_WIDTH)
    assert set(evidence) == {"deepspeech-tflite 0.9.3", "stt 1.4.0"}
    assert all("scorer accepted" in line for line in evidence.values())


def _clients_texts(model, clips, scorer_path=None, beam_width=None) -> dict[str, list[str]]:
    files = [c.path for c in clips]
    return {r.name: [x["text"] for x in native_clients.run_client(r, model, files, scorer_path=scorer_path,
                                                                  beam_width=beam_width).results]
            for r in native_clients.RELEASES}


def _agreement(model, clips, scorer_path):
    ours = Transcriber(model, scorer_path, num_threads=1)
    return [ours.transcribe_file(c.path).text for c in clips], _clients_texts(model, clips, scorer_path)


@pytest.mark.parametrize("with_scorer", [False, True], ids=["greedy-vs-beam", "scorer"])
def test_clients_and_transcribe_agree(models, clips, scorer, with_scorer):
    mine, theirs = _agreement(models["float"], clips, scorer if with_scorer else None)
    references = [c.text for c in clips]
    clean = [i for i, (text, ref) in enumerate(zip(mine, references)) if text == ref]
    assert len(clean) >= len(clips) - 1          # the fitted model transcribes its clips
    for name, texts in theirs.items():
        wer = jiwer.wer(mine, texts)
        print(f"{name} vs transcribe ({'scorer' if with_scorer else 'no scorer'}): WER {wer:.4f}")
        assert [texts[i] for i in clean] == [mine[i] for i in clean], name
        assert wer <= 0.02, name


def test_quantized_model_runs_as_in_the_clients(models, clips):
    """Beam width 1 in the clients, and their beam-1 search on our runtime's outputs (``clients_beam_one``), so
    that any difference comes from the arithmetic, not the search.

    Our runtime's builtin hybrid kernels are those of Coqui STT's TensorFlow Lite (2.9): same characters. The r2.3
    kernels inside libdeepspeech.so round 8-bit products a little differently; where that flips a character,
    it flips it against STT just the same.
    """
    model = models["quantized"]
    ours = Transcriber(model, num_threads=1)
    rate = ours.model.info.sample_rate
    mine = [clients_beam_one(ours.model.probabilities(load_audio(c.path, rate)), ALPHABET) for c in clips]
    theirs = _clients_texts(model, clips, beam_width=1)
    to_deepspeech = jiwer.cer(mine, theirs["deepspeech"])
    print(f"quantised, beam 1: CER to stt {jiwer.cer(mine, theirs['stt']):.4f}, "
          f"to deepspeech {to_deepspeech:.4f}, stt to deepspeech {jiwer.cer(theirs['stt'], theirs['deepspeech']):.4f}")
    assert mine == theirs["stt"]
    assert to_deepspeech <= 0.05


def test_the_beam_one_reference_stays_where_greedy_emits():
    """One frame whose best character ("a", 0.4) is less likely than staying on the prefix (blank 0.35 + repeat
    0.25): greedy emits it, the clients' beam 1 does not; two confident frames: both spell them."""
    a, b = ALPHABET.encode("a")[0], ALPHABET.encode("b")[0]
    probs = np.full((3, ALPHABET.size + 1), 1e-6)
    probs[0, b] = 1.0
    probs[1, [a, b, ALPHABET.blank_index]] = [0.4, 0.25, 0.35]
    probs[2, ALPHABET.blank_index] = 1.0
    assert greedy_decode(probs, ALPHABET).text == "ba"
    assert clients_beam_one(probs, ALPHABET) == "b"
    probs[1, [a, b, ALPHABET.blank_index]] = [0.9, 0.05, 0.05]
    assert clients_beam_one(probs, ALPHABET) == greedy_decode(probs, ALPHABET).text == "ba"


def test_a_refused_model_is_reported_with_the_clients_message(tmp_path):
    not_a_model = tmp_path / "output_graph.tflite"
    not_a_model.write_bytes(b"\0" * 64)
    for release in native_clients.RELEASES:
        with pytest.raises(native_clients.NativeClientError, match="CreateModel returned"):
            native_clients.run_client(release, not_a_model)
