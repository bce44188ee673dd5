"""Writing a dataset: whole episodes into parquet data files, then the metadata, each file atomically.

Every file is written to a hidden temporary name and moved into place with ``os.replace``; the metadata
goes last, ``meta/info.json`` very last. A reader therefore sees either the dataset as of the previous
flush or as of this one, never a half-written file, and a killed writer can resume from its last flush.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qtransformer.dataset.meta import DatasetMeta
from qtransformer.dataset.schema import (
    ACTION,
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_CHUNKS_SIZE,
    DONE,
    EPISODE_INDEX,
    EPISODES_PATH,
    FRAME_INDEX,
    IMAGE_PREFIX,
    IMAGE_TYPE,
    INDEX,
    INFO_PATH,
    REWARD,
    STATE,
    STATS_PATH,
    TASK_INDEX,
    TASKS_PATH,
    TIMESTAMP,
    Episode,
    arrow_schema,
    encode_png,
    features_of,
    vector_column,
    vector_to_numpy,
)
from qtransformer.dataset.stats import STATS_KEYS, RunningStats

# ----------------------------------------------------------------------------------------------- files


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a hidden temporary file in the same directory, then ``os.replace`` it into place.

    Atomic against a killed process: ``path`` holds either its old content or the complete new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def write_parquet(path: Path, table: pa.Table) -> None:
    """``table`` as a zstd-compressed parquet file at ``path``, atomically."""
    atomic_write(path, lambda p: pq.write_table(table, p, compression="zstd"))


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
        feats = features_of(ep.state.shape[1], ep.action.shape[1], cams)
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
            STATE: vector_column(np.concatenate([ep.state for ep in episodes])),
            ACTION: vector_column(np.concatenate([ep.action for ep in episodes])),
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
                    [pa.array(png, pa.binary()), pa.nulls(n, pa.string())], fields=list(IMAGE_TYPE)
                )
        schema = arrow_schema(json.dumps(self._features))
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
