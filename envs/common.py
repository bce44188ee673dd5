"""Small pieces both simulated tasks share: the instruction space, camera aiming, argument checks."""

from __future__ import annotations

import string
from typing import Literal

import numpy as np
from gymnasium import spaces

EnvName = Literal["garbage_sort", "navigate", "metaworld_mt10", "metaworld_mt50", "metaworld_ml10"]
"""The env names the commands take (``envs.ENV_IDS``' keys)."""

INSTRUCTION_MAX_LENGTH = 200
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " .,;:!?'-_()/"


def instruction_space() -> spaces.Text:
    """Text space of every instruction: letters, digits, space and basic punctuation."""
    return spaces.Text(max_length=INSTRUCTION_MAX_LENGTH, min_length=1, charset=INSTRUCTION_CHARSET)


def lookat_xyaxes(pos: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    """MJCF ``xyaxes`` of a camera at ``pos`` looking at ``target`` with world z up."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    x = np.cross(f, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, f)
    return " ".join(f"{v:.4f}" for v in (*x, *y))


OBSERVATIONS = ("state", "pixels")
"""``state``: the full state vector (object, bin and landmark poses included: oracle for a real robot);
``pixels``: a camera image and the robot's own values only (``LanguageTaskEnv.PROPRIO_DIM``)."""


def check_observation(observation: str, image_size: int) -> None:
    """An observation mode of ``OBSERVATIONS``; ``pixels`` needs a camera image."""
    check_choice("observation", observation, OBSERVATIONS)
    if observation == "pixels" and not image_size:
        raise ValueError("observation='pixels' needs a camera image: pass image_size > 0 (e.g. 64)")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_size(name: str, value: int, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if not isinstance(value, (int, np.integer)) or value < low or value > 1024:
        raise ValueError(f"{name} must be an int in [{low}, 1024], got {value!r}")


def check_action(action: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A float64 copy of ``action`` clipped to [-1, 1]; non-finite actions are a caller bug, not noise."""
    a = np.asarray(action, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"action must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"action must be finite, got {a}")
    return np.clip(a, -1.0, 1.0)
