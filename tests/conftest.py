"""Shared fixtures: a small Common Voice-shaped Italian archive spoken by espeak-ng, and its import."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# TensorFloat-32 runs float32 matrix products on Ampere and later NVIDIA GPUs with 10-bit mantissas, about 1e-3 off
# the references the tests compare with at 1e-5. Off here for this process, and through NVIDIA's libraries'
# variable for the stage scripts and children the tests start.
os.environ["NVIDIA_TF32_OVERRIDE"] = "0"

from deepspeech_it.data.alphabet import Alphabet  # noqa: E402
from deepspeech_it.demo import corpus_synth  # noqa: E402
from deepspeech_it.demo.corpus_synth import CorpusManifest  # noqa: E402
from deepspeech_it.demo.synth import Manifest, build_archive  # noqa: E402
from deepspeech_it.util.tf_runtime import exact_float32, tf  # noqa: E402

exact_float32()

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What the code under test decides by: tests state their expectation for the device they run on.
GPU_VISIBLE = bool(tf.config.list_physical_devices("GPU"))


@dataclass(frozen=True)
class GeneratedArchive:
    path: Path
    manifest: Manifest
    sha256: str


@pytest.fixture(scope="session")
def cv_archive(tmp_path_factory) -> GeneratedArchive:
    """A new-layout archive with every hostile case the importer must survive."""
    path = tmp_path_factory.mktemp("cv") / "it.tar.gz"
    manifest = build_archive(path, hostile=True, per_split={"train": 16, "dev": 6, "test": 6})
    return GeneratedArchive(path, manifest, hashlib.sha256(path.read_bytes()).hexdigest())


def stage_env(data_dir: Path, **variables: str) -> dict[str, str]:
    """The environment a stage script runs with: this one, less any pipeline variable, plus VARIABLES."""
    from deepspeech_it.config import VARIABLES

    env = {k: v for k, v in os.environ.items() if k not in {var.name for var in VARIABLES}}
    env.update({"DATA_DIR": str(data_dir), "PROGRESS": "0"}, **variables)
    return env


def run_script(script: str, data_dir: Path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / script)], env=stage_env(data_dir, **variables),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def imported_corpus(tmp_path_factory, cv_archive) -> Path:
    """DATA_DIR after stage 02 on the generated archive; returns the folder with train/dev/test.csv."""
    data_dir = tmp_path_factory.mktemp("data")
    result = run_script("02_import_cv.py", data_dir, CV_ARCHIVE=str(cv_archive.path))
    assert result.returncode == 0, result.stderr
    return data_dir / "data" / "cv-it"


@dataclass(frozen=True)
class Source:
    variable: str
    path: Path
    manifest: CorpusManifest


@pytest.fixture(scope="session")
def corpus_sources(tmp_path_factory) -> dict[str, Source]:
    """M-AILABS, MLS, VoxPopuli and VoxForge as published, small, with their pitfalls (demo/corpus_synth.py)."""
    folder = tmp_path_factory.mktemp("corpora")
    return {
        "mailabs": Source("MAILABS_ARCHIVE", folder / "it_IT.tgz", corpus_synth.build_mailabs(folder / "it_IT.tgz")),
        "mls": Source("MLS_ARCHIVE", folder / "mls_italian_opus.tar.gz",
                      corpus_synth.build_mls(folder / "mls_italian_opus.tar.gz")),
        "voxpopuli": Source("VOXPOPULI_DIR", folder / "voxpopuli", corpus_synth.build_voxpopuli(folder / "voxpopuli")),
        "voxforge": Source("VOXFORGE_DIR", folder / "voxforge", corpus_synth.build_voxforge(folder / "voxforge")),
    }


def source_variables(sources: dict[str, Source]) -> dict[str, str]:
    return {source.variable: str(source.path) for source in sources.values()}


# The spoken clips and the least-squares model fitted to them that the native-client tests (TFLite and TensorFlow
# builds) share: fitted once per session.
FITTED_N_HIDDEN = 384
CLIP_TEXTS = ["il gatto dorme", "oggi piove", "domani andremo al mare", "mia sorella lavora"]
LM_SENTENCES = CLIP_TEXTS + ["il cane dorme sul divano", "oggi piove molto", "la sorella di mia madre lavora al mare"]


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    from export_helpers import Clip, speak

    folder = tmp_path_factory.mktemp("clips")
    return [Clip(speak(folder / f"clip{i}.wav", text), text) for i, text in enumerate(CLIP_TEXTS)]


@pytest.fixture(scope="session")
def weights(clips, tmp_path_factory):
    from export_helpers import feature_probe, fitted_weights

    alphabet = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")
    return fitted_weights(clips, alphabet, FITTED_N_HIDDEN, feature_probe(tmp_path_factory.mktemp("probe"), alphabet))
