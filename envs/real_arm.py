"""A real arm behind the GarbageSort observation/action API, and a MuJoCo driver to test it with.

``ArmDriver`` is everything the agent side needs from a robot; a vendor SDK or ROS 2 bridge implements
it (see docs/real-arm.md). ``RealArmEnv`` turns GarbageSort actions into end-effector targets, sends
them through ``SafetyLayer`` (workspace clip, step limit, NaN rejection, watchdog, e-stop) and builds
the same 124-value ``state`` the simulator gives. Object slots are filled by an optional perception
callable; without one they are zero with mask 0, which a policy sees as "no object known". With
``observation="pixels"`` the state is the arm's own 16 values and the policy sees the world only
through ``read_camera``: the mode that needs no perception at all.
``MujocoArmDriver`` drives the GarbageSort simulation through the same protocol, so the env and the
safety layer are exercised for real in tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import mujoco
import numpy as np

from envs import garbage_scene as S
from envs import tasks as T
from envs.common import INSTRUCTION_CHARSET, check_observation, check_size
from envs.garbage_sort import (
    GRIPPER_DIM,
    MAX_STEP,
    MAX_YAW_STEP,
    OBJ_SLOT,
    PROPRIO_DIM,
    GarbageSortEnv,
    garbage_sort_spaces,
)
from envs.safety import SafetyConfig, SafetyLayer


@dataclass
class ArmState:
    joint_positions: np.ndarray
    """Joint angles (rad); the first six go into the observation."""
    ee_position: np.ndarray
    """Grip point between the fingertips (m, base frame)."""
    ee_yaw: float
    """Rotation of the gripper about the vertical (rad)."""
    gripper: float
    """Closure: 0 open, 1 closed."""
    grasping: bool
    """Whether the gripper reports an object between closed fingers."""


@runtime_checkable
class ArmDriver(Protocol):
    """What a physical (or simulated) arm must offer. All poses in the robot base frame, metres."""

    def read_state(self) -> ArmState: ...
    def command_ee(self, position: np.ndarray, yaw: float) -> None: ...
    def command_gripper(self, closure: float) -> None: ...
    def read_camera(self, size: int) -> np.ndarray | None: ...
    def stop(self) -> None: ...
    def sync(self, dt: float) -> None:
        """Return when ``dt`` seconds of control have passed (hardware: wait; simulation: step)."""
        ...


class _SafetyAdapter:
    """Presents an ``ArmDriver`` as the safety layer's ``SafetyTarget``."""

    def __init__(self, driver: ArmDriver) -> None:
        self.driver = driver

    def measured_ee(self) -> tuple[np.ndarray, float]:
        s = self.driver.read_state()
        return np.asarray(s.ee_position, float), float(s.ee_yaw)

    def send_ee(self, position: np.ndarray, yaw: float) -> None:
        self.driver.command_ee(position, yaw)

    def send_gripper(self, closure: float) -> None:
        self.driver.command_gripper(closure)

    def stop(self) -> None:
        self.driver.stop()


ObjectPoses = dict[str, tuple[np.ndarray, np.ndarray, str]]  # kind -> (position, quaternion, colour)


class RealArmEnv(gym.Env):
    """GarbageSort's API over an ``ArmDriver``. Reward and success come from ``success_fn`` if given."""

    # An instance attribute in gym.Env, so not a ClassVar.
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012
    CAUTIOUS_EXEMPT_DIMS = GarbageSortEnv.CAUTIOUS_EXEMPT_DIMS

    def __init__(
        self,
        driver: ArmDriver,
        safety: SafetyConfig | None = None,
        image_size: int = 0,
        use_yaw: bool = False,
        instruction: str = "sort the objects on the table",
        bin_positions: dict[str, tuple[float, float]] | None = None,
        perception: Callable[[], ObjectPoses] | None = None,
        success_fn: Callable[[], bool] | None = None,
        control_dt: float = S.CONTROL_DT,
        observation: str = "state",
    ) -> None:
        if not isinstance(driver, ArmDriver):
            raise ValueError(f"driver must implement ArmDriver, got {type(driver).__name__}")
        check_size("image_size", image_size, allow_zero=True)
        check_observation(observation, image_size)
        if observation == "pixels" and perception is not None:
            raise ValueError("observation='pixels' reads no object poses: leave perception as None")
        if not control_dt > 0:
            raise ValueError(f"control_dt must be positive, got {control_dt}")
        self.driver = driver
        self.safety = SafetyLayer(_SafetyAdapter(driver), safety)
        self.image_size = int(image_size)
        self.observation = observation
        self.use_yaw = bool(use_yaw)
        self.instruction = self._check_instruction(instruction)
        self.bin_positions = bin_positions or dict(zip(T.BINS, S.BIN_SLOTS))
        if set(self.bin_positions) != set(T.BINS):
            raise ValueError(f"bin_positions must give exactly the bins {T.BINS}")
        self.perception = perception
        self.success_fn = success_fn
        self.control_dt = float(control_dt)
        self.action_space, self.observation_space = garbage_sort_spaces(
            self.use_yaw, self.image_size, observation
        )
        self._prev_ee = np.zeros(3)

    @staticmethod
    def _check_instruction(text: str) -> str:
        if (
            not isinstance(text, str)
            or not 0 < len(text) <= 200
            or any(c not in INSTRUCTION_CHARSET for c in text)
        ):
            raise ValueError(
                f"instruction must be 1-200 characters from the instruction charset, got {text!r}"
            )
        return text

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Starts a task; ``options={"instruction": ...}`` sets what to do. The world is never reset."""
        super().reset(seed=seed)
        if options and "instruction" in options:
            self.instruction = self._check_instruction(options["instruction"])
        self._prev_ee = np.asarray(self.driver.read_state().ee_position, float)
        info = {"task": "real", "is_success": False, "safety_violation": False, "safety_violations": []}
        return self._observation(), {**info, "human_reset_needed": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"non-finite action rejected: {a}")
        a = np.clip(a, -1.0, 1.0)
        state = self.driver.read_state()
        self._prev_ee = np.asarray(state.ee_position, float)
        target = self._prev_ee + a[:3] * MAX_STEP
        yaw = state.ee_yaw + a[4] * MAX_YAW_STEP if self.use_yaw else 0.0
        report = self.safety.command(target, yaw, (a[GRIPPER_DIM] + 1.0) / 2.0)
        self.driver.sync(self.control_dt)
        success = bool(self.success_fn()) if self.success_fn is not None else False
        info = {
            "task": "real",
            "is_success": success,
            "safety_violation": bool(report.violations),
            "safety_violations": list(report.violations),
            "human_reset_needed": False,
        }
        return self._observation(), float(success), success, False, info

    def _observation(self) -> dict[str, Any]:
        s = self.driver.read_state()
        ee = np.asarray(s.ee_position, float)
        joints = np.zeros(6)
        jp = np.asarray(s.joint_positions, float)[:6]
        joints[: len(jp)] = jp
        head = [ee, np.array([np.sin(s.ee_yaw), np.cos(s.ee_yaw), s.gripper, float(s.grasping)])]
        head += [(ee - self._prev_ee) / self.control_dt, joints]
        if self.observation == "pixels":
            state = np.concatenate(head)
            assert len(state) == PROPRIO_DIM
        else:
            state = self._full_state(head)
        obs: dict[str, Any] = {"state": state.astype(np.float32), "instruction": self.instruction}
        if self.image_size:
            frame = self.driver.read_camera(self.image_size)
            obs["image"] = (
                np.zeros((self.image_size, self.image_size, 3), np.uint8)
                if frame is None
                else np.asarray(frame, np.uint8)
            )
        return obs

    def _full_state(self, head: list[np.ndarray]) -> np.ndarray:
        head += [np.asarray(self.bin_positions[b], float) for b in T.BINS]
        poses = self.perception() if self.perception is not None else {}
        slots = []
        for k in T.OBJECT_KINDS:
            if k in poses:
                pos, quat, colour = poses[k]
                onehot = np.zeros(len(T.COLOUR_NAMES))
                onehot[T.COLOUR_NAMES.index(colour)] = 1.0
                slots.append(np.concatenate([[1.0], pos, quat, onehot]))
            else:
                slots.append(np.zeros(OBJ_SLOT))
        return np.concatenate([np.concatenate(head), *slots])

    def emergency_stop(self, reason: str = "requested") -> None:
        self.safety.emergency_stop(reason)

    def close(self) -> None:
        self.safety.close()
        close = getattr(self.driver, "close", None)
        if callable(close):
            close()


class MujocoArmDriver:
    """``ArmDriver`` over the GarbageSort simulation (thread-safe: the watchdog may call ``stop``)."""

    def __init__(self, sim: GarbageSortEnv | None = None, seed: int = 0, task: str | None = None) -> None:
        self.sim = sim if sim is not None else GarbageSortEnv(tasks="all")
        self.sim.reset(seed=seed, options={"task": task} if task else None)
        self._lock = threading.Lock()
        self.stop_count = 0
        self._yaw = 0.0

    def read_state(self) -> ArmState:
        with self._lock:
            sim = self.sim
            d = sim.data
            return ArmState(
                joint_positions=d.qpos[sim.arm_qadr].copy(),
                ee_position=sim.grip_pos(),
                ee_yaw=sim.hand_yaw(),
                gripper=float(np.mean(d.qpos[sim.finger_qadr])) / S.FINGER_TRAVEL,
                grasping=sim.held_kind() is not None,
            )

    def command_ee(self, position: np.ndarray, yaw: float) -> None:
        with self._lock:
            self._yaw = float(yaw)
            self.sim._set_target(np.asarray(position, float), self._yaw)

    def command_gripper(self, closure: float) -> None:
        with self._lock:
            self.sim.data.ctrl[:] = S.FINGER_TRAVEL * float(closure)

    def read_camera(self, size: int) -> np.ndarray | None:
        with self._lock:
            return self.sim._camera_image(size, "image", self.sim.CAMERAS[self.sim.camera])

    def stop(self) -> None:
        """Hold the current pose: the target jumps to where the hand is now."""
        with self._lock:
            self.stop_count += 1
            self.sim._set_target(self.sim.grip_pos(), self.sim.hand_yaw())

    def sync(self, dt: float) -> None:
        with self._lock:
            n = max(1, round(dt / self.sim.model.opt.timestep))
            mujoco.mj_step(self.sim.model, self.sim.data, nstep=n)

    def close(self) -> None:
        self.sim.close()
