#!/usr/bin/env python3
"""Import throughput of the other corpora, in the audio each publishes: M-AILABS and VoxForge WAV, MLS FLAC and
Opus, VoxPopuli segments cut from Ogg Vorbis session recordings. Ours (in-process decode, soxr, JOBS workers)
against one sox and one soxi process per clip, as DeepSpeech's importers work, on the same clips, the same number
of worker processes, in the same run (the baseline of bench_import.py). Goal: at least 4 times faster for every corpus.

sox 14.4.2 cannot read Opus, so the MLS baseline runs on the FLAC release; ours is measured on both.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sox

from deepspeech_it.data.clips import ClipTask, convert_all
from deepspeech_it.data.framing import SAMPLE_RATE
from deepspeech_it.demo.corpus_synth import Sentences, encode, speak_all

CLIPS = 240
COPIES = 4               # each spoken clip converted as this many files, so that pool start-up weighs as in an import
GOAL = 4.0
SESSION_CLIPS = 20       # VoxPopuli segments per session recording


def sox_convert(task: ClipTask) -> int:
    """What DeepSpeech's importers (import_cv2, import_m-ailabs, import_voxforge) do per clip: pysox's Transformer
    (a sox process, trimming a segment out of its session), then `soxi -s`."""
    transformer = sox.Transformer()
    transformer.convert(samplerate=SAMPLE_RATE, n_channels=1, bitdepth=16)
    if task.pieces:
        (start, end), = task.pieces
        transformer.trim(start, end)
    transformer.build(str(task.source), str(task.target))
    return int(subprocess.check_output(["soxi", "-s", str(task.target)], stderr=subprocess.STDOUT))


def _timed(function, tasks: list[ClipTask], jobs: int) -> float:
    started = time.perf_counter()
    function(tasks, jobs)
    return time.perf_counter() - started


def _baseline(tasks: list[ClipTask], jobs: int) -> None:
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        frames = list(pool.imap_unordered(sox_convert, tasks, chunksize=4))
    assert len(frames) == len(tasks) and min(frames) > 0


def _ours(tasks: list[ClipTask], jobs: int) -> None:
    results = list(convert_all(tasks, jobs, show_progress=False))
    assert all(r.problem is None and r.frames > 0 for r in results)


def clip_files(work: Path, speech: list[np.ndarray]) -> dict[str, list[ClipTask]]:
    """The same spoken clips as each corpus publishes them; targets are filled in per run."""
    pad = np.zeros(8000, dtype=np.float32)
    sets: dict[str, list[ClipTask]] = {}
    for name, fmt, rate, padded in (("M-AILABS (WAV 16 kHz)", "wav", SAMPLE_RATE, True),
                                    ("VoxForge (WAV 16 kHz)", "wav", SAMPLE_RATE, False),
                                    ("MLS (FLAC 16 kHz)", "flac", SAMPLE_RATE, False),
                                    ("MLS (Opus 48 kHz)", "opus", 48000, False)):
        folder = work / fmt / str(padded)
        folder.mkdir(parents=True, exist_ok=True)
        sets[name] = []
        for index, samples in enumerate(speech):
            data = encode(np.concatenate([pad, samples, pad]) if padded else samples, fmt, rate)
            for copy in range(COPIES):
                path = folder / f"{copy}-{index:05d}.{fmt}"
                path.write_bytes(data)
                sets[name].append(ClipTask("train", path, Path(), ""))
    sets["VoxPopuli (Ogg Vorbis sessions, VAD pieces)"] = _sessions(work / "sessions", speech)
    return sets


def _sessions(folder: Path, speech: list[np.ndarray]) -> list[ClipTask]:
    folder.mkdir(parents=True)
    gap, tasks = np.zeros(8000, dtype=np.float32), []
    for first in range(0, len(speech), SESSION_CLIPS):
        parts, pieces = [gap], []
        for samples in speech[first:first + SESSION_CLIPS]:
            start = sum(len(p) for p in parts) / SAMPLE_RATE
            pieces.append(((start, start + len(samples) / SAMPLE_RATE),))
            parts += [samples, gap]
        data = encode(np.concatenate(parts), "vorbis")
        for copy in range(COPIES):
            path = folder / f"{copy}-session{first:05d}_original.ogg"
            path.write_bytes(data)
            tasks += [ClipTask("train", path, Path(), "", pieces=p) for p in pieces]
    return tasks


def _with_targets(tasks: list[ClipTask], folder: Path) -> list[ClipTask]:
    folder.mkdir(parents=True)
    return [ClipTask(t.split, t.source, folder / f"{i:05d}.wav", t.transcript, pieces=t.pieces)
            for i, t in enumerate(tasks)]


def run(clips: int = CLIPS) -> dict:
    jobs = len(os.sched_getaffinity(0))
    sentences = Sentences()
    speech = speak_all([(sentences.take(), "it") for _ in range(clips)], jobs)
    rows, ratios = [("clips per corpus (spoken clips x copies), worker processes",
                     f"{clips * COPIES} ({clips} x {COPIES}), {jobs}")], []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        for number, (name, tasks) in enumerate(clip_files(work / "sources", speech).items()):
            ours = _timed(_ours, _with_targets(tasks, work / f"ours{number}"), jobs)
            if "Opus" in name:
                rows.append((f"{name}: ours (sox cannot read Opus)", f"{clips * COPIES / ours:.1f} clips/s"))
                continue
            baseline = _timed(_baseline, _with_targets(tasks, work / f"sox{number}"), jobs)
            ratios.append(baseline / ours)
            rows.append((f"{name}: DeepSpeech's way / ours", f"{clips * COPIES / baseline:.1f} / "
                                                                 f"{clips * COPIES / ours:.1f} clips/s, "
                                                                 f"{ratios[-1]:.1f}x"))
    return {"name": "Import (stage 02) of M-AILABS, MLS, VoxPopuli and VoxForge audio to 16 kHz wav",
            "rows": rows, "goal": f">= {GOAL:g}x the baseline for every corpus", "met": min(ratios) >= GOAL}


if __name__ == "__main__":
    from run_all import print_result

    print_result(run(int(sys.argv[1]) if len(sys.argv) > 1 else CLIPS))
