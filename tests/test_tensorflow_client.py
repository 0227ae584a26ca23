"""Proof that DeepSpeech 0.9.3's TensorFlow client runs our frozen graph, as .pb and as memory-mapped .pbmm.

The client is libdeepspeech.so of the ``deepspeech==0.9.3`` wheel (TensorFlow r2.3 inside), through ctypes in a child
process like the TFLite clients (tests/test_native_clients.py). Its transcripts must be those of the TFLite client on
the float TFLite model of the same weights, with and without the scorer. The metadata beam width is 32, equal to the
window length in ms, which each metadata node must still report by itself.
"""

from __future__ import annotations

import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.export import frozen_graph, memmapped, native_clients
from deepspeech_it.export import graph as export
from deepspeech_it.paths import PROJECT_ROOT

from conftest import LM_SENTENCES
from export_helpers import build_test_scorer, write_tflite

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
BEAM_WIDTH = 32
TFLITE_BEAM_WIDTH = 256      # the TFLite model's own; the client is set to BEAM_WIDTH for the comparison
TENSORFLOW = native_clients.DEEPSPEECH_TF


@pytest.fixture(scope="module")
def graphs(weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    graph_def = frozen_graph.build_frozen_graph(weights, ALPHABET, BEAM_WIDTH, "it")
    pb, pbmm = folder / "output_graph.pb", folder / "output_graph.pbmm"
    pb.write_bytes(graph_def.SerializeToString())
    pbmm.write_bytes(memmapped.to_memmapped(graph_def))
    return {"pb": pb, "pbmm": pbmm}


@pytest.fixture(scope="module")
def tflite(weights, tmp_path_factory):
    return write_tflite(tmp_path_factory.mktemp("tflite") / "output_graph.tflite", weights, ALPHABET,
                        TFLITE_BEAM_WIDTH, quantize=False)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    return build_test_scorer(tmp_path_factory.mktemp("lm"), LM_SENTENCES, ALPHABET)


@pytest.mark.parametrize("kind", ["pb", "pbmm"])
def test_client_loads_the_graph_with_the_scorer_and_maps_only_the_pbmm(graphs, scorer, kind):
    run = native_clients.run_client(TENSORFLOW, graphs[kind], scorer_path=scorer)
    assert (run.version, run.sample_rate, run.beam_width) == ("0.9.3", 16000, BEAM_WIDTH)
    assert (native_clients.READ_INTO_MEMORY_WARNING in run.stderr) == (kind == "pb"), run.stderr
    assert native_clients.MAPPING_WARNING not in run.stderr


@pytest.mark.parametrize("with_scorer", [False, True], ids=["no-scorer", "scorer"])
def test_transcripts_equal_the_tflite_clients(graphs, tflite, clips, scorer, with_scorer):
    files = [c.path for c in clips]
    scorer_path = scorer if with_scorer else None

    def run(release, model):
        results = native_clients.run_client(release, model, files, scorer_path=scorer_path, beam_width=BEAM_WIDTH,
                                            metadata=True).results
        return [(r["text"], r["timesteps"]) for r in results]

    expected = run(native_clients.DEEPSPEECH, tflite)
    assert sum(text == clip.text for (text, _), clip in zip(expected, clips)) >= len(clips) - 1
    assert run(TENSORFLOW, graphs["pb"]) == expected
    assert run(TENSORFLOW, graphs["pbmm"]) == expected


def test_a_damaged_pbmm_is_refused_with_the_clients_message(tmp_path):
    package = memmapped.to_memmapped(frozen_graph.build_frozen_graph(
        export.random_weights(8, ALPHABET), ALPHABET, BEAM_WIDTH, "it"))
    damaged = tmp_path / "output_graph.pbmm"
    damaged.write_bytes(package[:-8] + bytes(8))        # the directory offset now points at the first tensor
    with pytest.raises(native_clients.NativeClientError,
                       match=r"(?s)CreateModel returned 0x3000.*Corrupted memmapped model file"):
        native_clients.run_client(TENSORFLOW, damaged)
