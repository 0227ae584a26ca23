"""The fused CPU kernels of the LSTM's time loop (``lstm_kernel.cc``), which ``make setup`` builds for the installed
TensorFlow (``scripts/build_lstm_kernel.sh``), and why a process runs without them."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

from deepspeech_it.paths import LSTM_KERNEL_LIBRARY
from deepspeech_it.util.tf_runtime import tf

# The x86-64 build is compiled for these; without them the kernel would stop the process with an illegal instruction.
X86_FLAGS = ("avx2", "fma")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


@functools.cache
def load() -> tuple[object | None, str]:
    """(the kernels' op module or None, one line saying which loop the LSTM trains with on the CPU and why)."""
    if not LSTM_KERNEL_LIBRARY.is_file():
        return None, f"TensorFlow's loop (the fused kernel {LSTM_KERNEL_LIBRARY} is not built; make setup builds it)"
    if platform.machine() == "x86_64" and not set(X86_FLAGS) <= _cpu_flags():
        return None, "TensorFlow's loop (the fused kernel needs a CPU with AVX2 and FMA)"
    try:
        ops = tf.load_op_library(str(LSTM_KERNEL_LIBRARY))
    except (tf.errors.NotFoundError, OSError) as problem:
        first_line = str(problem).strip().splitlines()[0] if str(problem).strip() else type(problem).__name__
        return None, f"TensorFlow's loop (the fused kernel does not load: {first_line}; make setup rebuilds it)"
    return ops, "the fused CPU kernel (float32)"


def loop_for(dtype: str) -> tuple[object | None, str]:
    """load()'s answer for a loop computing in DTYPE: the kernel is float32, and in bfloat16 TensorFlow's own
    products beat it (network.lstm_hoisted)."""
    if dtype != "float32":
        return None, f"TensorFlow ops in {dtype} (faster than the fused kernel, which is float32)"
    return load()
