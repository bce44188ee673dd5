"""Load test of ``qt serve``: throughput with and without dynamic batching, tail latency, and a soak run.

It writes a reference-size checkpoint to a temporary directory, starts the server in a subprocess on a
free 127.0.0.1 port (no auth: loopback only), and drives it with N concurrent asyncio websocket clients,
each sending a bounded number of requests. The last line printed is one JSON object, so that CI and
``docs/benchmarks.md`` can quote it as is.

    python scripts/bench_server.py                 # batched vs unbatched, 32 clients
    python scripts/bench_server.py --soak 10000    # >= 10k requests, errors and server RSS start/end
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro
from websockets.asyncio.client import connect

from qtransformer.serving.protocol import packb, unpackb
from scripts.bench_common import report

INSTRUCTIONS = ["pick up the red block", "open the drawer", "put the can in the bin", "push the cube left"]


@dataclass
class BenchArgs:
    """Load-test the policy server on 127.0.0.1."""

    clients: int = 32
    """Concurrent websocket clients."""
    requests_per_client: int = 12
    """Requests each client sends per throughput run (after one warm-up request)."""
    single_requests: int = 40
    """Sequential requests of the lone client that sets the single-client latency."""
    soak: int = 0
    """If > 0: instead of the comparison, send this many requests to the batched server and report
    errors and the server's RSS at start and end."""
    max_wait_ms: float = 5.0
    """Batching window of the batched server."""
    torch_threads: int = 2
    """Intra-op threads of the server process (the reference machine has 2 cores)."""
    d_model: int = 256
    """Reference model width."""
    n_layers: int = 8
    """Reference model depth."""
    state_dim: int = 32
    """Reference state size (state-only model)."""
    action_dim: int = 8
    """Reference action dimensions."""
    num_bins: int = 256
    """Reference bins per dimension."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_checkpoint(args: BenchArgs, path: Path) -> Path:
    import torch

    from qtransformer.bins import ActionBins
    from qtransformer.checkpoint import save_policy_checkpoint
    from qtransformer.config import ModelConfig
    from qtransformer.model import QTransformer
    from qtransformer.returns import ReturnConfig

    torch.manual_seed(0)
    cfg = ModelConfig(
        state_dim=args.state_dim,
        action_dim=args.action_dim,
        num_bins=args.num_bins,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=8,
    )
    bins = ActionBins([-1.0] * cfg.action_dim, [1.0] * cfg.action_dim, cfg.num_bins)
    return save_policy_checkpoint(
        path, QTransformer(cfg), bins, "default", {"step": 0}, returns=ReturnConfig()
    )


class ServerProcess:
    """``python -m qtransformer.serving.server`` on a free loopback port, until ``stop()``."""

    def __init__(self, checkpoint: Path, max_batch_size: int, args: BenchArgs, log_path: Path):
        self.port = _free_port()
        cmd = [
            sys.executable, "-m", "qtransformer.serving.server", "--checkpoint", str(checkpoint),
            "--port", str(self.port), "--no-auth", "--max-batch-size", str(max_batch_size),
            "--max-wait-ms", str(args.max_wait_ms), "--torch-threads", str(args.torch_threads),
            "--log-level", "WARNING",
        ]  # fmt: skip
        self.log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"ws://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server not ready within 120 s; see {log_path}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS in /proc status")

    def metrics(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def _request(state_dim: int, rng: np.random.Generator, i: int) -> bytes:
    state = rng.uniform(-1, 1, state_dim).astype(np.float32)
    return packb({"observation": {"state": state}, "instruction": INSTRUCTIONS[i % len(INSTRUCTIONS)]})


async def _drive(url: str, clients: int, per_client: int, state_dim: int) -> dict[str, Any]:
    """Connect ``clients`` clients, warm each up (every instruction once), then time ``per_client`` each."""
    conns = [await connect(url, compression=None, max_size=None) for _ in range(clients)]
    latencies: list[float] = []
    sizes: list[int] = []
    errors = 0
    try:
        for ws in conns:
            await ws.recv()  # metadata handshake

        async def one(ws, rng: np.random.Generator, n: int, record: bool) -> None:
            nonlocal errors
            for i in range(n):
                t0 = time.perf_counter()
                await ws.send(_request(state_dim, rng, i))
                reply = unpackb(await ws.recv())
                if "error" in reply:
                    errors += 1
                if record:
                    latencies.append((time.perf_counter() - t0) * 1000.0)
                    sizes.append(int(reply.get("batch_size", 0)))

        rngs = [np.random.default_rng(c) for c in range(clients)]
        await asyncio.gather(*(one(ws, r, len(INSTRUCTIONS), False) for ws, r in zip(conns, rngs)))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(ws, r, per_client, True) for ws, r in zip(conns, rngs)))
        elapsed = time.perf_counter() - t0
    finally:
        for ws in conns:
            await ws.close()
    lat = np.asarray(latencies)
    return {
        "requests": int(lat.size),
        "rps": lat.size / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
        "batch_size_mean": float(np.mean(sizes)),
    }


def compare(args: BenchArgs, checkpoint: Path, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"clients": args.clients}
    for name, mbs in (("batched", args.clients), ("unbatched", 1)):
        server = ServerProcess(checkpoint, mbs, args, tmp / f"server-{name}.log")
        try:
            if name == "batched":
                single = asyncio.run(_drive(server.url, 1, args.single_requests, args.state_dim))
                out["single_client_p50_ms"] = single["p50_ms"]
            res = asyncio.run(_drive(server.url, args.clients, args.requests_per_client, args.state_dim))
            out[f"rps_{name}"] = res["rps"]
            out[f"{name}_p50_ms"], out[f"{name}_p99_ms"] = res["p50_ms"], res["p99_ms"]
            out["errors"] = (
                out.get("errors", 0) + res["errors"] + (single["errors"] if name == "batched" else 0)
            )
            out[f"{name}_batch_size_mean"] = res["batch_size_mean"]
        finally:
            server.stop()
    out["p50_ms"], out["p99_ms"] = out["batched_p50_ms"], out["batched_p99_ms"]
    out["speedup"] = out["rps_batched"] / out["rps_unbatched"]
    out["p99_over_single_p50"] = out["p99_ms"] / out["single_client_p50_ms"]
    return out


def soak(args: BenchArgs, checkpoint: Path, tmp: Path) -> dict[str, Any]:
    server = ServerProcess(checkpoint, args.clients, args, tmp / "server-soak.log")
    try:
        per_client = -(-args.soak // args.clients)
        asyncio.run(_drive(server.url, args.clients, 4, args.state_dim))  # warm caches and allocator
        rss_start = server.rss_mb()
        t0 = time.perf_counter()
        res = asyncio.run(_drive(server.url, args.clients, per_client, args.state_dim))
        elapsed = time.perf_counter() - t0
        rss_end = server.rss_mb()
        m = server.metrics()
    finally:
        server.stop()
    return {
        "clients": args.clients,
        "soak_requests": res["requests"],
        "errors": res["errors"] + m["errors_total"],
        "rps": res["rps"],
        "p50_ms": res["p50_ms"],
        "p99_ms": res["p99_ms"],
        "duration_s": elapsed,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
        "batch_size_mean": res["batch_size_mean"],
    }


def main(args: BenchArgs) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qt-bench-server-") as d:
        tmp = Path(d)
        checkpoint = _make_checkpoint(args, tmp / "ckpt")
        result = soak(args, checkpoint, tmp) if args.soak > 0 else compare(args, checkpoint, tmp)
    result["cpu_cores"] = len(os.sched_getaffinity(0))
    result = {k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}
    report(result)
    return result


if __name__ == "__main__":
    main(tyro.cli(BenchArgs))
