"""``observation="pixels"``: camera images and the robot's own state, no object, bin or landmark poses."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

import envs
from envs.real_arm import MujocoArmDriver, RealArmEnv


def _move_the_world(env: envs.gym.Env) -> None:
    """Shift what only perception should know: Navigate's landmarks, GarbageSort's objects on the table."""
    u = env.unwrapped
    if u.ENV_NAME == "navigate":
        for b in u.lm_body:
            u.model.body_pos[b][:2] += (0.3, -0.2)
    else:
        for k in u.present:
            q = u.obj_qadr[k]
            u.data.qpos[q : q + 2] += (0.05, 0.08)
    mujoco.mj_forward(u.model, u.data)


@pytest.mark.parametrize(
    "name,camera",
    [("navigate", "overhead"), ("navigate", "onboard"), ("garbage_sort", "scene"), ("garbage_sort", "wrist")],
)
def test_pixel_state_is_proprioception_and_the_world_is_only_in_the_image(name: str, camera: str) -> None:
    env = envs.make_env(name, image_size=32, observation="pixels", camera=camera)
    full = envs.make_env(name, image_size=32)
    u = env.unwrapped
    obs, _ = env.reset(seed=4)
    ref, _ = full.reset(seed=4)
    assert set(obs) == {"state", "image", "instruction"}
    assert obs["state"].shape == (u.PROPRIO_DIM,) == env.observation_space["state"].shape
    assert u.PROPRIO_DIM < u.STATE_DIM
    # The robot's values are the first PROPRIO_DIM of the full state, in the same world.
    np.testing.assert_array_equal(obs["state"], ref["state"][: u.PROPRIO_DIM])
    assert env.observation_space.contains(obs)
    before_state, before_image = obs["state"].copy(), obs["image"].copy()
    before_full = u._state().copy()
    _move_the_world(env)
    after = u._observation()
    # No pose leaks into the state (mj_forward re-derives the arm's values up to rounding).
    np.testing.assert_allclose(after["state"], before_state, atol=1e-6)
    assert not np.array_equal(u._state(), before_full)  # ... though the full state has them
    if camera in ("overhead", "scene"):  # the fixed cameras see the whole scene
        assert not np.array_equal(after["image"], before_image)


def test_pixels_need_an_image_and_a_known_camera() -> None:
    with pytest.raises(ValueError, match="image_size > 0"):
        envs.make_env("navigate", observation="pixels")
    with pytest.raises(ValueError, match="camera must be one of"):
        envs.make_env("garbage_sort", image_size=32, observation="pixels", camera="overhead")
    with pytest.raises(ValueError, match="observation must be one of"):
        envs.make_env("navigate", image_size=32, observation="lidar")


def test_real_arm_pixels_reads_only_the_arm_and_the_camera() -> None:
    driver = MujocoArmDriver(seed=1)
    env = RealArmEnv(driver, image_size=32, observation="pixels")
    obs, _ = env.reset()
    sim = envs.make_env("garbage_sort", image_size=32, observation="pixels")
    assert obs["state"].shape == sim.observation_space["state"].shape == (16,)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].any()
    obs, *_ = env.step(np.zeros(4, np.float32))
    assert env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="perception"):
        RealArmEnv(driver, image_size=32, observation="pixels", perception=dict)
    with pytest.raises(ValueError, match="image_size > 0"):
        RealArmEnv(driver, observation="pixels")
