"""What each variable of the configuration accepts: the parsers (text -> value; a ValueError says what is
allowed), the limits the code can honour, and the cluster TF_CONFIG describes."""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deepspeech_it.evaluate.grid import parse_evaluate_range
from deepspeech_it.model.augment_spec import parse_augment

# The corpora stage 02 can import, in the order they are imported and reported (data/corpora.py describes them).
CORPORA = ("cv", "mailabs", "mls", "voxpopuli", "voxforge")

# ---- what the code can honour: every number is checked against these before any work ----------------------

MAX_SEED = 2**32 - 1             # numpy's and keras.utils.set_random_seed's limit (optuna's sampler too)
JOBS_PER_CORE = 4                # import processes: conversion is CPU-bound, each process costs memory
KENLM_MAX_ORDER = 6              # what KenLM is compiled for here and in DeepSpeech's and Coqui's clients
MAX_PRUNE = 2**32 - 1            # lmplz reads 64-bit counts; no n-gram of any corpus is this frequent
MAX_VOCABULARY = 100_000_000     # far above any corpus; KenLM numbers words with 32 bits
MIN_LM_MEMORY = 64 << 20         # lmplz aborts with less, even on a tiny corpus
MAX_MEMORY_PERCENT = 90          # KenLM's sort buffers are real memory: leave some to the rest of the machine
MAX_CLIP_SECS = 600.0            # one clip's activations must fit a training batch in memory
# The export holds the float weights (about 11 * N_HIDDEN**2 of them) in a GraphDef and a TFLite flatbuffer, both
# limited to 2 GB: 4096 gives 0.74 GB, 8192 would not fit.
MAX_N_HIDDEN = 4096
MAX_BATCH_SIZE = 4096            # a batch is padded to its longest clip and held at once: beyond any GPU's memory
MAX_EPOCHS = 100_000             # epoch counters and plots stay readable; no run needs more
MAX_CHECKPOINTS_KEPT = 1000      # each bundle is N_HIDDEN-sized (0.5 GB at 2048, with Adam's moments)
MAX_CHECKPOINT_SECS = 7 * 24 * 3600
MAX_BEAM_WIDTH = 65536           # prefixes kept per frame; each tries 40 characters


# ---- parsers: text -> value, ValueError says what is allowed ------------------------------------------------


def as_integer(minimum: int, maximum: int, why: str = "") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(_range_text("a whole number", minimum, maximum) + why) from None
        if not minimum <= value <= maximum:
            raise ValueError(_range_text("a whole number", minimum, maximum) + why)
        return value

    return parse


def as_number(minimum: float, maximum: float, *, open_min: bool = False,
            open_max: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(_range_text("a number", minimum, maximum, open_min, open_max)) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(_range_text("a finite number", minimum, maximum, open_min, open_max))
        low_bad = value <= minimum if open_min else value < minimum
        high_bad = value >= maximum if open_max else value > maximum
        if low_bad or high_bad:
            raise ValueError(_range_text("a number", minimum, maximum, open_min, open_max))
        return value

    return parse


def _range_text(kind: str, minimum, maximum, open_min: bool = False, open_max: bool = False) -> str:
    low = f"{'>' if open_min else '>='} {minimum:g}" if isinstance(minimum, float) else f">= {minimum}"
    high = f"{'<' if open_max else '<='} {maximum:g}" if isinstance(maximum, float) else f"<= {maximum}"
    return f"allowed: {kind} {low} and {high}"


def as_flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("allowed: 0 or 1")
    return text == "1"


def as_text(text: str) -> str:
    return text


def as_pattern(regex: str, allowed: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(text: str) -> str:
        if not compiled.fullmatch(text):
            raise ValueError(f"allowed: {allowed}")
        return text

    return parse


def as_path(text: str) -> Path:
    if not text:
        raise ValueError("allowed: a path")
    return Path(text).expanduser().absolute()


def as_optional_path(text: str) -> Path | None:
    return Path(text).expanduser().absolute() if text else None


def as_corpora(text: str) -> tuple[str, ...]:
    names = text.replace(",", " ").split()
    allowed = f"allowed: one or more of {' '.join(CORPORA)}, each once"
    unknown = [name for name in names if name not in CORPORA]
    if unknown:
        raise ValueError(f"unknown corpus {unknown[0]!r}; {allowed}")
    if not names or len(set(names)) != len(names):
        raise ValueError(allowed)
    return tuple(name for name in CORPORA if name in names)


def as_optional_hex(length: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = text.strip().lower()
        if text and not re.fullmatch(f"[0-9a-f]{{{length}}}", text):
            raise ValueError(f"allowed: empty or {length} hexadecimal digits")
        return text

    return parse


def as_existing_files(separator: str | None, *, globs: bool) -> Callable[[str], tuple[Path, ...]]:
    def parse(text: str) -> tuple[Path, ...]:
        found: list[Path] = []
        for item in filter(None, (part.strip() for part in text.split(separator))):
            matches = sorted(glob.glob(os.path.expanduser(item))) if globs else [os.path.expanduser(item)]
            existing = [Path(m).absolute() for m in matches if os.path.isfile(m)]
            if not existing:
                raise ValueError(f"allowed: existing files; nothing found for {item!r}")
            found.extend(existing)
        return tuple(found)

    return parse


def as_prune(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split())
    except ValueError:
        values = ()
    if not values or any(not 0 <= v <= MAX_PRUNE for v in values) or list(values) != sorted(values):
        raise ValueError(f"allowed: space-separated non-decreasing whole numbers from 0 to {MAX_PRUNE}, e.g. '0 0 1'")
    return values


def as_augment(text: str):
    return parse_augment(text)


def as_memory(text: str) -> str:
    """lmplz/build_binary -S: a percentage of the physical memory or a size (a bare number is KiB, as in KenLM)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(%|[bKMGTPEZY])?", text)
    total = physical_memory()
    allowed = (f"allowed: a percentage or a size such as 50% or 4G, from {MIN_LM_MEMORY >> 20}M to "
               f"{MAX_MEMORY_PERCENT}% of the memory ({total * MAX_MEMORY_PERCENT / 100 / 2**30:.1f}G)")
    if not match:
        raise ValueError(allowed)
    number, unit = float(match.group(1)), match.group(2) or "K"
    size = total * number / 100 if unit == "%" else number * 1024 ** "bKMGTPEZY".index(unit)
    if not MIN_LM_MEMORY <= size <= total * MAX_MEMORY_PERCENT / 100:
        raise ValueError(allowed)
    return text


def physical_memory() -> int:
    """Bytes of physical memory, as KenLM measures it for a percentage."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def as_import_jobs(text: str) -> int:
    return as_integer(1, JOBS_PER_CORE * cores(), f" ({JOBS_PER_CORE} per core)")(text)


def as_evaluate_range(text: str):
    if not text:
        return ()
    return parse_evaluate_range(text)


@dataclass(frozen=True)
class Cluster:
    """TF_CONFIG: the hosts of a multi-host training (``host:port`` per job) and which of them this process is."""

    jobs: tuple[tuple[str, tuple[str, ...]], ...]
    task_type: str
    task_index: int

    @property
    def spec(self) -> dict[str, list[str]]:
        return {job: list(addresses) for job, addresses in self.jobs}

    @property
    def hosts(self) -> int:
        return sum(len(addresses) for _, addresses in self.jobs)

    @property
    def rank(self) -> int:
        """TensorFlow's order of the hosts: the chief first, then the workers."""
        return self.task_index + (1 if self.task_type == "worker" and "chief" in self.spec else 0)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0


CLUSTER_JOBS = ("chief", "worker")
TF_CONFIG_FORM = ('JSON {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}} '
                  '(an optional "chief" job holds one host:port)')


def as_tf_config(text: str) -> Cluster | None:
    if not text:
        return None
    try:
        data = json.loads(text)
        cluster, task = data["cluster"], data["task"]
        task_type, task_index = task["type"], task["index"]
        jobs = tuple((job, tuple(cluster[job])) for job in CLUSTER_JOBS if job in cluster)
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"allowed: empty, or {TF_CONFIG_FORM}") from None
    problem = _cluster_problem(cluster, jobs, task_type, task_index)
    if problem:
        raise ValueError(f"allowed: {TF_CONFIG_FORM}; found: {problem}")
    return Cluster(jobs, task_type, task_index)


def _cluster_problem(cluster: dict, jobs: tuple, task_type, task_index) -> str | None:
    addresses = [a for _, job_addresses in jobs for a in job_addresses]
    if set(cluster) - set(CLUSTER_JOBS) or not jobs:
        return f"jobs other than {' and '.join(CLUSTER_JOBS)}"
    if not all(isinstance(a, str) and re.fullmatch(r"[^\s:]+:\d{1,5}", a) for a in addresses):
        return "an address that is not host:port"
    if len(set(addresses)) != len(addresses):
        return "an address listed twice"
    if not all(job_addresses for _, job_addresses in jobs) or len(cluster.get("chief", ())) > 1:
        return "an empty job or more than one chief"
    if not isinstance(task_type, str) or task_type not in cluster:
        return f"task.type {task_type!r}, not a job of the cluster"
    if not isinstance(task_index, int) or isinstance(task_index, bool) or not 0 <= task_index < len(cluster[task_type]):
        return f"task.index {task_index!r}, outside cluster.{task_type}"
    return None




def cores() -> int:
    return len(os.sched_getaffinity(0))
