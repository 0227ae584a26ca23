import re

import pytest

from deepspeech_it.config import VARIABLES, ConfigError, env_example_text, load_config

from conftest import PROJECT_ROOT, run_script


def test_defaults_load_and_follow_data_dir(tmp_path):
    config = load_config({"DATA_DIR": str(tmp_path)})
    assert config.batch_size == 64 and config.epochs == 30 and config.n_hidden == 2048
    assert config.cv_archive == tmp_path / "sources" / "it.tar.gz"
    assert config.layout.cv_dir == tmp_path / "data" / "cv-it"
    assert config.import_jobs >= 1
    assert config.alphabet.size == 38
    assert load_config({"ENGLISH_COMPATIBLE": "1"}).alphabet.size == 28


def test_tf_config_names_the_hosts_and_the_chief():
    hosts = '"worker": ["10.0.0.2:2222", "10.0.0.3:2222"]'
    alone = load_config({}).tf_config
    worker = load_config({"TF_CONFIG": f'{{"cluster": {{{hosts}}}, "task": {{"type": "worker", "index": 1}}}}'})
    with_chief = load_config({"TF_CONFIG": f'{{"cluster": {{"chief": ["10.0.0.1:2222"], {hosts}}}, '
                                           '"task": {"type": "worker", "index": 0}}'}).tf_config
    assert alone is None
    assert (worker.tf_config.hosts, worker.tf_config.rank, worker.tf_config.is_chief) == (2, 1, False)
    assert (with_chief.hosts, with_chief.rank, with_chief.is_chief) == (3, 1, False)
    assert worker.as_dict()["TF_CONFIG"]["task"] == {"type": "worker", "index": 1}


def test_values_are_typed():
    config = load_config({"BATCH_SIZE": "8", "DROPOUT": "0.25", "AMP": "0", "LM_PRUNE": "0 1 1",
                          "LM_EVALUATE_RANGE": "", "CV_SHA1": "5949823C7531695FEFC3BCAB5A56F43552EB7D89"})
    assert config.batch_size == 8 and config.dropout == 0.25 and config.amp is False
    assert config.lm_prune == (0, 1, 1)
    assert config.cv_sha1 == "5949823c7531695fefc3bcab5a56f43552eb7d89"


BAD_VALUES = [
    ("BATCH_SIZE", "-4"), ("BATCH_SIZE", "many"), ("EPOCHS", "0"), ("LEARNING_RATE", "0"), ("DROPOUT", "1"),
    ("AMP", "yes"), ("EARLY_STOP", "2"), ("MAX_SECS", "-1"), ("LM_ORDER", "9"), ("LM_PRUNE", "1 0"),
    ("LM_PRUNE", "0 0 0 0 0 0"), ("LM_MEMORY", "lots"), ("CV_SHA256", "abc"), ("MODEL_LANGUAGE", "Italian"),
    ("DROP_SOURCE_LAYERS", "6"), ("TRAIN_FILES", "/no/such/train.csv"), ("LM_SOURCES", "/no/such/*.txt"),
    ("IMPORT_JOBS", "0"), ("LM_ALPHA", "nan"),
    ("TF_CONFIG", "{not json"), ("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}}'),
    ("TF_CONFIG", '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}'),
    ("TF_CONFIG", '{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}'),
    ("TF_CONFIG", '{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}'),
    ("TF_CONFIG", '{"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}}'),
    ("TF_CONFIG", '{"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}}'),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_bad_value_is_a_config_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}="):
        load_config({name: value})


@pytest.mark.parametrize("script", ["01_check_sources.py", "02_import_cv.py"])
@pytest.mark.parametrize("name,value", [("BATCH_SIZE", "-4"), ("AMP", "maybe"), ("TRAIN_FILES", "/no/such.csv")])
def test_scripts_stop_with_one_line_and_exit_2(tmp_path, script, name, value):
    result = run_script(script, tmp_path, **{name: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "allowed" in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "extracted").exists(), "no work may start on a bad configuration"


def test_missing_archive_is_a_config_error_for_the_import(tmp_path):
    result = run_script("02_import_cv.py", tmp_path, CV_ARCHIVE=str(tmp_path / "nothing.tar.gz"))
    assert result.returncode == 2 and "CV_ARCHIVE" in result.stderr and "no such file" in result.stderr


def test_env_example_lists_every_variable_with_its_default():
    text = (PROJECT_ROOT / "env.example").read_text(encoding="utf-8")
    assert text == env_example_text(), "env.example is out of date: regenerate it (see its header)"
    listed = dict(re.findall(r"^([A-Z_0-9]+)=(.*)$", text, re.M))
    assert listed == {v.name: v.default for v in VARIABLES}


def test_no_code_reads_the_environment_outside_config():
    readers = re.compile(r"os\.environ|getenv\(|environ\.get\(")
    offenders = [str(path.relative_to(PROJECT_ROOT)) for folder in ("deepspeech_it", "scripts", "benchmarks")
                 for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
                 if path.name != "config.py" and readers.search(path.read_text(encoding="utf-8"))]
    assert offenders == []
