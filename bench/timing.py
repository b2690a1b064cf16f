"""Wall-clock timing shared by the bench scripts (run as ``python bench/NAME.py``, so importable as ``timing``).

The machines are shared and noisy: report medians over repeats, never a single time.
"""
from __future__ import annotations

import statistics
import time


def repeat_seconds(fn, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn()`` (perf_counter wall clock)."""
    times = []
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn()``."""
    return statistics.median(repeat_seconds(fn, repeats))
