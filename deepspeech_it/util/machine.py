"""How fast this machine multiplies matrices: the figure that says how long a run should take here (the 2-core
machines the demo is sized for differ about 2x in it)."""

from __future__ import annotations

import functools
import time


def _matmul_timer(dtype, size: int):
    """A function that times one SIZE x SIZE matmul of DTYPE in TensorFlow (compiled and run once before) in FLOP/s."""
    from deepspeech_it.util.tf_runtime import tf

    a = tf.cast(tf.random.normal([size, size], dtype=tf.float32), dtype)
    run = tf.function(lambda x: tf.matmul(x, x))
    run(a).numpy()

    def once() -> float:
        started = time.perf_counter()
        run(a).numpy()
        return 2 * size ** 3 / (time.perf_counter() - started)
    return once


def matmul_rate(dtype=None, size: int = 4096, trials: int = 5) -> float:
    """FLOP/s of the best of TRIALS timed SIZE x SIZE matmuls in TensorFlow (float32 unless DTYPE): the device's
    attainable peak for that dtype."""
    from deepspeech_it.util.tf_runtime import tf

    once = _matmul_timer(dtype or tf.float32, size)
    return max(once() for _ in range(trials))


@functools.cache
def bfloat16_speedup(rounds: int = 10) -> float:
    """How many times faster this process's first device multiplies bfloat16 matrices than float32 ones, once per
    process: CPUs with native bfloat16 arithmetic reach about twice float32's rate, others emulate it and lose. The
    two dtypes' trials alternate (best of ROUNDS each), so that a slow spell of a shared machine slows both instead
    of deciding the ratio: timed one dtype after the other, one machine gave 2.03 and 1.17 within the hour."""
    from deepspeech_it.util.tf_runtime import tf

    timers = {dtype: _matmul_timer(dtype, 1024) for dtype in (tf.bfloat16, tf.float32)}
    best = dict.fromkeys(timers, 0.0)
    for _ in range(rounds):
        for dtype, once in timers.items():
            best[dtype] = max(best[dtype], once())
    return best[tf.bfloat16] / best[tf.float32]
