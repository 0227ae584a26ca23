"""KenLM's command-line tools as DeepSpeech's release recipe runs them: lmplz, filter to the vocabulary, and
build_binary into a quantised trie without the vocabulary strings (what the scorer package needs)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from deepspeech_it.paths import KENLM_PROGRAMS, find_tool
from deepspeech_it.util.errors import PipelineError

log = logging.getLogger(__name__)

# DeepSpeech's release scorer: 255-bit pointer compression, 8-bit quantisation, trie, no vocabulary (-v).
BINARY_OPTIONS = ("-a", "255", "-q", "8", "-v", "trie")
# lmplz's advice when the corpus is too small or too regular to estimate Kneser-Ney discounts.
_DISCOUNT_PROBLEM = "--discount_fallback"


class KenLMError(PipelineError, RuntimeError):
    pass


@dataclass(frozen=True)
class ToolRun:
    """One finished run of a tool: wall time, CPU time (user + system) and the peak resident memory of its process
    (and of the processes it waited for)."""

    seconds: float
    cpu_seconds: float
    peak_rss_mb: float


def kenlm_programs() -> dict[str, Path]:
    """The paths of lmplz, filter and build_binary; raises KenLMError naming what is missing."""
    found = {name: find_tool(name) for name in KENLM_PROGRAMS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise KenLMError(f"KenLM program(s) {', '.join(missing)} not found; run `make setup` "
                         "(scripts/build_kenlm.sh tools/kenlm) or put them on PATH")
    return found


def run_tool(command: Sequence[str | Path], log_path: Path, stdin_path: Path | None = None) -> ToolRun:
    """Runs COMMAND with its output in LOG_PATH and returns its time and peak memory (from the kernel's rusage of
    that child); raises KenLMError with the log's tail when it fails."""
    started = time.monotonic()
    with open(log_path, "wb") as output, open(stdin_path or os.devnull, "rb") as stdin:
        process = subprocess.Popen([str(part) for part in command], stdin=stdin, stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    run = ToolRun(time.monotonic() - started, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)
    if process.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-6:]
        raise KenLMError(f"{Path(command[0]).name} failed (exit {process.returncode}): " + " | ".join(tail))
    return run


@dataclass(frozen=True)
class LmplzResult:
    run: ToolRun
    discount_fallback: bool


def estimate_arpa(lmplz: Path, corpus: Path, arpa: Path, order: int, prune: Sequence[int], memory: str,
                  temp_prefix: Path) -> LmplzResult:
    """lmplz with DeepSpeech's options. A corpus too small for Kneser-Ney discounts is retried with
    --discount_fallback (KenLM's fixed discounts), with a warning: the model then works but is weaker."""
    command = [lmplz, "--order", str(order), "--temp_prefix", temp_prefix, "--memory", memory,
               "--text", corpus, "--arpa", arpa]
    if prune:
        command += ["--prune", *map(str, prune)]
    log_path = arpa.with_name(arpa.name + ".log")
    try:
        return LmplzResult(run_tool(command, log_path), False)
    except KenLMError:
        if _DISCOUNT_PROBLEM not in log_path.read_text(encoding="utf-8", errors="replace"):
            raise
    log.warning("warning: the LM corpus is too small to estimate Kneser-Ney discounts; using lmplz "
                "--discount_fallback. Add text with LM_SOURCES for a useful language model.")
    return LmplzResult(run_tool(command + ["--discount_fallback"], log_path), True)


def filter_arpa(filter_program: Path, arpa: Path, vocabulary: Path, filtered: Path) -> ToolRun:
    """Keeps only the n-grams whose words are all in VOCABULARY (KenLM's filter, 'single' mode)."""
    return run_tool([filter_program, "single", f"model:{arpa}", filtered], filtered.with_name(filtered.name + ".log"),
                    stdin_path=vocabulary)


def build_binary(build_binary_program: Path, arpa: Path, binary: Path, memory: str, temp_prefix: Path) -> ToolRun:
    """The quantised trie without vocabulary strings; its log and temporary files go to TEMP_PREFIX*."""
    return run_tool([build_binary_program, "-S", memory, "-T", temp_prefix, *BINARY_OPTIONS, arpa, binary],
                    temp_prefix.with_name(temp_prefix.name + "log"))


_NGRAM_LINE = re.compile(r"ngram (\d+)=(\d+)")


def arpa_ngram_counts(arpa: Path) -> dict[int, int]:
    """The n-gram counts of the ARPA file's \\data\\ section."""
    counts = {}
    with open(arpa, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _NGRAM_LINE.match(line.strip())
            if match:
                counts[int(match.group(1))] = int(match.group(2))
            elif counts and line.startswith("\\"):
                break
    return counts
