"""Helpers shared by the benchmark scripts: thread pinning, timing and the one-JSON-line report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def pin_threads(n: int) -> None:
    """Fix intra-op threads so figures are comparable across runs and machines."""
    import torch

    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    torch.set_num_threads(n)


def median_ms(fn: Callable[[], Any], calls: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def report(result: dict[str, Any]) -> None:
    """The last line a benchmark prints: one JSON object."""
    print(json.dumps(result), flush=True)
