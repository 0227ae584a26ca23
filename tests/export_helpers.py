"""A small model that really transcribes a few espeak-ng clips, made in seconds, for the client comparisons.

Training with CTC takes minutes even on tiny data, so the output layer is fitted instead: layers 1-5 keep random
weights, and layer_6 is solved by least squares so that each clip's frames give its transcript, spelled out
evenly over the frames with blanks between. With more hidden units than frames the fit is exact, and the
model's greedy output is the transcript: "greedy-clean" clips, on which every decoder must agree.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import load_training_samples
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.export import graph as export
from deepspeech_it.export.transcribe import TFLiteModel
from deepspeech_it.lm.scorer import build_dictionary, write_scorer
from deepspeech_it.model import features
from deepspeech_it.paths import find_tool

TARGET_LOGIT = 12.0


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str


def speak(path: Path, text: str, rate: int = 16000, channels: int = 1, speed: int = 170) -> Path:
    """espeak-ng Italian, converted by sox to RATE, CHANNELS and the format PATH's extension names."""
    raw = path.with_name(path.stem + ".espeak.wav")
    subprocess.run(["espeak-ng", "-v", "it", "-s", str(speed), "-w", str(raw), text], check=True)
    # -R: otherwise sox seeds its dither afresh, the clips differ from run to run, and so did the characters that the
    # quantised model's rounding flips between the clients (0 to 7 % CER between libdeepspeech.so and libstt.so).
    subprocess.run(["sox", "-R", str(raw), "-r", str(rate), "-c", str(channels), str(path)], check=True)
    raw.unlink()
    return path


def fundamental_hz(samples: np.ndarray) -> float:
    """The strongest autocorrelation lag between 60 and 400 Hz of the loudest half second, as a frequency."""
    x = samples.astype(np.float64)
    energy = np.convolve(x ** 2, np.ones(SAMPLE_RATE // 2), "valid")
    start = int(np.argmax(energy))
    x = x[start:start + SAMPLE_RATE // 2]
    correlation = np.correlate(x, x, "full")[len(x) - 1:]
    low, high = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    return SAMPLE_RATE / (low + int(np.argmax(correlation[low:high])))


def layer5_outputs(weights: dict, mfcc: np.ndarray) -> np.ndarray:
    """DeepSpeech's network up to layer_5 in numpy: MFCC [T, 26] → [T, n_hidden] (an independent reference)."""
    n_context = export.N_CONTEXT
    padded = np.pad(mfcc, [(n_context, n_context), (0, 0)])
    x = np.lib.stride_tricks.sliding_window_view(padded, 2 * n_context + 1, axis=0).transpose(0, 2, 1)
    x = x.reshape(len(mfcc), -1)

    def dense(x, name):
        return np.minimum(np.maximum(x @ weights[f"{name}/weights"] + weights[f"{name}/bias"], 0), export.RELU_CLIP)

    for name in ("layer_1", "layer_2", "layer_3"):
        x = dense(x, name)
    kernel, bias = weights[export.LSTM_KERNEL], weights[export.LSTM_BIAS]
    n_cell = bias.size // 4
    sigmoid = lambda v: 1 / (1 + np.exp(-v))   # noqa: E731
    c, h, outputs = np.zeros(n_cell), np.zeros(n_cell), []
    for row in x:
        i, j, f, o = np.split(np.concatenate([row, h]) @ kernel + bias, 4)
        c = c * sigmoid(f) + sigmoid(i) * np.tanh(j)
        h = np.tanh(c) * sigmoid(o)
        outputs.append(h)
    return dense(np.array(outputs), "layer_5")


def even_alignment(text: str, n_frames: int, alphabet: Alphabet) -> np.ndarray:
    """Per-frame class ids: the characters spread evenly, blanks everywhere else."""
    labels = np.full(n_frames, alphabet.blank_index)
    slot = n_frames / len(text)
    for k, char in enumerate(text):
        labels[int((k + 0.5) * slot)] = alphabet.encode(char)[0]
    return labels


def fitted_weights(clips: list[Clip], alphabet: Alphabet, n_hidden: int, model_for_features: Path,
                   seed: int = 11) -> dict:
    """Random layers 1-5 and a least-squares layer_6 that maps each clip's frames to its transcript."""
    weights = export.random_weights(n_hidden, alphabet, seed=seed)
    features = TFLiteModel(model_for_features)
    rows, targets = [], []
    for clip in clips:
        mfcc = features.features(load_training_samples(clip.path))
        rows.append(layer5_outputs(weights, mfcc))
        targets.append(even_alignment(clip.text, len(mfcc), alphabet))
    x = np.concatenate(rows)
    x = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    y = np.zeros((len(x), alphabet.size + 1))
    y[np.arange(len(x)), np.concatenate(targets)] = TARGET_LOGIT
    solution = np.linalg.lstsq(x, y, rcond=None)[0]
    weights["layer_6/weights"] = solution[:-1].astype(np.float32)
    weights["layer_6/bias"] = solution[-1].astype(np.float32)
    return weights


def feature_probe(folder: Path, alphabet: Alphabet) -> Path:
    """A throw-away exported model: every exported model computes the same features."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "features.tflite"
    probe.write_bytes(export.convert_to_tflite(*export.build_inference_graph(
        export.random_weights(8, alphabet), alphabet, 1), quantize=False))
    return probe


def write_tflite(path: Path, weights: dict, alphabet: Alphabet, beam_width: int, quantize: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export.convert_to_tflite(*export.build_inference_graph(weights, alphabet, beam_width),
                                              quantize=quantize))
    return path


def build_test_scorer(folder: Path, sentences: list[str], alphabet: Alphabet, alpha: float = 0.93,
                      beta: float = 1.18) -> Path:
    """kenlm.scorer from SENTENCES: lmplz (order 3), build_binary -v trie, and our dictionary writer."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    arpa, binary = folder / "lm.arpa", folder / "lm.binary"
    with open(corpus, "rb") as text, open(arpa, "wb") as out:
        subprocess.run([str(find_tool("lmplz")), "-o", "3", "--discount_fallback", "-S", "10%", "-T", str(folder)],
                       stdin=text, stdout=out, stderr=subprocess.DEVNULL, check=True)
    subprocess.run([str(find_tool("build_binary")), "-a", "255", "-q", "8", "-v", "trie", str(arpa), str(binary)],
                   check=True, capture_output=True)
    words = sorted({w for s in sentences for w in s.split()})
    scorer = folder / "kenlm.scorer"
    write_scorer(scorer, binary, build_dictionary(words, alphabet), alpha, beta)
    return scorer


def playback_tflite(path: Path, table: np.ndarray, alphabet: Alphabet, beam_width: int) -> Path:
    """A model in DeepSpeech's TFLite layout that ignores the audio and plays TABLE (frames x classes) back: its
    k-th call returns rows 16k..16k+15, the call count riding in the LSTM state the client carries. Both the
    client and our transcribe then decode exactly these probabilities, which no arithmetic touches."""
    tf = export.tf
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        input_samples = tf1.placeholder(tf.float32, [features.WINDOW_SAMPLES], name="input_samples")
        mfccs = tf.identity(features.audio_to_mfcc(input_samples), name="mfccs")
        input_node = tf1.placeholder(tf.float32, [1, export.N_STEPS, 2 * features.N_CONTEXT + 1, features.N_INPUT],
                                     name="input_node")
        previous_c = tf1.placeholder(tf.float32, [1, 1], name="previous_state_c")
        previous_h = tf1.placeholder(tf.float32, [1, 1], name="previous_state_h")
        # Always 0 for real features, but it depends on them, so the converter keeps input_node.
        never = tf.cast(tf.reduce_min(input_node) > 1e30, tf.int32)
        rows = tf.cast(previous_c[0, 0], tf.int32) * export.N_STEPS + tf.range(export.N_STEPS) + never
        rows = tf.clip_by_value(rows, 0, len(table) - 1)     # a metadata read runs the model on any state
        logits = tf.identity(tf.gather(tf.constant(table.astype(np.float32)), rows), name="logits")
        new_c = tf.identity(previous_c + 1.0, name="new_state_c")
        new_h = tf.identity(previous_h + 1.0, name="new_state_h")
        outputs = [logits, new_c, new_h, mfccs] + export.metadata_outputs(alphabet, beam_width)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(export.convert_to_tflite(graph, [input_node, previous_c, previous_h, input_samples], outputs,
                                              quantize=False))
    return path


def confusable_frames(text: str, alphabet: Alphabet, rng: np.random.Generator) -> np.ndarray:
    """Probabilities a half-trained model might give for TEXT: each character over 1-3 frames with blanks between,
    two in five characters contested by another letter (which may win), spaces sometimes faint, a little
    mass on every class, and a few certain blanks first (the client skips those)."""
    n = alphabet.size + 1
    blank = alphabet.blank_index
    letters = [i for i, label in enumerate(alphabet.labels) if label != " "]

    def frame(target: int, peak: float, rival: int | None = None, rival_share: float = 0.0) -> np.ndarray:
        row = rng.dirichlet(np.full(n, 0.3)) * (1.0 - peak)
        row[target] += peak * (1.0 - rival_share)
        if rival is not None:
            row[rival] += peak * rival_share
        return row

    rows = [frame(blank, 0.9998) for _ in range(int(rng.integers(1, 4)))]
    for char in text:
        target = alphabet.labels.index(char)
        rival = int(rng.choice(letters)) if char != " " and rng.random() < 0.4 else None
        share = float(rng.uniform(0.2, 0.6)) if rival is not None else 0.0
        peak = float(rng.uniform(0.3, 0.8) if char == " " and rng.random() < 0.3 else rng.uniform(0.6, 0.97))
        rows += [frame(target, peak, rival, share) for _ in range(int(rng.integers(1, 4)))]
        rows += [frame(blank, float(rng.uniform(0.5, 0.99))) for _ in range(int(rng.integers(0, 3)))]
    table = np.array(rows)
    return (table / table.sum(axis=1, keepdims=True)).astype(np.float32)


def _log_add(x: np.float32, y: np.float32) -> np.float32:
    if x == -np.inf:
        return y
    if y == -np.inf:
        return x
    top = max(x, y)
    return np.float32(np.log(np.exp(np.float32(x - top)) + np.exp(np.float32(y - top))) + top)


def clients_beam_one(probs: np.ndarray, alphabet: Alphabet) -> str:
    """The text DeepSpeech 0.9.3's and Coqui STT 1.x's CTC prefix beam search (native_client/ctcdecode) give at beam
    width 1 without a scorer, from per-frame softmax outputs [T, classes]: their rules and their float32 arithmetic,
    written again as an independent reference. It is not the greedy best path: where a frame's best character is
    less likely than staying on the prefix (blank or repeat together), beam 1 stays and greedy emits it.
    """
    blank = probs.shape[1] - 1
    minus_inf = np.float32(-np.inf)
    labels: list[int] = []
    last = -1                                   # the root has no character
    blank_prev, char_prev, score = np.float32(0), minus_inf, np.float32(0)
    expanding = False
    for row in probs.astype(np.float64):
        expanding = expanding or row[blank] < 0.999      # the clients skip the all-blank frames at the start
        if not expanding:
            continue
        log_probs = np.log(row + np.finfo(np.float32).tiny).astype(np.float32)
        blank_cur = char_cur = minus_inf
        extended = {}
        for c, log_p_c in enumerate(log_probs):
            if c == blank:
                blank_cur = _log_add(blank_cur, np.float32(log_p_c + score))
                continue
            if c == last:
                char_cur = _log_add(char_cur, np.float32(log_p_c + char_prev))
                extended[c] = np.float32(log_p_c + blank_prev) if blank_prev > minus_inf else minus_inf
            else:
                extended[c] = np.float32(log_p_c + score)
        # The beam keeps the best of the prefix and its extensions: score first, then the lower character.
        best = (_log_add(blank_cur, char_cur), last, None)
        for c, log_p in extended.items():
            if (log_p, -c) > (best[0], -best[1]):
                best = (log_p, c, c)
        if best[2] is None:
            blank_prev, char_prev, score = blank_cur, char_cur, best[0]
        else:
            labels.append(best[2])
            last, blank_prev, char_prev, score = best[2], minus_inf, best[0], best[0]
    return alphabet.decode(labels)
