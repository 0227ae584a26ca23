#!/usr/bin/env python3
"""Writes the demo's Common Voice-shaped Italian archive (and its sha256 beside it), unless it is already there.

Dev and test are spoken by voices that never appear in train, so the demo's figures are measured on unseen voices.
"""

import hashlib
import sys
from pathlib import Path

from deepspeech_it.atomic import atomic_path, write_text_atomic
from deepspeech_it.synth import build_archive

VOICES = {
    "train": ["it", "it+m1", "it+m2", "it+m3", "it+m4", "it+m5", "it+m6", "it+m7", "it+f1", "it+f2", "it+f3",
              "it+f4", "it+Alex", "it+Andrea", "it+Antonio", "it+Marco", "it+Mario", "it+anika", "it+klatt",
              "it+Henrique"],
    "dev": ["it+f5", "it+Denis"],
    "test": ["it+Gene", "it+Jacky"],
}
SPEEDS = (140, 165, 190)
PER_SPLIT = {"train": 1600, "dev": 200, "test": 200}


def main(target: Path) -> None:
    checksum = target.with_name(target.name + ".sha256")
    if target.is_file() and checksum.is_file():
        print(f"demo corpus {target} already there")
        return
    print(f"speaking {sum(PER_SPLIT.values())} Italian clips with {sum(map(len, VOICES.values()))} voices ...")
    with atomic_path(target) as temp:
        build_archive(temp, voices=VOICES, speeds=SPEEDS, per_split=PER_SPLIT, show_progress=True)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    write_text_atomic(checksum, f"{digest}  {target.name}\n")
    print(f"demo corpus written: {target} (sha256 {digest})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
