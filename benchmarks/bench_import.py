#!/usr/bin/env python3
"""Import throughput: our in-process converter against DeepSpeech's importer (one sox and one soxi process per
clip) on the same clips, the same number of worker processes, in the same run. Goal: at least 4 times faster."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import sox

from deepspeech_it.data import archive, commonvoice
from deepspeech_it.data.clips import ClipTask, convert_all
from deepspeech_it.demo.synth import build_archive

CLIPS = 240
COPIES = 4               # each spoken clip converted as this many files, so that pool start-up weighs as in an import
GOAL = 4.0


def deepspeech_convert(task: ClipTask) -> int:
    """What DeepSpeech's import_cv2 does per clip: pysox's Transformer (a sox process), then `soxi -s`."""
    transformer = sox.Transformer()
    transformer.convert(samplerate=16000, n_channels=1)
    transformer.build(str(task.source), str(task.target))
    return int(subprocess.check_output(["soxi", "-s", str(task.target)], stderr=subprocess.STDOUT))


def _time_baseline(tasks: list[ClipTask], jobs: int) -> float:
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        frames = list(pool.imap_unordered(deepspeech_convert, tasks, chunksize=4))
    assert len(frames) == len(tasks) and min(frames) > 0
    return time.perf_counter() - started


def _time_ours(tasks: list[ClipTask], jobs: int) -> float:
    started = time.perf_counter()
    results = list(convert_all(tasks, jobs, show_progress=False))
    assert all(r.problem is None and r.frames > 0 for r in results)
    return time.perf_counter() - started


def run(clips: int = CLIPS) -> dict:
    jobs = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        per_split = {"train": clips - 2, "dev": 1, "test": 1}
        build_archive(work / "it.tar.gz", per_split=per_split, jobs=jobs)
        archive.extract_archive(work / "it.tar.gz", work / "x", show_progress=False)
        corpus = commonvoice.find_corpus_dir(work / "x", "it")
        spoken = sorted((corpus / "clips").glob("*.mp3"))
        sources = [source.with_name(f"{copy}-{source.name}") for copy in range(COPIES) for source in spoken]
        for source in sources:
            shutil.copyfile(corpus / "clips" / source.name.split("-", 1)[1], source)

        def tasks(folder: str) -> list[ClipTask]:
            (work / folder).mkdir()
            return [ClipTask("train", s, work / folder / (s.stem + ".wav"), "") for s in sources]

        baseline = _time_baseline(tasks("baseline"), jobs)
        ours = _time_ours(tasks("ours"), jobs)
    ratio = baseline / ours
    return {
        "name": "Import (stage 02): MP3 clips to 16 kHz wav",
        "rows": [
            ("clips, worker processes", f"{len(sources)}, {jobs}"),
            ("DeepSpeech importer (sox + soxi per clip)", f"{len(sources) / baseline:.1f} clips/s"),
            ("ours (in-process decode + soxr)", f"{len(sources) / ours:.1f} clips/s"),
            ("ratio", f"{ratio:.1f}x"),
        ],
        "goal": f">= {GOAL:g}x the baseline",
        "met": ratio >= GOAL,
    }


if __name__ == "__main__":
    from run_all import print_result

    print_result(run())
