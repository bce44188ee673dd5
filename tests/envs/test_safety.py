"""The arm safety layer and RealArmEnv, exercised through the MuJoCo-backed driver."""

from __future__ import annotations

import time

import numpy as np
import pytest

from envs.garbage_sort import STATE_DIM
from envs.real_arm import ArmDriver, MujocoArmDriver, RealArmEnv
from envs.safety import EmergencyStopError, SafetyConfig, SafetyLayer
from tests.envs.real_helpers import RecordingArm


def test_mujoco_driver_implements_the_protocol() -> None:
    driver = MujocoArmDriver(seed=0)
    assert isinstance(driver, ArmDriver)
    state = driver.read_state()
    assert state.ee_position.shape == (3,) and len(state.joint_positions) == 6


def test_workspace_clipping() -> None:
    arm = RecordingArm(position=(0.9, 0.0, 0.1))
    layer = SafetyLayer(arm, SafetyConfig(watchdog_timeout=0))
    report = layer.command(np.array([0.94, 0.0, 0.1]), 0.0, 0.0)
    assert report.violations == ["workspace_exit"]
    np.testing.assert_allclose(arm.sent[-1][0], [0.92, 0.0, 0.1])


def test_max_step_per_command() -> None:
    arm = RecordingArm(position=(0.5, 0.0, 0.1))
    layer = SafetyLayer(arm, SafetyConfig(max_step=0.02, watchdog_timeout=0))
    report = layer.command(np.array([0.7, -0.3, 0.1]), 2.0, 1.0)
    np.testing.assert_allclose(arm.sent[-1][0], [0.52, -0.02, 0.1])
    assert arm.sent[-1][1] == pytest.approx(0.3)
    assert set(report.violations) == {"max_step", "max_yaw_step"}
    layer.command(np.array([0.51, 0.0, 0.1]), 0.0, 0.5)
    assert layer.command(np.array([0.5, 0.0, 0.11]), 0.0, 0.5).violations == []


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_commands_are_rejected(bad: float) -> None:
    arm = RecordingArm(position=(0.5, 0.0, 0.1))
    layer = SafetyLayer(arm, SafetyConfig(watchdog_timeout=0))
    with pytest.raises(ValueError, match="non-finite"):
        layer.command(np.array([0.5, bad, 0.1]), 0.0, 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        layer.command(np.array([0.5, 0.0, 0.1]), bad, 0.0)
    assert arm.sent == []  # nothing reached the arm


def test_watchdog_stops_a_stale_arm_and_rearms() -> None:
    arm = RecordingArm(position=(0.5, 0.0, 0.1))
    layer = SafetyLayer(arm, SafetyConfig(watchdog_timeout=0.1))
    try:
        time.sleep(0.25)
        assert arm.stops == 0  # not armed before the first command
        layer.command(np.array([0.5, 0.0, 0.1]), 0.0, 0.0)
        for _ in range(5):  # fresh commands keep it quiet
            time.sleep(0.04)
            layer.command(np.array([0.5, 0.0, 0.1]), 0.0, 0.0)
        assert arm.stops == 0
        time.sleep(0.3)
        assert arm.stops == 1 and layer.watchdog_trips == 1  # stopped once, not repeatedly
        layer.command(np.array([0.5, 0.0, 0.1]), 0.0, 0.0)
        time.sleep(0.3)
        assert arm.stops == 2
    finally:
        layer.close()


def test_emergency_stop_latches_until_reset() -> None:
    arm = RecordingArm(position=(0.5, 0.0, 0.1))
    layer = SafetyLayer(arm, SafetyConfig(watchdog_timeout=0))
    layer.emergency_stop("operator")
    assert arm.stops == 1 and layer.estopped
    for _ in range(2):
        with pytest.raises(EmergencyStopError, match="operator"):
            layer.command(np.array([0.5, 0.0, 0.1]), 0.0, 0.0)
    assert arm.sent == []
    layer.reset_estop()
    layer.command(np.array([0.5, 0.0, 0.1]), 0.0, 0.0)
    assert len(arm.sent) == 1


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="below"):
        SafetyConfig(workspace_low=(0.0, 0.0, 0.5), workspace_high=(1.0, 1.0, 0.2))
    with pytest.raises(ValueError, match="positive"):
        SafetyConfig(max_step=0.0)


def test_real_arm_env_moves_the_sim_arm_safely() -> None:
    driver = MujocoArmDriver(seed=0, task="sort:can")
    env = RealArmEnv(driver, SafetyConfig(watchdog_timeout=0), image_size=32, instruction="sort the red can")
    try:
        obs, info = env.reset(options={"instruction": "put the red can in the recycling bin"})
        assert obs["state"].shape == (STATE_DIM,) and obs["image"].shape == (32, 32, 3)
        assert obs["instruction"] == "put the red can in the recycling bin"
        start = driver.read_state().ee_position
        for _ in range(3):
            obs, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0, -1.0]))
        moved = driver.read_state().ee_position - start
        assert 0.08 < moved[0] < 0.16 and abs(moved[1]) < 0.01  # three 5 cm steps, minus tracking lag
        for _ in range(12):  # push down through the table: clipped at the workspace floor
            obs, _, _, _, info = env.step(np.array([0.0, 0.0, -1.0, -1.0]))
        assert "workspace_exit" in info["safety_violations"]
        assert driver.read_state().ee_position[2] > -0.01
        with pytest.raises(ValueError, match="non-finite"):
            env.step(np.array([np.nan, 0, 0, 0]))
        env.emergency_stop("test")
        with pytest.raises(EmergencyStopError):
            env.step(np.zeros(4))
        assert driver.stop_count == 1
    finally:
        env.close()


def test_watchdog_holds_the_simulated_arm() -> None:
    driver = MujocoArmDriver(seed=0)
    env = RealArmEnv(driver, SafetyConfig(watchdog_timeout=0.1))
    try:
        env.reset()
        env.step(np.array([1.0, 0.0, 0.0, 0.0]))
        time.sleep(0.3)
        assert driver.stop_count == 1 and env.safety.watchdog_trips == 1
        held = driver.read_state().ee_position
        driver.sync(0.5)  # time passes with no commands: the arm stays put
        np.testing.assert_allclose(driver.read_state().ee_position, held, atol=0.01)
    finally:
        env.close()
