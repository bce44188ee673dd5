"""MuJoCo tasks that speak language, their scripted experts, and the real-arm interface.

``import envs`` registers ``qtransformer/GarbageSort-v0``, ``qtransformer/Navigate-v0`` and the Meta-World
benchmarks (``qtransformer/MetaWorld-MT10-v0``, ...; ``envs/metaworld.py``) with Gymnasium. This package imports nothing else of the project: an agent reaches a simulator and a real
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
    # Meta-World benchmarks (the optional extra .[metaworld]; envs/metaworld.py)
    "metaworld_mt10": "qtransformer/MetaWorld-MT10-v0",
    "metaworld_mt50": "qtransformer/MetaWorld-MT50-v0",
    "metaworld_ml10": "qtransformer/MetaWorld-ML10-v0",
}
METAWORLD_ENVS: tuple[str, ...] = ("metaworld_mt10", "metaworld_mt50", "metaworld_ml10")
# Default time limits (the TimeLimit wrapper of gymnasium.make; override with max_episode_steps=...).
DEFAULT_MAX_EPISODE_STEPS: dict[str, int] = {
    "garbage_sort": 80,
    "navigate": 60,
    **{name: 500 for name in METAWORLD_ENVS},  # Meta-World's own max_path_length
}

_ENTRY_POINTS = {
    "garbage_sort": "envs.garbage_sort:GarbageSortEnv",
    "navigate": "envs.navigate:NavigateEnv",
    "metaworld_mt10": "envs.metaworld:MetaWorldMT10Env",
    "metaworld_mt50": "envs.metaworld:MetaWorldMT50Env",
    "metaworld_ml10": "envs.metaworld:MetaWorldML10Env",
}
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
DEFAULT_CONTROL_HZ: dict[str, float] = {
    "garbage_sort": 10.0,
    "navigate": 10.0,
    **{name: 80.0 for name in METAWORLD_ENVS},  # 5 physics steps of 2.5 ms
}


def make_env(name: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of the env called ``name`` (a key of ``ENV_IDS``).

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
    "METAWORLD_ENVS",
    "env_class",
    "make_env",
    "make_expert",
    "tasks",
]
