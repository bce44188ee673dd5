"""Navigate: API conformance, determinism, expert quality, collisions."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.navigate import STATE_DIM
from tests.envs.helpers import run_expert


def test_check_env_passes_raw_and_made() -> None:
    env = envs.make_env("navigate", image_size=32, render_mode="rgb_array", render_size=64)
    check_env(env.unwrapped)
    check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (STATE_DIM,) and obs["state"].dtype == np.float32
    assert obs["image"].shape == (32, 32, 3) and obs["image"].dtype == np.uint8


def test_same_seed_same_episode() -> None:
    def rollout() -> list[np.ndarray]:
        env = envs.make_env("navigate")
        obs, _ = env.reset(seed=3)
        rng = np.random.default_rng(0)
        states = [obs["state"]]
        for _ in range(20):
            obs, *_ = env.step(rng.uniform(-1, 1, 3))
            states.append(obs["state"])
        return states

    a, b = rollout(), rollout()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_expert_reaches_the_named_landmark() -> None:
    env = envs.make_env("navigate", tasks="all")
    for seed, task in enumerate(
        ["go_to:red_cone", "go_to:blue_cone", "go_to:yellow_pillar", "go_to:green_box"] * 2
    ):
        success, steps, violations = run_expert(env, seed, task)
        assert success and steps <= 60 and violations == [], (task, seed)
        pos, _ = env.unwrapped.base_pose()
        assert np.linalg.norm(env.unwrapped.landmark_pos(env.unwrapped.goal_index) - pos) < 0.45


def test_wrong_landmark_failure_and_collision_reporting() -> None:
    env = envs.make_env("navigate")
    success, steps, _ = run_expert(env, 0, fail_prob=1.0)
    assert not success and steps == 60
    env.reset(seed=0)
    seen = []
    for _ in range(40):  # full speed forward: the arena is 3 m wide, so the base hits something
        _, _, terminated, _, info = env.step(np.array([1.0, 0.0, 0.0]))
        seen += info["safety_violations"]
        if terminated:
            break
    assert "collision" in seen


def test_control_rate_sets_step_length_time_limit_and_fps() -> None:
    slow = envs.make_env("navigate", control_hz=4)
    assert slow.spec.max_episode_steps == 24  # the same 6 s as 60 steps at 10 Hz
    assert slow.unwrapped.metadata["render_fps"] == 4 and slow.unwrapped.control_dt == 0.25
    slow.reset(seed=0)
    t0 = slow.unwrapped.data.time
    slow.step(np.zeros(3))
    assert np.isclose(slow.unwrapped.data.time - t0, 0.25)
    # The expert adapts its gains to the rate and still arrives.
    success, steps, violations = run_expert(slow, 1, "go_to:red_cone")
    assert success and steps <= 24 and violations == []
    slow.close()
    for bad in (0, 3, 100):  # 3 Hz is not a whole number of 10 ms physics steps
        with pytest.raises(ValueError, match="control_hz"):
            envs.make_env("navigate", control_hz=bad)
