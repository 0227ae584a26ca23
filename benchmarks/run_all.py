#!/usr/bin/env python3
"""Runs every benchmarks/bench_*.py (each exposes run() -> dict) and writes benchmarks/RESULTS.md."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
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
        try:
            result = load(path).run()
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others' figures
            traceback.print_exc()
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
    sys.exit(main(sys.argv[1:]))
