"""Streaming offline loader: parquet shards -> shuffled transition dicts (the contract of ``qtransformer.batch``).

Why streaming: the large dataset does not fit in RAM. The loader reads one data file at a time (only the
columns it needs), turns every episode of that file into transitions with the shared TD bookkeeping
(``qtransformer.returns.episode_targets``), and mixes them through a shuffle buffer of bounded size.
Memory is therefore about one data file plus ``shuffle_buffer`` transitions, whatever the dataset size.

The last frame of an episode (LeRobot stores no final observation):
- terminated episodes keep all T transitions; windows reaching the end have ``bootstrap = 0``, so their
  ``next_state`` is never used and is filled with the last stored observation;
- truncated episodes drop the last transition (its next observation is missing): the n-step windows are
  those of the first T-1 transitions cut at observation T-1, and ``mc_return`` still sums all T rewards.

Images: ``image`` is (B, V, H, W, 3) uint8 with V = cameras x ``frame_history``, camera-major and oldest
frame first; history before the episode start repeats the first frame. Shapes: B (batch), S (state),
D (action), N (n-step window).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qtransformer import batch as keys
from qtransformer.dataset import (
    TASK_INDEX,
    DataFile,
    DatasetMeta,
    EpisodeFilter,
    FileColumns,
    check_cameras,
    decode_png,
    read_file,
    select_episodes,
)
from qtransformer.returns import ReturnConfig, episode_targets


def file_transitions(
    cols: FileColumns, returns: ReturnConfig, frame_history: int, cameras: Sequence[str]
) -> dict[str, np.ndarray]:
    """All transitions of one file's kept episodes as arrays (images as encoded-frame references).

    ``returns.timeout_is_failure``: a truncated episode keeps every frame and ends in a terminal failure.
    """
    gamma, n_step = returns.gamma, returns.n_step
    rows, next_rows = [], []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("rewards", "nstep", "bootstrap", "mc_return")}
    first_rows = []
    for _ep, s, T, term in cols.spans:
        r = cols.reward[s : s + T]
        if term or returns.timeout_is_failure:
            tg = episode_targets(r, True, gamma, n_step)
            mc = tg.mc_return
            nxt = np.minimum(tg.next_index, T - 1)  # only where bootstrap == 0: placeholder, never used
        else:
            if T < 2:
                continue  # a one-frame truncated episode has no transition with a known next observation
            tg = episode_targets(r[: T - 1], False, gamma, n_step)
            mc = episode_targets(r, False, gamma, 1).mc_return[: T - 1]
            nxt = tg.next_index
        n = len(tg.nstep)
        rows.append(s + np.arange(n))
        next_rows.append(s + nxt)
        first_rows.append(np.full(n, s))
        parts["rewards"].append(tg.rewards)
        parts["nstep"].append(tg.nstep)
        parts["bootstrap"].append(tg.bootstrap)
        parts["mc_return"].append(mc)
    if not rows:
        return {}
    row = np.concatenate(rows)
    nrow = np.concatenate(next_rows)
    out = {
        keys.STATE: cols.state[row],
        keys.ACTION: cols.action[row],
        keys.REWARDS: np.concatenate(parts["rewards"]),
        keys.NSTEP: np.concatenate(parts["nstep"]),
        keys.BOOTSTRAP: np.concatenate(parts["bootstrap"]),
        keys.NEXT_STATE: cols.state[nrow],
        keys.MC_RETURN: np.concatenate(parts["mc_return"]).astype(np.float32),
        TASK_INDEX: cols.task_index[row],
    }
    if cameras:
        first = np.concatenate(first_rows)
        lag = np.arange(frame_history - 1, -1, -1)  # oldest first

        def history(r: np.ndarray) -> np.ndarray:  # (n, cameras * frame_history) encoded frames
            idx = np.maximum(r[:, None] - lag[None, :], first[:, None])  # (n, frame_history)
            return np.concatenate([cols.images[c][idx] for c in cameras], axis=1)

        out[keys.IMAGE] = history(row)
        out[keys.NEXT_IMAGE] = history(nrow)
    return out


class ShuffleBuffer:
    """A fixed-capacity pool of transitions: each emitted batch takes random slots, new data refills them."""

    def __init__(self, capacity: int, batch_size: int, rng: np.random.Generator) -> None:
        self.capacity, self.batch_size, self.rng = capacity, batch_size, rng
        self.data: dict[str, np.ndarray] | None = None
        self.size = 0

    def _alloc(self, block: dict[str, np.ndarray]) -> None:
        self.data = {k: np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in block.items()}

    def push(self, block: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Add a block, yielding batches whenever the pool is full."""
        if not block:
            return
        if self.data is None:
            self._alloc(block)
        assert self.data is not None
        m = len(next(iter(block.values())))
        pos = min(self.capacity - self.size, m)
        for k, v in block.items():
            self.data[k][self.size : self.size + pos] = v[:pos]
        self.size += pos
        B = self.batch_size
        while pos < m and self.size >= B:
            idx = self.rng.choice(self.size, size=B, replace=False)
            yield {k: v[idx] for k, v in self.data.items()}
            k_new = min(B, m - pos)
            for k, v in block.items():
                self.data[k][idx[:k_new]] = v[pos : pos + k_new]
            pos += k_new
            if k_new < B:
                self._remove(idx[k_new:])

    def _remove(self, holes: np.ndarray) -> None:
        """Fill emitted slots nobody refilled with live items from the tail, shrinking the pool."""
        assert self.data is not None
        new_size = self.size - len(holes)
        tail = np.arange(new_size, self.size)
        movers = tail[~np.isin(tail, holes)]
        targets = np.sort(holes[holes < new_size])
        for v in self.data.values():
            v[targets] = v[movers]
        self.size = new_size

    def drain(self, drop_last: bool) -> Iterator[dict[str, np.ndarray]]:
        if self.data is None or self.size == 0:
            return
        order = self.rng.permutation(self.size)
        for i in range(0, self.size, self.batch_size):
            idx = order[i : i + self.batch_size]
            if len(idx) < self.batch_size and drop_last:
                break
            yield {k: v[idx] for k, v in self.data.items()}
        self.size = 0


class OfflineLoader:
    """Infinite (or ``num_epochs``-long) stream of transition dicts of ``batch_size`` from a dataset.

    Work is split across ranks by file (each rank reads files ``rank, rank + world_size, ...`` of the kept
    files); with fewer files than ranks every rank reads all files and keeps every ``world_size``-th kept
    episode instead. Each epoch visits the rank's files in an order drawn from ``(seed, epoch, rank)``.

    Resuming: ``state_dict()`` records the epoch and the file being consumed. ``load_state_dict`` restarts
    at the start of that file, so the epoch order is reproduced exactly; transitions that were waiting in
    the shuffle buffer at save time are skipped (at most ``shuffle_buffer`` of them) and some of that
    file's transitions may repeat.
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int,
        *,
        returns: ReturnConfig,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle_buffer: int = 20_000,
        frame_history: int = 1,
        cameras: Sequence[str] | None = None,
        episode_filter: EpisodeFilter | None = None,
        num_epochs: int | None = None,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if shuffle_buffer < batch_size:
            raise ValueError(f"shuffle_buffer ({shuffle_buffer}) must be >= batch_size ({batch_size})")
        if frame_history < 1:
            raise ValueError(f"frame_history must be >= 1, got {frame_history}")
        if not isinstance(returns, ReturnConfig):
            raise TypeError(f"returns must be a ReturnConfig, got {type(returns).__name__}")
        self.meta = DatasetMeta.load(root)
        self.batch_size, self.returns = batch_size, returns
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle_buffer, self.frame_history = shuffle_buffer, frame_history
        self.cameras = check_cameras(self.meta, cameras)
        self.num_epochs, self.drop_last = num_epochs, drop_last
        kept = select_episodes(self.meta, episode_filter)
        files = self.meta.files(kept)
        if len(files) >= world_size:
            self.files = files[rank::world_size]
        else:
            mine = kept[rank::world_size]
            if not mine:
                raise ValueError(
                    f"rank {rank} of {world_size} gets no episode: only {len(kept)} pass the filter"
                )
            self.files = self.meta.files(mine)
        self.epoch, self.cursor = 0, 0

    @property
    def num_transitions(self) -> int:
        """Approximate transitions per epoch for this rank (truncated episodes give T-1)."""
        return sum(f.num_frames for f in self.files)

    def epoch_files(self, epoch: int) -> list[DataFile]:
        """This rank's files in the order epoch ``epoch`` reads them."""
        order = np.random.default_rng([self.seed, epoch, self.rank]).permutation(len(self.files))
        return [self.files[i] for i in order]

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "cursor": self.cursor,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["seed"], state["rank"], state["world_size"]) != (self.seed, self.rank, self.world_size):
            raise ValueError(
                f"loader state was saved with seed/rank/world_size {state['seed']}/{state['rank']}/"
                f"{state['world_size']}, this loader has {self.seed}/{self.rank}/{self.world_size}"
            )
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.rank, self.epoch, self.cursor, 1])
        buf = ShuffleBuffer(self.shuffle_buffer, self.batch_size, rng)
        while self.num_epochs is None or self.epoch < self.num_epochs:
            files = self.epoch_files(self.epoch)
            while self.cursor < len(files):
                cols = read_file(self.meta, files[self.cursor], self.cameras)
                block = file_transitions(cols, self.returns, self.frame_history, self.cameras)
                del cols
                if block:
                    perm = rng.permutation(len(block[keys.STATE]))
                    block = {k: v[perm] for k, v in block.items()}
                for b in buf.push(block):
                    yield self._finish(b)
                del block
                self.cursor += 1
            self.epoch, self.cursor = self.epoch + 1, 0
        for b in buf.drain(self.drop_last):
            yield self._finish(b)

    def _finish(self, b: dict[str, np.ndarray]) -> dict[str, Any]:
        """Instruction strings and decoded images for one batch (decoding is deferred to here)."""
        tasks = self.meta.tasks
        out: dict[str, Any] = {
            k: v for k, v in b.items() if k not in (TASK_INDEX, keys.IMAGE, keys.NEXT_IMAGE)
        }
        out[keys.INSTRUCTION] = [tasks[i] for i in b[TASK_INDEX]]
        if self.cameras:
            out[keys.IMAGE] = _decode(b[keys.IMAGE])
            out[keys.NEXT_IMAGE] = _decode(b[keys.NEXT_IMAGE])
        return out


def _decode(refs: np.ndarray) -> np.ndarray:
    """(B, V) encoded frames -> (B, V, H, W, 3) uint8; a frame shared by several slots is decoded once."""
    cache: dict[int, np.ndarray] = {}
    flat = []
    for x in refs.reshape(-1):
        if id(x) not in cache:
            cache[id(x)] = decode_png(x)
        flat.append(cache[id(x)])
    return np.stack(flat).reshape(*refs.shape, *flat[0].shape)
