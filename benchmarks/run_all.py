#!/usr/bin/env python3
"""Runs every benchmarks/bench_*.py (each exposes run() -> dict) and writes benchmarks/RESULTS.md.

Each benchmark runs in a process of its own: one that leaves TensorFlow's thread pools or a large heap behind would
otherwise slow the next one's worker processes (forked from this one) and skew its ratio."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine_description() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores, {memory_kb / 2**20:.0f} GiB, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    # Registered under its name so that worker processes can find its functions (pickling is by name).
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def print_result(result: dict) -> None:
    """A benchmark's figures on the terminal, for running one benchmark file by itself."""
    for label, value in result["rows"]:
        print(f"{label}: {value}")
    print(f"goal {result['goal']}: {'met' if result['met'] else 'NOT met'}")


def section(result: dict, seconds: float) -> str:
    lines = [f"## {result['name']}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in result["rows"]]
    lines += ["", f"Goal: {result['goal']} — **{'met' if result['met'] else 'not met'}** (benchmark took {seconds:.0f} s)", ""]
    return "\n".join(lines)


def run_alone(path: Path) -> dict | None:
    """PATH's run() in a new process; None when it failed (its traceback is on stderr)."""
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "result.json"
        finished = subprocess.run([sys.executable, __file__, "--one", str(path), str(out)], check=False)
        return json.loads(out.read_text()) if finished.returncode == 0 and out.is_file() else None


def run_one(path: Path, out: Path) -> int:
    try:
        result = load(path).run()
    except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
        traceback.print_exc()
        return 1
    out.write_text(json.dumps(result, default=lambda value: value.item() if hasattr(value, "item") else str(value)))
    return 0


def main(selected: list[str]) -> int:
    benches = sorted(HERE.glob("bench_*.py"))
    if selected:
        benches = [b for b in benches if any(name in b.stem for name in selected)]
    parts = ["# Benchmark results", "", f"Machine: {machine_description()}", "",
             f"Measured {time.strftime('%Y-%m-%d')} with `make bench`; ratios compare two implementations run side by "
             "side in the same run on the same data.", ""]
    failures = 0
    for path in benches:
        print(f"== {path.stem}", flush=True)
        started = time.monotonic()
        result = run_alone(path)
        if result is None:
            parts += [f"## {path.stem}", "", "failed to run; see the output of `make bench`", ""]
            failures += 1
            continue
        text = section(result, time.monotonic() - started)
        print(text, flush=True)
        parts.append(text)
    (HERE / "RESULTS.md").write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        sys.exit(run_one(Path(sys.argv[2]), Path(sys.argv[3])))
    sys.exit(main(sys.argv[1:]))
