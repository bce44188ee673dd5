"""MuJoCo tasks that speak language, their scripted experts, and the real-arm interface.

``import envs`` registers ``qtransformer/GarbageSort-v0`` and ``qtransformer/Navigate-v0`` with
Gymnasium. This package imports nothing else of the project: an agent reaches a simulator and a real
robot through the same observation/action API.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs import tasks
from envs.experts import make_expert

ENV_IDS: dict[str, str] = {
    "garbage_sort": "qtransformer/GarbageSort-v0",
    "navigate": "qtransformer/Navigate-v0",
}
# Default time limits (the TimeLimit wrapper of gymnasium.make; override with max_episode_steps=...).
DEFAULT_MAX_EPISODE_STEPS: dict[str, int] = {"garbage_sort": 80, "navigate": 60}

_ENTRY_POINTS = {"garbage_sort": "envs.garbage_sort:GarbageSortEnv", "navigate": "envs.navigate:NavigateEnv"}
for _name, _id in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(
            id=_id, entry_point=_ENTRY_POINTS[_name], max_episode_steps=DEFAULT_MAX_EPISODE_STEPS[_name]
        )


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of the env called ``name`` ("garbage_sort" or "navigate")."""
    if name not in ENV_IDS:
        raise ValueError(f"unknown env {name!r}: expected one of {sorted(ENV_IDS)}")
    return gym.make(ENV_IDS[name], **kwargs)


__all__ = ["DEFAULT_MAX_EPISODE_STEPS", "ENV_IDS", "make_env", "make_expert", "tasks"]
