"""The frozen TensorFlow inference graph (``output_graph.pb``) that DeepSpeech 0.9.3's TensorFlow client runs.

libdeepspeech.so of the ``deepspeech`` 0.9.3 wheel embeds TensorFlow r2.3 and loads a binary GraphDef. It finds
tensors by name and drives the graph as a stream: 16 windowed feature frames per call, the LSTM state fed back,
``input_lengths`` the number of real frames of a zero-padded last call; ``mfccs`` from one 32 ms window at a time;
seven constant ``metadata_*`` nodes read once at load time. The node names, shapes and the LSTM as one BlockLSTM op
(with the masking and final-state gather that LSTMBlockFusedCell adds for ``sequence_length``) follow DeepSpeech's
own export (train.py ``create_inference_graph`` and ``export``, MPL-2.0); the code is written for this project.

The graph is built op by op (tf.raw_ops where TensorFlow 2 would pick a newer op), so it holds only ops the old
runtime has. The CPU build of that client was made to link kernels for the ops DeepSpeech's own graph uses
(native_client/BUILD); RUNTIME_OPS lists them with the attributes TensorFlow 2.3 defines them with, and the graph
keeps to that list, so it relies on nothing that build did not promise (in trials the runtime was more lenient: it
ran a MatMul with an attribute it does not define, and an AddV2). Newer TensorFlow adds attributes (MatMul ``grad_a``,
GatherNd ``bad_indices_policy``); at their default values they are dropped and 2.3 fills in its own, and
``check_runtime_compatible`` refuses any graph that still leaves the list.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.framing import WINDOW_SAMPLES
from deepspeech_it.export.graph import N_STEPS, ExportError, Geometry, dense, metadata_outputs
from deepspeech_it.model.features import N_CONTEXT, N_INPUT, WINDOWED_INPUT, audio_to_mfcc
from deepspeech_it.model.network import LSTM_BIAS, LSTM_KERNEL
from deepspeech_it.util.tf_runtime import tf

FROZEN_INPUT_NAMES = ("input_node", "input_lengths", "previous_state_c", "previous_state_h", "input_samples")
FROZEN_OUTPUT_NAMES = ("logits", "new_state_c", "new_state_h", "mfccs")
LANGUAGE_NODE = "metadata_language"     # written by DeepSpeech's export; the client does not read it

# The ops DeepSpeech 0.9.3's CPU client has kernels for, each with the attributes of its TensorFlow 2.3 definition.
RUNTIME_OPS: dict[str, frozenset[str]] = {name: frozenset(attrs) for name, attrs in {
    "AudioSpectrogram": ("window_size", "stride", "magnitude_squared"),
    "BiasAdd": ("T", "data_format"),
    "BlockLSTM": ("forget_bias", "cell_clip", "use_peephole", "T"),
    "Cast": ("SrcT", "DstT", "Truncate"),
    "ConcatV2": ("N", "T", "Tidx"),
    "Const": ("value", "dtype"),
    "ExpandDims": ("T", "Tdim"),
    "Fill": ("T", "index_type"),
    "GatherNd": ("Tparams", "Tindices"),
    "Identity": ("T",),
    "ImmutableConst": ("dtype", "shape", "memory_region_name"),
    "Less": ("T",),
    "MatMul": ("transpose_a", "transpose_b", "T"),
    "Max": ("keep_dims", "T", "Tidx"),
    "Mfcc": ("upper_frequency_limit", "lower_frequency_limit", "filterbank_channel_count", "dct_coefficient_count"),
    "Minimum": ("T",),
    "Mul": ("T",),
    "NoOp": (),
    "Pack": ("N", "T", "axis"),
    "Placeholder": ("dtype", "shape"),
    "Range": ("Tidx",),
    "Relu": ("T",),
    "Reshape": ("T", "Tshape"),
    "Shape": ("T", "out_type"),
    "Softmax": ("T",),
    "Tile": ("T", "Tmultiples"),
    "Transpose": ("T", "Tperm"),
}.items()}


def build_frozen_graph(weights: Mapping[str, np.ndarray], alphabet: Alphabet, beam_width: int,
                       language: str) -> tf.compat.v1.GraphDef:
    """DeepSpeech's streaming inference graph with WEIGHTS as constants, default attributes stripped, checked."""
    geometry = Geometry.of(weights, alphabet)
    graph = tf.Graph()
    with graph.as_default():
        _feature_graph()
        _acoustic_graph(weights, geometry)
        metadata_outputs(alphabet, beam_width)
        tf.constant([language.encode("utf-8")], tf.string, name=LANGUAGE_NODE)
    graph_def = graph.as_graph_def()
    strip_default_attrs(graph_def)
    check_runtime_compatible(graph_def)
    return graph_def


def _feature_graph() -> None:
    input_samples = tf.compat.v1.placeholder(tf.float32, [WINDOW_SAMPLES], name="input_samples")
    tf.identity(audio_to_mfcc(input_samples), name="mfccs")


def _acoustic_graph(weights: Mapping[str, np.ndarray], geometry: Geometry) -> None:
    n_cell = geometry.n_cell
    placeholder = tf.compat.v1.placeholder
    input_node = placeholder(tf.float32, [1, N_STEPS, 2 * N_CONTEXT + 1, N_INPUT], name="input_node")
    input_lengths = placeholder(tf.int32, [1], name="input_lengths")
    previous_c = placeholder(tf.float32, [1, n_cell], name="previous_state_c")
    previous_h = placeholder(tf.float32, [1, n_cell], name="previous_state_h")
    # Named as DeepSpeech's frozen variables, which also names their memory-mapped regions.
    w = {name: tf.constant(np.asarray(weights[name], np.float32), name=name) for name in geometry.expected_shapes()}

    x = tf.reshape(tf.transpose(input_node, [1, 0, 2, 3]), [-1, WINDOWED_INPUT])      # time-major rows
    for layer in ("layer_1", "layer_2", "layer_3"):
        x = dense(x, w, layer)
    x = tf.reshape(x, [-1, 1, n_cell])
    no_peephole = tf.fill([n_cell], 0.0)
    # LSTMBlockFusedCell with DeepSpeech's arguments: gates i, c, f, o over [x; h], forget bias 0, no cell clip.
    _, cells, _, _, _, _, outputs = tf.raw_ops.BlockLSTM(
        seq_len_max=tf.cast(tf.reduce_max(input_lengths), tf.int64), x=x, cs_prev=previous_c, h_prev=previous_h,
        w=w[LSTM_KERNEL], wci=no_peephole, wcf=no_peephole, wco=no_peephole, b=w[LSTM_BIAS],
        forget_bias=0.0, cell_clip=-1.0, use_peephole=False)
    valid = tf.cast(tf.less(tf.expand_dims(tf.range(N_STEPS), 0), tf.expand_dims(input_lengths, -1)), tf.float32)
    outputs = outputs * tf.tile(tf.expand_dims(tf.transpose(valid, [1, 0]), -1), [1, 1, n_cell])
    # The state after frame input_lengths - 1: with the initial state prepended, row input_lengths (Sub is not among
    # the ops the client's build lists).
    last = tf.stack([input_lengths, tf.range(1)], axis=1)
    for name, initial, sequence in (("new_state_c", previous_c, cells), ("new_state_h", previous_h, outputs)):
        tf.identity(tf.gather_nd(tf.concat([tf.expand_dims(initial, 0), sequence], 0), last), name=name)
    x = tf.reshape(outputs, [-1, n_cell])
    x = dense(x, w, "layer_5")
    x = dense(x, w, "layer_6", relu=False)
    tf.nn.softmax(tf.reshape(x, [-1, 1, geometry.n_classes], name="raw_logits"), name="logits")


def strip_default_attrs(graph_def: tf.compat.v1.GraphDef) -> None:
    """Drops every attribute whose value is its op's default (TensorFlow's forward-compatibility recipe)."""
    from tensorflow.python.framework import op_def_registry  # after util.tf_runtime imported TensorFlow quietly

    for node in graph_def.node:
        op_def = op_def_registry.get(node.op)
        for attr in op_def.attr:
            if attr.HasField("default_value") and attr.name in node.attr and node.attr[attr.name] == attr.default_value:
                del node.attr[attr.name]


def check_runtime_compatible(graph_def: tf.compat.v1.GraphDef) -> None:
    """Raises ExportError naming the first node DeepSpeech 0.9.3's TensorFlow runtime could not run."""
    for node in graph_def.node:
        known = RUNTIME_OPS.get(node.op)
        if known is None:
            raise ExportError(f"node {node.name}: op {node.op} has no kernel in DeepSpeech 0.9.3's TensorFlow client")
        unknown = sorted(a for a in node.attr if a not in known and not a.startswith("_"))
        if unknown:
            raise ExportError(f"node {node.name}: TensorFlow 2.3's {node.op} has no attribute {', '.join(unknown)}")


def describe_graph(graph_def: tf.compat.v1.GraphDef) -> dict:
    """Inputs with their shapes, the ops used and the node count, for checks and metadata.json."""
    inputs = {node.name: [d.size for d in node.attr["shape"].shape.dim]
              for node in graph_def.node if node.op == "Placeholder"}
    return {"inputs": inputs, "outputs": list(FROZEN_OUTPUT_NAMES),
            "ops": sorted({node.op for node in graph_def.node}), "nodes": len(graph_def.node)}
