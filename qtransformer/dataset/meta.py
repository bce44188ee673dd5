"""Reading ``meta/``: the dataset's files, episodes, tasks and statistics, and what a dataset says about
the env it was recorded in and the model shape it implies (``dataset_meta``, ``dataset_env_kwargs``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from qtransformer.dataset.schema import (
    ACTION,
    DATA_PATH,
    IMAGE_PREFIX,
    INFO_PATH,
    REWARD,
    STATE,
    STATS_PATH,
    TASK_INDEX,
    TASKS_PATH,
    UNKNOWN,
    EpisodeInfo,
    camera_key,
)


@dataclass
class DataFile:
    """One data file and the episodes it holds (whole episodes only)."""

    path: Path
    episodes: list[EpisodeInfo]

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)


@dataclass
class DatasetMeta:
    """Everything in ``meta/``: read once, small, enough to plan which files to stream."""

    root: Path
    info: dict[str, Any]
    tasks: list[str]  # task_index -> instruction
    episodes: list[EpisodeInfo]
    stats: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, root: str | Path) -> DatasetMeta:
        root = Path(root)
        info_path = root / INFO_PATH
        if not info_path.exists():
            raise FileNotFoundError(
                f"{root} is not a dataset (or no file was flushed yet): {info_path} is missing"
            )
        info = json.loads(info_path.read_text())
        version = str(info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise ValueError(
                f"{root}: codebase_version {version!r} is not supported; convert it to LeRobot v3.0 first"
            )
        feats = info.get("features", {})
        missing = [k for k in (STATE, ACTION) if k not in feats]
        if missing:
            raise ValueError(
                f"{root}: features {missing} are missing; offline Q-learning needs a state and an action"
            )
        tasks = read_tasks(root / TASKS_PATH)
        stats = json.loads((root / STATS_PATH).read_text()) if (root / STATS_PATH).exists() else {}
        episodes = read_episodes(root, tasks, int(info["total_episodes"]))
        return cls(root=root, info=info, tasks=tasks, episodes=episodes, stats=stats)

    @property
    def fps(self) -> int:
        return int(self.info.get("fps", 10))

    @property
    def features(self) -> dict[str, Any]:
        return self.info["features"]

    @property
    def state_dim(self) -> int:
        return int(self.features[STATE]["shape"][0])

    @property
    def action_dim(self) -> int:
        return int(self.features[ACTION]["shape"][0])

    @property
    def cameras(self) -> list[str]:
        """Cameras stored as images in the parquet files (LeRobot ``video`` features are not readable here)."""
        return sorted(
            k[len(IMAGE_PREFIX) :]
            for k, v in self.features.items()
            if k.startswith(IMAGE_PREFIX) and v["dtype"] == "image"
        )

    @property
    def video_cameras(self) -> list[str]:
        return sorted(
            k[len(IMAGE_PREFIX) :]
            for k, v in self.features.items()
            if k.startswith(IMAGE_PREFIX) and v["dtype"] == "video"
        )

    def image_shape(self, camera: str) -> tuple[int, int, int]:
        """(H, W, 3) of a camera, read from the features (LeRobot writes HWC for images)."""
        shape = self.features[camera_key(camera)]["shape"]
        return (int(shape[0]), int(shape[1]), 3) if shape[-1] == 3 else (int(shape[1]), int(shape[2]), 3)

    @property
    def has_reward(self) -> bool:
        return REWARD in self.features

    @property
    def total_frames(self) -> int:
        return int(self.info["total_frames"])

    def data_path(self, chunk_index: int, file_index: int) -> Path:
        return self.root / self.info.get("data_path", DATA_PATH).format(
            chunk_index=chunk_index, file_index=file_index
        )

    def files(self, episodes: Iterable[EpisodeInfo] | None = None) -> list[DataFile]:
        """Data files holding ``episodes`` (default all), in (chunk, file) order, episodes in index order."""
        groups: dict[tuple[int, int], list[EpisodeInfo]] = {}
        for ep in self.episodes if episodes is None else episodes:
            groups.setdefault((ep.chunk_index, ep.file_index), []).append(ep)
        return [
            DataFile(self.data_path(*key), sorted(eps, key=lambda e: e.episode_index))
            for key, eps in sorted(groups.items())
        ]


def read_tasks(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing")
    table = pq.read_table(path)
    names = table.column_names
    meta = table.schema.pandas_metadata or {}
    index_cols = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
    text_col = next((c for c in ("task", *index_cols, "__index_level_0__") if c in names), None)
    if text_col is None or TASK_INDEX not in names:
        raise ValueError(f"{path}: expected columns 'task_index' and 'task' (or a pandas index), got {names}")
    idx = table.column(TASK_INDEX).to_numpy()
    text = table.column(text_col).to_pylist()
    tasks = [""] * (int(idx.max()) + 1 if len(idx) else 0)
    for i, t in zip(idx, text):
        tasks[int(i)] = t
    return tasks


def read_episodes(root: Path, tasks: list[str], total: int) -> list[EpisodeInfo]:
    paths = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{root}: no meta/episodes/chunk-*/file-*.parquet")
    wanted = [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "success",
        "terminated",
        "quality",
        "env",
        "task_id",
        "paraphrase_split",
    ]
    rows: list[dict[str, Any]] = []
    for p in paths:
        cols = [c for c in wanted if c in pq.read_schema(p).names]
        rows.extend(pq.read_table(p, columns=cols).to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    rows = rows[:total]  # episode files may run ahead of info.json only if a writer died in between
    out = []
    for r in rows:
        ep_tasks = r.get("tasks") or []
        out.append(
            EpisodeInfo(
                episode_index=int(r["episode_index"]),
                length=int(r["length"]),
                instruction=str(ep_tasks[0]) if ep_tasks else (tasks[0] if tasks else ""),
                chunk_index=int(r.get("data/chunk_index") or 0),
                file_index=int(r.get("data/file_index") or 0),
                success=r.get("success"),
                terminated=r.get("terminated"),
                quality=r.get("quality") or UNKNOWN,
                env=r.get("env") or "",
                task_id=r.get("task_id") or "",
                paraphrase_split=r.get("paraphrase_split") or "",
            )
        )
    return out


# ------------------------------------------------------------------------------------ what it implies

DATAGEN_ENV_KWARGS = ("start_jitter", "observation", "camera")
_ENV_DEFAULTS = {"observation": "state"}
"""``qt datagen`` settings that are env settings, so that a policy is evaluated and fine-tuned in the
env its data came from."""


def dataset_env_kwargs(env: str | None, fps: int, root: str | Path | None = None) -> dict[str, Any]:
    """Env settings a dataset implies: Navigate's control rate is the dataset's ``fps``; those of
    ``DATAGEN_ENV_KWARGS`` that ``qt datagen`` recorded in ``meta/datagen.json`` (when ``root`` is given)."""
    kwargs: dict[str, Any] = {"control_hz": float(fps)} if env == "navigate" else {}
    record = Path(root, "meta", "datagen.json") if root is not None else None
    if record is not None and record.exists():
        made = json.loads(record.read_text())
        # Only what differs from the env's default, so envs without the setting still build.
        kwargs.update(
            {k: made[k] for k in DATAGEN_ENV_KWARGS if made.get(k) not in (None, _ENV_DEFAULTS.get(k))}
        )
    return kwargs


def dataset_meta(root: str | Path) -> dict[str, Any]:
    """What the model shape, evaluation and fine-tuning need from a dataset's ``meta/``.

    Keys: ``state_dim``, ``action_dim``, ``cameras``, ``image_shapes`` {camera: (H, W, 3)}, ``env`` (the
    one env all episodes name, else None), ``env_kwargs``, ``transitions``, ``state_stats`` ((mean, std)
    or None) and ``instructions`` (task_index -> instruction).
    """
    m = DatasetMeta.load(root)
    env_names = sorted({e.env for e in m.episodes if e.env})
    env = env_names[0] if len(env_names) == 1 else None
    st = m.stats.get(STATE)
    state_stats = (list(st["mean"]), list(st["std"])) if st and "mean" in st and "std" in st else None
    return {
        "state_dim": m.state_dim,
        "action_dim": m.action_dim,
        "cameras": m.cameras,
        "image_shapes": {c: m.image_shape(c) for c in m.cameras},
        "env": env,
        "env_kwargs": dataset_env_kwargs(env, m.fps, root),
        "transitions": m.total_frames,
        "state_stats": state_stats,
        "instructions": list(m.tasks),
    }
