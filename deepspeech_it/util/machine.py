"""How fast this machine multiplies matrices: the figure that says how long a run should take here (the 2-core
machines the demo is sized for differ about 2x in it)."""

from __future__ import annotations

import functools
import math
import time


def best_of_alternating(timers: dict, rounds: int) -> dict:
    """The fewest seconds each of TIMERS (functions that run one trial and return its seconds) took over ROUNDS
    rounds, their trials alternating, so that a slow spell of a shared machine slows all of them instead of deciding
    between them: timed one after the other, one machine gave bfloat16 matmuls 2.03 and 1.17 times float32's rate
    within the hour."""
    best = dict.fromkeys(timers, math.inf)
    for _ in range(rounds):
        for name, once in timers.items():
            best[name] = min(best[name], once())
    return best


def _matmul_timer(dtype, size: int):
    """A function that times one SIZE x SIZE matmul of DTYPE in TensorFlow (compiled and run once before), in
    seconds."""
    from deepspeech_it.util.tf_runtime import tf

    a = tf.cast(tf.random.normal([size, size], dtype=tf.float32), dtype)
    run = tf.function(lambda x: tf.matmul(x, x))
    run(a).numpy()

    def once() -> float:
        started = time.perf_counter()
        run(a).numpy()
        return time.perf_counter() - started
    return once


def matmul_rate(dtype=None, size: int = 4096, trials: int = 5) -> float:
    """FLOP/s of the best of TRIALS timed SIZE x SIZE matmuls in TensorFlow (float32 unless DTYPE): the device's
    attainable peak for that dtype."""
    from deepspeech_it.util.tf_runtime import tf

    once = _matmul_timer(dtype or tf.float32, size)
    return 2 * size ** 3 / min(once() for _ in range(trials))


@functools.cache
def bfloat16_speedup(rounds: int = 10) -> float:
    """How many times faster this process's first device multiplies bfloat16 matrices than float32 ones, once per
    process: CPUs with native bfloat16 arithmetic reach about twice float32's rate, others emulate it and lose. The
    two dtypes' trials alternate (best_of_alternating)."""
    from deepspeech_it.util.tf_runtime import tf

    best = best_of_alternating({dtype: _matmul_timer(dtype, 1024) for dtype in (tf.bfloat16, tf.float32)}, rounds)
    return best[tf.float32] / best[tf.bfloat16]
