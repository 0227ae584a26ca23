"""Transcription with the exported TFLite model, run the way DeepSpeech's native client runs it.

The client computes one MFCC frame per 32 ms window (20 ms step), zero-pads the last partial window, puts 9 zero
frames of context before the first and after the last frame, and runs the acoustic model in batches of ``n_steps``
windows, carrying the LSTM state from batch to batch. This module does the same with a maintained TFLite runtime
(ai-edge-litert, or TensorFlow's interpreter), so its output can be compared with the clients' frame for frame.

Only the model file is needed: sample rate, alphabet and beam width are read from its metadata outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepspeech_it.config import SCORER_FILE, TFLITE_FILE
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import load_training_samples
from deepspeech_it.data.framing import PCM_SCALE, SAMPLE_RATE
from deepspeech_it.decode.ctc import ScorerDecoder, Transcript, greedy_decode, scorer_spec
from deepspeech_it.util.errors import PipelineError, one_line
from deepspeech_it.values import MAX_BEAM_WIDTH


class TranscribeError(PipelineError, RuntimeError):
    pass


def _runtime():
    """The TFLite interpreter module and flatbuffer tools: ai-edge-litert, else TensorFlow's copy."""
    try:
        from ai_edge_litert import interpreter
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        try:
            from tensorflow.lite.python import interpreter
            from tensorflow.lite.tools import flatbuffer_utils
        except ImportError:
            raise TranscribeError("no TFLite runtime: pip install ai-edge-litert (or tensorflow)") from None
    return interpreter, flatbuffer_utils


def feature_model(model_bytes: bytes) -> bytes:
    """The AudioSpectrogram → Mfcc part of an exported model, as a model of its own that takes [512, windows].

    The exported model computes one window per call, and a call runs every operator in the model, so the
    feature ops are cut out. Fed windows as channels, AudioSpectrogram and Mfcc compute one frame per window
    in a single call with the same kernels (the client's MFCC plan runs these same two operators).
    """
    _, flatbuffer_utils = _runtime()
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    subgraph = model.subgraphs[0]
    custom = {i: code.customCode for i, code in enumerate(model.operatorCodes)}
    spectrogram = [op for op in subgraph.operators if custom[op.opcodeIndex] == b"AudioSpectrogram"]
    mfcc = [op for op in subgraph.operators if custom[op.opcodeIndex] == b"Mfcc"]
    if len(spectrogram) != 1 or len(mfcc) != 1:
        raise TranscribeError("the model has no AudioSpectrogram + Mfcc feature graph")
    subgraph.operators = [spectrogram[0], mfcc[0]]
    subgraph.inputs = [spectrogram[0].inputs[0]]
    subgraph.outputs = [mfcc[0].outputs[0]]
    used = {t for op in subgraph.operators for t in list(op.inputs) + list(op.outputs)}
    for index, tensor in enumerate(subgraph.tensors):
        if index not in used and tensor.buffer:
            model.buffers[tensor.buffer].data = None      # drop the weights; the feature ops do not need them
    samples = subgraph.tensors[subgraph.inputs[0]]
    samples.shapeSignature = np.asarray([samples.shape[0], -1], np.int32)
    model.signatureDefs = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@dataclass(frozen=True)
class ModelInfo:
    sample_rate: int
    beam_width: int
    alphabet: Alphabet
    n_steps: int
    n_context: int
    n_features: int
    n_cell: int
    window_samples: int
    step_samples: int


class TFLiteModel:
    """An exported output_graph.tflite: metadata, features and per-frame probabilities."""

    def __init__(self, model_path: str | Path, num_threads: int = 1):
        try:
            self._load(Path(model_path), num_threads)
        except TranscribeError:
            raise
        except OSError as problem:
            raise TranscribeError(f"{model_path}: cannot be read: {problem.strerror}") from None
        except (ValueError, RuntimeError, IndexError) as problem:
            # The runtime's verifier refuses a truncated or overwritten flatbuffer with a ValueError.
            raise TranscribeError(f"{model_path}: not a usable TFLite model (truncated or damaged? export it "
                                  f"again with make export): {one_line(problem)}") from None

    def _load(self, model_path: Path, num_threads: int) -> None:
        interpreter, _ = _runtime()
        model_bytes = model_path.read_bytes()
        # The plain builtin kernels, as the clients run them: with the XNNPACK delegate that current runtimes apply
        # by default, a quantised model's outputs drifted from the clients' (transcripts differed); without, they
        # agree.
        self._acoustic = interpreter.Interpreter(
            model_content=model_bytes, num_threads=num_threads,
            experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self._acoustic.allocate_tensors()
        self._inputs = {d["name"]: d["index"] for d in self._acoustic.get_input_details()}
        self._outputs = {d["name"]: d["index"] for d in self._acoustic.get_output_details()}
        missing = {"input_node", "previous_state_c", "previous_state_h", "input_samples"} - set(self._inputs)
        missing |= {"logits", "new_state_c", "new_state_h", "metadata_alphabet"} - set(self._outputs)
        if missing:
            raise TranscribeError(f"{model_path} is not a DeepSpeech TFLite model (no {', '.join(sorted(missing))})")
        self.info = self._read_info()
        # Resizing needs the plain kernels: the default XNNPACK delegate fixes shapes when it is applied.
        self._features = interpreter.Interpreter(
            model_content=feature_model(model_bytes), num_threads=num_threads,
            experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        self._feature_windows = -1

    def _read_info(self) -> ModelInfo:
        # The metadata outputs are produced by RESHAPE nodes of constants, so one call fills them in.
        self._acoustic.invoke()
        value = lambda name: int(self._acoustic.get_tensor(self._outputs[name])[0])   # noqa: E731
        alphabet = Alphabet.deserialize(self._acoustic.get_tensor(self._outputs["metadata_alphabet"])[0])
        _, n_steps, window, n_features = self._input_shape("input_node")
        sample_rate = value("metadata_sample_rate")
        return ModelInfo(
            sample_rate=sample_rate, beam_width=value("metadata_beam_width"), alphabet=alphabet,
            n_steps=n_steps, n_context=(window - 1) // 2, n_features=n_features,
            n_cell=self._input_shape("previous_state_c")[1],
            window_samples=int(sample_rate * value("metadata_feature_win_len") / 1000),
            step_samples=int(sample_rate * value("metadata_feature_win_step") / 1000))

    def _input_shape(self, name: str) -> list[int]:
        return [int(d) for d in self._acoustic.get_tensor(self._inputs[name]).shape]

    def features(self, samples: np.ndarray) -> np.ndarray:
        """int16 samples → MFCC frames [T, n_features], framed as the native client frames them.

        Full windows every step_samples samples, then the buffered rest as one more window, zero-padded (what
        Coqui STT does; DeepSpeech 0.9.3 left stale samples in the unfilled part of that last window).
        """
        info = self.info
        full = 1 + (samples.size - info.window_samples) // info.step_samples if samples.size >= info.window_samples \
            else 0
        n_windows = full + 1
        padded = np.zeros((n_windows - 1) * info.step_samples + info.window_samples, np.float32)
        padded[:samples.size] = samples.astype(np.float32) * PCM_SCALE
        windows = np.lib.stride_tricks.sliding_window_view(padded, info.window_samples)[::info.step_samples]
        windows = np.ascontiguousarray(windows[:n_windows].T)      # [window_samples, n_windows]: one per channel
        if n_windows != self._feature_windows:
            self._features.resize_tensor_input(self._features.get_input_details()[0]["index"], windows.shape)
            self._features.allocate_tensors()
            self._feature_windows = n_windows
        self._features.set_tensor(self._features.get_input_details()[0]["index"], windows)
        self._features.invoke()
        mfcc = self._features.get_tensor(self._features.get_output_details()[0]["index"])
        return mfcc.reshape(n_windows, info.n_features)

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """int16 samples → per-frame softmax outputs [T, classes]."""
        return self.probabilities_of_features(self.features(samples))

    def probabilities_of_features(self, mfcc: np.ndarray) -> np.ndarray:
        info = self.info
        n_frames = mfcc.shape[0]
        padded = np.zeros((n_frames + 2 * info.n_context, info.n_features), np.float32)
        padded[info.n_context:info.n_context + n_frames] = mfcc
        width = 2 * info.n_context + 1
        windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=0).transpose(0, 2, 1)
        state_c = np.zeros((1, info.n_cell), np.float32)
        state_h = np.zeros((1, info.n_cell), np.float32)
        batch = np.zeros((1, info.n_steps, width, info.n_features), np.float32)
        out = []
        run = self._acoustic
        for start in range(0, n_frames, info.n_steps):
            chunk = windows[start:start + info.n_steps]
            batch[0, :len(chunk)] = chunk
            batch[0, len(chunk):] = 0.0           # the final partial batch is zero-filled, as Coqui STT does
            run.set_tensor(self._inputs["input_node"], batch)
            run.set_tensor(self._inputs["previous_state_c"], state_c)
            run.set_tensor(self._inputs["previous_state_h"], state_h)
            run.invoke()
            out.append(run.get_tensor(self._outputs["logits"])[:len(chunk)].copy())
            state_c = run.get_tensor(self._outputs["new_state_c"]).copy()
            state_h = run.get_tensor(self._outputs["new_state_h"]).copy()
        return np.concatenate(out) if out else np.zeros((0, info.alphabet.size + 1), np.float32)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Any file soundfile decodes (wav, flac, mp3, ...) at any rate and channel count → mono int16 at SAMPLE_RATE."""
    if sample_rate != SAMPLE_RATE:
        raise TranscribeError(f"the model wants {sample_rate} Hz audio; only 16 kHz models are supported")
    return load_training_samples(path)


class Transcriber:
    """Audio file → Transcript with an exported model and the stage-05 decoder.

    With a scorer: DeepSpeech's beam search (BEAM_WIDTH, top 40 characters per frame) with the scorer's alpha and
    beta unless given; without: the greedy best path.
    """

    def __init__(self, model_path: str | Path, scorer_path: str | Path | None = None, *, beam_width: int | None = None,
                 alpha: float | None = None, beta: float | None = None, num_threads: int = 1):
        self.model = TFLiteModel(model_path, num_threads=num_threads)
        info = self.model.info
        self.frame_seconds = info.step_samples / info.sample_rate
        self._scorer = None
        if scorer_path is not None:
            from deepspeech_it.lm.scorer import read_scorer

            header = read_scorer(scorer_path)
            self._scorer = ScorerDecoder(scorer_spec(scorer_path, info.alphabet, beam_width or info.beam_width,
                                                     header))
            self.alpha = header.alpha if alpha is None else alpha
            self.beta = header.beta if beta is None else beta

    def decode(self, probabilities: np.ndarray) -> Transcript:
        if self._scorer is None:
            return greedy_decode(probabilities, self.model.info.alphabet, self.frame_seconds)
        return self._scorer.decode(probabilities, self.alpha, self.beta)

    def transcribe_samples(self, samples: np.ndarray) -> Transcript:
        return self.decode(self.model.probabilities(samples))

    def transcribe_file(self, path: str | Path) -> Transcript:
        return self.transcribe_samples(load_audio(path, self.model.info.sample_rate))


CLIENT_THREADS = 4        # the native clients call SetNumThreads(4)
MAX_THREADS = 256


def _whole_number(low: int, high: int):
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: allowed: a whole number >= {low} and <= {high}")
        return value

    return parse


def command_line(argv: list[str] | None, default_model_dir: Path, beam_width: int) -> int:
    """``transcribe.py FILE...``: prints FILE<TAB>TEXT per file (or one JSON object per line with --json).

    A file that cannot be read or decoded gets one line on stderr and the others still run; the exit status is 1
    when any file failed.
    """
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="transcribe.py", description="Transcribe audio files with the exported "
                                     "model (wav, mp3, flac; any sample rate and channel count).")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--model-dir", type=Path, default=default_model_dir,
                        help=f"folder with {TFLITE_FILE} and {SCORER_FILE} (default: %(default)s)")
    parser.add_argument("--no-scorer", action="store_true", help="greedy decoding, no language model")
    parser.add_argument("--json", action="store_true", help="JSON per file: text, confidence, word start times")
    parser.add_argument("--beam-width", type=_whole_number(1, MAX_BEAM_WIDTH), default=beam_width,
                        help="beam width (default: %(default)s)")
    parser.add_argument("--threads", type=_whole_number(1, MAX_THREADS), default=CLIENT_THREADS,
                        help="TFLite threads (default: %(default)s)")
    args = parser.parse_args(argv)

    model_path = args.model_dir / TFLITE_FILE
    scorer_path = None if args.no_scorer else args.model_dir / SCORER_FILE
    for needed in [model_path] + ([scorer_path] if scorer_path else []):
        if not needed.is_file():
            hint = " (run `make export`, or pass --model-dir)" if needed == model_path else " (or use --no-scorer)"
            print(f"error: {needed} does not exist{hint}", file=sys.stderr)
            return 2
    try:
        transcriber = Transcriber(model_path, scorer_path, beam_width=args.beam_width, num_threads=args.threads)
    except PipelineError as problem:
        print(f"error: {one_line(problem)}", file=sys.stderr)
        return 1
    failed = 0
    for name in args.files:
        try:
            result = transcriber.transcribe_file(name)
        except (OSError, ValueError, RuntimeError, PipelineError) as problem:
            print(f"{name}: error: {one_line(problem)}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": name, **result.as_dict()}, ensure_ascii=False), flush=True)
        else:
            print(f"{name}\t{result.text}", flush=True)
    return 1 if failed else 0
