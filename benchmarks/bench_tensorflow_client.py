#!/usr/bin/env python3
"""DeepSpeech 0.9.3's TensorFlow client on our output_graph.pbmm against its TFLite client on our
output_graph.tflite (time and WER, beam 500 with the scorer), and the TensorFlow client loading output_graph.pb against
output_graph.pbmm (load time and resident memory).

Data: the demo's release when DATA_DIR holds it (after `make demo`: models/output_graph.{pb,pbmm,tflite},
models/kenlm.scorer and the test clips of data/cv-it/test.csv); otherwise a float model of STANDALONE_N_HIDDEN fitted
to espeak-ng recordings of the project's sentences (tests/export_helpers.py) with a scorer of those sentences.
Timed: DS_SpeechToText on decoded 16 kHz samples inside each client's process; DS_CreateModel for the load. Memory:
the client process's resident set right after DS_CreateModel, less the same figure just before it (the library and
Python already loaded), and its anonymous part, which holds the weights unless they are memory-mapped.
Goal: the .pbmm's WER equal to the .tflite's within GOAL_WER_POINTS, and loading the .pbmm adds at most half the
anonymous memory the .pb adds.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import jiwer

from deepspeech_it.config import PB_FILE, PBMM_FILE, SCORER_FILE, TFLITE_FILE, Layout, load_config
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import load_training_samples
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.evaluate.acoustic_outputs import read_split
from deepspeech_it.export import frozen_graph, memmapped, native_clients

ROOT = Path(__file__).resolve().parents[1]
ALPHABET = Alphabet.from_file(ROOT / "alphabet" / "it.txt")
BEAM_WIDTH = 500
STANDALONE_CLIPS = 8
STANDALONE_N_HIDDEN = 2048
GOAL_WER_POINTS = 0.01
GOAL_MEMORY_SHARE = 0.5
MODEL_FILES = (PB_FILE, PBMM_FILE, TFLITE_FILE)


def demo_release(layout: Layout):
    """({file name: path}, scorer, [(wav, transcript)]) of a `make demo` run, or None."""
    test_csv = layout.cv_csv("test")
    paths = {name: layout.models / name for name in MODEL_FILES}
    scorer = layout.models / SCORER_FILE
    if not (all(p.exists() for p in paths.values()) and scorer.exists() and test_csv.exists()):
        return None
    return paths, scorer, [(u.wav_path, u.transcript) for u in read_split(test_csv)]


def standalone_release(folder: Path, n_hidden: int = STANDALONE_N_HIDDEN, n_clips: int = STANDALONE_CLIPS):
    sys.path.insert(0, str(ROOT / "tests"))
    from bench_decode import normalized_sentences
    from export_helpers import Clip, build_test_scorer, feature_probe, fitted_weights, speak, write_tflite

    sentences = normalized_sentences()
    clips = [Clip(speak(folder / f"clip{i}.wav", text), text) for i, text in enumerate(sentences[:n_clips])]
    weights = fitted_weights(clips, ALPHABET, n_hidden, feature_probe(folder, ALPHABET))
    graph_def = frozen_graph.build_frozen_graph(weights, ALPHABET, BEAM_WIDTH, "it")
    paths = {name: folder / name for name in MODEL_FILES}
    paths[PB_FILE].write_bytes(graph_def.SerializeToString())
    paths[PBMM_FILE].write_bytes(memmapped.to_memmapped(graph_def))
    write_tflite(paths[TFLITE_FILE], weights, ALPHABET, BEAM_WIDTH, quantize=False)
    scorer = build_test_scorer(folder, sentences, ALPHABET)
    return paths, scorer, [(c.path, c.text) for c in clips]


def _shown(path: Path) -> str:
    """PATH relative to the project when inside it: the report is committed and must not name this machine."""
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else path.name


def _added_kb(run: native_clients.ClientRun, field: str) -> int:
    return run.memory_kb["after_load"][field] - run.memory_kb["before_load"][field]


def compare(paths: dict[str, Path], scorer: Path, rows: list[tuple[Path, str]]) -> dict:
    """The figures of one release: both clients on the test files, then the two TensorFlow files loaded alone."""
    files = [str(path) for path, _ in rows]
    references = [text for _, text in rows]
    audio_seconds = sum(load_training_samples(f).size for f in files) / SAMPLE_RATE
    decoded = {}
    for release, name in ((native_clients.DEEPSPEECH_TF, PBMM_FILE), (native_clients.DEEPSPEECH, TFLITE_FILE)):
        run = native_clients.run_client(release, paths[name], files, scorer_path=scorer, beam_width=BEAM_WIDTH)
        decoded[name] = ([r["text"] for r in run.results], sum(r["seconds"] for r in run.results))
    loads = {name: native_clients.run_client(native_clients.DEEPSPEECH_TF, paths[name])
             for name in (PB_FILE, PBMM_FILE)}
    return {"audio_seconds": audio_seconds, "files": len(files),
            "wer": {name: jiwer.wer(references, texts) for name, (texts, _) in decoded.items()},
            "rtf": {name: seconds / audio_seconds for name, (_, seconds) in decoded.items()},
            "agreement": jiwer.wer(decoded[TFLITE_FILE][0], decoded[PBMM_FILE][0]),
            "load_seconds": {name: run.load_seconds for name, run in loads.items()},
            "rss_kb": {name: _added_kb(run, "VmRSS") for name, run in loads.items()},
            "anon_kb": {name: _added_kb(run, "RssAnon") for name, run in loads.items()},
            "size_mb": {name: paths[name].stat().st_size / 1e6 for name in loads}}


def run() -> dict:
    config = load_config()
    with tempfile.TemporaryDirectory() as temp:
        found = demo_release(config.layout)
        source = (f"demo release in DATA_DIR={_shown(config.data_dir)}" if found
                  else f"standalone: float n_hidden {STANDALONE_N_HIDDEN} model fitted to espeak clips")
        figures = compare(*(found or standalone_release(Path(temp))))
    wer, rtf = figures["wer"], figures["rtf"]
    pb, pbmm = PB_FILE, PBMM_FILE
    wer_met = abs(wer[pbmm] - wer[TFLITE_FILE]) <= GOAL_WER_POINTS
    memory_met = figures["anon_kb"][pbmm] <= GOAL_MEMORY_SHARE * figures["anon_kb"][pb]
    return {
        "name": "DeepSpeech 0.9.3's TensorFlow client: .pbmm against the TFLite client's .tflite, and .pb against .pbmm",
        "rows": [
            ("data", source),
            ("audio", f"{figures['audio_seconds']:.1f} s in {figures['files']} files"),
            (".pbmm in libdeepspeech.so 0.9.3 (TensorFlow), beam 500 + scorer",
             f"RTF {rtf[pbmm]:.4f}, WER {wer[pbmm]:.4f}"),
            (".tflite in libdeepspeech.so 0.9.3 (TFLite), beam 500 + scorer",
             f"RTF {rtf[TFLITE_FILE]:.4f}, WER {wer[TFLITE_FILE]:.4f}"),
            ("WER between the two clients' transcripts", f"{figures['agreement']:.4f}"),
            *((f"load {name} ({figures['size_mb'][name]:.1f} MB)",
               f"DS_CreateModel {figures['load_seconds'][name]:.3f} s, resident +{figures['rss_kb'][name] / 1024:.1f} MB "
               f"(anonymous +{figures['anon_kb'][name] / 1024:.1f} MB)") for name in (pb, pbmm)),
        ],
        "goal": f".pbmm WER within {GOAL_WER_POINTS:.2f} of the .tflite's, and loading it adds at most "
                f"{GOAL_MEMORY_SHARE:.0%} of the anonymous memory the .pb adds",
        "met": wer_met and memory_met,
        **figures,
    }


if __name__ == "__main__":
    from run_all import print_result

    print_result(run())
