"""Throughput and peak memory of the streaming offline loader on a synthetic state-only dataset, one core.

    python scripts/bench_loader.py [--transitions 1000000] [--runs 3] [--stream 300000]
    python scripts/bench_loader.py --transitions 10000000 --stream 0 --runs 1   # memory at scale

The dataset is written once with the real ``DatasetWriter`` under ``runs/bench_loader/<transitions>/`` and
reused (``--delete`` removes it afterwards). Writing happens in a child process so that the peak RSS
reported is the streaming process's own. ``--stream 0`` streams one whole epoch per run.
Prints {"transitions_per_s", "peak_rss_mb", "transitions", ...} as its last line (median over runs).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from scripts.bench_common import machine, pin_threads, report  # noqa: E402

STATE_DIM, ACTION_DIM = 32, 4


def write_synthetic(root: Path, transitions: int, episodes_per_file: int, seed: int = 0) -> None:
    """Random episodes of 20-100 frames; 60% terminate (reward 1 on the last frame), the rest truncate."""
    from qtransformer.dataset import DatasetWriter, Episode

    rng = np.random.default_rng(seed)
    instructions = [f"put the object in bin {i}" for i in range(16)]
    total = 0
    with DatasetWriter(root, fps=10, episodes_per_file=episodes_per_file) as w:
        while total < transitions:
            T = int(min(rng.integers(20, 101), max(transitions - total, 1)))
            term = bool(rng.random() < 0.6)
            reward = np.zeros(T, np.float32)
            reward[-1] = float(term)
            w.add_episode(
                Episode(
                    state=rng.standard_normal((T, STATE_DIM), dtype=np.float32),
                    action=rng.uniform(-1, 1, (T, ACTION_DIM)).astype(np.float32),
                    reward=reward,
                    instruction=instructions[int(rng.integers(len(instructions)))],
                    terminated=term,
                    success=term,
                    quality="expert",
                )
            )
            total += T


def stream(root: Path, batch_size: int, limit: int, seed: int) -> tuple[int, float]:
    """Transitions streamed and seconds taken (one epoch, or ``limit`` transitions if > 0)."""
    from pretrain.loader import OfflineLoader

    loader = OfflineLoader(root, batch_size, gamma=0.98, n_step=3, seed=seed, num_epochs=1)
    n = 0
    t0 = time.perf_counter()
    for b in loader:
        n += len(b["state"])
        if limit and n >= limit:
            break
    return n, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transitions", type=int, default=1_000_000, help="dataset size in frames")
    ap.add_argument("--stream", type=int, default=300_000, help="transitions per timed run; 0 = whole epoch")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--episodes-per-file", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_loader"))
    ap.add_argument("--delete", action="store_true", help="remove the dataset afterwards")
    args = ap.parse_args()
    pin_threads(1)
    root = args.out / str(args.transitions)
    if not (root / "meta" / "info.json").exists():
        if root.exists():
            shutil.rmtree(root)
        t0 = time.perf_counter()
        child = mp.get_context("spawn").Process(
            target=write_synthetic, args=(root, args.transitions, args.episodes_per_file)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"writing the synthetic dataset failed (exit code {child.exitcode})")
        print(f"wrote {root} in {time.perf_counter() - t0:.1f}s", flush=True)
    disk_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20
    rates, counts = [], []
    for run in range(args.runs):
        n, dt = stream(root, args.batch_size, args.stream, seed=run)
        rates.append(n / dt)
        counts.append(n)
        print(f"run {run}: {n} transitions in {dt:.2f}s = {n / dt:,.0f}/s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if args.delete:
        shutil.rmtree(root)
    report(
        {
            "transitions_per_s": round(statistics.median(rates)),
            "peak_rss_mb": round(peak, 1),
            "transitions": int(statistics.median(counts)),
            "dataset_frames": args.transitions,
            "dataset_disk_mb": round(disk_mb, 1),
            "batch_size": args.batch_size,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
