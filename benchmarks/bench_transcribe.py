#!/usr/bin/env python3
"""Whole transcription (features + acoustic model + beam search with the scorer at BEAM_WIDTH=500): our
`transcribe` against DS_SpeechToText of libdeepspeech.so 0.9.3 (and STT_SpeechToText of libstt.so 1.4), on the same
model, scorer and files, in the same run, with the same TFLite thread count (the clients always use 4).

Data: the demo's release when DATA_DIR holds it (after `make demo`: models/output_graph.tflite, models/kenlm.scorer
and the test clips of data/cv-it/test.csv); otherwise a full-size (n_hidden 2048) quantised model fitted to espeak-ng
recordings of the project's sentences (tests/export_helpers.py) with a scorer of those sentences.
Timed: the transcription of decoded 16 kHz samples (audio file decoding is outside both timings).
Goal: our time at most 1.0x DeepSpeech's, with the same or lower WER.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import jiwer

from deepspeech_it.config import load_config
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import load_training_samples
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.evaluate.acoustic_outputs import read_split
from deepspeech_it.export import native_clients
from deepspeech_it.export.transcribe import CLIENT_THREADS, Transcriber

ROOT = Path(__file__).resolve().parents[1]
ALPHABET = Alphabet.from_file(ROOT / "alphabet" / "it.txt")
BEAM_WIDTH = 500
STANDALONE_CLIPS = 8
GOAL_RATIO = 1.0


def demo_release(data_dir: Path):
    """(model, scorer, [(wav, transcript)]) of a `make demo` run, or None."""
    model, scorer, test_csv = (data_dir / "models" / "output_graph.tflite", data_dir / "models" / "kenlm.scorer",
                               data_dir / "data" / "cv-it" / "test.csv")
    if not (model.exists() and scorer.exists() and test_csv.exists()):
        return None
    return model, scorer, [(u.wav_path, u.transcript) for u in read_split(test_csv)]


def standalone_release(folder: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_decode import normalized_sentences
    from export_helpers import Clip, build_test_scorer, feature_probe, fitted_weights, speak, write_tflite

    sentences = normalized_sentences()
    clips = [Clip(speak(folder / f"clip{i}.wav", text), text) for i, text in enumerate(sentences[:STANDALONE_CLIPS])]
    weights = fitted_weights(clips, ALPHABET, 2048, feature_probe(folder, ALPHABET))
    model = write_tflite(folder / "output_graph.tflite", weights, ALPHABET, BEAM_WIDTH, quantize=True)
    scorer = build_test_scorer(folder, sentences, ALPHABET)
    return model, scorer, [(c.path, c.text) for c in clips]


def _shown(path: Path) -> str:
    """PATH relative to the project when inside it: the report is committed and must not name this machine."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else path.name


def run() -> dict:
    data_dir = load_config().data_dir
    with tempfile.TemporaryDirectory() as temp:
        found = demo_release(data_dir)
        source = (f"demo release in DATA_DIR={_shown(data_dir)}" if found
                  else "standalone: n_hidden 2048 model fitted to espeak clips")
        model, scorer, rows = found or standalone_release(Path(temp))
        files = [str(path) for path, _ in rows]
        references = [text for _, text in rows]
        audio = [load_training_samples(f) for f in files]
        audio_seconds = sum(a.size for a in audio) / SAMPLE_RATE

        ours = Transcriber(model, scorer, beam_width=BEAM_WIDTH, num_threads=CLIENT_THREADS)
        ours.transcribe_samples(audio[0])      # warm-up, as the client's model load is outside its timing
        started = time.perf_counter()
        our_texts = [ours.transcribe_samples(a).text for a in audio]
        our_seconds = time.perf_counter() - started

        clients = {}
        for release in native_clients.RELEASES:
            run_ = native_clients.run_client(release, model, files, scorer_path=scorer, beam_width=BEAM_WIDTH)
            clients[release.name] = ([r["text"] for r in run_.results], sum(r["seconds"] for r in run_.results))

    ds_texts, ds_seconds = clients["deepspeech"]
    stt_texts, stt_seconds = clients["stt"]
    our_wer, ds_wer, stt_wer = (jiwer.wer(references, t) for t in (our_texts, ds_texts, stt_texts))
    ratio = our_seconds / ds_seconds
    return {
        "name": "Transcription: our transcribe vs the native clients (same model, scorer, files)",
        "rows": [
            ("data", source),
            ("audio", f"{audio_seconds:.1f} s in {len(files)} files"),
            (f"ours (ai-edge-litert, {CLIENT_THREADS} threads, beam {BEAM_WIDTH} + scorer)",
             f"RTF {our_seconds / audio_seconds:.4f}, WER {our_wer:.4f}"),
            ("DS_SpeechToText (libdeepspeech.so 0.9.3)", f"RTF {ds_seconds / audio_seconds:.4f}, WER {ds_wer:.4f}"),
            ("STT_SpeechToText (libstt.so 1.4.0)", f"RTF {stt_seconds / audio_seconds:.4f}, WER {stt_wer:.4f}"),
            ("ours / DeepSpeech time", f"{ratio:.2f}x"),
            ("WER between ours and DeepSpeech", f"{jiwer.wer(ds_texts, our_texts):.4f}"),
        ],
        "goal": f"time at most {GOAL_RATIO:.1f}x DS_SpeechToText with the same or lower WER",
        "met": ratio <= GOAL_RATIO and our_wer <= ds_wer,
        "ours_rtf": our_seconds / audio_seconds,
        "deepspeech_rtf": ds_seconds / audio_seconds,
        "stt_rtf": stt_seconds / audio_seconds,
        "ratio": ratio,
        "ours_wer": our_wer,
        "deepspeech_wer": ds_wer,
    }


if __name__ == "__main__":
    from run_all import print_result

    print_result(run())
