"""Reset-free practice: the task graph is followed and human resets are counted."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs import tasks as T


def test_garbage_chain_follows_the_task_graph() -> None:
    env = envs.make_env("garbage_sort", reset_free=True)
    obs, info = env.reset(seed=0)
    expert = envs.make_expert(env, seed=0)
    prev, chain = info["task"], []
    for _ in range(4):
        done = False
        while not done:
            obs, _, terminated, truncated, step_info = env.step(expert.act(obs))
            done = terminated or truncated
        u = env.unwrapped
        before = u.present, {k: u.object_pos(k) for k in u.present if u.location(k) != "held"}
        obs, info = env.reset()
        chain.append((prev, info["task"], step_info["is_success"], info["human_reset_needed"]))
        if not info["human_reset_needed"]:
            # the world was kept: same objects, nothing that was let go moved
            assert env.unwrapped.present == before[0]
            for k, p in before[1].items():
                assert np.linalg.norm(env.unwrapped.object_pos(k) - p) < 0.05
            allowed = T.GARBAGE_TASK_GRAPH[T.family(prev)]
            assert T.family(info["task"]) in allowed or info["task"] == prev
        prev = info["task"]
    assert any(s for _, _, s, _ in chain)
    assert sum(h for *_, h in chain) == env.unwrapped.human_resets


def test_put_in_bin_is_followed_by_taking_it_out() -> None:
    env = envs.make_env("garbage_sort", reset_free=True, max_distractors=0)
    obs, _ = env.reset(seed=1, options={"task": "sort:can"})
    expert = envs.make_expert(env, seed=0)
    done = False
    while not done:
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        done = terminated or truncated
    assert terminated
    obs, info = env.reset()
    assert info["task"] == "unplace:can" and not info["human_reset_needed"]
    assert env.unwrapped.location("can") == "recycling"


def test_human_reset_when_no_task_can_follow() -> None:
    env = envs.make_env("garbage_sort", reset_free=True, max_distractors=0)
    env.reset(seed=2, options={"task": "sort:can"})
    assert env.unwrapped.human_resets == 0
    # The can is on the table, so taking it out of a bin cannot follow: a person must set the world up.
    _, info = env.reset(options={"task": "unplace:can"})
    assert info["human_reset_needed"] and env.unwrapped.human_resets == 1
    assert env.unwrapped.location("can") in T.BINS
    _, info = env.reset(options={"task": "unplace:can"})  # feasible now: no human needed
    assert not info["human_reset_needed"] and env.unwrapped.human_resets == 1


def test_navigate_chain_keeps_the_world() -> None:
    env = envs.make_env("navigate", reset_free=True, tasks="all")
    obs, info = env.reset(seed=0)
    expert = envs.make_expert(env, seed=0)
    layout = [env.unwrapped.landmark_pos(i) for i in range(5)]
    for _ in range(3):
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(expert.act(obs))
            done = terminated or truncated
        assert terminated
        obs, info = env.reset()
        assert not info["human_reset_needed"]
        assert all(np.array_equal(p, env.unwrapped.landmark_pos(i)) for i, p in enumerate(layout))


def test_a_forced_task_that_cannot_start_is_undone_or_rebuilt_for() -> None:
    """Practising one task reset-free: after succeeding at it, ``if_infeasible="undo"`` starts a task
    that undoes it (no person); without it the same reset rebuilds the world (a person)."""
    env = envs.make_env("garbage_sort", reset_free=True, max_distractors=0, tasks="all")
    target = "place:can:compost"  # held out: what fine-tuning practises
    obs, _ = env.reset(seed=1, options={"task": target})
    expert = envs.make_expert(env, seed=0)

    def succeed(obs):
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
        assert info["is_success"]

    succeed(obs)
    assert not env.unwrapped.feasible(target)
    obs, info = env.reset(options={"task": target, "if_infeasible": "undo"})
    assert info["task"] == "unplace:can" and not info["human_reset_needed"]
    succeed(obs)  # the can is back on the table: the target can start again, still without a person
    assert env.unwrapped.feasible(target)
    obs, info = env.reset(options={"task": target, "if_infeasible": "undo"})
    assert info["task"] == target and env.unwrapped.human_resets == 0
    succeed(obs)
    _, info = env.reset(options={"task": target})  # the default: a person rebuilds the world for it
    assert info["task"] == target and info["human_reset_needed"] and env.unwrapped.human_resets == 1
    with pytest.raises(ValueError, match="if_infeasible"):
        env.reset(options={"task": target, "if_infeasible": "skip"})
