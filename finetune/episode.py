"""One episode as fine-tuning stores, replays and ships it between actor and learner.

``state`` and ``image`` hold ``T + 1`` observations (the last one is what the final action led to),
``action`` and ``reward`` hold ``T`` entries. ``terminated`` tells a terminal end (no bootstrap) from a
time-limit truncation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Episode:
    state: np.ndarray  # (T+1, S) float32
    action: np.ndarray  # (T, A) float32
    reward: np.ndarray  # (T,) float32
    terminated: bool
    instruction: str
    task: str = ""
    success: bool = False
    image: np.ndarray | None = None  # (T+1, H, W, 3) uint8
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        T = len(self.action)
        if T == 0:
            raise ValueError("an episode needs at least one action")
        if self.state.shape[0] != T + 1:
            raise ValueError(f"an episode of {T} actions needs {T + 1} states, got {self.state.shape[0]}")
        if self.reward.shape != (T,):
            raise ValueError(f"reward must have shape ({T},), got {self.reward.shape}")
        if self.image is not None and self.image.shape[0] != T + 1:
            raise ValueError(f"an episode of {T} actions needs {T + 1} images, got {self.image.shape[0]}")

    def __len__(self) -> int:
        return len(self.action)

    def to_arrays(self) -> dict[str, np.ndarray]:
        d = {
            "state": self.state,
            "action": self.action,
            "reward": self.reward,
            "terminated": np.array(self.terminated),
            "success": np.array(self.success),
            "instruction": np.array(self.instruction),
            "task": np.array(self.task),
        }
        if self.image is not None:
            d["image"] = self.image
        if "source" in self.info:  # (actor session, sequence number): how the learner knows a resend
            session, seq = self.info["source"]
            d["source_session"], d["source_seq"] = np.array(session), np.array(seq, dtype=np.int64)
        return d

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> Episode:
        return cls(
            state=np.asarray(d["state"], dtype=np.float32),
            action=np.asarray(d["action"], dtype=np.float32),
            reward=np.asarray(d["reward"], dtype=np.float32),
            terminated=bool(d["terminated"]),
            instruction=str(d["instruction"]),
            task=str(d["task"]),
            success=bool(d["success"]),
            image=np.asarray(d["image"], dtype=np.uint8) if "image" in d else None,
            info={"source": (str(d["source_session"]), int(d["source_seq"]))}
            if "source_session" in d
            else {},
        )
