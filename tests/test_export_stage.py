"""scripts/06_export.py end to end on a small checkpoint: files, archives, sums, client evidence, skip on rerun."""

from __future__ import annotations

import json
import subprocess
import tarfile

import numpy as np
import pytest
from tensorflow.core.framework import graph_pb2

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.export import graph as export
from deepspeech_it.export import memmapped, release
from deepspeech_it.model import checkpoint
from deepspeech_it.paths import PROJECT_ROOT

from conftest import run_script
from export_helpers import build_test_scorer

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
N_HIDDEN = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    checkpoints = data_dir / "checkpoints"
    checkpoints.mkdir()
    weights = export.random_weights(N_HIDDEN, ALPHABET, seed=5)
    tensors = {**weights, **{f"{n}/Adam": np.zeros_like(v) for n, v in weights.items()},
               **{f"{n}/Adam_1": np.zeros_like(v) for n, v in weights.items()},
               "global_step": np.int64(42), "learning_rate": np.float32(1e-4)}
    prefix = checkpoints / "best_dev-42"
    checkpoint.write_bundle(prefix, tensors)
    checkpoint.write_state_file(checkpoints, checkpoint.BEST_STATE_FILE, [prefix])
    checkpoint.write_companions(checkpoints, {"n_hidden": N_HIDDEN}, ALPHABET.to_text())
    build_test_scorer(data_dir / "lm", ["il gatto dorme", "oggi piove sul mare"], ALPHABET)
    result = run_script("06_export.py", data_dir, BEAM_WIDTH="77", EXPORT_QUANTIZE="1")
    assert result.returncode == 0, result.stderr[-3000:]
    return data_dir, weights, result


def test_export_writes_the_release(exported):
    data_dir, _, _ = exported
    models = data_dir / "models"
    for name in ("output_graph.tflite", "kenlm.scorer", "alphabet.txt", "MODEL_CARD.md", "metadata.json",
                 "SHA256SUMS", "model_tflite_it.tar.xz", "checkpoint_it.tar.xz", "model_savedmodel_it.tar.xz"):
        assert (models / name).is_file(), name
    assert (models / "saved_model" / "saved_model.pb").is_file()
    meta = json.loads((models / "metadata.json").read_text())
    assert meta["beam_width"] == 77 and meta["tflite"]["quantized"] is True
    assert set(meta["verified_with"]) == {"deepspeech-tflite 0.9.3", "stt 1.4.0"}
    assert meta["tflite"]["outputs_without_producer"] == []
    card = (models / "MODEL_CARD.md").read_text()
    assert "stt 1.4.0" in card and "MPL-2.0" in card
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=models, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    with tarfile.open(models / "model_tflite_it.tar.xz") as archive:
        assert sorted(archive.getnames()) == ["MODEL_CARD.md", "alphabet.txt", "kenlm.scorer", "output_graph.tflite"]


def test_export_releases_the_graphs_the_tensorflow_client_loaded(exported):
    data_dir, _, _ = exported
    models = data_dir / "models"
    meta = json.loads((models / "metadata.json").read_text())
    assert meta["loaded_by"] == {"output_graph.tflite": ["deepspeech-tflite 0.9.3", "stt 1.4.0"],
                                 "output_graph.pb": ["deepspeech 0.9.3"], "output_graph.pbmm": ["deepspeech 0.9.3"]}
    graphs = meta["tensorflow_graphs"]
    assert "read into memory" in graphs["output_graph.pb"]["verified_with"]["deepspeech 0.9.3"]
    assert "memory-mapped" in graphs["output_graph.pbmm"]["verified_with"]["deepspeech 0.9.3"]
    assert graphs["output_graph.pb"]["inputs"]["previous_state_c"] == [1, N_HIDDEN]
    frozen = graph_pb2.GraphDef.FromString((models / "output_graph.pb").read_bytes())
    mapped, regions = memmapped.read_memmapped((models / "output_graph.pbmm").read_bytes())
    assert [n.name for n in mapped.node] == [n.name for n in frozen.node]
    assert len(regions) == graphs["output_graph.pbmm"]["memory_mapped_regions"] >= 1
    card = (models / "MODEL_CARD.md").read_text()
    assert "| `output_graph.pbmm` | deepspeech 0.9.3 |" in card and "| `output_graph.pb` | deepspeech 0.9.3 |" in card
    with tarfile.open(models / "model_pbmm_it.tar.xz") as archive:
        assert sorted(archive.getnames()) == ["MODEL_CARD.md", "alphabet.txt", "kenlm.scorer", "output_graph.pbmm"]
    assert "model_pbmm_it.tar.xz" in (models / "SHA256SUMS").read_text()


def test_model_card_names_a_graph_the_client_refused(exported):
    data_dir, _, _ = exported
    meta = json.loads((data_dir / "models" / "metadata.json").read_text())
    meta["tensorflow_graphs"]["output_graph.pbmm"].update(released=False, verified_with={},
                                                          note="not released: DS_CreateModel returned 0x3000")
    meta["loaded_by"]["output_graph.pbmm"] = []
    card = release.model_card(meta)
    assert "| `output_graph.pbmm` | none: not released |" in card
    assert "- `output_graph.pbmm`: not released: DS_CreateModel returned 0x3000" in card
    assert "| `output_graph.pbmm` | the same network" not in card and "| `output_graph.pb` | the same" in card


def test_checkpoint_archive_is_a_usable_checkpoint_dir(exported, tmp_path):
    data_dir, weights, _ = exported
    with tarfile.open(data_dir / "models" / "checkpoint_it.tar.xz") as archive:
        archive.extractall(tmp_path, filter="data")
    assert (tmp_path / "flags.json").is_file() and (tmp_path / "alphabet.txt").is_file()
    for state_file in (checkpoint.BEST_STATE_FILE, checkpoint.TRAIN_STATE_FILE):
        assert checkpoint.latest_checkpoint(tmp_path, state_file) == tmp_path / "best_dev-42"
    loaded = checkpoint.load_weights_by_ds_name(tmp_path)
    assert sorted(loaded) == sorted(weights)
    assert all(np.array_equal(loaded[n], weights[n]) for n in weights)


def test_rerun_is_skipped_and_a_changed_variable_reexports(exported):
    data_dir, _, _ = exported
    again = run_script("06_export.py", data_dir, BEAM_WIDTH="77", EXPORT_QUANTIZE="1")
    assert again.returncode == 0 and "up to date, skipped" in again.stdout
    changed = run_script("06_export.py", data_dir, BEAM_WIDTH="77", EXPORT_QUANTIZE="0")
    assert changed.returncode == 0, changed.stderr[-2000:]
    meta = json.loads((data_dir / "models" / "metadata.json").read_text())
    assert meta["tflite"]["quantized"] is False


def test_missing_checkpoint_is_one_line_error(tmp_path):
    result = run_script("06_export.py", tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "make train" in errors[0]
