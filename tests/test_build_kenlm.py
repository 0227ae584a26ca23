"""scripts/build_kenlm.sh downloads the KenLM source distribution without building anything: pip must not install
the sdist's build requirements (that once compiled CMake from source for 12 minutes on a fresh machine).

The download command of the script runs here against a local sdist whose build requirement does not exist anywhere,
so it only succeeds if pip never tries to install it; no network is needed.
"""

from __future__ import annotations

import io
import re
import shlex
import subprocess
import sys
import tarfile

from conftest import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "build_kenlm.sh"
PYPROJECT = """[build-system]
requires = ["setuptools", "no-such-build-requirement-anywhere==99"]
build-backend = "setuptools.build_meta"
"""


def _download_command() -> list[str]:
    [line] = [line for line in SCRIPT.read_text().splitlines() if "-m pip download" in line]
    return shlex.split(line)


def _sdist(folder, name: str) -> None:
    files = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", "pyproject.toml": PYPROJECT,
             "setup.py": f"from setuptools import setup\nsetup(name={name!r}, version='1.0')\n"}
    with tarfile.open(folder / f"{name}-1.0.tar.gz", "w:gz") as archive:
        for file_name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"{name}-1.0/{file_name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))


def test_the_kenlm_download_never_installs_build_requirements(tmp_path):
    command = _download_command()
    assert "--no-binary" in command and command[command.index("--no-binary") + 1] == "kenlm", \
        "only kenlm itself as source: ':all:' would also build its build requirements from source"
    index = tmp_path / "index"
    index.mkdir()
    _sdist(index, "kenlm")
    dest = tmp_path / "dest"
    substitutions = {'$python': sys.executable, '$work': str(dest), "kenlm==$KENLM_VERSION": "kenlm==1.0"}
    argv = [substitutions.get(arg, arg) for arg in command]
    assert not [arg for arg in argv if re.search(r"\$\w", arg)], argv
    env = {"PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(index), "PIP_CONFIG_FILE": "/dev/null",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    assert (dest / "kenlm-1.0.tar.gz").is_file()
