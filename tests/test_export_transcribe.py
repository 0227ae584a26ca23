"""scripts/transcribe.py: any format, rate and channel count; bad files reported, the others still transcribed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.paths import PROJECT_ROOT

from conftest import stage_env
from export_helpers import Clip, build_test_scorer, feature_probe, fitted_weights, speak, write_tflite

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
TEXTS = ["il gatto dorme", "oggi piove", "domani andremo al mare"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model fitted to three recordings as the loader decodes them: MP3 stereo 44.1 kHz, FLAC 8 kHz, wav 16 kHz.
    Only a correct decode, down-mix and resampling gives back the audio the model was fitted to."""
    folder = tmp_path_factory.mktemp("transcribe")
    inputs = {
        "mp3": speak(folder / "stereo.mp3", TEXTS[0], rate=44100, channels=2),
        "flac": speak(folder / "low.flac", TEXTS[1], rate=8000),
        "wav": speak(folder / "plain.wav", TEXTS[2]),
    }
    clips = [Clip(path, text) for path, text in zip(inputs.values(), TEXTS)]
    weights = fitted_weights(clips, ALPHABET, 256, feature_probe(folder, ALPHABET))
    models = folder / "models"
    write_tflite(models / "output_graph.tflite", weights, ALPHABET, 100, quantize=False)
    scorer = build_test_scorer(folder / "lm", TEXTS + ["il cane dorme"], ALPHABET)
    (models / "kenlm.scorer").write_bytes(scorer.read_bytes())
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    return folder, models, inputs, broken


def transcribe(folder, *args):
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "transcribe.py"), *map(str, args)],
                          env=stage_env(folder), capture_output=True, text=True, timeout=300)


def test_prints_file_tab_text_and_reports_bad_files(setup):
    folder, models, inputs, broken = setup
    result = transcribe(folder, "--model-dir", models, inputs["mp3"], broken, inputs["flac"], inputs["wav"])
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(inputs[k]) for k in ("mp3", "flac", "wav")]
    texts = [line.split("\t")[1] for line in lines]
    assert texts == TEXTS
    errors = [line for line in result.stderr.splitlines() if line.startswith(str(broken))]
    assert len(errors) == 1 and "error" in errors[0]


def test_json_has_word_times_and_confidence(setup):
    folder, models, inputs, _ = setup
    result = transcribe(folder, "--json", "--no-scorer", "--model-dir", models, inputs["wav"])
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["transcript"] == TEXTS[2]
    assert [w["word"] for w in record["words"]] == TEXTS[2].split()
    starts = [w["start_time"] for w in record["words"]]
    assert starts == sorted(starts) and starts[0] >= 0
    assert record["confidence"] < 0


def test_missing_model_is_one_line_error(setup, tmp_path):
    folder, _, inputs, _ = setup
    result = transcribe(folder, "--model-dir", tmp_path, inputs["wav"])
    assert result.returncode == 2
    assert "output_graph.tflite" in result.stderr and result.stderr.strip().count("\n") == 0
