"""The fused CPU kernels of the LSTM's time loop (``lstm_kernel.cc``), which ``make setup`` builds for the installed
TensorFlow (``scripts/build_lstm_kernel.sh``), which of their implementations of the recurrent products a loop
takes here, and why a process runs without them."""

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
    return ops, "the fused CPU kernel"


# The kernel's implementations of the recurrent products (lstm_kernel.cc), as the log names them.
IMPLEMENTATIONS = {"portable": "float32 products, portable", "avx512_float32": "float32 products in AVX-512 tiles",
                   "avx512_bfloat16": "bfloat16 products in AVX512-BF16 tiles"}


@functools.cache
def loop_for(dtype: str) -> tuple[str | None, str]:
    """The fused kernel's ``products`` for a loop computing in DTYPE (network.fused_recurrence), or None for
    TensorFlow's loop, and one line saying which loop it is. In bfloat16 the kernel needs AVX-512: its portable
    products are float32, and TensorFlow's bfloat16 ones beat them (README, "Training")."""
    ops, line = load()
    if ops is None:
        return None, line
    products = "bfloat16" if dtype == "bfloat16" else "float32"
    with tf.init_scope():    # the answer of this CPU, also when asked while a graph is traced
        implementation = ops.deep_speech_it_lstm_products(products=products).numpy().decode()
    if products == "bfloat16" and implementation == "portable":
        return None, "TensorFlow ops in bfloat16 (faster than the fused kernel's portable float32 products)"
    return products, f"{line} ({IMPLEMENTATIONS[implementation]})"
