"""How fast this machine multiplies matrices: the figure that says how long a run should take here (the 2-core
machines the demo is sized for differ about 2x in it)."""

from __future__ import annotations

import functools
import time


def matmul_rate(dtype=None, size: int = 4096, trials: int = 5) -> float:
    """FLOP/s of the best of TRIALS timed SIZE x SIZE matmuls in TensorFlow (float32 unless DTYPE): the device's
    attainable peak for that dtype."""
    from deepspeech_it.util.tf_runtime import tf

    a = tf.cast(tf.random.normal([size, size], dtype=tf.float32), dtype or tf.float32)
    run = tf.function(lambda x: tf.matmul(x, x))
    run(a).numpy()
    best = float("inf")
    for _ in range(trials):
        started = time.perf_counter()
        run(a).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 / best


@functools.cache
def bfloat16_speedup() -> float:
    """How many times faster this process's first device multiplies bfloat16 matrices than float32 ones, once per
    process: CPUs with native bfloat16 arithmetic reach about twice float32's rate, others emulate it and lose."""
    from deepspeech_it.util.tf_runtime import tf

    return matmul_rate(tf.bfloat16, size=1024, trials=5) / matmul_rate(tf.float32, size=1024, trials=5)
