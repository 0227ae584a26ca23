"""The Keras model against DeepSpeech 0.9.3: names, shapes, and numbers through checkpoints both ways.

The reference is an independent TF1-style graph (tf.compat.v1 variables under DeepSpeech's scopes, the identity-conv
context windows, ``BlockLSTM`` consuming the ICFO kernel as DeepSpeech's LSTMBlockFusedCell did, TF1's AdamOptimizer
and Saver) that writes and reads name-based checkpoints the way DeepSpeech's training did.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.model import checkpoint, lstm_kernel, network
from deepspeech_it.model.checkpoint import (BEST_PREFIX, BEST_STATE_FILE, BETA1, BETA2, EPSILON, CheckpointError,
                                            listed_checkpoints, load_training_state, load_weights_by_ds_name,
                                            optimizer_counters, read_bundle, restore_optimizer_counters,
                                            save_checkpoint, training_tensors, write_bundle)
from deepspeech_it.model.network import (build_model, count_parameters, ds_tensors, fused_recurrence, get_ds_weights,
                                         lstm_hoisted, lstm_recurrence_ops)

ROOT = Path(__file__).resolve().parents[1]
N_HIDDEN, N_CLASSES, BATCH, FRAMES = 12, 7, 3, 11        # small geometry of the equivalence tests
LSTM = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
tf1 = tf.compat.v1


# ------------------------------------------------------------------------------------------------ geometry

def deepspeech_shapes(n_hidden: int, n_classes: int) -> dict[str, tuple[int, ...]]:
    """The variables of DeepSpeech 0.9.3's create_model (util/config.py geometry, train.py dense + LSTM cell)."""
    n_input, n_context = 26, 9
    width = n_input + 2 * n_input * n_context
    return {
        "layer_1/weights": (width, n_hidden), "layer_1/bias": (n_hidden,),
        "layer_2/weights": (n_hidden, n_hidden), "layer_2/bias": (n_hidden,),
        "layer_3/weights": (n_hidden, n_hidden), "layer_3/bias": (n_hidden,),
        f"{LSTM}/kernel": (2 * n_hidden, 4 * n_hidden), f"{LSTM}/bias": (4 * n_hidden,),
        "layer_5/weights": (n_hidden, n_hidden), "layer_5/bias": (n_hidden,),
        "layer_6/weights": (n_hidden, n_classes), "layer_6/bias": (n_classes,),
    }


@pytest.mark.parametrize("alphabet_file, labels", [("en.txt", 28), ("it.txt", 38)])
def test_names_shapes_and_parameter_count_match_deepspeech_at_2048(alphabet_file, labels):
    alphabet = Alphabet.from_file(ROOT / "alphabet" / alphabet_file)
    assert alphabet.size == labels
    model = build_model(alphabet.size + 1, n_hidden=2048)
    expected = deepspeech_shapes(2048, labels + 1)
    ours = {t.name: t.shape for t in ds_tensors(model)}
    assert ours == expected
    assert count_parameters(model) == sum(int(np.prod(s)) for s in expected.values())
    if labels == 28:
        # The English 0.9.3 release's size, 47.2 M parameters.
        assert count_parameters(model) == 47_224_861


def available_implementations() -> list[str]:
    """The fused kernel's implementations of the recurrent products this CPU runs (lstm_kernel.cc)."""
    ops, _ = lstm_kernel.load()
    if ops is None:
        return []
    flags = lstm_kernel._cpu_flags()
    return ["portable"] + ["avx512_float32"] * ("avx512f" in flags) + ["avx512_bfloat16"] * ("avx512_bf16" in flags)


FLOAT32_LOOPS = ["TensorFlow ops"] + [i for i in available_implementations() if "bfloat16" not in i]


@pytest.mark.parametrize("loop", FLOAT32_LOOPS)
@pytest.mark.parametrize("batch, frames", [(BATCH, FRAMES), (1, 1), (8, 5), (19, 4)])
def test_cpu_lstm_path_equals_the_keras_lstm_layer(loop, batch, frames, monkeypatch):
    """Without a GPU the model runs the LSTM's arithmetic with the input projection hoisted out of the time loop,
    the loop itself in the fused CPU kernel (each of its float32 implementations of the recurrent products) or in
    TensorFlow ops (where the kernel is missing); with one it calls the Keras layer (cuDNN). Each must give the
    layer's numbers, forward and backward, also for batches that do not split evenly between the kernel's threads
    or into its tiles of 8 rows, and for a width (4 x 12) that is no multiple of its panels of 48 columns."""
    monkeypatch.setattr(network, "recurrence_for",
                        lambda dtype, units: (None if loop == "TensorFlow ops" else loop, loop))
    model = build_model(N_CLASSES, n_hidden=N_HIDDEN, seed=4)
    rng = np.random.default_rng(2)
    for variable in model.lstm.weights:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32) * 0.4)
    x = tf.constant(rng.normal(size=(batch, frames, N_HIDDEN)).astype(np.float32))
    results = []
    for run in (lambda: model.lstm(x), lambda: lstm_hoisted(model.lstm, x)):
        with tf.GradientTape() as tape:
            out = run()
            loss = tf.reduce_sum(out * tf.range(1.0, N_HIDDEN + 1.0))
        results.append([out] + tape.gradient(loss, model.lstm.trainable_variables))
    for keras_value, hoisted_value in zip(*results):
        np.testing.assert_allclose(hoisted_value.numpy(), keras_value.numpy(), rtol=1e-5, atol=1e-5)


def recurrence_and_gradients(recurrence, units: int, batch: int, frames: int, seed: int):
    """hs and the gradients of a weighted sum of them for projected inputs and a recurrent kernel of one seed."""
    rng = np.random.default_rng(seed)
    projected = tf.constant(rng.normal(size=(frames, batch, 4 * units)).astype(np.float32))
    recurrent = tf.constant((rng.normal(size=(units, 4 * units)) / np.sqrt(units)).astype(np.float32))
    weights = tf.constant(rng.normal(size=(frames, batch, units)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch([projected, recurrent])
        hs = recurrence(projected, recurrent)
        loss = tf.reduce_sum(hs * weights)
    return [hs.numpy()] + [g.numpy() for g in tape.gradient(loss, [projected, recurrent])]


@pytest.mark.skipif("avx512_bfloat16" not in available_implementations(), reason="this CPU has no AVX512-BF16")
@pytest.mark.parametrize("units, batch, frames", [(5, 3, 7), (97, 9, 11), (384, 32, 12)])
def test_bfloat16_products_are_the_float32_recurrence_to_bfloat16_precision(units, batch, frames):
    """The kernel's bfloat16 products round h, the recurrent kernel and the gate gradients to bfloat16 (8 bits of
    mantissa) and sum in float32, as a mixed_bfloat16 product does: the recurrence and its gradients stay within a
    few bfloat16 roundings of the float32 ones, at widths and depths that fill no whole panel or pair."""
    exact = recurrence_and_gradients(lstm_recurrence_ops, units, batch, frames, seed=units)
    halves = recurrence_and_gradients(fused_recurrence("avx512_bfloat16"), units, batch, frames, seed=units)
    for reference, value in zip(exact, halves):
        scale = np.max(np.abs(reference))
        assert np.max(np.abs(value - reference)) <= 2e-2 * scale
        assert np.max(np.abs(value - reference)) > 1e-6 * scale    # rounded, so not the float32 arithmetic


def test_the_products_resolve_to_what_this_cpu_runs():
    """"float32" takes the AVX-512 tiles where the CPU has AVX-512 and Eigen's products elsewhere; "bfloat16" takes
    one of the AVX-512 tiles (bfloat16 where they time faster) and falls back the same way; an implementation this
    CPU cannot run is refused when the op is made, not found out by a crash."""
    ops, line = lstm_kernel.load()
    if ops is None:
        pytest.skip(line)
    implemented = available_implementations()
    resolved = {p: ops.deep_speech_it_lstm_products(products=p).numpy().decode()
                for p in ("float32", "bfloat16", "portable")}
    assert resolved["portable"] == "portable"
    assert resolved["float32"] == ("avx512_float32" if "avx512_float32" in implemented else "portable")
    if "avx512_float32" in implemented:
        assert resolved["bfloat16"] in implemented and resolved["bfloat16"] != "portable"
    else:
        assert resolved["bfloat16"] == "portable"
    for name in set(lstm_kernel.IMPLEMENTATIONS) - set(implemented):
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"cannot run the {name} products"):
            ops.deep_speech_it_lstm_products(products=name)


def test_the_kernel_takes_bfloat16_where_avx512_runs_it():
    """In bfloat16 the kernel needs AVX-512 (bfloat16 or float32 tiles): its portable products are float32, and
    TensorFlow's bfloat16 ones beat them."""
    products, line = lstm_kernel.loop_for.__wrapped__("bfloat16")
    has_avx512 = "avx512_float32" in available_implementations()
    assert (products == "bfloat16") == has_avx512
    assert ("AVX-512" in line or "AVX512-BF16" in line) if has_avx512 else "TensorFlow ops in bfloat16" in line


@pytest.mark.parametrize("kernel_speedup", [1.7, 0.4])
def test_bfloat16_training_takes_the_faster_loop_at_its_size(kernel_speedup, monkeypatch):
    """In bfloat16 the loop that the timing at the layer's size found faster runs, and the line says by how much;
    float32 never times (the kernel's float32 products beat TensorFlow's at every size)."""
    if lstm_kernel.loop_for("bfloat16")[0] is None:
        pytest.skip(f"no kernel for bfloat16 here: {lstm_kernel.loop_for('bfloat16')[1]}")
    timed = []
    monkeypatch.setattr(network, "_kernel_speedup_in_bfloat16",
                        lambda products, units: timed.append(units) or kernel_speedup)
    products, line = network.recurrence_for.__wrapped__("bfloat16", 200)
    assert timed == [200]
    if kernel_speedup > 1:
        assert products == "bfloat16" and "1.70x as fast as TensorFlow's bfloat16 ops at 200 units" in line
    else:
        assert products is None and line.startswith("TensorFlow ops in bfloat16, 2.50x as fast as the fused")
    assert network.recurrence_for.__wrapped__("float32", 200)[0] == lstm_kernel.loop_for("float32")[0]
    assert timed == [200]


def test_the_bfloat16_timing_measures_both_loops(monkeypatch):
    """The timing runs the kernel and TensorFlow's loop forward and backward (a loop made slower shows in the
    ratio), also when asked from inside a graph being traced."""
    if lstm_kernel.loop_for("bfloat16")[0] is None:
        pytest.skip(f"no kernel for bfloat16 here: {lstm_kernel.loop_for('bfloat16')[1]}")
    products = lstm_kernel.loop_for("bfloat16")[0]
    fair = network._kernel_speedup_in_bfloat16(products, 64)
    assert 0 < fair < math.inf
    fused = network.fused_recurrence(products)

    def slowed(wanted):
        def recurrence(projected, recurrent):
            hs = fused(projected, recurrent)
            for _ in range(40):
                hs = fused(projected, recurrent) * 0.5 + hs * 0.5
            return hs
        return recurrence
    monkeypatch.setattr(network, "fused_recurrence", slowed)

    @tf.function
    def traced():
        return network._kernel_speedup_in_bfloat16(products, 64)
    assert traced() < fair / 4


def test_a_bfloat16_model_stays_within_bfloat16_precision_of_float32():
    """Whichever loop runs bfloat16 here, the layer's outputs stay within bfloat16 precision of the float32 layer's."""
    model = build_model(N_CLASSES, n_hidden=N_HIDDEN, seed=4)
    half = build_model(N_CLASSES, n_hidden=N_HIDDEN, seed=4, dtype_policy="mixed_bfloat16")
    x = tf.constant(np.random.default_rng(5).normal(size=(BATCH, FRAMES, N_HIDDEN)).astype(np.float32))
    exact, rounded = model.lstm(x), tf.cast(lstm_hoisted(half.lstm, x), tf.float32)
    np.testing.assert_allclose(rounded.numpy(), exact.numpy(), atol=3e-2)


def test_make_setup_builds_a_fused_kernel_that_loads_here():
    """The fused kernel is what makes CPU training fast; a build that silently failed would only show as slowness."""
    ops, line = lstm_kernel.load()
    if platform.machine() == "x86_64" and not set(lstm_kernel.X86_FLAGS) <= lstm_kernel._cpu_flags():
        assert ops is None and "AVX2 and FMA" in line
    else:
        assert ops is not None, line
        assert line == "the fused CPU kernel"


def test_a_missing_or_damaged_kernel_falls_back_to_tensorflow_ops_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(lstm_kernel, "LSTM_KERNEL_LIBRARY", tmp_path / "liblstm_kernel.so")
    ops, line = lstm_kernel.load.__wrapped__()
    assert ops is None and "not built; make setup builds it" in line
    (tmp_path / "liblstm_kernel.so").write_bytes(b"\x7fELF not really a library")
    monkeypatch.setattr(lstm_kernel, "_cpu_flags", lambda: set(lstm_kernel.X86_FLAGS))
    ops, line = lstm_kernel.load.__wrapped__()
    assert ops is None and "does not load" in line and "make setup rebuilds it" in line


# ------------------------------------------------------------------------------------------------ reference

class ReferenceGraph:
    """DeepSpeech's training graph for one fixed batch, written the TF1 way."""

    def __init__(self, n_hidden: int, n_classes: int, batch: int, frames: int, seed: int, learning_rate: float):
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf1.set_random_seed(seed)
            self.features = tf1.placeholder(tf.float32, [batch, frames, 26])
            eye = np.eye(19 * 26, dtype=np.float32).reshape(19, 26, 19 * 26)
            windows = tf.nn.conv1d(self.features, eye, stride=1, padding="SAME")        # DeepSpeech train.py 58-75
            x = tf.reshape(tf.transpose(windows, [1, 0, 2]), [-1, 19 * 26])
            init = tf1.random_normal_initializer(stddev=0.3, seed=seed)
            x = self._dense("layer_1", x, n_hidden, init)
            x = self._dense("layer_2", x, n_hidden, init)
            x = self._dense("layer_3", x, n_hidden, init)
            x = tf.reshape(x, [frames, batch, n_hidden])
            with tf1.variable_scope(LSTM):
                kernel = tf1.get_variable("kernel", [2 * n_hidden, 4 * n_hidden], initializer=init)
                bias = tf1.get_variable("bias", [4 * n_hidden], initializer=init)
            zeros = tf.zeros([batch, n_hidden])
            no_peephole = tf.zeros([n_hidden])
            outputs = tf.raw_ops.BlockLSTM(seq_len_max=tf.constant(frames, tf.int64), x=x, cs_prev=zeros,
                                           h_prev=zeros, w=kernel, wci=no_peephole, wcf=no_peephole,
                                           wco=no_peephole, b=bias, forget_bias=0.0, cell_clip=-1.0,
                                           use_peephole=False)
            x = tf.reshape(outputs[-1], [-1, n_hidden])
            x = self._dense("layer_5", x, n_hidden, init)
            logits = self._dense("layer_6", x, n_classes, init, relu=False)
            self.logits = tf.transpose(tf.reshape(logits, [frames, batch, n_classes]), [1, 0, 2])
            self.loss = tf.reduce_mean(tf.square(self.logits))
            self.global_step = tf1.train.get_or_create_global_step()
            self.learning_rate = tf1.get_variable("learning_rate", initializer=np.float32(learning_rate),
                                                  trainable=False)
            adam = tf1.train.AdamOptimizer(self.learning_rate, beta1=BETA1, beta2=BETA2, epsilon=EPSILON)
            self.train_op = adam.minimize(self.loss, global_step=self.global_step)
            self.saver = tf1.train.Saver()
            self.session = tf1.Session(graph=self.graph)
            self.session.run(tf1.global_variables_initializer())

    @staticmethod
    def _dense(name, x, units, init, relu=True):
        with tf1.variable_scope(name):
            bias = tf1.get_variable("bias", [units], initializer=init)
            weights = tf1.get_variable("weights", [x.shape[-1], units], initializer=init)
        out = tf.nn.bias_add(tf.matmul(x, weights), bias)
        return tf.minimum(tf.nn.relu(out), 20.0) if relu else out

    def run_logits(self, features):
        return self.session.run(self.logits, {self.features: features})

    def train_step(self, features):
        self.session.run(self.train_op, {self.features: features})

    def save(self, prefix: Path) -> Path:
        with self.graph.as_default():
            return Path(self.saver.save(self.session, str(prefix), global_step=self.global_step))

    def restore(self, prefix: Path) -> None:
        with self.graph.as_default():
            self.saver.restore(self.session, str(prefix))

    def variables(self) -> dict[str, np.ndarray]:
        with self.graph.as_default():
            return {v.op.name: self.session.run(v) for v in tf1.global_variables()}


def our_model(seed=7, learning_rate=1e-3):
    model = build_model(N_CLASSES, n_hidden=N_HIDDEN, dropout=0.0, seed=seed)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=BETA1, beta_2=BETA2, epsilon=EPSILON)
    optimizer.build(model.trainable_variables)
    return model, optimizer


def our_train_step(model, optimizer, features):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(features, training=True)))
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(3).normal(size=(BATCH, FRAMES, 26)).astype(np.float32) * 4


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory, features):
    """A DeepSpeech-style checkpoint after two Adam steps, and the reference logits it gives."""
    reference = ReferenceGraph(N_HIDDEN, N_CLASSES, BATCH, FRAMES, seed=11, learning_rate=3e-3)
    reference.train_step(features)
    reference.train_step(features)
    prefix = reference.save(tmp_path_factory.mktemp("reference") / "train")
    return prefix, reference.run_logits(features), reference.variables()


def test_reference_checkpoint_has_deepspeech_variables(reference_checkpoint):
    _, _, variables = reference_checkpoint
    expected = set(deepspeech_shapes(N_HIDDEN, N_CLASSES))
    expected |= {f"{n}/{s}" for n in list(expected) for s in ("Adam", "Adam_1")}
    expected |= {"global_step", "learning_rate", "beta1_power", "beta2_power"}
    assert set(variables) == expected


def test_reference_checkpoint_loads_into_our_model_with_same_logits_and_state(reference_checkpoint, features):
    prefix, reference_logits, variables = reference_checkpoint
    model, optimizer = our_model()
    report = load_training_state(model, optimizer, prefix)
    assert report.initialised == () and report.global_step == 2
    np.testing.assert_allclose(model(features).numpy(), reference_logits, rtol=1e-5, atol=1e-5)
    ours = training_tensors(model, optimizer, report.global_step)
    assert set(ours) == set(variables)
    for name, value in variables.items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(3e-3)


def test_one_more_adam_step_agrees_with_tf1_adam(tmp_path, reference_checkpoint, features):
    prefix, _, _ = reference_checkpoint
    reference = ReferenceGraph(N_HIDDEN, N_CLASSES, BATCH, FRAMES, seed=99, learning_rate=1.0)
    reference.restore(prefix)
    reference.train_step(features)
    model, optimizer = our_model()
    load_training_state(model, optimizer, prefix)
    our_train_step(model, optimizer, features)
    ours = training_tensors(model, optimizer, 3)
    for name, value in reference.variables().items():
        np.testing.assert_allclose(ours[name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_our_checkpoint_loads_back_into_the_reference(tmp_path, features):
    model, optimizer = our_model(seed=5)
    our_train_step(model, optimizer, features)
    saved = save_checkpoint(tmp_path, "train", training_tensors(model, optimizer, 1), {}, max_to_keep=5)
    assert saved.name == "train-1" and (tmp_path / "checkpoint").exists()
    reference = ReferenceGraph(N_HIDDEN, N_CLASSES, BATCH, FRAMES, seed=1, learning_rate=0.5)
    reference.restore(saved)
    np.testing.assert_allclose(reference.run_logits(features), model(features).numpy(), rtol=1e-5, atol=1e-5)
    variables = reference.variables()
    assert variables["global_step"] == 1
    assert variables["beta1_power"] == pytest.approx(BETA1 ** 2)
    assert variables["learning_rate"] == pytest.approx(1e-3)


def test_adam_update_count_survives_a_checkpoint_where_beta1_power_is_subnormal(tmp_path):
    model, optimizer = our_model()
    optimizer.iterations.assign(975)              # beta1^976 is a float32 subnormal with one significant bit
    write_bundle(tmp_path / "train-975", training_tensors(model, optimizer, 975))
    again, again_optimizer = our_model()
    load_training_state(again, again_optimizer, tmp_path / "train-975")
    assert int(again_optimizer.iterations.numpy()) == 975


def test_loss_scale_and_update_count_are_saved_for_the_resume():
    def scaled():
        model = build_model(N_CLASSES, n_hidden=N_HIDDEN, dropout=0.0)
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
        optimizer.build(model.trainable_variables)
        return optimizer

    optimizer = scaled()
    optimizer.inner_optimizer.iterations.assign(40)       # behind the global step: overflowing steps are skipped
    optimizer.dynamic_scale.assign(4096.0)
    optimizer.step_counter.assign(17)
    counters = json.loads(json.dumps(optimizer_counters(optimizer)))   # through the progress sidecar
    resumed = scaled()
    restore_optimizer_counters(resumed, counters)
    assert (int(resumed.inner_optimizer.iterations.numpy()), float(resumed.dynamic_scale.numpy()),
            int(resumed.step_counter.numpy())) == (40, 4096.0, 17)


def _tiny_tensors(step: int) -> dict:
    return {"global_step": np.asarray(step, np.int64), "layer_1/bias": np.full(2, step, np.float32)}


@pytest.mark.parametrize("kind, keep", [("train", 2), (BEST_PREFIX, 1)])
def test_rotation_killed_after_a_deletion_leaves_a_state_file_naming_existing_bundles(tmp_path, monkeypatch, kind,
                                                                                     keep):
    for step in range(1, keep + 1):
        save_checkpoint(tmp_path, kind, _tiny_tensors(step), {}, max_to_keep=keep)
    remove = checkpoint.remove_bundle

    def remove_then_die(prefix):
        remove(prefix)
        raise KeyboardInterrupt("killed after removing " + prefix.name)

    monkeypatch.setattr(checkpoint, "remove_bundle", remove_then_die)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, kind, _tiny_tensors(keep + 1), {}, max_to_keep=keep)
    state_file = BEST_STATE_FILE if kind == BEST_PREFIX else "checkpoint"
    listed = listed_checkpoints(tmp_path, state_file)
    assert [p.name for p in listed] == [f"{kind}-{step}" for step in range(2, keep + 2)]
    assert all(Path(f"{p}.index").exists() for p in listed)
    assert read_bundle(listed[-1])["layer_1/bias"].tolist() == [keep + 1] * 2
    monkeypatch.undo()
    save_checkpoint(tmp_path, kind, _tiny_tensors(keep + 2), {}, max_to_keep=keep)
    left = sorted(p.name for p in tmp_path.glob(f"{kind}-*.index"))
    assert left == sorted(f"{kind}-{step}.index" for step in range(3, keep + 3))   # the leftovers went too


def cudnn_style(prefix: Path, target: Path) -> Path:
    """The reference checkpoint as a CudnnLSTM run saves it: canonical LSTM weights without their Adam moments,
    which live in the opaque buffer's slots instead."""
    tensors = read_bundle(prefix)
    flat = np.concatenate([tensors[f"{LSTM}/kernel"].ravel(), tensors[f"{LSTM}/bias"].ravel()])
    for suffix in ("Adam", "Adam_1"):
        for part in ("kernel", "bias"):
            del tensors[f"{LSTM}/{part}/{suffix}"]
        tensors[f"cudnn_lstm/opaque_kernel/{suffix}"] = np.ones_like(flat)
    tensors["cudnn_lstm/opaque_kernel"] = flat
    write_bundle(target, tensors)
    return target


def test_cudnn_checkpoint_without_lstm_adam_slots_loads(tmp_path, reference_checkpoint, features):
    prefix, reference_logits, variables = reference_checkpoint
    cudnn = cudnn_style(prefix, tmp_path / "best_dev-2")
    model, optimizer = our_model()
    report = load_training_state(model, optimizer, cudnn)
    assert set(report.initialised) == {f"{LSTM}/{p}/{s}" for p in ("kernel", "bias") for s in ("Adam", "Adam_1")}
    np.testing.assert_allclose(model(features).numpy(), reference_logits, rtol=1e-5, atol=1e-5)
    ours = training_tensors(model, optimizer, 2)
    assert not ours[f"{LSTM}/kernel/Adam"].any()
    np.testing.assert_array_equal(ours["layer_2/weights/Adam"], variables["layer_2/weights/Adam"])
    weights = load_weights_by_ds_name(cudnn)
    assert set(weights) == set(deepspeech_shapes(N_HIDDEN, N_CLASSES))


def test_checkpoint_missing_a_weight_is_refused(tmp_path, reference_checkpoint):
    tensors = read_bundle(reference_checkpoint[0])
    del tensors["layer_3/weights"]
    write_bundle(tmp_path / "broken", tensors)
    model, optimizer = our_model()
    with pytest.raises(CheckpointError, match="layer_3/weights"):
        load_training_state(model, optimizer, tmp_path / "broken")


# What DeepSpeech re-initialises for --drop_source_layers N (checkpoints.py 49-66), spelled out per layer.
DROPPED = {
    0: set(),
    1: {"layer_6"},
    2: {"layer_6", "layer_5"},
    3: {"layer_6", "layer_5", LSTM},
    4: {"layer_6", "layer_5", LSTM, "layer_3"},
    5: {"layer_6", "layer_5", LSTM, "layer_3", "layer_2"},
}


@pytest.mark.parametrize("drop", sorted(DROPPED))
def test_drop_source_layers_reinitialises_what_deepspeech_does(reference_checkpoint, drop):
    prefix, _, source = reference_checkpoint
    model, optimizer = our_model(seed=123)
    fresh = get_ds_weights(model)
    report = load_training_state(model, optimizer, prefix, drop_source_layers=drop, learning_rate=2.5e-4)
    after = training_tensors(model, optimizer, report.global_step)
    for name, value in fresh.items():
        layer = name.rsplit("/", 1)[0]
        if layer in DROPPED[drop]:
            np.testing.assert_array_equal(after[name], value, err_msg=name)
            assert not after[f"{name}/Adam"].any() and not after[f"{name}/Adam_1"].any()
        else:
            np.testing.assert_array_equal(after[name], source[name], err_msg=name)
            np.testing.assert_array_equal(after[f"{name}/Adam"], source[f"{name}/Adam"], err_msg=name)
    assert report.global_step == 2                                   # DeepSpeech keeps the source's step
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(2.5e-4)   # ours, not the source's
    assert ("beta2_power" in report.initialised) == (drop == 5)      # '2' also matches beta2_power
