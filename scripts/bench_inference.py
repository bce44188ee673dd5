"""Acting latency of the reference Q-Transformer: KV-cached decode vs naive re-running per dimension,
and the cached decode on a stream of observations whose second frame is the previous step's first
(as an env's frame history is), with each frame's tokens computed once (``FrameTokenCache``).

    python scripts/bench_inference.py [--calls 30] [--threads 2] [--tiny]

``--tiny`` runs a smoke-test size model (the figures mean nothing).

Prints {"params", "naive_ms", "cached_ms", "speedup", "actions_equal", "stream_plain_ms", "stream_ms",
"stream_speedup", "stream_actions_equal", "batch32_actions_per_s", "batch32_stream_plain_actions_per_s",
"batch32_stream_actions_per_s"} last.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from qtransformer.model import QTransformer
from qtransformer.policy import FrameTokenCache
from scripts.bench_common import bench_model, machine, median_ms, pin_threads, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="smoke-test size model (for the test suite)")
    ap.add_argument("--preset", default="reference", help="model preset to measure (BENCH_SHAPES)")
    args = ap.parse_args()
    if min(args.calls, args.threads) < 1:
        raise ValueError("--calls and --threads must be positive")
    pin_threads(args.threads)
    torch.manual_seed(0)
    cfg = bench_model(args.tiny, args.preset)
    model = QTransformer(cfg).eval()
    params = sum(p.numel() for p in model.parameters())

    def inputs(B: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return (
            torch.randn(B, cfg.state_dim, generator=g),
            torch.nn.functional.normalize(torch.randn(B, cfg.text_dim, generator=g), dim=-1),
            torch.randint(
                0, 256, (B, cfg.num_images, cfg.image_size, cfg.image_size, 3), generator=g, dtype=torch.uint8
            ),
        )

    one = inputs(1, 0)
    with torch.inference_mode():
        naive = median_ms(lambda: model.decode(*one, use_cache=False), args.calls)
        cached = median_ms(lambda: model.decode(*one, use_cache=True), args.calls)
        equal = all(
            torch.equal(model.decode(*x, use_cache=True)[0], model.decode(*x, use_cache=False)[0])
            for x in (inputs(8, s) for s in range(1, 6))
        )
        b32 = inputs(32, 99)
        b32_ms = median_ms(lambda: model.decode(*b32), max(5, args.calls // 3))
        plain_ms, stream_ms, stream_equal = frame_stream(model, 1, args.calls)
        b32_plain_ms, b32_stream_ms, b32_equal = frame_stream(model, 32, max(5, args.calls // 3))
    report(
        {
            "params": params,
            "naive_ms": round(naive, 3),
            "cached_ms": round(cached, 3),
            "speedup": round(naive / cached, 2),
            "actions_equal": equal,
            "stream_plain_ms": round(plain_ms, 3),
            "stream_ms": round(stream_ms, 3),
            "stream_speedup": round(plain_ms / stream_ms, 2),
            "stream_actions_equal": stream_equal and b32_equal,
            "batch32_actions_per_s": round(32 / (b32_ms / 1e3), 1),
            "batch32_stream_plain_actions_per_s": round(32 / (b32_plain_ms / 1e3), 1),
            "batch32_stream_actions_per_s": round(32 / (b32_stream_ms / 1e3), 1),
            "preset": args.preset,
            "tiny": args.tiny,
            "machine": machine(),
        }
    )


def frame_stream(model: QTransformer, batch: int, calls: int) -> tuple[float, float, bool]:
    """Over a frame stream (frame 1 of step t is frame 0 of step t-1) of ``batch`` observations: median
    ms per plain cached decode (the baseline, timed in the same loop), median ms per decode through a
    :class:`FrameTokenCache`, and whether every step's bins are the same both ways."""
    cfg = model.cfg
    rng = np.random.default_rng(batch)
    steps = calls + 4
    frames = rng.integers(0, 256, (steps + 1, batch, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    state = torch.from_numpy(rng.standard_normal((batch, cfg.state_dim), dtype=np.float32))
    emb = torch.nn.functional.normalize(
        torch.from_numpy(rng.standard_normal((batch, cfg.text_dim), dtype=np.float32)), dim=-1
    )
    cache = FrameTokenCache(model)
    plain, cached, equal = [], [], True
    for t in range(cfg.num_images - 1, steps):
        obs = np.stack([frames[t - v] for v in range(cfg.num_images)], axis=1)  # (B, V, H, W, 3)
        t0 = time.perf_counter()
        want, _ = model.decode(state, emb, torch.from_numpy(obs))
        t1 = time.perf_counter()
        bins, _ = model.decode(state, emb, None, frame_tokens=cache.tokens(obs, emb))
        t2 = time.perf_counter()
        plain.append((t1 - t0) * 1e3)
        cached.append((t2 - t1) * 1e3)
        equal &= torch.equal(bins, want)
    return statistics.median(plain[3:]), statistics.median(cached[3:]), equal


if __name__ == "__main__":
    main()
