"""Server counters and latency percentiles, exported at ``/metrics`` as JSON or Prometheus text.

All updates happen on the event loop thread (the batcher reports batch sizes from there too), so no
lock is needed. Latencies are kept in a bounded window so that a long-running server reports recent
behaviour and its memory stays flat.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Any

import numpy as np


class ServerMetrics:
    """Request, error, latency and batch-size statistics of one server process."""

    def __init__(self, window: int = 10_000):
        self.started = time.time()
        self.requests = 0  # every frame received, answered or not
        self.errors: Counter[str] = Counter()
        self.batch_sizes: Counter[int] = Counter()
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.connections_open = 0
        self.connections_total = 0
        self.auth_failures = 0
        self.reloads = 0
        self.reload_failures = 0

    def record_message(self) -> None:
        self.requests += 1

    def record_latency(self, total_ms: float) -> None:
        self.latency_ms.append(total_ms)

    def record_error(self, code: str) -> None:
        self.errors[code] += 1

    def record_batch(self, size: int) -> None:
        self.batch_sizes[size] += 1

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """A JSON-able view; ``extra`` adds server state such as the model version and queue depth."""
        lat = np.asarray(self.latency_ms, dtype=np.float64)
        p50, p90, p99 = (float(np.percentile(lat, q)) for q in (50, 90, 99)) if lat.size else (0.0,) * 3
        batches = sum(self.batch_sizes.values())
        batched = sum(k * v for k, v in self.batch_sizes.items())
        return {
            "uptime_s": round(time.time() - self.started, 3),
            "requests_total": self.requests,
            "errors_total": sum(self.errors.values()),
            "errors_by_code": dict(self.errors),
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "window": int(lat.size)},
            "batches_total": batches,
            "batch_size_mean": batched / batches if batches else 0.0,
            "batch_size_histogram": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "connections_open": self.connections_open,
            "connections_total": self.connections_total,
            "auth_failures_total": self.auth_failures,
            "reloads_total": self.reloads,
            "reload_failures_total": self.reload_failures,
            **extra,
        }

    def prometheus(self, **extra: Any) -> str:
        """The same numbers in the Prometheus text exposition format."""
        s = self.snapshot(**extra)
        lines = [
            "# TYPE qt_requests_total counter",
            f"qt_requests_total {s['requests_total']}",
            "# TYPE qt_errors_total counter",
        ]
        lines += [f'qt_errors_total{{code="{c}"}} {n}' for c, n in sorted(s["errors_by_code"].items())]
        lines += ["# TYPE qt_latency_ms summary"]
        lines += [
            f'qt_latency_ms{{quantile="0.{q[1:]}"}} {s["latency_ms"][q]}' for q in ("p50", "p90", "p99")
        ]
        lines += ["# TYPE qt_batch_size histogram"]
        cum = 0
        for size, n in sorted(self.batch_sizes.items()):
            cum += n
            lines.append(f'qt_batch_size_bucket{{le="{size}"}} {cum}')
        lines.append(f'qt_batch_size_bucket{{le="+Inf"}} {cum}')
        lines.append(f"qt_batch_size_count {cum}")
        lines.append(f"qt_batch_size_sum {sum(k * v for k, v in self.batch_sizes.items())}")
        for name in ("connections_open", "auth_failures_total", "reloads_total", "reload_failures_total"):
            lines.append(f"qt_{name} {s[name]}")
        if "queue_depth" in s:
            lines.append(f"qt_queue_depth {s['queue_depth']}")
        return "\n".join(lines) + "\n"
