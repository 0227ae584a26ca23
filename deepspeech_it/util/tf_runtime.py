"""TensorFlow and Keras, imported once and quietly.

TensorFlow 2.21 prints its start-up notices (oneDNN, CUDA probing, a failed cuInit on machines without a GPU)
straight to the process's stderr, before its logging settings apply, so TF_CPP_MIN_LOG_LEVEL cannot hide them.
They would surround every stage's own lines, one-line configuration errors included; the import and the device
probing that emits them therefore run with stderr pointed at /dev/null. An import failure still reports itself:
stderr is restored before the exception travels on.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Points file descriptor 2 at /dev/null for the block: for TensorFlow's native log lines, which bypass
    Python's sys.stderr and TensorFlow's log level."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with native_stderr_silenced():
    import keras
    import tensorflow as tf

    tf.config.list_physical_devices()

__all__ = ["keras", "native_stderr_silenced", "tf"]
