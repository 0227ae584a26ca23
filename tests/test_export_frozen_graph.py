"""The frozen graph for DeepSpeech 0.9.3's TensorFlow client and its memory-mapped form, checked in TensorFlow 2.

That the real client loads and runs them is tests/test_tensorflow_client.py; here: the interface it looks up, the
old runtime's ops and attributes only, the same numbers as the TFLite model's graph, streaming with a short last
call, and the memory-mapped file's layout.
"""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow.core.framework import graph_pb2

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.export import frozen_graph, memmapped
from deepspeech_it.export import graph as export
from deepspeech_it.model.features import audio_to_mfcc
from deepspeech_it.paths import PROJECT_ROOT
from deepspeech_it.util.tf_runtime import tf

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
N_HIDDEN = 48
BEAM_WIDTH = 32          # equal to the window length in ms: each metadata node must still answer for itself


@pytest.fixture(scope="module")
def weights():
    return export.random_weights(N_HIDDEN, ALPHABET, seed=9)


@pytest.fixture(scope="module")
def graph_def(weights):
    return frozen_graph.build_frozen_graph(weights, ALPHABET, BEAM_WIDTH, "it")


def _session(graph_def):
    graph = tf.Graph()
    copy = graph_pb2.GraphDef()
    copy.CopyFrom(graph_def)          # the importer fills in default attributes where it finds them missing
    with graph.as_default():
        tf.graph_util.import_graph_def(copy, name="")
    return tf.compat.v1.Session(graph=graph)


def _frozen_run(session, frames, lengths, c, h):
    window = np.zeros([1, export.N_STEPS, 19, 26], np.float32)
    window[0, :len(frames)] = frames
    return session.run(["logits:0", "new_state_c:0", "new_state_h:0"],
                       {"input_node:0": window, "input_lengths:0": [lengths], "previous_state_c:0": c,
                        "previous_state_h:0": h})


def test_graph_has_the_tensorflow_clients_interface(graph_def):
    info = frozen_graph.describe_graph(graph_def)
    assert info["inputs"] == {"input_samples": [512], "input_node": [1, 16, 19, 26], "input_lengths": [1],
                              "previous_state_c": [1, N_HIDDEN], "previous_state_h": [1, N_HIDDEN]}
    nodes = {node.name: node for node in graph_def.node}
    assert nodes["logits"].op == "Softmax" and nodes["mfccs"].op == "Identity"
    assert nodes["new_state_c"].op == nodes["new_state_h"].op == "Identity"
    assert sum(node.op == "BlockLSTM" for node in graph_def.node) == 1
    with _session(graph_def) as session:
        names = list(export.METADATA_NAMES) + [frozen_graph.LANGUAGE_NODE]
        values = dict(zip(names, session.run([f"{n}:0" for n in names])))
    assert all(nodes[n].op == "Const" for n in names)
    assert {n: v.tolist() for n, v in values.items() if v.dtype == np.int32} == {
        "metadata_version": [6], "metadata_sample_rate": [16000], "metadata_feature_win_len": [32],
        "metadata_feature_win_step": [20], "metadata_beam_width": [BEAM_WIDTH]}
    assert values["metadata_alphabet"].tolist() == [ALPHABET.serialize()]
    assert values["metadata_language"].tolist() == [b"it"]


def test_graph_uses_only_what_tensorflow_2_3_knows(graph_def):
    from tensorflow.python.framework import op_def_registry

    for node in graph_def.node:
        assert node.op in frozen_graph.RUNTIME_OPS, node.op
        assert set(node.attr) <= frozen_graph.RUNTIME_OPS[node.op], node.name
        defaults = {a.name: a.default_value for a in op_def_registry.get(node.op).attr if a.HasField("default_value")}
        assert [name for name, value in node.attr.items() if defaults.get(name) == value] == [], node.name
    lstm = next(node for node in graph_def.node if node.op == "BlockLSTM")
    assert lstm.attr["forget_bias"].f == 0.0 and lstm.attr["cell_clip"].f == -1.0
    assert "use_peephole" not in lstm.attr            # false is the default: stripped


def test_check_refuses_newer_ops_and_attributes(graph_def):
    newer_op = graph_pb2.GraphDef()
    newer_op.CopyFrom(graph_def)
    next(node for node in newer_op.node if node.op == "Mul").op = "AddV2"
    with pytest.raises(export.ExportError, match="op AddV2 has no kernel"):
        frozen_graph.check_runtime_compatible(newer_op)
    newer_attr = graph_pb2.GraphDef()
    newer_attr.CopyFrom(graph_def)
    next(node for node in newer_attr.node if node.op == "MatMul").attr["grad_a"].b = True
    with pytest.raises(export.ExportError, match="MatMul has no attribute grad_a"):
        frozen_graph.check_runtime_compatible(newer_attr)


def test_graph_computes_what_the_tflite_graph_computes(graph_def, weights):
    rng = np.random.default_rng(1)
    frames = rng.normal(0, 3, [export.N_STEPS, 19, 26]).astype(np.float32)
    c, h = (rng.normal(0, 0.5, [1, N_HIDDEN]).astype(np.float32) for _ in range(2))
    graph, inputs, outputs = export.build_inference_graph(weights, ALPHABET, BEAM_WIDTH)
    with tf.compat.v1.Session(graph=graph) as session:
        expected = session.run(outputs[:3], {inputs[0]: frames[None], inputs[1]: c, inputs[2]: h})
    with _session(graph_def) as session:
        logits, new_c, new_h = _frozen_run(session, frames, export.N_STEPS, c, h)
    assert logits.shape == (export.N_STEPS, 1, ALPHABET.size + 1)
    np.testing.assert_allclose(logits[:, 0], expected[0], atol=1e-5)
    np.testing.assert_allclose(new_c, expected[1], atol=1e-5)
    np.testing.assert_allclose(new_h, expected[2], atol=1e-5)


def test_short_call_returns_the_state_after_its_last_real_frame(graph_def):
    """21 frames as 16 + 5 and as 5 + 16: the same probabilities only if a 5-frame call hands on the state after
    frame 5, not after its 11 frames of padding."""
    rng = np.random.default_rng(2)
    frames = rng.normal(0, 3, [21, 19, 26]).astype(np.float32)
    zeros = np.zeros([1, N_HIDDEN], np.float32)
    with _session(graph_def) as session:
        a1, c, h = _frozen_run(session, frames[:16], 16, zeros, zeros)
        a2, _, _ = _frozen_run(session, frames[16:], 5, c, h)
        b1, c, h = _frozen_run(session, frames[:5], 5, zeros, zeros)
        b2, _, _ = _frozen_run(session, frames[5:], 16, c, h)
    np.testing.assert_allclose(np.concatenate([a1, a2[:5]]), np.concatenate([b1[:5], b2]), atol=1e-5)


def test_mfccs_are_the_features_of_one_window(graph_def):
    samples = np.random.default_rng(3).uniform(-0.5, 0.5, 512).astype(np.float32)
    with _session(graph_def) as session:
        mfccs = session.run("mfccs:0", {"input_samples:0": samples})
    np.testing.assert_allclose(mfccs, audio_to_mfcc(tf.constant(samples)).numpy(), atol=1e-4)


# --------------------------------------------------------------------------------------------------------------
# The memory-mapped package


def test_memmapped_package_maps_the_large_constants(graph_def):
    min_bytes = 1000          # with N_HIDDEN 48: the six weight matrices, not the biases
    package = memmapped.to_memmapped(graph_def, min_bytes)
    rewritten, regions = memmapped.read_memmapped(package)
    original = {node.name: node for node in graph_def.node}
    mapped = [node for node in rewritten.node if node.op == "ImmutableConst"]
    big = [node.name for node in graph_def.node if node.op == "Const"
           and tf.make_ndarray(node.attr["value"].tensor).nbytes >= min_bytes
           and node.attr["dtype"].type != tf.string.as_datatype_enum]
    assert sorted(node.name for node in mapped) == sorted(big) and len(big) == 6
    for node in mapped:
        assert set(node.attr) == {"dtype", "shape", "memory_region_name"}
        value = tf.make_ndarray(original[node.name].attr["value"].tensor)
        assert regions[node.attr["memory_region_name"].s.decode()] == value.astype("<f4").tobytes()
        assert [d.size for d in node.attr["shape"].shape.dim] == list(value.shape)
    assert [n.name for n in rewritten.node] == [n.name for n in graph_def.node]
    untouched = [n for n in rewritten.node if n.op != "ImmutableConst"]
    assert all(n == original[n.name] for n in untouched)
    for region in memmapped.read_directory(package)[:-1]:
        assert region.offset % memmapped.ALIGNMENT == 0 and region.offset % 64 == 0, region


def test_region_names_follow_the_converter(graph_def):
    doubled = graph_pb2.GraphDef()
    doubled.CopyFrom(graph_def)
    twin = doubled.node.add()
    twin.CopyFrom(next(n for n in graph_def.node if n.name == "layer_1/weights"))
    twin.name = "layer_1_weights"
    names = {n.name: n.attr["memory_region_name"].s.decode()
             for n in memmapped.read_memmapped(memmapped.to_memmapped(doubled))[0].node if n.op == "ImmutableConst"}
    assert names["layer_1/weights"] == "memmapped_package://layer_1_weights"
    assert names["layer_1_weights"] == "memmapped_package://layer_1_weights_"


def test_damaged_package_is_refused(graph_def):
    package = memmapped.to_memmapped(graph_def)
    for damaged in (package[:4], package[:-8] + (len(package) * 2).to_bytes(8, "little")):
        with pytest.raises(memmapped.MemmappedError):
            memmapped.read_directory(damaged)
