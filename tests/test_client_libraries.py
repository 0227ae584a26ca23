"""The native client libraries: installed at setup time from pinned, checked wheels, only read at run time.

The install tests use a wheel made here and served by pip from a local folder, so they need no network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import sys
import zipfile

import pytest

from deepspeech_it.export import client_libraries
from deepspeech_it.export.client_libraries import ClientUnavailable, install, is_installed, library_paths

LIBRARIES = {"fakeclient/lib/libdep.so": b"dependency", "fakeclient/lib/libfake.so": b"the client"}


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """A folder with a fakeclient 1.0 wheel in it, and pip told to look there only; returns the wheel's release."""
    folder = tmp_path / "index"
    folder.mkdir()
    wheel = folder / "fakeclient-1.0-cp39-cp39-manylinux1_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in LIBRARIES.items():
            archive.writestr(name, data)
        archive.writestr("fakeclient-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakeclient\nVersion: 1.0\n")
        archive.writestr("fakeclient-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"
                                                           "Tag: cp39-cp39-manylinux1_x86_64\n")
        archive.writestr("fakeclient-1.0.dist-info/RECORD", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return client_libraries.ClientRelease("fake", "fakeclient", "1.0", "FK", tuple(LIBRARIES),
                                          hashlib.sha256(wheel.read_bytes()).hexdigest())


def test_install_checks_the_wheel_and_extracts_its_libraries(local_index, tmp_path):
    target = tmp_path / "clients"
    assert install(local_index, target) is True
    paths = library_paths(local_index, target)
    assert [p.read_bytes() for p in paths] == list(LIBRARIES.values())
    assert install(local_index, target) is False, "installed once"


def test_a_wheel_with_another_sha256_is_refused_and_nothing_installed(local_index, tmp_path):
    wrong = dataclasses.replace(local_index, wheel_sha256="0" * 64)
    with pytest.raises(ClientUnavailable, match="not the pinned wheel"):
        install(wrong, tmp_path / "clients")
    assert not is_installed(wrong, tmp_path / "clients")
    assert not list((tmp_path / "clients").rglob("*.so"))


def test_a_missing_client_names_make_setup(tmp_path):
    with pytest.raises(ClientUnavailable, match=r"not installed in .*; run `make setup`$"):
        library_paths(client_libraries.DEEPSPEECH, tmp_path)


def test_a_client_from_another_wheel_counts_as_missing(local_index, tmp_path):
    install(local_index, tmp_path)
    newer = dataclasses.replace(local_index, wheel_sha256="1" * 64)
    with pytest.raises(ClientUnavailable, match="make setup"):
        library_paths(newer, tmp_path)


@pytest.mark.parametrize("release", client_libraries.INSTALLED, ids=lambda r: r.name)
def test_setup_installed_every_client_and_each_reports_its_version(release):
    """Setup installed the three pinned clients, the TensorFlow build of libdeepspeech.so included; each loads."""
    assert is_installed(release), f"{release.package} {release.version} missing: run make setup"
    code = ("import sys; from deepspeech_it.export import client_libraries as c, native_clients as n; "
            "print(n.NativeLibrary.load(next(r for r in c.INSTALLED if r.name == sys.argv[1])).version())")
    done = subprocess.run([sys.executable, "-c", code, release.name], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == release.version
