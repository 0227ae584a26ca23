"""The exported TFLite model and SavedModel: DeepSpeech's interface, and the same numbers as the TF graph."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.export import graph as export
from deepspeech_it.export.transcribe import TFLiteModel
from deepspeech_it.model.features import audio_to_mfcc
from deepspeech_it.paths import PROJECT_ROOT

from export_helpers import speak

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
N_HIDDEN = 48
BEAM_WIDTH = 123


@pytest.fixture(scope="module")
def weights():
    return export.random_weights(N_HIDDEN, ALPHABET, seed=7)


@pytest.fixture(scope="module")
def graph(weights):
    return export.build_inference_graph(weights, ALPHABET, BEAM_WIDTH)


@pytest.fixture(scope="module")
def tflite_float(graph, tmp_path_factory):
    path = tmp_path_factory.mktemp("float") / "output_graph.tflite"
    path.write_bytes(export.convert_to_tflite(*graph, quantize=False))
    return path


@pytest.fixture(scope="module")
def tflite_quantized(graph, tmp_path_factory):
    path = tmp_path_factory.mktemp("quantized") / "output_graph.tflite"
    path.write_bytes(export.convert_to_tflite(*graph, quantize=True))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return speak(tmp_path_factory.mktemp("clip") / "clip.wav", "oggi il cielo è limpido e il sole splende")


def test_tflite_has_the_native_client_interface(tflite_float):
    info = export.describe_tflite(tflite_float.read_bytes())
    assert info["inputs"] == {"input_node": [1, 16, 19, 26], "previous_state_c": [1, N_HIDDEN],
                              "previous_state_h": [1, N_HIDDEN], "input_samples": [512]}
    assert list(info["outputs"]) == list(export.OUTPUT_NAMES)
    assert info["outputs"]["logits"] == [16, ALPHABET.size + 1]
    assert info["outputs"]["mfccs"] == [1, 26]
    assert info["outputs_without_producer"] == []
    assert info["operator_versions"]["AudioSpectrogram"] == info["operator_versions"]["Mfcc"] == 1
    # Only version 1 builtins: every TFLite runtime since r1.x has them.
    assert {v for k, v in info["operator_versions"].items()} == {1}


def test_quantized_model_uses_hybrid_fully_connected_version_3(tflite_quantized, tflite_float):
    info = export.describe_tflite(tflite_quantized.read_bytes())
    assert info["operator_versions"]["FULLY_CONNECTED"] == 3      # per-tensor hybrid, as TOCO wrote it
    assert info["outputs_without_producer"] == []
    assert tflite_quantized.stat().st_size < 0.5 * tflite_float.stat().st_size


def test_metadata_outputs_carry_what_the_clients_read(tflite_float):
    model = TFLiteModel(tflite_float)
    assert model.info.sample_rate == 16000
    assert model.info.beam_width == BEAM_WIDTH
    assert model.info.alphabet == ALPHABET
    assert (model.info.window_samples, model.info.step_samples) == (512, 320)
    assert (model.info.n_steps, model.info.n_context, model.info.n_cell) == (16, 9, N_HIDDEN)


def _run_session(graph, feeds):
    tf_graph, inputs, outputs = graph
    with tf.compat.v1.Session(graph=tf_graph) as session:
        return session.run(outputs[:4], {inputs[i]: value for i, value in enumerate(feeds)})


def _run_tflite(path, feeds):
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    by_name = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    for name, value in zip(export.INPUT_NAMES, feeds):
        interpreter.set_tensor(by_name[name], value)
    interpreter.invoke()
    out = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    return [interpreter.get_tensor(out[name]) for name in export.OUTPUT_NAMES[:4]]


# Tolerances relative to each output's largest magnitude; 8-bit weights cost a few percent.
@pytest.mark.parametrize("quantized, tolerance", [(False, 1e-5), (True, 0.1)])
def test_tflite_outputs_equal_the_tf_graph(graph, tflite_float, tflite_quantized, quantized, tolerance):
    rng = np.random.default_rng(1)
    feeds = [rng.normal(0, 10, (1, 16, 19, 26)).astype(np.float32),
             rng.normal(0, 0.5, (1, N_HIDDEN)).astype(np.float32),
             rng.normal(0, 0.5, (1, N_HIDDEN)).astype(np.float32),
             rng.uniform(-0.5, 0.5, 512).astype(np.float32)]
    reference = _run_session(graph, feeds)
    got = _run_tflite(tflite_quantized if quantized else tflite_float, feeds)
    for name, want, have in zip(export.OUTPUT_NAMES, reference, got):
        assert have.shape == want.shape, name
        assert np.abs(have - want).max() <= tolerance * max(1.0, np.abs(want).max()), name
    assert np.allclose(reference[0].sum(axis=1), 1.0, atol=1e-5)     # "logits" are softmax probabilities


def test_feature_frames_are_the_clients_windows(tflite_float, clip):
    from deepspeech_it.data.audio import load_training_samples

    samples = load_training_samples(clip)
    model = TFLiteModel(tflite_float)
    frames = model.features(samples)
    # Full windows, then the rest of the buffer as one zero-padded window (the client's final flush).
    full = 1 + (samples.size - 512) // 320
    assert frames.shape == (full + 1, 26)
    padded = np.zeros(full * 320 + 512, np.float32)
    padded[:samples.size] = samples / 32768.0
    expected = audio_to_mfcc(tf.constant(padded)).numpy()
    assert np.abs(frames - expected).max() < 1e-3


def test_saved_model_gives_the_tflite_frames_for_a_padded_batch(weights, tflite_float, clip, tmp_path):
    from deepspeech_it.data.audio import load_training_samples

    export.save_saved_model(weights, ALPHABET, tmp_path / "saved_model")
    serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    long = load_training_samples(clip)
    short = long[:7000]
    batch = np.zeros((2, long.size + 1000), np.float32)
    batch[0, :long.size], batch[1, :short.size] = long / 32768.0, short / 32768.0
    out = serve(audio=tf.constant(batch), audio_lengths=tf.constant([long.size, short.size], tf.int32))
    model = TFLiteModel(tflite_float)
    for row, samples in enumerate([long, short]):
        expected = model.probabilities(samples)
        assert int(out["frame_lengths"][row]) == len(expected)
        got = out["probabilities"][row, :len(expected)].numpy()
        assert np.abs(got - expected).max() < 1e-4


def test_constant_outputs_get_a_reshape_producer():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="x")
        y = tf.identity(x * 2.0, name="y")
        c = tf.constant([5], tf.int32, name="five")
        with tf.compat.v1.Session(graph=g) as session:
            converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y, c])
            bare = converter.convert()
    assert export.describe_tflite(bare)["outputs_without_producer"] == ["five"]
    fixed = export.add_producers_for_constant_outputs(bare, ["y", "five"])
    assert export.describe_tflite(fixed)["outputs_without_producer"] == []
    interpreter = Interpreter(model_content=fixed)
    interpreter.allocate_tensors()
    interpreter.invoke()
    out = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    assert interpreter.get_tensor(out["five"]).tolist() == [5]


# Beam widths equal to another metadata constant (6, 16000, 32, 20) once shared its tensor: the clients crashed.
# The others are sizes the graph is full of (context, steps, MFCC, alphabet, window), and 2, which the reshape
# below also uses as a constant.
@pytest.mark.parametrize("beam_width", [2, 6, 16, 19, 20, 26, 32, 39, 16000])
def test_every_metadata_output_is_a_tensor_of_its_own(beam_width):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 2], name="x")
        y = tf.reshape(x * 2.0, [2], name="y")
        outputs = [y] + export.metadata_outputs(ALPHABET, beam_width)
    model = export.convert_to_tflite(g, [x], outputs, quantize=False)
    info = export.describe_tflite(model)
    assert list(info["outputs"]) == ["y", *export.METADATA_NAMES]
    assert info["outputs_without_producer"] == []
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    details = interpreter.get_output_details()
    assert len({d["index"] for d in details}) == len(details)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.array([[1.5, -2.0]], np.float32))
    interpreter.invoke()
    out = {d["name"]: interpreter.get_tensor(d["index"]).tolist() for d in details}
    assert out["y"] == [3.0, -4.0]
    assert [out[name] for name in export.METADATA_NAMES[:5]] == [[export.GRAPH_VERSION], [16000], [32], [20],
                                                                  [beam_width]]


def test_an_output_the_converter_renamed_is_refused():
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [2], name="x")
        y = tf.identity(x * 2.0, name="y")
        with tf.compat.v1.Session(graph=g) as session:
            bare = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [y]).convert()
    with pytest.raises(export.ExportError, match="renamed outputs: z is y"):
        export.add_producers_for_constant_outputs(bare, ["z"])


def test_weights_of_the_wrong_shape_are_refused(weights):
    bad = dict(weights)
    bad["layer_6/weights"] = np.zeros((N_HIDDEN, 7), np.float32)
    with pytest.raises(export.ExportError, match="layer_6/weights"):
        export.build_inference_graph(bad, ALPHABET, BEAM_WIDTH)
    missing = {k: v for k, v in weights.items() if k != export.LSTM_BIAS}
    with pytest.raises(export.ExportError, match="lack"):
        export.build_inference_graph(missing, ALPHABET, BEAM_WIDTH)
