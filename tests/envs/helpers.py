"""Rollout helper shared by the env tests."""

from __future__ import annotations

from typing import Any

import envs


def run_expert(
    env: Any, seed: int, task: str | None = None, **expert_kwargs: Any
) -> tuple[bool, int, list[str]]:
    """One expert episode; returns (success, steps, every safety violation seen)."""
    obs, _ = env.reset(seed=seed, options={"task": task} if task else None)
    expert = envs.make_expert(env, seed=seed, **expert_kwargs)
    done, steps, seen, info = False, 0, [], {}
    while not done:
        obs, reward, terminated, truncated, info = env.step(expert.act(obs))
        assert reward == float(info["is_success"])
        steps += 1
        seen += info["safety_violations"]
        done = terminated or truncated
    return bool(info["is_success"]), steps, seen
