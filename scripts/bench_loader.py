"""Throughput and peak memory of the streaming offline loader on a synthetic state-only dataset, one core.

    python scripts/bench_loader.py [--transitions 1000000] [--runs 3] [--stream 300000]
    python scripts/bench_loader.py --transitions 10000000 --stream 0 --runs 1   # memory at scale
    python scripts/bench_loader.py --backend hf-arrow     # Hugging Face datasets streams the shards
    python scripts/bench_loader.py --backend hf-rows --stream 20000 --runs 1

``--backend`` measures whether Hugging Face ``datasets`` could serve the shard streaming (it does not: see
docs/benchmarks.md). ``hf-arrow`` streams the parquet shards as Arrow batches through an
``IterableDataset``, ``hf-rows`` row by row as ``StreamingLeRobotDataset`` iterates; both regroup the rows
into whole episodes and then make the same transitions through the same shuffle buffer as the loader. They
also report whether ``split_dataset_by_node`` keeps episodes whole when the ranks do not divide the shards,
and at which frame of an episode ``load_state_dict`` resumes.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import numpy as np  # noqa: E402

from scripts.bench_common import machine, pin_threads, report  # noqa: E402

STATE_DIM, ACTION_DIM = 32, 4
T = TypeVar("T")
BACKENDS = ("pyarrow", "hf-arrow", "hf-rows")


def write_synthetic(root: Path, transitions: int, episodes_per_file: int, seed: int = 0) -> None:
    """Random episodes of 20-100 frames; 60% terminate (reward 1 on the last frame), the rest truncate."""
    from qtransformer.dataset import DatasetWriter, Episode

    rng = np.random.default_rng(seed)
    instructions = [f"put the object in bin {i}" for i in range(16)]
    total = 0
    with DatasetWriter(root, fps=10, episodes_per_file=episodes_per_file) as w:
        while total < transitions:
            T = min(int(rng.integers(20, 101)), max(transitions - total, 1))
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
    from qtransformer.returns import ReturnConfig

    loader = OfflineLoader(root, batch_size, returns=ReturnConfig(), seed=seed, num_epochs=1)
    n = 0
    t0 = time.perf_counter()
    for b in loader:
        n += len(b["state"])
        if limit and n >= limit:
            break
    return n, time.perf_counter() - t0


def _hf_stream(root: Path, columns: list[str]) -> Any:
    """The dataset's data files as a streaming ``datasets.IterableDataset``, one shard per file."""
    import datasets

    from qtransformer.dataset import DatasetMeta

    datasets.disable_progress_bars()
    files = [str(f.path) for f in DatasetMeta.load(root).files()]
    return datasets.load_dataset("parquet", data_files=files, split="train", streaming=True, columns=columns)


def stream_hf(root: Path, batch_size: int, limit: int, seed: int, rows: bool) -> tuple[int, float]:
    """As ``stream``, with ``datasets`` streaming the shards: its batches (or rows) cut through episodes,
    so rows are held back until their episode is complete, then made into transitions as the loader does."""
    import pyarrow as pa

    from pretrain.loader import ShuffleBuffer, file_transitions
    from qtransformer.dataset import EPISODE_INDEX, DatasetMeta, needed_columns, table_columns
    from qtransformer.returns import ReturnConfig

    returns = ReturnConfig()  # the returns the pyarrow backend's OfflineLoader uses
    meta = DatasetMeta.load(root)
    by_index = {e.episode_index: e for e in meta.episodes}
    columns = needed_columns(meta, [])
    ds = _hf_stream(root, columns)
    rng = np.random.default_rng(seed)
    buf = ShuffleBuffer(20_000, batch_size, rng)
    if rows:  # one dict per frame, gathered into tables of about 8192 frames
        chunks = (pa.Table.from_pylist(c) for c in _chunked(iter(ds), 8192))
    else:
        chunks = ds.with_format("arrow").iter(batch_size=8192)
    n, carry = 0, None
    t0 = time.perf_counter()
    for table in _with_end(chunks):
        if table is not None:
            table = table if carry is None else pa.concat_tables([carry, table])
            ep = table.column(EPISODE_INDEX).to_numpy()
            cut = int(np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])[-1])  # the last episode may go on
            table, carry = table.slice(0, cut), table.slice(cut)
        else:  # the stream ended: the held-back episode is complete
            table, carry = carry, None
        if table is None or table.num_rows == 0:
            continue
        eps = [by_index[int(i)] for i in np.unique(table.column(EPISODE_INDEX).to_numpy())]
        block = file_transitions(table_columns(meta, table, eps, []), returns, 1, [])
        perm = rng.permutation(len(block["state"]))
        for b in buf.push({k: v[perm] for k, v in block.items()}):
            n += len(b["state"])
        if limit and n >= limit:
            return n, time.perf_counter() - t0
    for b in buf.drain(drop_last=True):  # the end of the epoch, as the loader's
        n += len(b["state"])
    return n, time.perf_counter() - t0


def _chunked(it: Iterator[T], size: int) -> Iterator[list[T]]:
    chunk = []
    for x in it:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _with_end(it: Iterator[T]) -> Iterator[T | None]:
    """``it``, then one None to mark its end."""
    yield from it
    yield None


def hf_guarantees(root: Path) -> dict[str, object]:
    """Whether ``split_dataset_by_node`` keeps episodes whole when the ranks do not divide the shards, and
    the frame of its episode at which ``load_state_dict`` resumes (the loader resumes at an episode start)."""
    from datasets.distributed import split_dataset_by_node

    from qtransformer.dataset import EPISODE_INDEX, FRAME_INDEX

    cols = [EPISODE_INDEX, FRAME_INDEX]
    ds = _hf_stream(root, cols)
    world = ds.num_shards + 1  # does not divide the shards: the "auto" strategy splits by rows
    part = split_dataset_by_node(ds, rank=0, world_size=world).with_format("arrow")
    t = next(part.iter(batch_size=2000))
    ep, fr = (t.column(c).to_numpy() for c in cols)
    same = ep[1:] == ep[:-1]
    whole = bool(np.all(np.diff(fr)[same] == 1))
    first = _hf_stream(root, cols).with_format("arrow")
    it = first.iter(batch_size=1000)
    next(it)
    state = first.state_dict()
    again = _hf_stream(root, cols).with_format("arrow")
    again.load_state_dict(state)
    resumed = next(again.iter(batch_size=1000))
    return {
        "hf_rank_split_world_size": world,
        "hf_rank_split_keeps_episodes_whole": whole,
        "hf_resume_first_frame_index": int(resumed.column(FRAME_INDEX)[0].as_py()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transitions", type=int, default=1_000_000, help="dataset size in frames")
    ap.add_argument("--stream", type=int, default=300_000, help="transitions per timed run; 0 = whole epoch")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--episodes-per-file", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_loader"))
    ap.add_argument("--delete", action="store_true", help="remove the dataset afterwards")
    ap.add_argument("--backend", choices=BACKENDS, default="pyarrow", help="what streams the shards")
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
        if args.backend == "pyarrow":
            n, dt = stream(root, args.batch_size, args.stream, seed=run)
        else:
            n, dt = stream_hf(root, args.batch_size, args.stream, run, rows=args.backend == "hf-rows")
        rates.append(n / dt)
        counts.append(n)
        print(f"run {run}: {n} transitions in {dt:.2f}s = {n / dt:,.0f}/s", flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    checks = hf_guarantees(root) if args.backend != "pyarrow" else {}
    if args.delete:
        shutil.rmtree(root)
    report(
        {
            "backend": args.backend,
            "transitions_per_s": round(statistics.median(rates)),
            "peak_rss_mb": round(peak, 1),
            "transitions": int(statistics.median(counts)),
            "dataset_frames": args.transitions,
            "dataset_disk_mb": round(disk_mb, 1),
            "batch_size": args.batch_size,
            "machine": machine(),
            **checks,
        }
    )


if __name__ == "__main__":
    main()
