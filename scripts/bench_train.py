"""Throughput of one full learner step on the reference config (forward, loss with target network,
backward, AdamW, target update), batch 32, through the same ``train_step`` that pretraining uses.

    python scripts/bench_train.py [--steps 10] [--threads 2] [--batch 32] [--tiny]

The baseline is a behaviour-cloning step of the same network (cross-entropy over its logits, no target
network), measured in the same run. ``--tiny`` runs a smoke-test size model (the figures mean nothing).
Prints {"params", "samples_per_s", "step_ms", "bc_baseline_samples_per_s", "q_step_over_bc_step", ...}
last.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from accelerate import Accelerator

from qtransformer.batch import Batch
from qtransformer.config import LossConfig, ModelConfig, OptimConfig, TrainConfig
from qtransformer.learning import build_optimizer, build_scheduler, make_target, train_step
from qtransformer.loss import LossMethod
from qtransformer.model import QTransformer
from scripts.bench_common import bench_model, machine, pin_threads, report


def synthetic_batch(cfg: ModelConfig, B: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    img = lambda: torch.randint(  # noqa: E731
        0, 256, (B, cfg.num_images, cfg.image_size, cfg.image_size, 3), generator=g, dtype=torch.uint8
    )
    return Batch(
        state=torch.randn(B, cfg.state_dim, generator=g),
        instruction_emb=torch.nn.functional.normalize(torch.randn(B, cfg.text_dim, generator=g), dim=-1),
        action_bins=torch.randint(0, cfg.num_bins, (B, cfg.action_dim), generator=g),
        rewards=(torch.rand(B, 3, generator=g) > 0.9).float(),
        nstep=torch.full((B,), 3.0),
        bootstrap=torch.ones(B),
        next_state=torch.randn(B, cfg.state_dim, generator=g),
        mc_return=torch.rand(B, generator=g),
        images=img() if cfg.image_size else None,
        next_images=img() if cfg.image_size else None,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="smoke-test size model (for the test suite)")
    ap.add_argument("--preset", default="reference", help="model preset to measure (BENCH_SHAPES)")
    args = ap.parse_args()
    if min(args.steps, args.threads, args.batch) < 1:
        raise ValueError("--steps, --threads and --batch must be positive")
    pin_threads(args.threads)
    model_cfg = bench_model(args.tiny, args.preset)

    def measure(method: LossMethod) -> tuple[float, int]:
        torch.manual_seed(0)
        cfg = TrainConfig(
            # Behaviour cloning reads the head's outputs as logits of a softmax over bins, so its network
            # has no sigmoid (the loss refuses one), as pretraining builds it.
            model=dataclasses.replace(model_cfg, q_activation="none") if method == "bc" else model_cfg,
            loss=LossConfig(),
            optim=OptimConfig(warmup_steps=0, lr_schedule="constant"),
        )
        acc = Accelerator(cpu=True)
        model = QTransformer(cfg.model)
        target = None if method == "bc" else make_target(model)
        opt = build_optimizer(model, cfg.optim)
        sched = build_scheduler(opt, cfg.optim)
        model, opt = acc.prepare(model, opt)
        batch = synthetic_batch(cfg.model, args.batch)
        for i in range(3):
            train_step(model, target, opt, batch, cfg, acc, sched, i, method)
        times = []
        for i in range(args.steps):
            t0 = time.perf_counter()
            terms, _ = train_step(model, target, opt, batch, cfg, acc, sched, i, method)
            terms["loss"].item()
            times.append(time.perf_counter() - t0)
        times.sort()
        return times[len(times) // 2], sum(p.numel() for p in model.parameters())

    step, params = measure("qtransformer")
    bc_step, _ = measure("bc")
    report(
        {
            "params": params,
            "samples_per_s": round(args.batch / step, 1),
            "step_ms": round(step * 1e3, 1),
            "bc_baseline_samples_per_s": round(args.batch / bc_step, 1),
            "q_step_over_bc_step": round(step / bc_step, 2),
            "batch": args.batch,
            "preset": args.preset,
            "tiny": args.tiny,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
