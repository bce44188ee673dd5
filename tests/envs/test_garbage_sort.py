"""GarbageSort: API conformance, determinism, expert quality and safety signals."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.garbage_sort import STATE_DIM
from tests.envs.helpers import run_expert


def test_check_env_passes_raw_and_made() -> None:
    env = envs.make_env("garbage_sort", image_size=32, render_mode="rgb_array", render_size=64)
    check_env(env.unwrapped)
    check_env(env)
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_observation_layout_and_image() -> None:
    env = envs.make_env("garbage_sort", image_size=64)
    obs, info = env.reset(seed=1, options={"task": "sort:can"})
    assert obs["state"].shape == (STATE_DIM,) and obs["state"].dtype == np.float32
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["image"].std() > 5  # a real picture, not a blank buffer
    assert "can" in obs["instruction"] and info["task"] == "sort:can"
    assert "image" not in envs.make_env("garbage_sort").reset(seed=1)[0]


def test_same_seed_same_episode() -> None:
    def rollout() -> list[np.ndarray]:
        env = envs.make_env("garbage_sort")
        obs, _ = env.reset(seed=7)
        rng = np.random.default_rng(0)
        states = [obs["state"]]
        for _ in range(15):
            obs, *_ = env.step(rng.uniform(-1, 1, 4))
            states.append(obs["state"])
        return states

    a, b = rollout(), rollout()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = envs.make_env("garbage_sort").reset(seed=8)[0]["state"]
    assert not np.array_equal(a[0], other)


@pytest.mark.parametrize(
    "task", ["sort:bottle", "throw_away:cup", "place:apple_core:recycling", "unplace:banana_peel", "sort_all"]
)
def test_expert_succeeds_without_violations(task: str) -> None:
    env = envs.make_env("garbage_sort", tasks="all")
    for seed in range(2):
        success, steps, violations = run_expert(env, seed, task)
        assert success and steps <= 80 and violations == [], (task, seed, steps, violations)


@pytest.mark.parametrize("task", ["sort:can", "place:bottle:trash"])
def test_expert_approach_depends_on_the_state_alone(task: str) -> None:
    """Until it closes the gripper, the expert acts as one that has just been made would from the same
    state: no hidden phase that a learner could not see (the funnel approach)."""
    env = envs.make_env("garbage_sort")
    obs, _ = env.reset(seed=3, options={"task": task})
    expert = envs.make_expert(env, seed=0)
    for step in range(40):
        a = expert.act(obs)
        np.testing.assert_allclose(a, envs.make_expert(env, seed=0).act(obs), atol=1e-6, err_msg=str(step))
        if expert.phase != "approach":
            break
        obs, *_ = env.step(a)
    assert expert.phase == "close" and step >= 3


def test_expert_gain_scales_the_command_below_saturation() -> None:
    """The servo commands ``gain`` times the error over ``MAX_STEP``: proportional, not saturated, over
    the last ``MAX_STEP / gain`` of the approach (what an argmax-over-bins learner can imitate)."""
    env = envs.make_env("garbage_sort")
    obs, _ = env.reset(seed=3, options={"task": "sort:can"})
    full, gentle = envs.make_expert(env, gain=1.0), envs.make_expert(env, gain=0.4)
    a_full, a_gentle = full.act(obs)[:3], gentle.act(obs)[:3]
    proportional = np.abs(a_full) < 1.0
    assert proportional.any()
    np.testing.assert_allclose(a_gentle[proportional], 0.4 * a_full[proportional], atol=1e-5)
    assert np.all(np.abs(a_gentle) <= np.abs(a_full) + 1e-6)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="gain"):
            envs.make_expert(env, gain=bad)
    with pytest.raises(ValueError, match="GarbageSort expert only"):
        envs.make_expert(envs.make_env("navigate"), gain=0.5)


def test_deliberate_failures_fail() -> None:
    env = envs.make_env("garbage_sort")
    for seed in range(3):
        success, steps, _ = run_expert(env, seed, "sort:can", fail_prob=1.0)
        assert not success and steps == 80  # runs to the time limit


def test_driving_into_the_table_and_out_of_the_workspace_is_reported() -> None:
    env = envs.make_env("garbage_sort", max_distractors=0)
    env.reset(seed=0, options={"task": "sort:wrapper"})
    seen = set()
    for _ in range(8):
        _, _, _, _, info = env.step(np.array([0.0, 0.0, -1.0, 1.0]))
        seen |= set(info["safety_violations"])
        assert info["safety_violation"] == bool(info["safety_violations"])
    assert {"table_collision", "workspace_exit"} <= seen
    _, _, _, _, info = env.step(np.zeros(4))
    env.reset(seed=0, options={"task": "sort:wrapper"})
    _, _, _, _, info = env.step(np.zeros(4))
    assert not info["safety_violation"]


def test_expert_ignores_leaves_the_grip_bins_and_object_positions():
    from envs.garbage_sort import EXPERT_IGNORES, OBJ_SLOT, STATE_HEAD

    env = envs.make_env("garbage_sort", max_distractors=0)
    obs, _ = env.reset(seed=1, options={"task": "sort:bottle"})
    u, s = env.unwrapped, obs["state"]
    kept = np.array([i for i in range(STATE_DIM) if i not in set(EXPERT_IGNORES)])
    assert len(kept) == 3 + 2 + 6 + 4 * len(envs.tasks.OBJECT_KINDS)
    np.testing.assert_allclose(s[kept[:3]], u.grip_pos(), atol=1e-6)
    slot = STATE_HEAD + OBJ_SLOT * envs.tasks.OBJECT_KINDS.index("bottle")
    assert set(range(slot, slot + 4)) <= set(kept)  # the mask and the position
    np.testing.assert_allclose(s[slot + 1 : slot + 4], u.object_pos("bottle"), atol=1e-4)
    assert not set(range(slot + 4, slot + OBJ_SLOT)) & set(kept)  # orientation and colour left out


def test_start_jitter_moves_the_first_pose_and_the_expert_still_succeeds() -> None:
    home = envs.make_env("garbage_sort", tasks="all")
    jit = envs.make_env("garbage_sort", tasks="all", start_jitter=0.1)
    starts = []
    for seed in range(6):
        home.reset(seed=seed, options={"task": "sort:can"})
        obs, _ = jit.reset(seed=seed, options={"task": "sort:can"})
        g = jit.unwrapped.grip_pos()
        np.testing.assert_allclose(obs["state"][:3], g, atol=1e-6)  # the observation shows the moved hand
        starts.append(g - home.unwrapped.grip_pos())
        assert jit.unwrapped.held_kind() is None and abs(obs["state"][7:10]).max() < 0.05  # at rest, empty
    off = np.array(starts)
    assert np.abs(off[:, :2]).max() <= 0.1 + 0.01 and np.abs(off[:, 2]).max() <= 0.05 + 0.01
    assert np.linalg.norm(off[:, :2], axis=1).mean() > 0.03  # it really moves
    for seed in range(3):
        for task in ("sort:bottle", "place:apple_core:recycling"):
            success, _, violations = run_expert(jit, seed, task)
            assert success and violations == [], (task, seed, violations)
    with pytest.raises(ValueError, match="start_jitter"):
        envs.make_env("garbage_sort", start_jitter=0.5)
