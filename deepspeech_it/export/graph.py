"""Export: DeepSpeech's TFLite inference graph, the SavedModel, and the checks the native clients rely on.

The TFLite model is what libdeepspeech.so 0.9.3 and libstt.so 1.x load: tensors found by exact name, a static
16-step LSTM whose state is fed back by the caller, the feature graph (AudioSpectrogram + Mfcc custom ops) in the
same model, and six metadata outputs the client reads once at load time.

It is built as a TF1-style session graph because TensorFlow's session converter keeps the tensor names, which the
clients look up, while SavedModel conversion renames them (``serving_default_...``). The weights are constants, so
there is nothing to freeze.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.framing import SAMPLE_RATE, STEP_SAMPLES, WINDOW_SAMPLES
from deepspeech_it.model.features import N_CONTEXT, N_INPUT, WINDOWED_INPUT, audio_to_mfcc, context_windows
from deepspeech_it.model.network import DENSE_LAYERS, LSTM_BIAS, LSTM_KERNEL, RELU_CLIP
from deepspeech_it.util.errors import PipelineError
from deepspeech_it.util.tf_runtime import native_stderr_silenced, tf

GRAPH_VERSION = 6          # ds_graph_version() of DeepSpeech 0.9.3 and Coqui STT 1.4; they refuse anything lower
FEATURE_WIN_LEN_MS = 1000 * WINDOW_SAMPLES // SAMPLE_RATE      # 32
FEATURE_WIN_STEP_MS = 1000 * STEP_SAMPLES // SAMPLE_RATE       # 20
N_STEPS = 16               # time steps per TFLite invocation (DeepSpeech's --n_steps)

INPUT_NAMES = ("input_node", "previous_state_c", "previous_state_h", "input_samples")
METADATA_NAMES = ("metadata_version", "metadata_sample_rate", "metadata_feature_win_len",
                  "metadata_feature_win_step", "metadata_beam_width", "metadata_alphabet")
OUTPUT_NAMES = ("logits", "new_state_c", "new_state_h", "mfccs") + METADATA_NAMES


class ExportError(PipelineError, ValueError):
    pass


@dataclass(frozen=True)
class Geometry:
    """Sizes the weights imply; DeepSpeech derives the same from its flags and alphabet."""

    n_hidden: int
    n_cell: int
    n_classes: int

    @classmethod
    def of(cls, weights: Mapping[str, np.ndarray], alphabet: Alphabet) -> "Geometry":
        missing = [name for name in required_weight_names() if name not in weights]
        if missing:
            raise ExportError(f"weights lack {', '.join(missing)}")
        n_hidden = weights["layer_1/weights"].shape[1]
        n_cell = weights[LSTM_BIAS].shape[0] // 4
        geometry = cls(n_hidden=n_hidden, n_cell=n_cell, n_classes=alphabet.size + 1)
        for name, shape in geometry.expected_shapes().items():
            if tuple(weights[name].shape) != shape:
                raise ExportError(f"{name} has shape {tuple(weights[name].shape)}, expected {shape} "
                                  f"(n_hidden {n_hidden}, {alphabet.size} labels + blank)")
        return geometry

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        n_in = WINDOWED_INPUT
        h, c, k = self.n_hidden, self.n_cell, self.n_classes
        return {
            "layer_1/weights": (n_in, h), "layer_1/bias": (h,),
            "layer_2/weights": (h, h), "layer_2/bias": (h,),
            "layer_3/weights": (h, c), "layer_3/bias": (c,),
            LSTM_KERNEL: (c + c, 4 * c), LSTM_BIAS: (4 * c,),
            "layer_5/weights": (c, h), "layer_5/bias": (h,),
            "layer_6/weights": (h, k), "layer_6/bias": (k,),
        }


def required_weight_names() -> list[str]:
    return [f"{layer}/{part}" for layer in DENSE_LAYERS for part in ("weights", "bias")] + [LSTM_KERNEL, LSTM_BIAS]


def random_weights(n_hidden: int, alphabet: Alphabet, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights of the right shapes (Glorot-uniform like DeepSpeech's initialiser), for tests and benchmarks."""
    rng = np.random.default_rng(seed)
    shapes = Geometry(n_hidden, n_hidden, alphabet.size + 1).expected_shapes()
    weights = {}
    for name, shape in shapes.items():
        if len(shape) == 2:
            limit = np.sqrt(6.0 / sum(shape))
            weights[name] = rng.uniform(-limit, limit, shape).astype(np.float32)
        else:
            weights[name] = rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    return weights


# --------------------------------------------------------------------------------------------------------------
# The graph


def dense(x, weights, name, relu=True):
    """DeepSpeech's dense layer: x @ weights + bias, then ReLU clipped at RELU_CLIP unless RELU is false."""
    out = tf.nn.bias_add(tf.matmul(x, weights[f"{name}/weights"]), weights[f"{name}/bias"])
    if relu:
        out = tf.minimum(tf.nn.relu(out), RELU_CLIP)
    return out


def _lstm_step(x_projection, c, h, recurrent_kernel):
    """One step of tf.nn.rnn_cell.LSTMCell with forget_bias 0: gate columns i, j (candidate), f, o."""
    gates = x_projection + tf.matmul(h, recurrent_kernel)
    i, j, f, o = tf.split(gates, 4, axis=1)
    new_c = c * tf.sigmoid(f) + tf.sigmoid(i) * tf.tanh(j)
    new_h = tf.tanh(new_c) * tf.sigmoid(o)
    return new_c, new_h


def build_inference_graph(weights: Mapping[str, np.ndarray], alphabet: Alphabet, beam_width: int):
    """DeepSpeech's TFLite inference graph (train.py create_inference_graph with --export_tflite).

    Returns (graph, inputs, outputs): lists of tensors in INPUT_NAMES / OUTPUT_NAMES order.
    """
    tf1 = tf.compat.v1

    geometry = Geometry.of(weights, alphabet)
    n_cell = geometry.n_cell
    graph = tf.Graph()
    with graph.as_default():
        w = {name: tf.constant(np.asarray(weights[name], np.float32), name=name)
             for name in geometry.expected_shapes() if name != LSTM_KERNEL}
        # The LSTM kernel is split here rather than sliced in the graph: the converter does not fold slices of
        # large constants, which would leave the full kernel unquantised and sliced at every call.
        kernel = np.asarray(weights[LSTM_KERNEL], np.float32)
        input_kernel = tf.constant(kernel[:n_cell], name="lstm_input_kernel")
        recurrent_kernel = tf.constant(kernel[n_cell:], name="lstm_recurrent_kernel")
        input_samples = tf1.placeholder(tf.float32, [WINDOW_SAMPLES], name="input_samples")
        mfccs = tf.identity(audio_to_mfcc(input_samples), name="mfccs")

        input_node = tf1.placeholder(tf.float32, [1, N_STEPS, 2 * N_CONTEXT + 1, N_INPUT], name="input_node")
        previous_c = tf1.placeholder(tf.float32, [1, n_cell], name="previous_state_c")
        previous_h = tf1.placeholder(tf.float32, [1, n_cell], name="previous_state_h")

        x = tf.reshape(input_node, [N_STEPS, WINDOWED_INPUT])
        x = dense(x, w, "layer_1")
        x = dense(x, w, "layer_2")
        x = dense(x, w, "layer_3")
        # The input half of the LSTM kernel is applied to all steps at once; only the recurrent half is sequential.
        x_projection = tf.nn.bias_add(tf.matmul(x, input_kernel), w[LSTM_BIAS])
        c, h = previous_c, previous_h
        outputs = []
        for step in tf.split(x_projection, N_STEPS, axis=0):
            c, h = _lstm_step(step, c, h, recurrent_kernel)
            outputs.append(h)
        x = tf.concat(outputs, 0)
        x = dense(x, w, "layer_5")
        x = dense(x, w, "layer_6", relu=False)
        logits = tf.nn.softmax(x, name="logits")      # the clients call these probabilities "logits"
        new_c = tf.identity(c, name="new_state_c")
        new_h = tf.identity(h, name="new_state_h")
        metadata = metadata_outputs(alphabet, beam_width)

    inputs = [input_node, previous_c, previous_h, input_samples]
    outputs = [logits, new_c, new_h, mfccs] + metadata
    return graph, inputs, outputs


def metadata_outputs(alphabet: Alphabet, beam_width: int) -> list:
    """The constants the clients read at load time, in METADATA_NAMES order (inside a graph's as_default)."""
    return [
        tf.constant([GRAPH_VERSION], tf.int32, name="metadata_version"),
        tf.constant([SAMPLE_RATE], tf.int32, name="metadata_sample_rate"),
        tf.constant([FEATURE_WIN_LEN_MS], tf.int32, name="metadata_feature_win_len"),
        tf.constant([FEATURE_WIN_STEP_MS], tf.int32, name="metadata_feature_win_step"),
        tf.constant([beam_width], tf.int32, name="metadata_beam_width"),
        tf.constant([alphabet.serialize()], tf.string, name="metadata_alphabet"),
    ]


# --------------------------------------------------------------------------------------------------------------
# SavedModel


class AcousticModel(tf.Module):
    """The same network for whole utterances in batches: 16 kHz audio → per-frame probabilities.

    Frames are those of the native client: one per 20 ms step over full 32 ms windows, plus the zero-padded
    partial window at the end, so frame t here is frame t of the TFLite model run by a client.
    """

    def __init__(self, weights: Mapping[str, np.ndarray], alphabet: Alphabet):
        super().__init__(name="deepspeech")
        geometry = Geometry.of(weights, alphabet)
        self.n_cell = geometry.n_cell
        self.weights = {name: tf.Variable(np.asarray(weights[name], np.float32), trainable=False,
                                          name=name.replace("/", "__"))
                        for name in geometry.expected_shapes()}

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio"),
                                  tf.TensorSpec([None], tf.int32, name="audio_lengths")])
    def __call__(self, audio, audio_lengths):
        """audio [batch, samples] float32 in [-1, 1) (int16 / 32768), zero-padded; audio_lengths [batch] samples.

        Returns probabilities [batch, frames, classes] (blank last) and frame_lengths [batch].
        """
        w = self.weights
        lengths = tf.maximum(audio_lengths, 0)
        full_windows = tf.where(lengths >= WINDOW_SAMPLES, 1 + (lengths - WINDOW_SAMPLES) // STEP_SAMPLES, 0)
        frame_lengths = full_windows + 1
        # Zero everything past each length, and add one window of zeros so the last partial window is whole.
        mask = tf.sequence_mask(lengths, tf.shape(audio)[1], tf.float32)
        audio = tf.pad(audio * mask, [[0, 0], [0, WINDOW_SAMPLES]])
        mfcc = tf.map_fn(audio_to_mfcc, audio, fn_output_signature=tf.TensorSpec([None, N_INPUT], tf.float32))
        mfcc = mfcc * tf.sequence_mask(frame_lengths, tf.shape(mfcc)[1], tf.float32)[:, :, None]
        x = context_windows(mfcc)                                    # [batch, frames, 494]
        batch, frames = tf.shape(x)[0], tf.shape(x)[1]
        x = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, WINDOWED_INPUT])   # time-major rows
        for layer in ("layer_1", "layer_2", "layer_3"):
            x = dense(x, w, layer)
        kernel = w[LSTM_KERNEL]
        x_projection = tf.nn.bias_add(tf.matmul(x, kernel[:self.n_cell]), w[LSTM_BIAS])
        x_projection = tf.reshape(x_projection, [frames, batch, 4 * self.n_cell])
        recurrent_kernel = kernel[self.n_cell:]
        zeros = tf.zeros([batch, self.n_cell])

        def step(state, projection):
            return _lstm_step(projection, state[0], state[1], recurrent_kernel)

        _, outputs = tf.scan(step, x_projection, initializer=(zeros, zeros))
        x = tf.reshape(outputs, [-1, self.n_cell])
        x = dense(x, w, "layer_5")
        x = dense(x, w, "layer_6", relu=False)
        probabilities = tf.transpose(tf.reshape(tf.nn.softmax(x), [frames, batch, -1]), [1, 0, 2])
        return {"probabilities": probabilities, "frame_lengths": frame_lengths}


def save_saved_model(weights: Mapping[str, np.ndarray], alphabet: Alphabet, path) -> None:
    module = AcousticModel(weights, alphabet)
    signature = module.__call__.get_concrete_function()
    with native_stderr_silenced():
        tf.saved_model.save(module, str(path), signatures={"serving_default": signature})


# --------------------------------------------------------------------------------------------------------------
# TFLite conversion


def convert_to_tflite(graph, inputs, outputs, quantize: bool) -> bytes:
    """TensorFlow's session converter, then the fix-ups the native clients need.

    Quantisation is dynamic-range with one scale per weight matrix (the old quantiser, per-channel off): that
    yields hybrid FULLY_CONNECTED version 3, the form TOCO produced for DeepSpeech 0.9.3 and the one the r2.3
    runtime of libdeepspeech.so knows. The new quantiser writes per-channel scales (version 12) or asymmetric
    input quantisation (version 9), which the old runtimes reject or would misread.
    """
    # The converter's notices (graph optimiser sessions, AudioSpectrogram/Mfcc being custom ops) are expected.
    with native_stderr_silenced(), tf.compat.v1.Session(graph=graph) as session:
        converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, inputs, outputs)
        converter.allow_custom_ops = True          # AudioSpectrogram and Mfcc: custom ops with builtin kernels
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.experimental_new_dynamic_range_quantizer = False
            converter._experimental_disable_per_channel = True
            converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        model = converter.convert()
    return add_producers_for_constant_outputs(model)


def add_producers_for_constant_outputs(model_bytes: bytes) -> bytes:
    """Makes every constant graph output the output of a RESHAPE to its own shape.

    The clients find the node that computes each metadata tensor (find_parent_node_ids(idx)[0]) and run only those
    nodes at load time; a constant output has no such node and the lookup reads past an empty vector. TOCO inserted
    the same no-op RESHAPE ("Fixing constant output array"); the MLIR converter leaves the constants bare.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    reshape = _opcode_index(model, schema.BuiltinOperator.RESHAPE, schema)
    for subgraph in model.subgraphs[:1]:
        produced = {t for op in subgraph.operators for t in op.outputs}
        for index in subgraph.outputs:
            if index in produced:
                continue
            output = subgraph.tensors[index]
            shape = [int(d) for d in output.shape]
            constant = _new_tensor(subgraph, schema, output.name + b"/constant", shape, output.type, output.buffer)
            new_shape = _new_tensor(subgraph, schema, output.name + b"/shape", [len(shape)],
                                    schema.TensorType.INT32, _new_buffer(model, schema, np.asarray(shape, np.int32)))
            output.buffer = _new_buffer(model, schema, None)
            op = schema.OperatorT()
            op.opcodeIndex = reshape
            op.inputs = [constant, new_shape]
            op.outputs = [index]
            op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
            op.builtinOptions = schema.ReshapeOptionsT()
            op.builtinOptions.newShape = shape
            subgraph.operators.append(op)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _opcode_index(model, builtin: int, schema) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and code.version == 1:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)   # the field old runtimes read
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_buffer(model, schema, array) -> int:
    buffer = schema.BufferT()
    if array is not None:
        buffer.data = np.frombuffer(array.tobytes(), np.uint8)
    model.buffers.append(buffer)
    return len(model.buffers) - 1


def _new_tensor(subgraph, schema, name: bytes, shape, dtype, buffer: int) -> int:
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = np.asarray(shape, np.int32)
    tensor.type = dtype
    tensor.buffer = buffer
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def describe_tflite(model_bytes: bytes) -> dict:
    """Inputs, outputs and operator versions of a TFLite model, for checks and the model card."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    subgraph = model.subgraphs[0]
    produced = {t for op in subgraph.operators for t in op.outputs}
    ops = {}
    for code in model.operatorCodes:
        name = code.customCode.decode() if code.customCode else names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        ops[name] = max(ops.get(name, 0), code.version)
    tensor = subgraph.tensors
    return {
        "inputs": {tensor[i].name.decode(): [int(d) for d in tensor[i].shape] for i in subgraph.inputs},
        "outputs": {tensor[i].name.decode(): [int(d) for d in tensor[i].shape] for i in subgraph.outputs},
        "outputs_without_producer": [tensor[i].name.decode() for i in subgraph.outputs if i not in produced],
        "operator_versions": ops,
    }
