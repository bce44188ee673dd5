"""Hand-made episodes whose values encode (episode, frame), so tests can tell exactly what a loader read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qtransformer.dataset import DatasetWriter, Episode


def coded_episode(
    ep: int,
    T: int,
    *,
    terminated: bool = True,
    instruction: str = "pick up the can",
    quality: str = "expert",
    success: bool | None = None,
    task_id: str = "pick_can",
    image_size: int = 0,
) -> Episode:
    """state[t] = (ep, t, 0), action[t] = (t / 100, -ep / 100), reward 1 on the last frame iff terminated."""
    t = np.arange(T, dtype=np.float32)
    state = np.stack([np.full(T, ep, np.float32), t, np.zeros(T, np.float32)], axis=1)
    action = np.stack([t / 100, np.full(T, -ep / 100, np.float32)], axis=1)
    reward = np.zeros(T, np.float32)
    reward[-1] = float(terminated)
    images = {}
    if image_size:
        # pixel value = 10 * t + ep % 10 (T <= 25 keeps it a uint8)
        images["main"] = np.broadcast_to(
            (10 * np.arange(T) + ep % 10).astype(np.uint8)[:, None, None, None],
            (T, image_size, image_size, 3),
        ).copy()
    return Episode(
        state=state,
        action=action,
        reward=reward,
        instruction=instruction,
        terminated=terminated,
        images=images,
        success=terminated if success is None else success,
        quality=quality,
        env="fake",
        task_id=task_id,
        paraphrase_split="train",
    )


def write_coded(root: Path, lengths: list[int], episodes_per_file: int, **kwargs) -> list[Episode]:
    eps = [coded_episode(i, T, **kwargs) for i, T in enumerate(lengths)]
    with DatasetWriter(root, episodes_per_file=episodes_per_file) as w:
        for e in eps:
            w.add_episode(e)
    return eps


def collect(loader) -> dict[str, np.ndarray]:
    """Concatenate every batch of a finite loader."""
    out: dict[str, list] = {}
    for b in loader:
        for k, v in b.items():
            out.setdefault(k, []).append(v)
    return {
        k: ([s for part in v for s in part] if k == "instruction" else np.concatenate(v))
        for k, v in out.items()
    }


def ids(batch: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """(episode, frame) of every transition, from the coded state."""
    return sorted(zip(batch["state"][:, 0].astype(int).tolist(), batch["state"][:, 1].astype(int).tolist()))
