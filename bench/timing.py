"""Timing one repeated action for the benchmarks: warm-up calls, then the latency of each timed call.

``timed(action, count, warmup)`` returns p50, p99 and max in milliseconds (the p99 is the sample at rank
floor(0.99 n), so with 200 calls it is the second-slowest). Shared by bench/console.py and
bench/console_device.py. Leaves out what is timed and how results are recorded.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

__all__ = ["timed"]


def timed(action: Callable[[], object], count: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        action()
    spent = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        spent.append((time.perf_counter() - started) * 1000)
    spent.sort()
    p99 = spent[min(len(spent) - 1, int(len(spent) * 0.99))]
    return {"p50_ms": round(statistics.median(spent), 2), "p99_ms": round(p99, 2), "max_ms": round(spent[-1], 2)}
