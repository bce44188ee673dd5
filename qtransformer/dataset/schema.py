"""Column names, the episode record and the Arrow schema of a dataset (the LeRobotDataset v3 layout).

Everything the writer, the metadata reader and the episode reader agree on lives here, so that a column
name or a feature rule exists once. Shapes: T (frames of an episode), S (state), D (action), H, W (pixels).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

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


def features_of(state_dim: int, action_dim: int, cameras: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """``info.json`` features of a dataset with this state and action size and these cameras (name -> (H, W))."""
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


IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@lru_cache(maxsize=8)
def arrow_schema(features_json: str) -> pa.Schema:
    """Arrow schema of a data file, with the Hugging Face ``datasets`` feature metadata LeRobot relies on."""
    features = json.loads(features_json)
    fields: list[pa.Field] = []
    hf: dict[str, dict[str, Any]] = {}
    for name, ft in features.items():
        if ft["dtype"] == "image":
            fields.append(pa.field(name, IMAGE_TYPE))
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


def vector_column(x: np.ndarray) -> pa.Array:
    """(n, k) array as the fixed-size list column the writer stores vectors in."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def vector_to_numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """(n, k) float32 from a list column (fixed-size as we write it, or variable as some foreign data)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    values = arr.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(n, -1) if n else values.reshape(0, 0)
