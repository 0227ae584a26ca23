"""Name-based checkpoints in DeepSpeech 0.9.3's layout, so DeepSpeech/Coqui tools and this project read each other's.

A checkpoint directory holds ``train-<step>`` bundles listed by the state file ``checkpoint``, the best dev model as
``best_dev-<step>`` listed by ``best_dev_checkpoint``, and ``flags.json``/``flags.txt`` and ``alphabet.txt`` beside
them. Every bundle is a TF1 ``Saver``-style V2 bundle keyed by DeepSpeech's variable names: ``global_step``,
``learning_rate``, ``beta1_power``, ``beta2_power``, the weights and their Adam moments ``<name>/Adam`` and
``<name>/Adam_1``. A ``<prefix>.progress.json`` sidecar carries what DeepSpeech keeps nowhere (epoch, position in the
epoch, loss history, early-stopping counters, Adam's exact update count, the loss scale); DeepSpeech ignores it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from deepspeech_it.config import ALPHABET_FILE
from deepspeech_it.model.network import LSTM_SCOPE, DeepSpeech, ds_tensors
from deepspeech_it.util.atomic import write_json_atomic, write_text_atomic
from deepspeech_it.util.errors import PipelineError, one_line
from deepspeech_it.util.tf_runtime import tf

TRAIN_PREFIX = "train"
BEST_PREFIX = "best_dev"
TRAIN_STATE_FILE = "checkpoint"
BEST_STATE_FILE = "best_dev_checkpoint"
ADAM_SLOTS = ("Adam", "Adam_1")      # first and second moment, the slot names of TF1's AdamOptimizer "Adam"
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-8
# DeepSpeech's --drop_source_layers N drops every variable whose name contains one of the last N of these.
DROPPABLE_LAYERS = ("2", "3", "lstm", "5", "6")


class CheckpointError(PipelineError, RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------------------------
# bundles and state files

def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    """Writes a V2 checkpoint bundle (``prefix.index`` + ``prefix.data-00000-of-00001``) with the given names."""
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def read_bundle(prefix: str | Path, names=None) -> dict[str, np.ndarray]:
    with _damage_reported(prefix):
        reader = tf.train.load_checkpoint(str(prefix))
        wanted = reader.get_variable_to_shape_map().keys() if names is None else names
        return {name: reader.get_tensor(name) for name in wanted}


def bundle_names(prefix: str | Path) -> dict[str, list[int]]:
    with _damage_reported(prefix):
        return tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map()


@contextlib.contextmanager
def _damage_reported(prefix: str | Path) -> Iterator[None]:
    """TensorFlow's reader errors on a truncated or overwritten bundle, as one CheckpointError naming it."""
    try:
        yield
    except (tf.errors.OpError, ValueError, IndexError) as problem:      # IndexError: "Read less bytes"
        detail = (getattr(problem, "message", "") or str(problem)).strip().splitlines()
        raise CheckpointError(f"checkpoint {prefix} cannot be read ({detail[0][:200] if detail else 'damaged'}); "
                              "the bundle (.index/.data files) is damaged: restore it or move it away and train "
                              "again") from None


def bundle_files(prefix: Path) -> list[Path]:
    """The files of the checkpoint bundle PREFIX (.index, .data-*, and our progress file)."""
    return sorted(prefix.parent.glob(prefix.name + ".*"))


def remove_bundle(prefix: Path) -> None:
    for path in bundle_files(prefix):
        path.unlink(missing_ok=True)


def listed_checkpoints(directory: Path, state_file: str) -> list[Path]:
    """Bundles a state file lists, oldest first (relative entries are relative to the directory, as in TF)."""
    state = _checkpoint_state(directory, state_file)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    return [Path(p) if os.path.isabs(p) else directory / p for p in paths]


def _checkpoint_state(directory: Path, state_file: str):
    try:
        return tf.train.get_checkpoint_state(str(directory), latest_filename=state_file)
    except ValueError as problem:       # UnicodeDecodeError: TensorFlow itself only warns on a bad text proto
        raise CheckpointError(f"{Path(directory) / state_file} is damaged ({one_line(problem)[:120]}); restore "
                              "it or move the checkpoint folder away and train again") from None


def latest_checkpoint(directory: Path, state_file: str = TRAIN_STATE_FILE) -> Path | None:
    state = _checkpoint_state(directory, state_file)
    if state is None or not state.model_checkpoint_path:
        return None
    path = Path(state.model_checkpoint_path)
    path = path if path.is_absolute() else directory / path
    return path if Path(str(path) + ".index").exists() else None


def resolve_checkpoint(path: str | Path, order=("best", "last")) -> Path:
    """A bundle prefix, or a checkpoint directory resolved as DeepSpeech's load order (best dev, then last)."""
    path = Path(path)
    if Path(str(path) + ".index").exists():
        return path
    if path.is_dir():
        for kind in order:
            found = latest_checkpoint(path, BEST_STATE_FILE if kind == "best" else TRAIN_STATE_FILE)
            if found is not None:
                return found
    raise CheckpointError(f"no checkpoint at {path}")


def write_state_file(directory: Path, state_file: str, prefixes: list[Path]) -> None:
    """The text-proto state file TF1's Saver writes; entries relative so the folder can move."""
    write_text_atomic(directory / state_file, state_file_text(prefixes))


def state_file_text(prefixes: list[Path]) -> str:
    lines = [f'model_checkpoint_path: "{prefixes[-1].name}"']
    lines += [f'all_model_checkpoint_paths: "{p.name}"' for p in prefixes]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# weights for other stages

WEIGHT_NAME = re.compile(r"layer_[12356]/(weights|bias)|" + re.escape(LSTM_SCOPE) + r"/(kernel|bias)")


def is_weight_name(name: str) -> bool:
    """The twelve weights of DeepSpeech's default model (no optimizer slots, no --layer_norm variables)."""
    return WEIGHT_NAME.fullmatch(name) is not None


def load_weights_by_ds_name(checkpoint_path: str | Path) -> dict[str, np.ndarray]:
    """Model weights (no optimizer state) of a DeepSpeech/Coqui-format checkpoint, keyed by DeepSpeech's names.

    ``checkpoint_path`` is a bundle prefix or a checkpoint directory (best dev checkpoint first, then the last).
    The LSTM comes as DeepSpeech's ``.../cudnn_compatible_lstm_cell/kernel`` [n_in + n_cell, 4 n_cell] (rows x then
    h, gate blocks i, c, f, o) and ``.../bias`` [4 n_cell].
    """
    prefix = resolve_checkpoint(checkpoint_path)
    names = [n for n in bundle_names(prefix) if is_weight_name(n)]
    return read_bundle(prefix, names)


# ---------------------------------------------------------------------------------------------------------------
# the full training state

def adam_slots(optimizer, variable):
    """(first, second) Adam moment variables of a model variable in a Keras Adam (possibly loss-scaled)."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    index = inner._get_variable_index(variable)   # Keras keeps no public lookup from a variable to its slots
    return inner._momentums[index], inner._velocities[index]


def training_tensors(model: DeepSpeech, optimizer, global_step: int) -> dict[str, np.ndarray]:
    """Everything DeepSpeech's training Saver stores, computed from the Keras model and optimizer."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    # TF1's Adam keeps beta^(t+1) after t updates; Keras derives the same from its update counter.
    done = int(inner.iterations.numpy())
    out = {
        "global_step": np.asarray(global_step, np.int64),
        "learning_rate": np.asarray(float(inner.learning_rate.numpy()), np.float32),
        "beta1_power": np.asarray(BETA1 ** (done + 1), np.float32),
        "beta2_power": np.asarray(BETA2 ** (done + 1), np.float32),
    }
    for tensor in ds_tensors(model):
        out[tensor.name] = tensor.read().astype(np.float32)
        slots = [adam_slots(optimizer, part) for part in tensor.parts]
        for k, slot_name in enumerate(ADAM_SLOTS):
            out[f"{tensor.name}/{slot_name}"] = tensor.read([s[k] for s in slots]).astype(np.float32)
    return out


def optimizer_counters(optimizer) -> dict:
    """What DeepSpeech's variables leave implicit, for the progress sidecar: Adam's exact update count (the beta
    powers lose it in float32 past ~900 updates) and, for float16, the dynamic loss scale and its growth counter."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    counters = {"adam_updates": int(inner.iterations.numpy())}
    if inner is not optimizer:
        counters["loss_scale"] = float(optimizer.dynamic_scale.numpy())
        counters["loss_scale_steps"] = int(optimizer.step_counter.numpy())
    return counters


def restore_optimizer_counters(optimizer, counters: dict) -> None:
    """Puts back what ``optimizer_counters`` saved; counters absent (DeepSpeech's checkpoints) stay as loaded."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    if "adam_updates" in counters:
        inner.iterations.assign(int(counters["adam_updates"]))
    if inner is not optimizer and "loss_scale" in counters:
        optimizer.dynamic_scale.assign(float(counters["loss_scale"]))
        optimizer.step_counter.assign(int(counters["loss_scale_steps"]))


def dropped_by(name: str, drop_source_layers: int) -> bool:
    """DeepSpeech's substring rule: 1 drops '6', 2 adds '5', 3 'lstm', 4 '3', 5 '2' (layer_1 is always kept)."""
    if drop_source_layers <= 0:
        return False
    dropped = DROPPABLE_LAYERS[-min(drop_source_layers, len(DROPPABLE_LAYERS)):]
    return any(layer in name for layer in dropped)


def _updates_done(beta1_power: float | None, beta2_power: float | None, global_step: int) -> int:
    # Recover Adam's update count from beta^(t+1) while it is a normal float32: beta1^t becomes subnormal after ~830
    # steps (and too coarse to count by ~960), beta2^t after ~87k; then the global step is the count (DeepSpeech
    # applies one update per step). Our own checkpoints also carry the exact count (optimizer_counters).
    for power, beta in ((beta1_power, BETA1), (beta2_power, BETA2)):
        if power is not None and float(np.finfo(np.float32).tiny) <= power < 1.0:
            return max(0, round(math.log(power) / math.log(beta)) - 1)
    return max(0, global_step)


@dataclass(frozen=True)
class LoadReport:
    prefix: Path
    global_step: int
    loaded: tuple[str, ...]
    initialised: tuple[str, ...]      # dropped layers and Adam moments a cuDNN checkpoint lacks


def load_training_state(model: DeepSpeech, optimizer, prefix: str | Path, *, drop_source_layers: int = 0,
                        learning_rate: float | None = None) -> LoadReport:
    """Loads a DeepSpeech-layout checkpoint into the model and its built Keras Adam.

    ``drop_source_layers`` re-initialises layers as DeepSpeech's transfer learning does (the model's fresh values and
    zero moments stay). Missing ``/Adam`` moments (checkpoints trained with CudnnLSTM keep them under
    ``cudnn_lstm/opaque_kernel``) start at zero, as DeepSpeech's ``--load_cudnn``; any other missing weight is an
    error. ``learning_rate`` overrides the checkpoint's (transfer learning); None keeps the checkpoint's.
    """
    prefix = Path(prefix)
    available = bundle_names(prefix)
    with _damage_reported(prefix):
        reader = tf.train.load_checkpoint(str(prefix))
    loaded, initialised = [], []

    def take(name: str):
        if dropped_by(name, drop_source_layers):
            initialised.append(name)
            return None
        if name not in available:
            return None
        loaded.append(name)
        with _damage_reported(prefix):
            return reader.get_tensor(name)

    for tensor in ds_tensors(model):
        value = take(tensor.name)
        if value is None and tensor.name not in initialised:
            raise CheckpointError(f"{prefix} lacks {tensor.name}")
        if value is not None:
            if tuple(value.shape) != tensor.shape:
                raise CheckpointError(f"{tensor.name} is {list(value.shape)} in {prefix}, the model needs "
                                      f"{list(tensor.shape)}: N_HIDDEN or the alphabet differ from the checkpoint's")
            tensor.write(value)
        slots = [adam_slots(optimizer, part) for part in tensor.parts]
        for k, slot_name in enumerate(ADAM_SLOTS):
            name = f"{tensor.name}/{slot_name}"
            moment = take(name)
            parts = [s[k] for s in slots]
            if moment is None:
                if name not in initialised:
                    initialised.append(name)
                for part in parts:
                    part.assign(np.zeros(part.shape, np.float32))
            else:
                tensor.write(moment, parts)

    global_step = int(take("global_step") if "global_step" in available else 0)
    beta1 = take("beta1_power")
    beta2 = take("beta2_power")
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    inner.iterations.assign(_updates_done(None if beta1 is None else float(beta1),
                                          None if beta2 is None else float(beta2), global_step))
    if learning_rate is None:
        stored = take("learning_rate")
        if stored is not None:
            inner.learning_rate.assign(float(stored))
    else:
        inner.learning_rate.assign(float(learning_rate))
    return LoadReport(prefix, global_step, tuple(loaded), tuple(initialised))


# ---------------------------------------------------------------------------------------------------------------
# saving with rotation

def progress_path(prefix: Path) -> Path:
    return Path(str(prefix) + ".progress.json")


def read_progress(prefix: Path) -> dict | None:
    path = progress_path(prefix)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as problem:       # a truncated file, or not JSON at all
        raise CheckpointError(f"{path} is damaged ({one_line(problem)[:120]}); restore it or move the checkpoint "
                              "folder away and train again") from None


def save_checkpoint(directory: Path, kind: str, tensors: dict[str, np.ndarray], progress: dict,
                    max_to_keep: int) -> Path:
    """Writes ``<kind>-<step>`` (kind ``train`` or ``best_dev``), its progress sidecar, then the state file naming
    the newest ``max_to_keep``, then removes the others. A crash at any point leaves a valid state file."""
    state_file = TRAIN_STATE_FILE if kind == TRAIN_PREFIX else BEST_STATE_FILE
    directory.mkdir(parents=True, exist_ok=True)
    step = int(tensors["global_step"])
    prefix = directory / f"{kind}-{step}"
    write_bundle(prefix, tensors)
    write_json_atomic(progress_path(prefix), progress)
    kept = [p for p in listed_checkpoints(directory, state_file) if p != prefix and Path(str(p) + ".index").exists()]
    kept = (kept + [prefix])[-max_to_keep:]
    write_state_file(directory, state_file, kept)
    # Only bundles the state file no longer names are removed, and only once it is written: a kill at any point
    # leaves a state file whose bundles all exist (at worst with an unlisted bundle, which the next save removes).
    for old in unlisted_bundles(directory, kind, kept):
        remove_bundle(old)
    return prefix


def unlisted_bundles(directory: Path, kind: str, listed: list[Path]) -> list[Path]:
    """Prefixes of ``<kind>-<step>`` bundles in DIRECTORY that LISTED lacks (rotated out, or never listed)."""
    names = {p.name for p in listed}
    found = {path.name.split(".", 1)[0] for path in directory.glob(f"{kind}-*.*")}
    return [directory / name for name in sorted(found - names) if re.fullmatch(rf"{re.escape(kind)}-\d+", name)]


def write_companions(directory: Path, flags: dict, alphabet_text: str) -> None:
    """``alphabet.txt`` and the flags beside the checkpoints. Coqui STT reads JSON from ``flags.txt`` (it takes
    ``n_hidden`` from there); ``flags.json`` is the same content under a name that says what it is."""
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomic(directory / ALPHABET_FILE, alphabet_text)
    text = json.dumps(flags, indent=2, sort_keys=True) + "\n"
    write_text_atomic(directory / "flags.json", text)
    write_text_atomic(directory / "flags.txt", text)
