"""Durable storage of fine-tuning progress: episodes appended as they finish, learner state snapshots.

Each finished episode is one ``.npz`` written to a temporary name, fsynced and renamed, so ``kill -9``
loses at most the episode in progress and a reader never sees half a file. Learner snapshots
(weights, target, optimiser, schedule, counters) use the same write-then-rename rule.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finetune.episode import Episode

_EP = re.compile(r"^ep_(\d{8})\.npz$")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EpisodeStore:
    """A directory of finished episodes, numbered in the order they were collected."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in self.root.glob(".ep_*.tmp-*"):  # left by a killed writer; never complete
            stale.unlink(missing_ok=True)
        self._next = 1 + max(
            (int(m.group(1)) for p in self.root.iterdir() if (m := _EP.match(p.name))), default=-1
        )

    def __len__(self) -> int:
        return self._next

    def append(self, ep: Episode) -> Path:
        buf = io.BytesIO()
        save = np.savez_compressed if ep.image is not None else np.savez  # images compress well, states don't
        # The stub lets **kwds fill allow_pickle: bool; the keys here are array names only.
        save(buf, **ep.to_arrays())  # type: ignore[arg-type]
        path = self.root / f"ep_{self._next:08d}.npz"
        _atomic_write(path, buf.getvalue())
        self._next += 1
        return path

    def load_all(self) -> list[Episode]:
        files = sorted(p for p in self.root.iterdir() if _EP.match(p.name))
        episodes = []
        for p in files:
            with np.load(p, allow_pickle=False) as z:
                episodes.append(Episode.from_arrays(dict(z)))
        return episodes


def save_snapshot(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically write a learner snapshot (anything ``torch.save`` takes)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(Path(path), buf.getvalue())


def load_snapshot(path: str | os.PathLike) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as e:
        raise RuntimeError(f"could not read the fine-tuning snapshot {str(path)!r}: {e}") from e
