"""The pipeline as it runs in the image, without Docker: the project in a folder owned by root, an unprivileged uid
with its own HOME, no network, and DATA_DIR the only place it may write. And in every stage, a DATA_DIR that cannot
be written stops with one line and exit 2 before any work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from deepspeech_it.data.alphabet import Alphabet
from deepspeech_it.export import graph
from deepspeech_it.model import checkpoint

from conftest import PROJECT_ROOT, run_script, stage_env
from export_helpers import build_test_scorer

USER = 999
STAGES = sorted(path.name for path in (PROJECT_ROOT / "scripts").glob("0[1-6]_*.py"))
ALPHABET = Alphabet.from_file(PROJECT_ROOT / "alphabet" / "it.txt")


@pytest.mark.parametrize("script", STAGES)
def test_a_data_dir_that_cannot_be_made_stops_every_stage_with_one_line(script, tmp_path):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    result = run_script(script, in_the_way / "data")
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"configuration error: DATA_DIR={in_the_way / 'data'}: cannot write")
    assert "chown" in result.stderr and "--user" in result.stderr


def _as_user(read_everything: bool) -> list[str]:
    command = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--clear-groups"]
    # Only when this Python lives in a folder closed to other users (a home folder): CAP_DAC_READ_SEARCH lets the
    # uid read and traverse it; writing still follows the permissions, which is what these tests are about.
    return command + ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"] if read_everything else command


def _user_prefix() -> list[str] | None:
    """How to run this Python as USER so that it can also start itself again (stage 06 runs the clients so)."""
    probe = [sys.executable, "-c", "import subprocess, sys, numpy; subprocess.run([sys.executable, '-c', ''], check=True)"]
    for read_everything in (False, True):
        if subprocess.run(_as_user(read_everything) + probe, capture_output=True).returncode == 0:
            return _as_user(read_everything)
    return None


def _network_isolation() -> list[str]:
    """`unshare --net` when this machine allows it: the child then has no network interface but loopback."""
    if shutil.which("unshare") and subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--net"]
    return []


class Install:
    """A copy of the project in a root-owned folder, and a data folder and a HOME that belong to USER."""

    def __init__(self, base: Path, as_user: list[str], with_clients: bool = True):
        self.as_user = as_user
        self.root = base / ("install" if with_clients else "install-without-clients")
        for part in ("deepspeech_it", "scripts", "alphabet"):
            shutil.copytree(PROJECT_ROOT / part, self.root / part, ignore=shutil.ignore_patterns("__pycache__"))
        (self.root / "tools").mkdir()
        for tool in ("kenlm", "native-clients") if with_clients else ("kenlm",):
            (self.root / "tools" / tool).symlink_to((PROJECT_ROOT / "tools" / tool).resolve())
        self.home = base / f"home-{self.root.name}"
        self.data = base / f"data-{self.root.name}"
        for folder in (self.home, self.data):
            folder.mkdir()
            os.chown(folder, USER, USER)

    def give_data_to_user(self) -> None:
        for path in [self.data, *self.data.rglob("*")]:
            os.chown(path, USER, USER)

    def run(self, script: str, data_dir: Path | None = None, **variables: str) -> subprocess.CompletedProcess:
        env = stage_env(data_dir or self.data, **variables)
        env.update(HOME=str(self.home), PYTHONPATH=str(self.root))
        command = [*_network_isolation(), *self.as_user, sys.executable, str(self.root / "scripts" / script)]
        return subprocess.run(command, env=env, cwd=self.home, capture_output=True, text=True, timeout=600)

    def snapshot(self) -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in self.root.rglob("*")}


@pytest.fixture(scope="module")
def base():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the stages as an unprivileged uid")
    as_user = _user_prefix()
    if as_user is None:
        pytest.skip(f"this Python cannot run as uid {USER}")
    # Not under pytest's own temporary folder: that one is closed to other users.
    folder = Path(tempfile.mkdtemp(prefix="deepspeech-it-install."))
    folder.chmod(0o755)
    yield folder, as_user
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def install(base):
    return Install(*base)


def test_stage_01_finds_tools_and_clients_in_a_tree_it_cannot_write(install, cv_archive):
    sources = install.data / "sources"
    sources.mkdir()
    shutil.copyfile(cv_archive.path, sources / "it.tar.gz")
    install.give_data_to_user()
    before = install.snapshot()
    result = install.run("01_check_sources.py", CV_SHA256=cv_archive.sha256)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"KenLM lmplz: {install.root}" in result.stdout, "the stage ran from the root-owned copy"
    for name in ("deepspeech-tflite 0.9.3", "stt 1.4.0", "deepspeech 0.9.3"):
        assert f"[ok     ] native client {name}" in result.stdout
    assert install.snapshot() == before


def _checkpoint_and_scorer(data_dir: Path) -> None:
    """What stages 03-05 leave for stage 06: a small DeepSpeech-named checkpoint and a scorer."""
    folder = data_dir / "checkpoints"
    weights = graph.random_weights(32, ALPHABET, seed=3)
    prefix = folder / "best_dev-7"
    checkpoint.write_bundle(prefix, {**weights, "global_step": np.int64(7)})
    checkpoint.write_state_file(folder, checkpoint.BEST_STATE_FILE, [prefix])
    checkpoint.write_companions(folder, {"n_hidden": 32}, ALPHABET.to_text())
    build_test_scorer(data_dir / "lm", ["il gatto dorme", "oggi piove sul mare"], ALPHABET)


def test_stage_06_loads_the_clients_from_setup_without_network_or_write_access(install):
    _checkpoint_and_scorer(install.data)
    install.give_data_to_user()
    before = install.snapshot()
    result = install.run("06_export.py", BEAM_WIDTH="64", EXPORT_QUANTIZE="0")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metadata = (install.data / "models" / "metadata.json").read_text()
    assert '"deepspeech-tflite 0.9.3"' in metadata and '"stt 1.4.0"' in metadata
    assert install.snapshot() == before


def test_stage_06_without_the_clients_says_to_run_make_setup(base):
    bare = Install(*base, with_clients=False)
    _checkpoint_and_scorer(bare.data)
    bare.give_data_to_user()
    result = bare.run("06_export.py")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: deepspeech-tflite 0.9.3 is not installed in {bare.root / 'tools' / 'native-clients'}; "
        "run `make setup`"]


def test_a_data_dir_of_another_owner_says_how_to_fix_it(install, base):
    theirs = base[0] / "owned-by-root"
    theirs.mkdir()
    result = install.run("02_import_cv.py", data_dir=theirs)
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert f"cannot write {theirs} as uid {USER} (gid {USER}): Permission denied" in line
    assert f"sudo chown -R {USER}:{USER} <folder>" in line and 'docker run --user "$(id -u):$(id -g)"' in line


def test_the_user_runs_without_network(install):
    if not _network_isolation():
        pytest.skip("unshare --net is not allowed here: the other tests ran with the machine's network")
    probe = install.home / "connect.py"
    probe.write_text("import socket\nsocket.create_connection(('151.101.0.223', 443), timeout=10)\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(install.home)}
    result = subprocess.run([*_network_isolation(), *install.as_user, sys.executable, str(probe)], env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Network is unreachable" in result.stderr
