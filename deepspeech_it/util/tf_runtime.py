"""TensorFlow and Keras, imported once, with their start-up notices filtered out.

TensorFlow 2.21 prints its start-up notices (oneDNN, CUDA probing, a failed cuInit on machines without a GPU)
straight to the process's stderr, before its logging settings apply, so TF_CPP_MIN_LOG_LEVEL cannot hide them.
They would surround every stage's own lines, one-line configuration errors included. The import and the device
probing therefore run with file descriptor 2 captured in a temporary file; afterwards every captured line that is
not one of the known notices goes on to stderr, so that on a GPU host a CUDA or cuDNN library that fails to load
still says so (also when the import itself fails).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Iterator

# Lines TensorFlow prints on every start that say nothing is wrong. Info lines of its C++ logger ("I<mmdd> ...")
# are notices by definition; warnings and errors pass unless listed here.
STARTUP_NOISE = tuple(re.compile(pattern) for pattern in (
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"I\d{4} .*",
    r"To enable the following instructions: .* in other operations, rebuild TensorFlow with the appropriate "
    r"compiler flags\.",
    # No CUDA driver at all, the CPU-only case, which stage 01 reports as "no GPU visible". A driver that is
    # there but fails gives another code and is shown.
    r"E\d{4} .*\] failed call to cuInit: .*UNKNOWN ERROR \(303\)",
    # TensorFlow's CUDA wheels register each plugin twice and say so; harmless.
    r"E\d{4} .*\] Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin "
    r"cu(DNN|FFT|BLAS) when one has already been registered",
    r"E\d{4} .*\] computation placer already registered\. .*",
))


def without_startup_noise(text: str) -> str:
    """TEXT less its blank lines and the lines STARTUP_NOISE lists."""
    kept = [line for line in text.splitlines()
            if line.strip() and not any(noise.fullmatch(line.strip()) for noise in STARTUP_NOISE)]
    return "".join(line + "\n" for line in kept)


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Captures file descriptor 2 for the block, where native code writes past sys.stderr and TensorFlow's log
    level, then passes on what is not a known start-up notice."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                rest = without_startup_noise(captured.read().decode("utf-8", errors="replace"))
                if rest:
                    sys.stderr.write(rest)
                    sys.stderr.flush()
    finally:
        os.close(saved)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Points file descriptor 2 at /dev/null for the block: for the converters, whose notices are all expected
    and whose failures arrive as exceptions."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def exact_float32() -> None:
    """Turns TensorFloat-32 off: on Ampere and later NVIDIA GPUs TensorFlow otherwise runs float32 matrix products
    with 10-bit mantissas, and numbers that must agree with another implementation (the export's, the tests'
    1e-5 comparisons) differ by about 1e-3. No effect without such a GPU."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


with native_stderr_filtered():
    import keras
    import tensorflow as tf

    tf.config.list_physical_devices()

__all__ = ["exact_float32", "keras", "native_stderr_filtered", "native_stderr_silenced", "tf",
           "without_startup_noise"]
