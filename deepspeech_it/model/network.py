"""DeepSpeech 0.9.3's acoustic model in Keras 3, with its weights addressable by DeepSpeech's variable names.

Layers (DeepSpeech ``create_model``): context windows of 19 MFCC frames -> three dense layers with a ReLU clipped at
20 -> one LSTM (forget bias 0) -> one clipped dense layer -> the output layer (alphabet size + 1 classes, the CTC blank
last, no activation). Dropout follows the clipped ReLU of layers 1, 2, 3 and 5, nowhere else.

The LSTM is a stock ``keras.layers.LSTM`` with tanh/sigmoid, no recurrent dropout and no mask, so on a GPU Keras runs
it on the fused cuDNN kernel; without a GPU ``lstm_hoisted`` computes the same layer with its variables, organised
as cuDNN does (Keras' generic loop is several times slower and needs gigabytes more for backprop), its time loop in
the project's own CPU kernel (``lstm_kernel.cc``). Its weights differ from DeepSpeech's only in layout: DeepSpeech keeps one kernel
``[n_in + n_cell, 4 n_cell]`` over ``[x; h]`` with gate blocks in i, c, f, o order, Keras keeps ``kernel`` (x rows)
and ``recurrent_kernel`` (h rows) with gate blocks in i, f, c, o order. ``ds_tensors`` maps between the two, and the
same mapping serves the Adam moments of those weights.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from deepspeech_it.model import lstm_kernel
from deepspeech_it.model.features import N_INPUT, WINDOWED_INPUT, context_windows
from deepspeech_it.util.machine import best_of_alternating, bfloat16_speedup
from deepspeech_it.util.tf_runtime import keras, tf

RELU_CLIP = 20.0
LSTM_SCOPE = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
LSTM_KERNEL = f"{LSTM_SCOPE}/kernel"
LSTM_BIAS = f"{LSTM_SCOPE}/bias"
DENSE_LAYERS = ("layer_1", "layer_2", "layer_3", "layer_5", "layer_6")


def _ds_dense_initializer(seed: int | None) -> keras.initializers.Initializer:
    # DeepSpeech: VarianceScaling(scale=1.0, mode="fan_avg", distribution="uniform") i.e. Glorot uniform.
    return keras.initializers.VarianceScaling(scale=1.0, mode="fan_avg", distribution="uniform", seed=seed)


def _ds_lstm_initializer(n_in: int, n_cell: int, seed: int | None) -> keras.initializers.Initializer:
    # LSTMBlockFusedCell draws its single [n_in + n_cell, 4 n_cell] kernel Glorot-uniform; Keras splits that kernel in
    # two, so both halves get the limit of the whole matrix instead of their own fan.
    limit = math.sqrt(6.0 / ((n_in + n_cell) + 4 * n_cell))
    return keras.initializers.RandomUniform(-limit, limit, seed=seed)


def _layer_seeds(seed: int | None, count: int) -> list[int | None]:
    """One seed per initializer/dropout layer derived from the run's seed (None: unseeded)."""
    if seed is None:
        return [None] * count
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=count)]


class DeepSpeech(keras.Model):
    """MFCC ``[batch, time, 26]`` -> logits ``[batch, time, n_classes]`` (float32 whatever the dtype policy)."""

    def __init__(self, n_classes: int, n_hidden: int = 2048, dropout: float = 0.05,
                 dtype_policy: str = "float32", seed: int | None = None, **kwargs):
        super().__init__(name="deepspeech", **kwargs)
        self.n_classes = n_classes
        self.n_hidden = n_hidden
        seeds = _layer_seeds(seed, 11)

        def dense(name, units, seed_index, dtype=dtype_policy):
            return keras.layers.Dense(units, name=name, dtype=dtype,
                                      kernel_initializer=_ds_dense_initializer(seeds[seed_index]),
                                      bias_initializer="zeros")

        self.layer_1 = dense("layer_1", n_hidden, 0)
        self.layer_2 = dense("layer_2", n_hidden, 1)
        self.layer_3 = dense("layer_3", n_hidden, 2)
        self.lstm = keras.layers.LSTM(
            n_hidden, name="lstm", dtype=dtype_policy, return_sequences=True,
            activation="tanh", recurrent_activation="sigmoid", use_bias=True, unroll=False,
            dropout=0.0, recurrent_dropout=0.0, unit_forget_bias=False, bias_initializer="zeros",
            kernel_initializer=_ds_lstm_initializer(n_hidden, n_hidden, seeds[3]),
            recurrent_initializer=_ds_lstm_initializer(n_hidden, n_hidden, seeds[4]))
        self.layer_5 = dense("layer_5", n_hidden, 5)
        # Softmax and CTC need the range of float32; the output layer never runs in reduced precision.
        self.layer_6 = dense("layer_6", n_classes, 6, dtype="float32")
        self.clip = keras.layers.ReLU(max_value=RELU_CLIP, dtype=dtype_policy)
        self.dropout = dropout
        self.dropout_seeds = seeds[7:11]

    def build(self, input_shape=None):
        self.layer_1.build((None, None, WINDOWED_INPUT))
        self.layer_2.build((None, None, self.n_hidden))
        self.layer_3.build((None, None, self.n_hidden))
        self.lstm.build((None, None, self.n_hidden))
        self.layer_5.build((None, None, self.n_hidden))
        self.layer_6.build((None, None, self.n_hidden))
        self.built = True

    def call(self, mfcc, training=False, step=None):
        """``step`` (the global step, needed when training with dropout) picks the dropout masks."""
        x = context_windows(mfcc)
        x = self._drop(self.clip(self.layer_1(x)), 0, training, step)
        x = self._drop(self.clip(self.layer_2(x)), 1, training, step)
        x = self._drop(self.clip(self.layer_3(x)), 2, training, step)
        # Frames past an utterance's end only follow its valid frames, so without a mask the valid outputs are
        # exact and the LSTM stays eligible for cuDNN.
        x = self.lstm(x, training=training) if on_gpu() else lstm_hoisted(self.lstm, x)
        x = self._drop(self.clip(self.layer_5(x)), 3, training, step)
        return self.layer_6(x)

    def _drop(self, x, index: int, training: bool, step):
        """Dropout whose mask is a function of (seed, layer, step, replica), so it keeps no random state: a run
        resumed from a checkpoint draws the masks an uninterrupted run would (Keras' seeded Dropout restarts its
        generator in every process). Unseeded models draw from the global generator."""
        if not training or self.dropout <= 0:
            return x
        layer_seed = self.dropout_seeds[index]
        if layer_seed is None:
            return tf.nn.dropout(x, self.dropout)
        if step is None:
            raise ValueError("training with dropout needs the global step")
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(layer_seed, tf.int64), tf.cast(step, tf.int64)]), tf.cast(replica, tf.int64))
        return tf.nn.experimental.stateless_dropout(x, self.dropout, seed=seed)


def lstm_hoisted(layer: keras.layers.LSTM, x):
    """The arithmetic of ``layer`` (Keras gates i, f, c, o; no mask, zero initial state) for devices without cuDNN.

    Keras' generic loop multiplies each frame by both kernels and reads the weights inside the loop, so backprop
    keeps a copy of the recurrent kernel per frame (gigabytes at N_HIDDEN=2048) and accumulates its gradient one
    frame at a time. Here, as in cuDNN, the input projection of all frames is one large matmul, and so are the
    gradients of both kernels; only the products with ``h`` stay inside the time loop, which runs in the fused
    kernel where it loads and is the faster here (recurrence_for), else in TensorFlow ops.
    """
    dtype = layer.compute_dtype
    kernel = tf.cast(layer.cell.kernel.value, dtype)
    bias = tf.cast(layer.cell.bias.value, dtype)
    projected = tf.tensordot(tf.transpose(tf.cast(x, dtype), [1, 0, 2]), kernel, axes=1) + bias  # [time, batch, 4n]
    products, _ = recurrence_for(dtype, layer.cell.units)
    if products is None:
        hs = lstm_recurrence_ops(projected, tf.cast(layer.cell.recurrent_kernel.value, dtype))
    else:
        # The kernel keeps its gates and cell in float32 whatever the products.
        recurrence = fused_recurrence(products)
        hs = tf.cast(recurrence(tf.cast(projected, tf.float32), layer.cell.recurrent_kernel.value), dtype)
    return tf.transpose(hs, [1, 0, 2])


# The size of the timing that chooses between the fused kernel and TensorFlow's ops in bfloat16: frames enough to
# repay the kernel's packing of the recurrent kernel once per call (over 16 frames it once chose the slower loop).
PROBE_FRAMES, PROBE_BATCH, PROBE_ROUNDS = 100, 32, 3


@functools.cache
def recurrence_for(dtype: str, units: int) -> tuple[str | None, str]:
    """The fused kernel's ``products`` for an LSTM of UNITS computing in DTYPE, or None for TensorFlow's loop, and
    one line saying which loop runs. lstm_kernel.loop_for decides, except in bfloat16, where the faster of the two
    at UNITS, timed once, runs: TensorFlow's bfloat16 products run on matrix units some CPUs have (Intel's AMX), so
    they can beat the kernel's AVX-512 tiles on large layers and lose to them on small ones (README, "Training")."""
    products, line = lstm_kernel.loop_for(dtype)
    if products is None or dtype != "bfloat16":
        return products, line
    kernel_speedup = _kernel_speedup_in_bfloat16(products, units)
    if kernel_speedup >= 1:
        return products, f"{line}, {kernel_speedup:.2f}x as fast as TensorFlow's bfloat16 ops at {units} units here"
    return None, f"TensorFlow ops in bfloat16, {1 / kernel_speedup:.2f}x as fast as {line} at {units} units here"


def _kernel_speedup_in_bfloat16(products: str, units: int) -> float:
    """TensorFlow's bfloat16 loop's time over the fused kernel's, forward and backward, alternating
    (best_of_alternating). Timed in a thread of its own, where no graph is being traced and no tape records, also
    when the first model to ask is being traced."""
    def timing() -> float:
        rng = np.random.default_rng(0)
        projected = tf.constant(rng.normal(size=(PROBE_FRAMES, PROBE_BATCH, 4 * units)).astype(np.float32))
        recurrent = tf.constant(rng.uniform(-0.05, 0.05, size=(units, 4 * units)).astype(np.float32))
        fused = fused_recurrence(products)
        loops = {"kernel": fused,
                 "ops": lambda p, r: tf.cast(lstm_recurrence_ops(tf.cast(p, tf.bfloat16), tf.cast(r, tf.bfloat16)),
                                             tf.float32)}
        best = best_of_alternating({name: _loop_timer(loop, projected, recurrent) for name, loop in loops.items()},
                                   PROBE_ROUNDS)
        return best["ops"] / best["kernel"]

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(timing).result()


def _loop_timer(loop, projected, recurrent):
    """A function timing one forward and backward pass of LOOP (traced and run once here, so not timed)."""
    @tf.function
    def forward_backward(p, r):
        with tf.GradientTape() as tape:
            tape.watch([p, r])
            loss = tf.reduce_sum(loop(p, r))
        return tape.gradient(loss, [p, r])

    def once() -> float:
        started = time.perf_counter()
        [g.numpy() for g in forward_backward(projected, recurrent)]
        return time.perf_counter() - started

    once()
    return once


def _recurrent_kernel_gradient(hs, d_projected, dtype=None):
    """The recurrent kernel's gradient: one product over all frames of h before each frame and that frame's
    pre-activation gradient, its factors in DTYPE (default: theirs) and the result in theirs."""
    units = hs.shape[-1]
    h_prev = tf.concat([tf.zeros_like(hs[:1]), hs[:-1]], axis=0)
    factors = [tf.reshape(h_prev, [-1, units]), tf.reshape(d_projected, [-1, 4 * units])]
    if dtype is not None:
        factors = [tf.cast(f, dtype) for f in factors]
    return tf.cast(tf.matmul(*factors, transpose_a=True), hs.dtype)


@functools.cache
def fused_recurrence(products: str = "float32"):
    """A function computing what lstm_recurrence_ops does, h for every frame [time, batch, n] from the projected
    inputs [time, batch, 4n] and the recurrent kernel [n, 4n], float32, in the fused kernel (lstm_kernel.cc) with
    the recurrent products PRODUCTS names (its ``products`` attribute). With bfloat16 products the recurrent
    kernel's gradient is a bfloat16 product too, as under TensorFlow's mixed_bfloat16 policy."""
    ops, _ = lstm_kernel.load()
    gradient_dtype = tf.bfloat16 if "bfloat16" in products else None

    @tf.custom_gradient
    def recurrence(projected, recurrent):
        hs, cs, gates = ops.deep_speech_it_lstm_forward(projected, recurrent, products=products)

        def gradient(d_hs):
            d_projected = ops.deep_speech_it_lstm_backward(d_hs, cs, gates, recurrent, products=products)
            return d_projected, _recurrent_kernel_gradient(hs, d_projected, gradient_dtype)

        return hs, gradient

    return recurrence


@tf.custom_gradient
def lstm_recurrence_ops(projected, recurrent):
    """What lstm_recurrence_fused computes, in TensorFlow ops of any float dtype."""
    batch, units = tf.shape(projected)[1], recurrent.shape[0]
    zeros = tf.zeros([batch, units], projected.dtype)

    def step(state, projected_t):
        h, c, _ = state
        i, f, g, o = tf.split(projected_t + tf.matmul(h, recurrent), 4, axis=1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        return o * tf.tanh(c), c, tf.concat([i, f, g, o], axis=1)

    hs, cs, gates = tf.scan(step, projected, initializer=(zeros, zeros, tf.zeros_like(projected[0])))

    def gradient(d_hs):
        c_prev = tf.concat([zeros[None], cs[:-1]], axis=0)

        def back(carry, frame):
            dh_next, dc_next, _ = carry
            d_h, c, c_before, gates_t = frame
            i, f, g, o = tf.split(gates_t, 4, axis=1)
            dh = d_h + dh_next
            tanh_c = tf.tanh(c)
            dc = dh * o * (1 - tanh_c * tanh_c) + dc_next
            dz = tf.concat([dc * g * i * (1 - i), dc * c_before * f * (1 - f), dc * i * (1 - g * g),
                            dh * tanh_c * o * (1 - o)], axis=1)
            return tf.matmul(dz, recurrent, transpose_b=True), dc * f, dz

        _, _, d_projected = tf.scan(back, (d_hs, cs, c_prev, gates), initializer=(zeros, zeros, gates[0] * 0),
                                    reverse=True)
        return d_projected, _recurrent_kernel_gradient(hs, d_projected)

    return hs, gradient


def build_model(n_classes: int, n_hidden: int = 2048, dropout: float = 0.05, dtype_policy: str = "float32",
                seed: int | None = None) -> DeepSpeech:
    model = DeepSpeech(n_classes, n_hidden=n_hidden, dropout=dropout, dtype_policy=dtype_policy, seed=seed)
    model.build((None, None, N_INPUT))
    return model


# ---------------------------------------------------------------------------------------------------------------
# DeepSpeech names <-> Keras variables

def swap_gate_blocks(array: np.ndarray) -> np.ndarray:
    """ICFO <-> IFCO along the last axis: swaps the 2nd and 3rd of four equal blocks (its own inverse)."""
    i, a, b, o = np.split(array, 4, axis=-1)
    return np.concatenate([i, b, a, o], axis=-1)


@dataclass(frozen=True)
class DsTensor:
    """One DeepSpeech checkpoint tensor and the Keras variables that hold it."""

    name: str
    parts: tuple  # keras.Variable, in the order to_ds expects
    to_ds: Callable[[Sequence[np.ndarray]], np.ndarray]
    from_ds: Callable[[np.ndarray], Sequence[np.ndarray]]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.to_ds([np.zeros(p.shape, np.float32) for p in self.parts]).shape)

    def read(self, parts=None) -> np.ndarray:
        return self.to_ds([np.asarray(p.value.numpy()) for p in (parts or self.parts)])

    def write(self, value: np.ndarray, parts=None) -> None:
        targets = parts or self.parts
        values = self.from_ds(np.asarray(value))
        for var, val in zip(targets, values):
            if tuple(var.shape) != tuple(val.shape):
                raise ValueError(f"{self.name}: shape {np.shape(value)} does not fit the model")
            var.assign(val.astype(np.float32))


def _lstm_kernel_to_ds(parts):
    kernel, recurrent = parts
    return swap_gate_blocks(np.concatenate([kernel, recurrent], axis=0))


def _lstm_kernel_from_ds(n_in):
    def split(value):
        icfo = swap_gate_blocks(value)
        return icfo[:n_in], icfo[n_in:]
    return split


def ds_tensors(model: DeepSpeech) -> list[DsTensor]:
    """The model's weights under DeepSpeech's names."""
    identity_to = lambda parts: parts[0]           # noqa: E731 - tiny adapters read best inline
    identity_from = lambda value: (value,)         # noqa: E731
    tensors = []
    for name in DENSE_LAYERS[:3]:
        layer = getattr(model, name)
        tensors.append(DsTensor(f"{name}/bias", (layer.bias,), identity_to, identity_from))
        tensors.append(DsTensor(f"{name}/weights", (layer.kernel,), identity_to, identity_from))
    cell = model.lstm.cell
    tensors.append(DsTensor(LSTM_BIAS, (cell.bias,), lambda p: swap_gate_blocks(p[0]),
                            lambda v: (swap_gate_blocks(v),)))
    tensors.append(DsTensor(LSTM_KERNEL, (cell.kernel, cell.recurrent_kernel), _lstm_kernel_to_ds,
                            _lstm_kernel_from_ds(cell.kernel.shape[0])))
    for name in DENSE_LAYERS[3:]:
        layer = getattr(model, name)
        tensors.append(DsTensor(f"{name}/bias", (layer.bias,), identity_to, identity_from))
        tensors.append(DsTensor(f"{name}/weights", (layer.kernel,), identity_to, identity_from))
    return tensors


def get_ds_weights(model: DeepSpeech) -> dict[str, np.ndarray]:
    return {t.name: t.read() for t in ds_tensors(model)}


def set_ds_weights(model: DeepSpeech, weights: dict[str, np.ndarray]) -> None:
    """Assigns every DeepSpeech-named weight present in ``weights``; names the model lacks are an error."""
    by_name = {t.name: t for t in ds_tensors(model)}
    unknown = sorted(set(weights) - set(by_name))
    if unknown:
        raise KeyError(f"not variables of this model: {', '.join(unknown)}")
    for name, value in weights.items():
        by_name[name].write(value)


def count_parameters(model: DeepSpeech) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def dense_flops_per_frame(n_hidden: int, n_classes: int) -> int:
    """Multiply-adds x 2 of one forward step for one frame (matmuls only, the roofline model of the benchmark)."""
    macs = (WINDOWED_INPUT * n_hidden + 2 * n_hidden * n_hidden         # layers 1-3
            + 2 * n_hidden * 4 * n_hidden                                # LSTM: [x; h] x kernel
            + n_hidden * n_hidden + n_hidden * n_classes)                # layers 5-6
    return 2 * macs


# bfloat16 on a CPU saves only matmul time and adds casts, so it has to be clearly faster to be worth it.
MIN_BFLOAT16_SPEEDUP = 1.2


def keras_policy(amp: bool, on_gpu: bool) -> str:
    """AMP: float16 on GPUs (needs loss scaling); bfloat16 on CPUs that multiply it at least MIN_BFLOAT16_SPEEDUP
    times faster than float32 (same range as float32, no scaling needed), float32 on the others."""
    if not amp:
        return "float32"
    if on_gpu:
        return "mixed_float16"
    return "mixed_bfloat16" if bfloat16_speedup() >= MIN_BFLOAT16_SPEEDUP else "float32"


def on_gpu() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))
