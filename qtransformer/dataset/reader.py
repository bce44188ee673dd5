"""Reading episodes: which episodes to keep, one data file's columns as numpy, whole episodes in memory.

The rules for foreign (LeRobot) data live here once, for the streaming loader and for fine-tuning's
replay alike: without ``next.reward`` an episode earns a sparse reward of 1 on its last frame; without a
``terminated`` column an episode counts as terminated unless ``next.done`` says otherwise. How the last
frame becomes transitions (LeRobot stores no final observation) is ``with_final_observation``'s rule.
Shapes: F (frames of a file), T (frames of an episode), S (state), D (action), H, W (pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qtransformer.dataset.meta import DataFile, DatasetMeta
from qtransformer.dataset.schema import (
    ACTION,
    DONE,
    EPISODE_INDEX,
    REWARD,
    STATE,
    TASK_INDEX,
    Episode,
    EpisodeInfo,
    camera_key,
    decode_png,
    vector_to_numpy,
)


@dataclass
class EpisodeFilter:
    """Which episodes to use. Every given criterion must hold; None means no constraint."""

    task_ids: Sequence[str] | None = None
    """Keep episodes whose ``task_id`` is listed (e.g. the training tasks of one environment)."""
    instructions: Sequence[str] | None = None
    """Keep episodes whose instruction string is listed."""
    qualities: Sequence[str] | None = None
    """Keep episodes collected by these policies (``expert``, ``noisy``, ``failed``, ``unknown``)."""
    success_only: bool = False
    """Keep successful episodes only (the BC baseline and fine-tuning's prior-data filter)."""

    def keep(self, ep: EpisodeInfo) -> bool:
        if self.task_ids is not None and ep.task_id not in self.task_ids:
            return False
        if self.instructions is not None and ep.instruction not in self.instructions:
            return False
        if self.qualities is not None and ep.quality not in self.qualities:
            return False
        return not (self.success_only and not ep.success)


def select_episodes(meta: DatasetMeta, episode_filter: EpisodeFilter | None) -> list[EpisodeInfo]:
    """The episodes of ``meta`` that pass ``episode_filter`` (all without one); none is an error."""
    eps = meta.episodes if episode_filter is None else [e for e in meta.episodes if episode_filter.keep(e)]
    if not eps:
        raise ValueError(f"no episode of {meta.root} passes the filter {episode_filter}")
    return eps


def check_cameras(meta: DatasetMeta, cameras: Sequence[str] | None) -> list[str]:
    """Default: every image camera. Videos are named in the error because they cannot be decoded here."""
    if cameras is None:
        return meta.cameras
    bad = [c for c in cameras if c not in meta.cameras]
    if bad:
        raise ValueError(
            f"cameras {bad} are not image features of {meta.root}; images: {meta.cameras}, "
            f"videos (not supported): {meta.video_cameras}"
        )
    return list(cameras)


@dataclass
class FileColumns:
    """The columns of one data file the loader needs, as numpy, plus each kept episode's row span."""

    state: np.ndarray  # (F, S)
    action: np.ndarray  # (F, D)
    reward: np.ndarray  # (F,)
    task_index: np.ndarray  # (F,)
    images: dict[str, np.ndarray]  # camera -> (F,) object array of encoded frames
    spans: list[tuple[EpisodeInfo, int, int, bool]]  # (episode, first row, T, terminated)


def needed_columns(meta: DatasetMeta, cameras: Sequence[str]) -> list[str]:
    """The frame columns the loader reads (only those, for speed)."""
    cols = [STATE, ACTION, EPISODE_INDEX, TASK_INDEX]
    if meta.has_reward:
        cols.append(REWARD)
    if DONE in meta.features:
        cols.append(DONE)
    return cols + [camera_key(c) for c in cameras]


def read_file(meta: DatasetMeta, f: DataFile, cameras: Sequence[str]) -> FileColumns:
    """The columns of ``f`` the loader needs, with the foreign-data defaults applied."""
    table = pq.read_table(f.path, columns=needed_columns(meta, cameras))
    return table_columns(meta, table, f.episodes, cameras, source=str(f.path))


def table_columns(
    meta: DatasetMeta,
    table: pa.Table,
    episodes: Sequence[EpisodeInfo],
    cameras: Sequence[str],
    source: str = "the table",
) -> FileColumns:
    """``episodes`` (each whole, in ``table``'s rows) of a frames table with ``needed_columns``."""
    has_done = DONE in meta.features
    ep_idx = table.column(EPISODE_INDEX).to_numpy()
    starts = np.flatnonzero(np.r_[True, ep_idx[1:] != ep_idx[:-1]])
    where = {int(ep_idx[s]): int(s) for s in starts}
    done = table.column(DONE).to_numpy(zero_copy_only=False) if has_done else None
    F = len(ep_idx)
    if meta.has_reward:
        reward = table.column(REWARD).to_numpy().astype(np.float32)
    else:  # documented default for foreign data: sparse reward 1 on the last frame of each episode
        reward = np.zeros(F, np.float32)
        reward[np.r_[starts[1:], F] - 1] = 1.0
    spans = []
    for ep in episodes:
        if ep.episode_index not in where:
            raise ValueError(f"{source}: episode {ep.episode_index} from meta/episodes is not in it")
        s = where[ep.episode_index]
        if ep.terminated is not None:
            term = bool(ep.terminated)
        elif not meta.has_reward:
            term = True
        elif done is not None:
            term = bool(done[s + ep.length - 1])
        else:
            term = True
        spans.append((ep, s, ep.length, term))
    images = {}
    for c in cameras:
        col = table.column(camera_key(c)).combine_chunks()
        data = col.field("bytes").to_numpy(zero_copy_only=False)
        if any(b is None for b in data):
            paths = col.field("path").to_pylist()
            data = np.array(
                [b if b is not None else (meta.root / p).read_bytes() for b, p in zip(data, paths)],
                dtype=object,
            )
        images[c] = data
    return FileColumns(
        state=vector_to_numpy(table.column(STATE)),
        action=vector_to_numpy(table.column(ACTION)),
        reward=reward,
        task_index=table.column(TASK_INDEX).to_numpy(),
        images=images,
        spans=spans,
    )


def load_episodes(
    root: str | Path,
    *,
    episode_filter: EpisodeFilter | None = None,
    cameras: Sequence[str] | None = None,
    max_episodes: int | None = None,
) -> list[Episode]:
    """Whole episodes in memory (fine-tuning preloads prior data into its replay buffer).

    Rewards and ``terminated`` follow the same defaults as the streaming loader for foreign datasets.
    """
    meta = DatasetMeta.load(root)
    cams = check_cameras(meta, cameras)
    kept = select_episodes(meta, episode_filter)
    if max_episodes is not None:
        kept = kept[:max_episodes]
    out: list[Episode] = []
    for f in meta.files(kept):
        cols = read_file(meta, f, cams)
        for ep, s, T, term in cols.spans:
            sl = slice(s, s + T)
            out.append(
                Episode(
                    state=cols.state[sl],
                    action=cols.action[sl],
                    reward=cols.reward[sl],
                    instruction=meta.tasks[int(cols.task_index[s])],
                    terminated=term,
                    images={c: np.stack([decode_png(x) for x in cols.images[c][sl]]) for c in cams},
                    success=bool(ep.success),
                    quality=ep.quality,
                    env=ep.env,
                    task_id=ep.task_id,
                    paraphrase_split=ep.paraphrase_split,
                    episode_index=ep.episode_index,
                )
            )
    out.sort(key=lambda e: e.episode_index)
    return out


def with_final_observation(ep: Episode) -> dict[str, Any]:
    """An episode as T'+1 observations and T' actions (the form online replay buffers keep).

    Applies the loader's last-frame rule: a terminated episode gets its last frame repeated as the final
    observation (never bootstrapped from); a truncated one loses its last action and reward, whose next
    observation was not stored. Keys: ``state`` (T'+1, S), ``action`` (T', D), ``reward`` (T',),
    ``images`` {camera: (T'+1, H, W, 3)}, ``terminated``.
    """
    if ep.terminated:
        return {
            "state": np.concatenate([ep.state, ep.state[-1:]]),
            "action": ep.action,
            "reward": ep.reward,
            "images": {c: np.concatenate([v, v[-1:]]) for c, v in ep.images.items()},
            "terminated": True,
        }
    if ep.length < 2:
        raise ValueError("a one-frame truncated episode has no transition with a stored next observation")
    return {
        "state": ep.state,
        "action": ep.action[:-1],
        "reward": ep.reward[:-1],
        "images": dict(ep.images),
        "terminated": False,
    }
