"""Helpers shared by the benchmark scripts: thread pinning, timing and the one-JSON-line report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qtransformer.config import ModelConfig

# The reference config shrunk to the smallest network that still runs every code path the reference one
# does (two camera frames through the FiLM conv tower, state, several action dimensions). The test suite
# runs the model benchmarks at this size so that they keep working; its figures mean nothing.
TINY_MODEL: dict[str, Any] = dict(
    d_model=32,
    n_layers=1,
    n_heads=2,
    state_dim=8,
    action_dim=3,
    num_bins=16,
    image_size=16,
    conv_channels=(8, 16),
    conv_blocks=1,
)


BENCH_SHAPES: dict[str, dict[str, Any]] = {
    "reference": {},
    # The navigate_pixels recipe's shape: one 48 px camera, odometry, 3 action dims.
    "pixels_small": dict(state_dim=7, action_dim=3, image_size=48, num_images=1),
}
"""Model presets the benchmarks can measure (``--preset``), with the input shapes each is measured at."""


def bench_model(tiny: bool, preset: str = "reference", **overrides: Any) -> ModelConfig:
    """The config of ``preset`` (``BENCH_SHAPES``) the benchmarks measure, or with ``tiny`` its smoke-test
    size."""
    from qtransformer.config import model_preset

    if preset not in BENCH_SHAPES:
        raise ValueError(f"unknown benchmark preset {preset!r}; choose from {sorted(BENCH_SHAPES)}")
    return model_preset(preset, **{**BENCH_SHAPES[preset], **(TINY_MODEL if tiny else {}), **overrides})


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
