"""Bad input of every kind: one line naming the variable or the file and what is wrong, never a traceback.

The tables below are the bad inputs tried: a variable with its value (exit 2, before any work), or an input file
with its damage (exit 1). Values are checked in-process where the configuration check alone proves the point; the
stage scripts run where a file is damaged, on small generated data, with no training run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from deepspeech_it.config import ConfigError, load_config
from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.data.audio import write_wav
from deepspeech_it.demo.synth import build_archive
from deepspeech_it.export import graph
from deepspeech_it.export.transcribe import command_line
from deepspeech_it.model.checkpoint import TRAIN_STATE_FILE, write_bundle, write_state_file
from deepspeech_it.pipeline.s01_check_sources import check_sources
from deepspeech_it.pipeline.s02_import_cv import import_cv
from deepspeech_it.pipeline.s03_build_lm import build_lm
from deepspeech_it.pipeline.s04_train import train
from deepspeech_it.pipeline.s05_evaluate_lm import evaluate_lm
from deepspeech_it.pipeline.s06_export import export
from deepspeech_it.util.errors import PipelineError, one_line

from conftest import PROJECT_ROOT, run_script, stage_env
from export_helpers import build_test_scorer, write_tflite

ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")


def stage_fails(stage, data_dir: Path, fragment: str, **variables: str) -> str:
    """Runs the stage function in this process (no interpreter start, no TensorFlow import) and returns the one
    line the runner would print; the runner's exit code 1 for it is proven by the subprocess rows."""
    with pytest.raises(PipelineError) as raised:
        stage(load_config(stage_env(data_dir, **variables)))
    line = one_line(raised.value)
    assert fragment in line and str(raised.value) == line, line
    return line


def assert_one_line(result: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == code, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


# ---- variables: (name, value, what the message says) -----------------------------------------------------------

BAD_VALUES = [
    ("RANDOM_SEED", "4294967296", "<= 4294967295"),
    ("RANDOM_SEED", "-1", ">= 0"),
    ("IMPORT_JOBS", "100000", "per core"),
    ("N_HIDDEN", "100000", "<= 4096"),
    ("BATCH_SIZE", "0", ">= 1"),
    ("BATCH_SIZE", "1000000", "<= 4096"),
    ("EPOCHS", "1000000000", "<= 100000"),
    ("ES_EPOCHS", "0", ">= 1"),
    ("PLATEAU_EPOCHS", "10000000", "<= 100000"),
    ("PLATEAU_REDUCTION", "1", "< 1"),
    ("LEARNING_RATE", "10", "<= 1"),
    ("DROPOUT", "-0.1", ">= 0"),
    ("MAX_TO_KEEP", "0", ">= 1"),
    ("MAX_TO_KEEP", "100000", "<= 1000"),
    ("CHECKPOINT_SECS", "0", ">= 1"),
    ("CHECKPOINT_SECS", "99999999999", "<= 604800"),
    ("MAX_SECS", "1e9", "<= 600"),
    ("MAX_SECS", "inf", "finite"),
    ("LM_ORDER", "7", "<= 6"),
    ("LM_TOP_K", "0", ">= 1"),
    ("LM_PRUNE", "0 0 99999999999999999999", "4294967295"),
    ("LM_MEMORY", "1K", "from 64M"),
    ("LM_MEMORY", "95%", "90%"),
    ("LM_MEMORY", "1000T", "90%"),
    ("LM_ALPHA", "1e30", "<= 1000"),
    ("LM_BETA", "-1e30", ">= -1000"),
    ("LM_ALPHA_MAX", "1e9", "<= 1000"),
    ("LM_BETA_MAX", "0", "> 0"),
    ("LM_OPTIMIZE_TRIALS", "1000000000", "<= 10000"),
    ("LM_EVALUATE_RANGE", "0:1:100000000,0:1:100000000", "at most 10000 pairs"),
    ("LM_EVALUATE_RANGE", "0:1:200,0:1:200", "more than 10000 pairs"),
    ("LM_EVALUATE_RANGE", "2000,1", "out of range"),
    ("BEAM_WIDTH", "0", ">= 1"),
    ("BEAM_WIDTH", "1000000000", "<= 65536"),
    ("DROP_SOURCE_LAYERS", "-1", ">= 0"),
]


@pytest.mark.parametrize("name,value,fragment", BAD_VALUES)
def test_every_number_has_a_range_the_code_honours(name, value, fragment):
    with pytest.raises(ConfigError) as raised:
        load_config({name: value})
    message = str(raised.value)
    assert message.startswith(f"{name}=") and "allowed" in message and fragment in message
    assert "\n" not in message


def test_the_limits_themselves_are_accepted():
    config = load_config({"RANDOM_SEED": str(2**32 - 1), "N_HIDDEN": "4096", "LM_ORDER": "6", "LM_MEMORY": "64M",
                          "BEAM_WIDTH": "65536", "LM_EVALUATE_RANGE": "0:1:100,0:1:100"})
    assert config.random_seed == 2**32 - 1 and len(config.lm_evaluate_range) == 10000


# The observed failures, through the scripts: exit 2 and one line before any work (no training started).
@pytest.mark.parametrize("script,name,value", [
    ("04_train.py", "RANDOM_SEED", "4294967296"),
    ("02_import_cv.py", "IMPORT_JOBS", "100000"),
    ("03_build_lm.py", "LM_MEMORY", "200%"),
])
def test_scripts_refuse_a_bad_number_before_any_work(tmp_path, script, name, value):
    result = run_script(script, tmp_path, **{name: value})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"configuration error: {name}=")
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "extracted").exists()


# ---- CV_ARCHIVE: (damage, script, expected exit, message fragment) ------------------------------------------------


def _members(archive: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]


def _rebuilt(archive: bytes, change) -> bytes:
    """The archive with CHANGE(name, data) -> data or None (left out) applied to its files."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for member, data in _members(archive):
            if data is not None:
                data = change(member.name, data)
                if data is None:
                    continue
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def _zeroed(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(200) + data[middle + 200:]


ARCHIVE_DAMAGE = {
    "truncated to half": lambda a: a[:len(a) // 2],
    "a text file": lambda a: b"this is not an archive\n",
    "empty": lambda a: b"",
    "200 bytes zeroed in the middle": _zeroed,
    "gzip trailer (CRC) wrong": lambda a: a[:-8] + bytes(8),
    "uncompressed tar, truncated": lambda a: gzip.decompress(a)[:len(gzip.decompress(a)) * 2 // 3],
    "train.tsv in Latin-1": lambda a: _rebuilt(a, lambda n, d: d.decode().encode("latin-1", "replace") + b"\xe8\n"
                                               if n.endswith("/train.tsv") else d),
    "train.tsv without its sentence column": lambda a: _rebuilt(
        a, lambda n, d: d.replace(b"sentence", b"frase") if n.endswith("/train.tsv") else d),
    "dev.tsv missing": lambda a: _rebuilt(a, lambda n, d: None if n.endswith("/dev.tsv") else d),
}
ARCHIVE_CASES = [
    ("truncated to half", "01_check_sources.py", 1, "is truncated"),
    ("truncated to half", "02_import_cv.py", 1, "is truncated"),
    ("gzip trailer (CRC) wrong", "01_check_sources.py", 1, "incorrect data check"),
    ("a text file", "01_check_sources.py", 1, "is not a tar archive"),
    ("empty", "01_check_sources.py", 1, "is not a tar archive"),
    ("a text file", "02_import_cv.py", 1, "is not a tar archive"),
    ("empty", "02_import_cv.py", 1, "is not a tar archive"),
    ("200 bytes zeroed in the middle", "02_import_cv.py", 1, "is damaged"),
    ("gzip trailer (CRC) wrong", "02_import_cv.py", 1, "CRC check failed"),
    ("uncompressed tar, truncated", "02_import_cv.py", 1, "is truncated"),
    ("train.tsv in Latin-1", "02_import_cv.py", 1, "train.tsv: not a UTF-8 TSV"),
    ("train.tsv without its sentence column", "02_import_cv.py", 1, "train.tsv: no column sentence"),
    ("dev.tsv missing", "02_import_cv.py", 1, "has no dev.tsv"),
]


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("cv") / "it.tar.gz"
    build_archive(path, per_split={"train": 3, "dev": 1, "test": 1})
    return path.read_bytes()


def _damaged_archive(tmp_path: Path, small_archive: bytes, damage: str) -> dict[str, str]:
    archive = tmp_path / "it.tar.gz"
    archive.write_bytes(ARCHIVE_DAMAGE[damage](small_archive))
    # A checksum that vouches for the damaged file: the damage itself must be found.
    return {"CV_ARCHIVE": str(archive), "CV_SHA256": hashlib.sha256(archive.read_bytes()).hexdigest()}


@pytest.mark.parametrize("damage,script,code,fragment", ARCHIVE_CASES)
def test_damaged_archive_is_one_line_naming_it(tmp_path, capsys, small_archive, damage, script, code, fragment):
    variables = _damaged_archive(tmp_path, small_archive, damage)
    if script == "02_import_cv.py":
        line = stage_fails(import_cv, tmp_path / "data", fragment, **variables)
        assert variables["CV_ARCHIVE"] in line or ".tsv" in line
        return
    assert check_sources(load_config(stage_env(tmp_path / "data", **variables))) == code
    [line] = [line for line in capsys.readouterr().out.splitlines() if fragment in line]
    assert variables["CV_ARCHIVE"] in line and line.startswith("[ERROR  ]")


def test_stage_01_script_finds_a_truncated_archive_a_checksum_vouches_for(tmp_path, small_archive):
    result = run_script("01_check_sources.py", tmp_path / "data", **_damaged_archive(tmp_path, small_archive,
                                                                                     "truncated to half"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("[ERROR  ]")]) == 1
    assert "is truncated: its gzip stream ends early" in result.stdout


def test_stage_02_script_prints_the_archive_damage_as_one_line(tmp_path, small_archive):
    result = run_script("02_import_cv.py", tmp_path / "data", **_damaged_archive(tmp_path, small_archive,
                                                                                  "truncated to half"))
    assert_one_line(result, 1, "is truncated")


# ---- CSVs of stage 04: (damage, message fragment); exit 1 before training ------------------------------------------

CSV_DAMAGE = {
    "not UTF-8": (lambda csv, wav: csv.write_bytes(b"wav_filename,wav_filesize,transcript\n\xff\xfe,1,ciao\n"),
                  "cannot be read as a DeepSpeech CSV"),
    "no transcript column": (lambda csv, wav: csv.write_text(f"wav_filename,wav_filesize\n{wav.name},1\n"),
                             "no column transcript"),
    "wav_filesize not a number": (lambda csv, wav: csv.write_text(
        f"wav_filename,wav_filesize,transcript\n{wav.name},tanti,ciao\n"), "is not a whole number"),
    "wav overwritten with noise of its size": (
        lambda csv, wav: wav.write_bytes(np.random.default_rng(0).bytes(wav.stat().st_size)),
        "is not a 16 kHz mono 16-bit wav"),
}


def _data_folder(folder: Path) -> Path:
    cv_dir = folder / "data" / "cv-it"
    cv_dir.mkdir(parents=True)
    for split in ("train", "dev", "test"):
        wav = cv_dir / f"{split}.wav"
        write_wav(wav, (np.sin(np.arange(16000) / 5) * 3000).astype(np.int16))
        (cv_dir / f"{split}.csv").write_text(f"wav_filename,wav_filesize,transcript\n{wav.name},"
                                             f"{wav.stat().st_size},ciao\n")
    return cv_dir


@pytest.mark.parametrize("damage", sorted(CSV_DAMAGE))
def test_damaged_csv_stops_training_before_it_starts(tmp_path, damage):
    cv_dir = _data_folder(tmp_path)
    spoil, fragment = CSV_DAMAGE[damage]
    spoil(cv_dir / "train.csv", cv_dir / "train.wav")
    line = stage_fails(train, tmp_path, fragment, N_HIDDEN="8", EPOCHS="1")
    assert "train.csv" in line or "train.wav" in line
    assert not list((tmp_path / "checkpoints").glob("train-*"))


def test_stage_04_script_prints_a_csv_problem_as_one_line(tmp_path):
    cv_dir = _data_folder(tmp_path)
    CSV_DAMAGE["wav overwritten with noise of its size"][0](cv_dir / "train.csv", cv_dir / "train.wav")
    assert_one_line(run_script("04_train.py", tmp_path, N_HIDDEN="8"), 1, "is not a 16 kHz mono 16-bit wav")


# ---- LM_SOURCES of stage 03 ---------------------------------------------------------------------------------------

def _numbered_sentences() -> bytes:
    return "".join(f"frase numero {np.random.default_rng(i).integers(10**9)}\n" for i in range(3000)).encode()


LM_TEXT_DAMAGE = {
    "Latin-1 text": ("extra.txt", lambda: "perché è così\n".encode("latin-1"), "is not UTF-8 text"),
    "truncated gzip": ("extra.txt.gz", lambda: gzip.compress(_numbered_sentences())[:2000], "is truncated"),
    "plain text named .gz": ("extra.gz", lambda: b"una frase\n", "is damaged"),
}


@pytest.mark.parametrize("damage", sorted(LM_TEXT_DAMAGE))
def test_damaged_lm_source_is_one_line_naming_it(tmp_path, damage):
    _data_folder(tmp_path)
    name, content, fragment = LM_TEXT_DAMAGE[damage]
    source = tmp_path / name
    source.write_bytes(content())
    assert str(source) in stage_fails(build_lm, tmp_path, fragment, LM_SOURCES=str(source), LM_MEMORY="64M")
    assert not (tmp_path / "lm" / "kenlm.scorer").exists()


# ---- stage 05/06 and transcribe: checkpoint, scorer, model, audio ---------------------------------------------------


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A models folder as stage 06 leaves it, with a tiny model; and a checkpoint folder beside it."""
    folder = tmp_path_factory.mktemp("release")
    weights = graph.random_weights(8, ALPHABET)
    write_tflite(folder / "models" / "output_graph.tflite", weights, ALPHABET, 16, quantize=False)
    scorer = build_test_scorer(folder / "lm-build", ["il gatto dorme", "oggi piove"], ALPHABET)
    (folder / "models" / "kenlm.scorer").write_bytes(scorer.read_bytes())
    nan = dict(weights, **{"layer_6/bias": np.full_like(weights["layer_6/bias"], np.nan)})
    write_tflite(folder / "nan" / "output_graph.tflite", nan, ALPHABET, 16, quantize=False)
    (folder / "nan" / "kenlm.scorer").write_bytes(scorer.read_bytes())
    for name, values in (("checkpoints", weights), ("nan-checkpoints", nan)):
        (folder / name).mkdir()
        write_bundle(folder / name / "train-1", values)
        write_state_file(folder / name, TRAIN_STATE_FILE, [folder / name / "train-1"])
    write_wav(folder / "clip.wav", (np.sin(np.arange(16000) / 5) * 3000).astype(np.int16))
    return folder


def _copy_release(release: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(release / "models", target / "models")
    return target / "models"


def transcribe(data_dir: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "transcribe.py"), *map(str, args)],
                          env=stage_env(data_dir), capture_output=True, text=True, timeout=300)


TRANSCRIBE_CASES = [
    # (file, damage, expected exit, message fragment)
    ("kenlm.scorer", "truncated to half", 1, "kenlm.scorer: no 'TRIE' trailer"),
    ("kenlm.scorer", "empty", 1, "kenlm.scorer: the file is empty"),
    ("kenlm.scorer", "KenLM header overwritten", 1, "KenLM cannot load the language model"),
    ("output_graph.tflite", "truncated to half", 1, "not a usable TFLite model"),
    ("output_graph.tflite", "empty", 1, "not a usable TFLite model"),
    ("output_graph.tflite", "a scorer in its place", 1, "not a usable TFLite model"),
    ("audio", "not audio", 1, "clip.wav: error: cannot decode"),
    ("audio", "empty", 1, "clip.wav: error"),
    ("--beam-width", "0", 2, "allowed: a whole number >= 1"),
]


def _spoil(models: Path, clip: Path, what: str, damage: str) -> list[str]:
    if what == "--beam-width":
        return ["--beam-width", damage]
    target = clip if what == "audio" else models / what
    data = target.read_bytes()
    spoilt = {"truncated to half": data[:len(data) // 2], "empty": b"", "not audio": b"RIFF and then nothing",
              "KenLM header overwritten": data[:40] + bytes(60) + data[100:],
              "a scorer in its place": (models / "kenlm.scorer").read_bytes()}[damage]
    target.write_bytes(spoilt)
    return []


@pytest.mark.parametrize("what,damage,code,fragment", TRANSCRIBE_CASES)
def test_transcribe_reports_a_damaged_file_in_one_line(tmp_path, capsys, release, what, damage, code, fragment):
    models = _copy_release(release, tmp_path)
    clip = tmp_path / "clip.wav"
    clip.write_bytes((release / "clip.wav").read_bytes())
    extra = _spoil(models, clip, what, damage)
    if what == "--beam-width":
        assert_one_line(transcribe(tmp_path, "--model-dir", models, *extra, clip), code, fragment)
        return
    assert command_line(["--model-dir", str(models), *extra, str(clip)], models, 500) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err and "Traceback" not in err, err


def test_transcribe_refuses_a_diverged_models_outputs(tmp_path, release):
    result = transcribe(tmp_path, "--model-dir", release / "nan", release / "clip.wav")
    assert_one_line(result, 1, "the model has diverged")
    greedy = transcribe(tmp_path, "--no-scorer", "--model-dir", release / "nan", release / "clip.wav")
    assert_one_line(greedy, 1, "the model has diverged")


STAGES = {"05_evaluate_lm.py": evaluate_lm, "06_export.py": export}


@pytest.mark.parametrize("script", sorted(STAGES))
@pytest.mark.parametrize("damage", ["data file truncated", "index overwritten", "state file not UTF-8"])
def test_damaged_checkpoint_is_one_line_naming_it(tmp_path, release, script, damage):
    import shutil

    _data_folder(tmp_path)
    shutil.copytree(release / "checkpoints", tmp_path / "checkpoints")
    (tmp_path / "lm").mkdir()
    shutil.copyfile(release / "models" / "kenlm.scorer", tmp_path / "lm" / "kenlm.scorer")
    fragment = "train-1 cannot be read"
    if damage == "data file truncated":
        [data] = (tmp_path / "checkpoints").glob("train-1.data-*")
        data.write_bytes(data.read_bytes()[:100])
    elif damage == "index overwritten":
        index = tmp_path / "checkpoints" / "train-1.index"
        index.write_bytes(bytes(index.stat().st_size))
    else:
        (tmp_path / "checkpoints" / "checkpoint").write_bytes(b"model_checkpoint_path: \"\xff\"\n")
        fragment = "checkpoints/checkpoint is damaged"
    stage_fails(STAGES[script], tmp_path, fragment, LM_EVALUATE_RANGE="0.5,1")


@pytest.mark.parametrize("script", sorted(STAGES))
def test_damaged_scorer_in_a_stage_is_one_line_naming_it(tmp_path, release, script):
    import shutil

    _data_folder(tmp_path)
    shutil.copytree(release / "checkpoints", tmp_path / "checkpoints")
    (tmp_path / "lm").mkdir()
    scorer = (release / "models" / "kenlm.scorer").read_bytes()
    (tmp_path / "lm" / "kenlm.scorer").write_bytes(scorer[:len(scorer) // 2])
    stage_fails(STAGES[script], tmp_path, "kenlm.scorer: no 'TRIE' trailer", LM_EVALUATE_RANGE="0.5,1")


def test_stage_05_refuses_a_diverged_checkpoints_outputs(tmp_path, release):
    import shutil

    _data_folder(tmp_path)
    shutil.copytree(release / "nan-checkpoints", tmp_path / "checkpoints")
    (tmp_path / "lm").mkdir()
    shutil.copyfile(release / "models" / "kenlm.scorer", tmp_path / "lm" / "kenlm.scorer")
    stage_fails(evaluate_lm, tmp_path, "the model has diverged", LM_EVALUATE_RANGE="0.5,1", PROGRESS="0")
