"""How fast this machine multiplies matrices: the figure that says how long a run should take here (the 2-core
machines the demo is sized for differ about 2x in it)."""

from __future__ import annotations

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
