import json

import numpy as np
import pytest

from deepspeech_it.pipeline import preflight as checks
from deepspeech_it.pipeline.preflight import Digests, identify_archive

from conftest import GPU_VISIBLE, run_script


def _findings(data_dir):
    return json.loads((data_dir / "reports" / "check_sources.json").read_text())["findings"]


def test_good_checksum_passes(tmp_path, cv_archive):
    result = run_script("01_check_sources.py", tmp_path, CV_ARCHIVE=str(cv_archive.path), CV_SHA256=cv_archive.sha256)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "checksum matches" in result.stdout and "GB free in DATA_DIR" in result.stdout
    if GPU_VISIBLE:
        assert "[ok     ] GPU /physical_device:GPU:0" in result.stdout
    else:
        assert "[warning] no GPU visible" in result.stdout  # a warning, not an error
    again = run_script("01_check_sources.py", tmp_path, CV_ARCHIVE=str(cv_archive.path), CV_SHA256=cv_archive.sha256)
    assert again.returncode == 0 and "checksum cached" in again.stdout


def test_wrong_checksum_fails_with_a_fix(tmp_path, cv_archive):
    result = run_script("01_check_sources.py", tmp_path, CV_ARCHIVE=str(cv_archive.path), CV_SHA256="0" * 64)
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if "mismatch" in line]
    assert cv_archive.sha256 in line and "CV_SHA256" in line
    assert any(not f["ok"] and "mismatch" in f["message"] for f in _findings(tmp_path))


def test_unknown_archive_says_how_to_accept_it(tmp_path, cv_archive):
    result = run_script("01_check_sources.py", tmp_path, CV_ARCHIVE=str(cv_archive.path))
    assert result.returncode == 1
    assert f"set CV_SHA256={cv_archive.sha256}" in result.stdout


def test_missing_archive_is_reported(tmp_path):
    result = run_script("01_check_sources.py", tmp_path)
    assert result.returncode == 1 and "not found" in result.stdout and "CV_ARCHIVE" in result.stdout


@pytest.mark.parametrize("sha256,sha1,release", [
    ("a304332d1dfdb772ae75859441f46a88438305d2f5420680c3c64fba62ea6830", "0" * 40, "cv-corpus-5.1-2020-06-22"),
    ("486958feed03d52d2cccc7aa35807c8bf7b118011c1c672b762107c4bc59a80f", "0" * 40, "cv-corpus-25.0-2026-03-09"),
    ("0" * 64, "5949823c7531695fefc3bcab5a56f43552eb7d89", "cv-corpus-4-2019-12-10"),
])
def test_known_releases_are_named(sha256, sha1, release):
    finding = identify_archive(Digests(sha256, sha1), "", "")
    assert finding.ok and release in finding.message


def test_digests_are_streamed_sha256_and_sha1(tmp_path):
    import hashlib

    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 50000)
    digests = checks.archive_digests(path, show_progress=False)
    assert digests == Digests(hashlib.sha256(path.read_bytes()).hexdigest(), hashlib.sha1(path.read_bytes()).hexdigest())


def test_too_little_disk_is_blocking(tmp_path):
    [finding] = checks.check_data_dir(tmp_path, archive_size=10**18)
    assert not finding.ok and finding.blocking and "needed" in finding.message


def test_transfer_checkpoint_folder(tmp_path, cv_archive):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("01_check_sources.py", tmp_path / "data", CV_ARCHIVE=str(cv_archive.path),
                        CV_SHA256=cv_archive.sha256, TRANSFER_LEARNING="1", TRANSFER_CHECKPOINT_DIR=str(empty))
    assert result.returncode == 1 and "no `checkpoint` descriptor" in result.stdout

    folder = tmp_path / "english"
    folder.mkdir()
    _save_name_based({"layer_1/weights": np.zeros([494, 4], np.float32), "global_step": np.int64(7)},
                     folder / "best_dev-7")
    found = checks.check_transfer_checkpoint(folder)
    assert all(f.ok for f in found) and "2 variables" in found[0].message

    next(folder.glob("best_dev-7.data-*")).unlink()
    broken = checks.check_transfer_checkpoint(folder)
    assert not broken[0].ok and "missing or unreadable" in broken[0].message


def _save_name_based(variables, prefix):
    """A TF1-style name-based checkpoint plus its `checkpoint` descriptor, as DeepSpeech writes them."""
    import tensorflow as tf

    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        graph_vars = {name: tf.compat.v1.Variable(value, name=name.replace("/", "_")) for name, value in
                      variables.items()}
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver(var_list=graph_vars).save(session, str(prefix), write_meta_graph=False)
