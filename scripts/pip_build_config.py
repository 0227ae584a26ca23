#!/usr/bin/env python3
"""Writes DIR/pip.conf (and DIR/ca.pem) so that pip inside `docker build` reaches PyPI the way pip on this machine
does: the same index, proxy and CA bundle. Both are passed to the build as BuildKit secrets (never stored in the
image): ``--secret id=pipconf,src=DIR/pip.conf --secret id=pipca,src=DIR/ca.pem``.

    scripts/pip_build_config.py DIR

Settings that name this machine's own folders (find-links, file:// indexes) are left out: the build cannot see them.
"""

import shutil
import subprocess
import sys
from pathlib import Path

# What decides how pip reaches an index; anything else (constraints, caches) stays on this machine.
NETWORK_KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host", "proxy", "timeout", "retries", "cert")
# pip reads environment variables over its files, and a command's section over [global].
SECTION_RANK = {"global": 0, "download": 1, "install": 1, "wheel": 1, ":env:": 2}
SECRET_CA = "/run/secrets/pipca"


def effective_settings(listing: str) -> dict[str, str]:
    """KEY -> value from the output of `pip config list`, the strongest section winning."""
    chosen: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.rpartition(".")
        rank = SECTION_RANK.get(section)
        if rank is None or key not in NETWORK_KEYS:
            continue
        if key not in chosen or rank >= chosen[key][0]:
            chosen[key] = (rank, value.strip().strip("'\""))
    return {key: value for key, (_, value) in chosen.items()}


def remote_only(value: str) -> str:
    return " ".join(item for item in value.split() if item.startswith(("http://", "https://")))


def main(target: Path) -> int:
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=True).stdout
    settings = effective_settings(listing)
    lines = ["[global]"]
    for key, value in settings.items():
        if key in ("index-url", "find-links", "extra-index-url"):
            value = remote_only(value)
        if key == "cert":
            shutil.copyfile(value, target / "ca.pem")
            value = SECRET_CA
        if value:
            lines.append(f"{key} = {value}")
    if not (target / "ca.pem").exists():
        (target / "ca.pem").write_text("")      # the build mounts the secret either way
    (target / "pip.conf").write_text("\n".join(lines) + "\n")
    print(f"pip configuration for the build: {', '.join(lines[1:]) or 'pip defaults'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
