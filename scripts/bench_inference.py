"""Acting latency of the reference Q-Transformer: KV-cached decode vs naive re-running per dimension.

    python scripts/bench_inference.py [--calls 30] [--threads 2] [--tiny]

``--tiny`` runs a smoke-test size model (the figures mean nothing).

Prints {"params", "naive_ms", "cached_ms", "speedup", "actions_equal", "batch32_actions_per_s"} last.
"""

from __future__ import annotations

import argparse

import torch

from qtransformer.model import QTransformer
from scripts.bench_common import bench_model, machine, median_ms, pin_threads, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="smoke-test size model (for the test suite)")
    args = ap.parse_args()
    if min(args.calls, args.threads) < 1:
        raise ValueError("--calls and --threads must be positive")
    pin_threads(args.threads)
    torch.manual_seed(0)
    cfg = bench_model(args.tiny)
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
    report(
        {
            "params": params,
            "naive_ms": round(naive, 3),
            "cached_ms": round(cached, 3),
            "speedup": round(naive / cached, 2),
            "actions_equal": equal,
            "batch32_actions_per_s": round(32 / (b32_ms / 1e3), 1),
            "tiny": args.tiny,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
