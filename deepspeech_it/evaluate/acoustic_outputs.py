"""Per-frame character probabilities of a data split, computed once from a checkpoint and cached.

Stage 05 decodes the dev set many times (once per alpha/beta pair); the acoustic model runs once, here, and its
softmax outputs are kept in an ``.npz`` file together with a fingerprint of the CSV and the checkpoint, so a rerun
with the same inputs loads them instead of recomputing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.csvfile import read_rows
from deepspeech_it.util.atomic import atomic_path
from deepspeech_it.util.digest import file_digest
from deepspeech_it.util.progress import progress_iter

Predictor = Callable[[Path], np.ndarray]   # wav file -> probabilities [frames, labels + blank]


@dataclass(frozen=True)
class Utterance:
    wav_path: Path
    transcript: str


@dataclass(frozen=True)
class SplitOutputs:
    utterances: tuple[Utterance, ...]
    probabilities: tuple[np.ndarray, ...]

    @property
    def transcripts(self) -> list[str]:
        return [u.transcript for u in self.utterances]

    @property
    def frames(self) -> int:
        return sum(len(p) for p in self.probabilities)


def read_split(csv_path: str | Path) -> tuple[Utterance, ...]:
    """The utterances of a DeepSpeech CSV, in its order."""
    return tuple(Utterance(row.path, row.transcript) for row in read_rows(csv_path))


def checkpoint_predictor(checkpoint_dir: str | Path, alphabet: Alphabet) -> tuple[Predictor, Path]:
    """A predictor running the best checkpoint of CHECKPOINT_DIR (else the last) on CPU or GPU, and its prefix."""
    from deepspeech_it.model.checkpoint import load_weights_by_ds_name, resolve_checkpoint
    from deepspeech_it.model.features import N_INPUT, wav_bytes_to_mfcc
    from deepspeech_it.model.network import build_model, set_ds_weights
    from deepspeech_it.util.tf_runtime import exact_float32, tf

    # alpha and beta are chosen on these outputs for the exported float32 model: the same arithmetic on any GPU.
    exact_float32()
    prefix = resolve_checkpoint(checkpoint_dir)
    weights = load_weights_by_ds_name(prefix)
    n_hidden = weights["layer_1/weights"].shape[1]
    n_classes = weights["layer_6/bias"].shape[0]
    if n_classes != alphabet.size + 1:
        raise ValueError(f"checkpoint {prefix} has {n_classes} output classes, the alphabet needs "
                         f"{alphabet.size + 1}")
    model = build_model(n_classes, n_hidden=n_hidden)
    set_ds_weights(model, weights)

    @tf.function(input_signature=[tf.TensorSpec([None, N_INPUT], tf.float32)], reduce_retracing=True)
    def softmax(mfcc):
        return tf.nn.softmax(model(mfcc[tf.newaxis], training=False)[0])

    def predict(wav_path: Path) -> np.ndarray:
        mfcc = wav_bytes_to_mfcc(tf.constant(Path(wav_path).read_bytes()))
        return softmax(mfcc).numpy()

    return predict, prefix


def compute_outputs(utterances: Sequence[Utterance], predict: Predictor, label: str,
                    progress: bool) -> SplitOutputs:
    probabilities = tuple(np.asarray(predict(u.wav_path), dtype=np.float32)
                          for u in progress_iter(utterances, len(utterances), label, progress))
    return SplitOutputs(tuple(utterances), probabilities)


def save_outputs(path: Path, outputs: SplitOutputs, fingerprint: str) -> None:
    lengths = np.array([len(p) for p in outputs.probabilities], dtype=np.int64)
    width = outputs.probabilities[0].shape[1] if outputs.probabilities else 0
    stacked = (np.concatenate(outputs.probabilities) if outputs.probabilities
               else np.zeros((0, width), np.float32))
    with atomic_path(path) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, probabilities=stacked, lengths=lengths, fingerprint=np.array(fingerprint),
                     wav_paths=np.array([str(u.wav_path) for u in outputs.utterances]),
                     transcripts=np.array(outputs.transcripts))


def load_outputs(path: Path, fingerprint: str) -> SplitOutputs | None:
    """The cached outputs when PATH exists and was made from the same inputs, else None."""
    try:
        with np.load(path) as data:
            if str(data["fingerprint"]) != fingerprint:
                return None
            offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
            stacked = data["probabilities"]
            probabilities = tuple(stacked[a:b] for a, b in zip(offsets[:-1], offsets[1:]))
            utterances = tuple(Utterance(Path(w), str(t)) for w, t in zip(data["wav_paths"], data["transcripts"]))
    except (OSError, KeyError, ValueError):
        return None
    return SplitOutputs(utterances, probabilities)


def outputs_fingerprint(csv_path: Path, model_files: Sequence[Path]) -> str:
    return ";".join([file_digest(csv_path)] + [f"{p.name}:{file_digest(p)}" for p in model_files])


def cached_split_outputs(csv_path: Path, cache_path: Path, predictor_factory: Callable[[], tuple[Predictor, Path]],
                         model_files: Sequence[Path], label: str, progress: bool) -> SplitOutputs:
    """The split's outputs from CACHE_PATH when current, else computed with the factory's predictor and cached.

    MODEL_FILES identify the checkpoint; the predictor (and TensorFlow) is only built when the cache is stale.
    """
    fingerprint = outputs_fingerprint(csv_path, model_files)
    cached = load_outputs(cache_path, fingerprint)
    if cached is not None:
        return cached
    predict, _ = predictor_factory()
    outputs = compute_outputs(read_split(csv_path), predict, label, progress)
    save_outputs(cache_path, outputs, fingerprint)
    return outputs


def concat_outputs(parts: Sequence[SplitOutputs]) -> SplitOutputs:
    return SplitOutputs(tuple(u for p in parts for u in p.utterances), tuple(x for p in parts for x in p.probabilities))
