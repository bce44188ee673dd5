"""Offline episodes on disk in the LeRobotDataset v3 layout: column names, the writer and the metadata reader.

Why this layout: LeRobot users can open our datasets with their tools and we can train on theirs. The
full description (every file, column and rule, including how the loader treats the last frame of an
episode) lives in ``docs/dataset-format.md``; this module is its only implementation.

    root/
      meta/info.json                               codebase_version "v3.0", fps, features, totals, path templates
      meta/stats.json                              mean/std/min/max/count of state, action and reward
      meta/tasks.parquet                           instruction string -> task_index
      meta/episodes/chunk-000/file-000.parquet     one row per episode (location, length, our extras)
      data/chunk-XXX/file-YYY.parquet              one row per frame; whole episodes only

Every file is written to a hidden temporary name and moved into place with ``os.replace``; the metadata
goes last, ``meta/info.json`` very last. A reader therefore sees either the dataset as of the previous
flush or as of this one, never a half-written file, and a killed writer can resume from its last flush.
Shapes: T (frames of an episode), S (state), D (action), H, W (pixels).
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_CHUNKS_SIZE = 1000  # files per chunk directory, as in LeRobot

# Frame columns (LeRobot names).
STATE = "observation.state"
ACTION = "action"
REWARD = "next.reward"  # reward received after the action of this frame
DONE = "next.done"  # True on the last frame of an episode
TIMESTAMP = "timestamp"
FRAME_INDEX = "frame_index"
EPISODE_INDEX = "episode_index"
INDEX = "index"  # global frame index, contiguous across files in file order
TASK_INDEX = "task_index"
IMAGE_PREFIX = "observation.images."

QUALITIES = ("expert", "noisy", "failed")
"""Data-collection policies of ``qt datagen``; foreign datasets get ``"unknown"``."""
UNKNOWN = "unknown"


def camera_key(camera: str) -> str:
    """Frame column of a camera, e.g. ``main`` -> ``observation.images.main``."""
    return IMAGE_PREFIX + camera


@dataclass
class Episode:
    """One episode as T frames: the observation at t, the action taken, and the reward that followed.

    LeRobot stores no final observation, so neither do we: an episode of T actions keeps T observations.
    """

    state: np.ndarray  # (T, S) float32
    action: np.ndarray  # (T, D) float32
    reward: np.ndarray  # (T,) float32
    instruction: str
    terminated: bool
    """True when the episode ended in a terminal state; False when a time limit cut it."""
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T, H, W, 3) uint8
    success: bool = False
    quality: str = UNKNOWN
    env: str = ""
    task_id: str = ""
    paraphrase_split: str = ""
    episode_index: int = -1
    """Position in the dataset; set by readers, ignored by the writer."""

    def __post_init__(self) -> None:
        self.state = np.asarray(self.state, dtype=np.float32)
        self.action = np.asarray(self.action, dtype=np.float32)
        self.reward = np.asarray(self.reward, dtype=np.float32).reshape(-1)
        T = self.reward.shape[0]
        if T == 0:
            raise ValueError("an episode needs at least one frame")
        if self.state.ndim != 2 or self.state.shape[0] != T:
            raise ValueError(f"state must be (T={T}, S), got {self.state.shape}")
        if self.action.ndim != 2 or self.action.shape[0] != T:
            raise ValueError(f"action must be (T={T}, D), got {self.action.shape}")
        for cam, img in self.images.items():
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != T or img.shape[-1] != 3:
                raise ValueError(
                    f"images[{cam!r}] must be (T={T}, H, W, 3) uint8, got {img.shape} {img.dtype}"
                )

    @property
    def length(self) -> int:
        return int(self.reward.shape[0])


@dataclass(slots=True)
class EpisodeInfo:
    """One row of ``meta/episodes``: where an episode lives and what it is."""

    episode_index: int
    length: int
    instruction: str
    chunk_index: int
    file_index: int
    success: bool | None
    """None when a foreign dataset does not say (``success_only`` filters then exclude the episode)."""
    terminated: bool | None
    """None when a foreign dataset does not say; the loader then decides (see docs/dataset-format.md)."""
    quality: str
    env: str
    task_id: str
    paraphrase_split: str


# ----------------------------------------------------------------------------------------------- files


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a hidden temporary file in the same directory, then ``os.replace`` it into place.

    Atomic against a killed process: ``path`` holds either its old content or the complete new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, 3) uint8 frame (lossless; level 1 favours writing speed)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """(H, W, 3) uint8 from PNG (or any Pillow-readable) bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


# -------------------------------------------------------------------------------------------- features


def _features(state_dim: int, action_dim: int, cameras: dict[str, tuple[int, int]]) -> dict[str, Any]:
    feats: dict[str, Any] = {
        STATE: {"dtype": "float32", "shape": [state_dim], "names": [f"s{i}" for i in range(state_dim)]},
        ACTION: {"dtype": "float32", "shape": [action_dim], "names": [f"a{i}" for i in range(action_dim)]},
        REWARD: {"dtype": "float32", "shape": [1], "names": None},
        DONE: {"dtype": "bool", "shape": [1], "names": None},
    }
    for cam, (h, w) in sorted(cameras.items()):
        feats[camera_key(cam)] = {
            "dtype": "image",
            "shape": [h, w, 3],
            "names": ["height", "width", "channel"],
        }
    for name in (TIMESTAMP,):
        feats[name] = {"dtype": "float32", "shape": [1], "names": None}
    for name in (FRAME_INDEX, EPISODE_INDEX, INDEX, TASK_INDEX):
        feats[name] = {"dtype": "int64", "shape": [1], "names": None}
    return feats


_IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@lru_cache(maxsize=8)
def _arrow_schema(features_json: str) -> pa.Schema:
    """Arrow schema of a data file, with the Hugging Face ``datasets`` feature metadata LeRobot relies on."""
    features = json.loads(features_json)
    fields, hf = [], {}
    for name, ft in features.items():
        if ft["dtype"] == "image":
            fields.append(pa.field(name, _IMAGE_TYPE))
            hf[name] = {"_type": "Image"}
        elif ft["shape"] == [1]:
            fields.append(pa.field(name, pa.from_numpy_dtype(np.dtype(ft["dtype"]))))
            hf[name] = {"dtype": ft["dtype"], "_type": "Value"}
        else:
            fields.append(
                pa.field(name, pa.list_(pa.from_numpy_dtype(np.dtype(ft["dtype"])), ft["shape"][0]))
            )
            hf[name] = {
                "feature": {"dtype": ft["dtype"], "_type": "Value"},
                "length": ft["shape"][0],
                "_type": "List",
            }
    meta = {b"huggingface": json.dumps({"info": {"features": hf}}).encode()}
    return pa.schema(fields, metadata=meta)


def _vector_column(x: np.ndarray) -> pa.Array:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def vector_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(n, k) float32 from a list column (fixed-size as we write it, or variable as some foreign data)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(n, -1) if n else values.reshape(0, 0)


# --------------------------------------------------------------------------------------------- stats


class RunningStats:
    """Mean/std/min/max per feature dimension, mergeable and restorable from ``stats.json``."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sumsq: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if len(x) == 0:
            return
        s, ss, lo, hi = x.sum(0), (x * x).sum(0), x.min(0), x.max(0)
        self._merge(len(x), s, ss, lo, hi)

    def _merge(self, n: int, s: np.ndarray, ss: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        if self.count == 0:
            self.count, self.sum, self.sumsq, self.min, self.max = n, s, ss, lo, hi
            return
        self.count += n
        self.sum, self.sumsq = self.sum + s, self.sumsq + ss
        self.min, self.max = np.minimum(self.min, lo), np.maximum(self.max, hi)

    def merge_json(self, d: dict[str, Any]) -> None:
        n = int(np.asarray(d["count"]).reshape(-1)[0])
        mean, std = np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64)
        self._merge(
            n,
            mean * n,
            (std**2 + mean**2) * n,
            np.asarray(d["min"], np.float64),
            np.asarray(d["max"], np.float64),
        )

    def to_json(self) -> dict[str, list[float]]:
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sumsq / self.count - mean**2, 0.0))
        return {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "count": [self.count],
        }


STATS_KEYS = (STATE, ACTION, REWARD)

# ---------------------------------------------------------------------------------------------- writer


class DatasetWriter:
    """Append whole episodes; every ``episodes_per_file`` episodes become one data file plus fresh metadata.

    Usage::

        with DatasetWriter(root, fps=10) as w:
            w.add_episode(Episode(state=..., action=..., reward=..., instruction="...", terminated=True))

    ``resume=True`` reopens a dataset a killed writer left behind and continues after its last complete
    flush (episodes added after that flush are lost and must be added again).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int = 10,
        episodes_per_file: int = 100,
        chunks_size: int = DEFAULT_CHUNKS_SIZE,
        robot_type: str | None = None,
        resume: bool = False,
    ) -> None:
        if episodes_per_file < 1:
            raise ValueError(f"episodes_per_file must be >= 1, got {episodes_per_file}")
        if chunks_size < 1:
            raise ValueError(f"chunks_size must be >= 1, got {chunks_size}")
        self.root = Path(root)
        self.fps = fps
        self.episodes_per_file = episodes_per_file
        self.chunks_size = chunks_size
        self.robot_type = robot_type
        self._features: dict[str, Any] | None = None
        self._episode_rows: list[dict[str, Any]] = []
        self._tasks: dict[str, int] = {}
        self._stats = {k: RunningStats() for k in STATS_KEYS}
        self._total_frames = 0
        self._num_files = 0
        self._pending: list[Episode] = []
        if (self.root / INFO_PATH).exists():
            if not resume:
                raise ValueError(
                    f"{self.root} already holds a dataset; pass resume=True or choose another directory"
                )
            self._restore()

    # -- public

    @property
    def num_episodes(self) -> int:
        """Episodes on disk (flushed) plus those waiting for the next flush."""
        return len(self._episode_rows) + len(self._pending)

    @property
    def num_flushed_episodes(self) -> int:
        return len(self._episode_rows)

    def add_episode(self, episode: Episode) -> None:
        """Queue an episode; writes a data file once ``episodes_per_file`` are queued."""
        self._check_features(episode)
        self._pending.append(episode)
        if len(self._pending) >= self.episodes_per_file:
            self.flush()

    def flush(self) -> None:
        """Write the queued episodes as one new data file, then rewrite the metadata (info.json last)."""
        if not self._pending:
            return
        assert self._features is not None
        chunk, file = divmod(self._num_files, self.chunks_size)
        table = self._frames_table(self._pending)
        write_parquet(self.root / DATA_PATH.format(chunk_index=chunk, file_index=file), table)
        start = self._total_frames
        for ep in self._pending:
            self._episode_rows.append(self._episode_row(ep, len(self._episode_rows), chunk, file, start))
            start += ep.length
            self._stats[STATE].update(ep.state)
            self._stats[ACTION].update(ep.action)
            self._stats[REWARD].update(ep.reward[:, None])
        self._total_frames = start
        self._num_files += 1
        self._pending = []
        self._write_meta()

    def close(self) -> None:
        self.flush()
        if self._features is None:
            raise ValueError(f"no episodes were written to {self.root}")

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()

    # -- internals

    def _check_features(self, ep: Episode) -> None:
        cams = {cam: (int(img.shape[1]), int(img.shape[2])) for cam, img in ep.images.items()}
        feats = _features(ep.state.shape[1], ep.action.shape[1], cams)
        if self._features is None:
            self._features = feats
        elif feats != self._features:
            raise ValueError(
                f"episode does not match the dataset's features: state {ep.state.shape[1]}, action "
                f"{ep.action.shape[1]}, cameras {cams}; expected {self._describe(self._features)}"
            )

    @staticmethod
    def _describe(feats: dict[str, Any]) -> str:
        cams = {k: v["shape"] for k, v in feats.items() if v["dtype"] == "image"}
        return f"state {feats[STATE]['shape']}, action {feats[ACTION]['shape']}, cameras {cams}"

    def _task_index(self, instruction: str) -> int:
        return self._tasks.setdefault(instruction, len(self._tasks))

    def _frames_table(self, episodes: list[Episode]) -> pa.Table:
        assert self._features is not None
        n_ep0 = len(self._episode_rows)
        lengths = np.array([ep.length for ep in episodes])
        n = int(lengths.sum())
        frame_index = np.concatenate([np.arange(t) for t in lengths])
        done = np.zeros(n, dtype=bool)
        done[np.cumsum(lengths) - 1] = True
        cols: dict[str, pa.Array] = {
            STATE: _vector_column(np.concatenate([ep.state for ep in episodes])),
            ACTION: _vector_column(np.concatenate([ep.action for ep in episodes])),
            REWARD: pa.array(np.concatenate([ep.reward for ep in episodes]).astype(np.float32)),
            DONE: pa.array(done),
            TIMESTAMP: pa.array((frame_index / self.fps).astype(np.float32)),
            FRAME_INDEX: pa.array(frame_index.astype(np.int64)),
            EPISODE_INDEX: pa.array(
                np.repeat(np.arange(n_ep0, n_ep0 + len(episodes)), lengths).astype(np.int64)
            ),
            INDEX: pa.array(np.arange(self._total_frames, self._total_frames + n, dtype=np.int64)),
            TASK_INDEX: pa.array(
                np.repeat([self._task_index(ep.instruction) for ep in episodes], lengths).astype(np.int64)
            ),
        }
        for name, ft in self._features.items():
            if ft["dtype"] == "image":
                cam = name[len(IMAGE_PREFIX) :]
                png = [encode_png(frame) for ep in episodes for frame in ep.images[cam]]
                cols[name] = pa.StructArray.from_arrays(
                    [pa.array(png, pa.binary()), pa.nulls(n, pa.string())], fields=list(_IMAGE_TYPE)
                )
        schema = _arrow_schema(json.dumps(self._features))
        return pa.Table.from_arrays([cols[f.name] for f in schema], schema=schema)

    def _episode_row(self, ep: Episode, index: int, chunk: int, file: int, start: int) -> dict[str, Any]:
        return {
            "episode_index": index,
            "tasks": [ep.instruction],
            "length": ep.length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": start,
            "dataset_to_index": start + ep.length,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
            "success": bool(ep.success),
            "terminated": bool(ep.terminated),
            "quality": ep.quality,
            "env": ep.env,
            "task_id": ep.task_id,
            "paraphrase_split": ep.paraphrase_split,
        }

    def _write_meta(self) -> None:
        """Episodes, tasks and stats first, info.json last: info.json is what makes the new file visible."""
        assert self._features is not None
        write_parquet(
            self.root / EPISODES_PATH.format(chunk_index=0, file_index=0), episodes_table(self._episode_rows)
        )
        write_parquet(self.root / TASKS_PATH, tasks_table(list(self._tasks)))
        write_json(self.root / STATS_PATH, {k: s.to_json() for k, s in self._stats.items() if s.count})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self._episode_rows),
            "total_frames": self._total_frames,
            "total_tasks": len(self._tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": self._features,
            "qtransformer": {"episodes_per_file": self.episodes_per_file, "total_files": self._num_files},
        }
        write_json(self.root / INFO_PATH, info)

    def _restore(self) -> None:
        meta = DatasetMeta.load(self.root)
        self._features = meta.info["features"]
        self.fps = int(meta.info.get("fps", self.fps))
        self.chunks_size = int(meta.info.get("chunks_size", self.chunks_size))
        self._tasks = {t: i for i, t in enumerate(meta.tasks)}
        rows = pq.read_table(self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)).to_pylist()
        self._episode_rows = rows[: int(meta.info["total_episodes"])]
        self._total_frames = int(meta.info["total_frames"])
        self._num_files = int(meta.info.get("qtransformer", {}).get("total_files", len(meta.files())))
        state_count = int(meta.stats.get(STATE, {}).get("count", [0])[0])
        if state_count == self._total_frames:
            for key, st in meta.stats.items():
                if key in self._stats:
                    self._stats[key].merge_json(st)
        else:  # the writer died between stats.json and info.json: recount from the visible files
            for f in meta.files():
                table = pq.read_table(f.path, columns=[STATE, ACTION, REWARD])
                self._stats[STATE].update(vector_to_numpy(table.column(STATE)))
                self._stats[ACTION].update(vector_to_numpy(table.column(ACTION)))
                self._stats[REWARD].update(table.column(REWARD).to_numpy()[:, None])


def episodes_table(rows: list[dict[str, Any]]) -> pa.Table:
    """``meta/episodes`` parquet table from episode rows (see ``DatasetWriter._episode_row``)."""
    schema = pa.schema(
        [
            ("episode_index", pa.int64()),
            ("tasks", pa.list_(pa.string())),
            ("length", pa.int64()),
            ("data/chunk_index", pa.int64()),
            ("data/file_index", pa.int64()),
            ("dataset_from_index", pa.int64()),
            ("dataset_to_index", pa.int64()),
            ("meta/episodes/chunk_index", pa.int64()),
            ("meta/episodes/file_index", pa.int64()),
            ("success", pa.bool_()),
            ("terminated", pa.bool_()),
            ("quality", pa.string()),
            ("env", pa.string()),
            ("task_id", pa.string()),
            ("paraphrase_split", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet``: pandas-style table indexed by the task string, as LeRobot reads it."""
    meta = {
        b"pandas": json.dumps(
            {
                "index_columns": ["task"],
                "column_indexes": [],
                "columns": [
                    {
                        "name": "task_index",
                        "field_name": "task_index",
                        "pandas_type": "int64",
                        "numpy_type": "int64",
                        "metadata": None,
                    },
                    {
                        "name": "task",
                        "field_name": "task",
                        "pandas_type": "unicode",
                        "numpy_type": "object",
                        "metadata": None,
                    },
                ],
                "creator": {"library": "pyarrow", "version": pa.__version__},
                "pandas_version": "2.0.0",
            }
        ).encode()
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())], metadata=meta)
    return pa.Table.from_arrays(
        [pa.array(range(len(tasks)), pa.int64()), pa.array(tasks, pa.string())], schema=schema
    )


# ---------------------------------------------------------------------------------------------- reader


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
        tasks = _read_tasks(root / TASKS_PATH)
        stats = json.loads((root / STATS_PATH).read_text()) if (root / STATS_PATH).exists() else {}
        episodes = _read_episodes(root, tasks, int(info["total_episodes"]))
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


def _read_tasks(path: Path) -> list[str]:
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


def _read_episodes(root: Path, tasks: list[str], total: int) -> list[EpisodeInfo]:
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
