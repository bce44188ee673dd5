"""MuJoCo tasks that speak language, their scripted experts, and the real-arm interface.

``import envs`` registers ``qtransformer/GarbageSort-v0`` and ``qtransformer/Navigate-v0`` with
Gymnasium. This package imports nothing else of the project: an agent reaches a simulator and a real
robot through the same observation/action API.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from envs import tasks
from envs.experts import make_expert

if TYPE_CHECKING:
    from envs.base import LanguageTaskEnv

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


def env_class(name: str) -> type[LanguageTaskEnv]:
    """The class behind env ``name`` (its ``CAMERAS``, ``STATE_DIM``, ``PROPRIO_DIM``)."""
    if name not in _ENTRY_POINTS:
        raise ValueError(f"unknown env {name!r}; choose from {sorted(_ENTRY_POINTS)}")
    module, _, cls = _ENTRY_POINTS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


# Control rate the default time limits are counted at.
DEFAULT_CONTROL_HZ: dict[str, float] = {"garbage_sort": 10.0, "navigate": 10.0}


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of the env called ``name`` ("garbage_sort" or "navigate").

    With a ``control_hz`` other than the default and no ``max_episode_steps``, the time limit keeps the
    same number of seconds (Navigate: 6 s).
    """
    if name not in ENV_IDS:
        raise ValueError(f"unknown env {name!r}: expected one of {sorted(ENV_IDS)}")
    hz = kwargs.get("control_hz")
    if hz is not None and kwargs.get("max_episode_steps") is None and hz > 0:
        seconds = DEFAULT_MAX_EPISODE_STEPS[name] / DEFAULT_CONTROL_HZ[name]
        kwargs["max_episode_steps"] = max(1, round(seconds * hz))
    return gym.make(ENV_IDS[name], **kwargs)


__all__ = [
    "DEFAULT_CONTROL_HZ",
    "DEFAULT_MAX_EPISODE_STEPS",
    "ENV_IDS",
    "env_class",
    "make_env",
    "make_expert",
    "tasks",
]
