"""The safety layer every arm command passes through, in simulation and on hardware alike.

Checks, in order, for each end-effector command:
1. emergency stop latched -> ``EmergencyStopError`` (nothing reaches the arm until ``reset_estop()``);
2. NaN/inf anywhere in the command -> ``ValueError`` (a policy bug must not become a motion);
3. step limit: the target may move at most ``max_step`` metres per axis (and ``max_yaw_step`` rad)
   from the measured pose, so one bad action cannot fling the arm;
4. workspace: the target is clipped into an axis-aligned box.
A watchdog thread stops the arm when no command arrived for ``watchdog_timeout`` seconds (a crashed or
stalled policy), and re-arms on the next command. The layer talks to the arm only through the small
``SafetyTarget`` protocol, so it is tested against the MuJoCo driver exactly as it runs on hardware.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class EmergencyStopError(RuntimeError):
    """Raised for every command while the emergency stop is latched."""


class SafetyTarget(Protocol):
    def measured_ee(self) -> tuple[np.ndarray, float]: ...
    def send_ee(self, position: np.ndarray, yaw: float) -> None: ...
    def send_gripper(self, closure: float) -> None: ...
    def stop(self) -> None: ...


@dataclass
class SafetyConfig:
    workspace_low: tuple[float, float, float] = (0.15, -0.42, 0.0)
    """Lower corner of the allowed end-effector box (m, robot base frame)."""
    workspace_high: tuple[float, float, float] = (0.92, 0.42, 0.32)
    """Upper corner of the allowed end-effector box (m)."""
    max_step: float = 0.05
    """Largest move per command along each axis (m)."""
    max_yaw_step: float = 0.3
    """Largest yaw change per command (rad)."""
    watchdog_timeout: float = 0.5
    """Stop the arm when commands are older than this (s); 0 disables the watchdog."""

    def __post_init__(self) -> None:
        low, high = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if low.shape != (3,) or high.shape != (3,) or not np.all(np.isfinite(low) & np.isfinite(high)):
            raise ValueError("workspace_low/high must be three finite numbers each")
        if np.any(low >= high):
            raise ValueError(
                f"workspace_low {tuple(low)} must be below workspace_high {tuple(high)} on every axis"
            )
        if not (self.max_step > 0 and self.max_yaw_step > 0):
            raise ValueError("max_step and max_yaw_step must be positive")
        if not self.watchdog_timeout >= 0:
            raise ValueError("watchdog_timeout must be >= 0")


@dataclass
class CommandReport:
    """What the layer changed in one command; ``violations`` feeds ``info["safety_violations"]``."""

    target: np.ndarray
    yaw: float
    violations: list[str] = field(default_factory=list)


class SafetyLayer:
    def __init__(self, arm: SafetyTarget, config: SafetyConfig | None = None) -> None:
        self.arm = arm
        self.config = config or SafetyConfig()
        self._low = np.asarray(self.config.workspace_low, float)
        self._high = np.asarray(self.config.workspace_high, float)
        self._lock = threading.Lock()
        self._estop_reason: str | None = None
        self._last_command: float | None = None
        self.watchdog_trips = 0
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        if self.config.watchdog_timeout > 0:
            self._thread = threading.Thread(target=self._watch, name="arm-watchdog", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ commands
    def command(self, position: np.ndarray, yaw: float, gripper: float) -> CommandReport:
        """Check, limit and forward one end-effector target and gripper closure (0 open .. 1 closed)."""
        with self._lock:
            if self._estop_reason is not None:
                raise EmergencyStopError(f"emergency stop latched ({self._estop_reason}); call reset_estop()")
            target = np.asarray(position, dtype=float)
            if target.shape != (3,):
                raise ValueError(f"end-effector target must have shape (3,), got {target.shape}")
            if not (np.all(np.isfinite(target)) and np.isfinite(yaw) and np.isfinite(gripper)):
                raise ValueError(
                    f"non-finite arm command rejected: position={target}, yaw={yaw}, gripper={gripper}"
                )
            violations = []
            current, current_yaw = self.arm.measured_ee()
            step = np.clip(target - current, -self.config.max_step, self.config.max_step)
            if np.any(np.abs(step - (target - current)) > 1e-9):
                violations.append("max_step")
            limited = current + step
            clipped = np.clip(limited, self._low, self._high)
            if np.any(np.abs(clipped - limited) > 1e-9):
                violations.append("workspace_exit")
            dyaw = float(np.clip(yaw - current_yaw, -self.config.max_yaw_step, self.config.max_yaw_step))
            if abs(dyaw - (yaw - current_yaw)) > 1e-9:
                violations.append("max_yaw_step")
            self.arm.send_ee(clipped, current_yaw + dyaw)
            self.arm.send_gripper(float(np.clip(gripper, 0.0, 1.0)))
            self._last_command = time.monotonic()
            return CommandReport(clipped, current_yaw + dyaw, violations)

    # ------------------------------------------------------------------ emergency stop
    def emergency_stop(self, reason: str = "requested") -> None:
        """Stop the arm now and refuse commands until ``reset_estop()``."""
        with self._lock:
            self._estop_reason = reason
            self._last_command = None
            self.arm.stop()

    def reset_estop(self) -> None:
        """Release the latch; the operator has checked the cell is safe."""
        with self._lock:
            self._estop_reason = None

    @property
    def estopped(self) -> bool:
        return self._estop_reason is not None

    # ------------------------------------------------------------------ watchdog
    def _watch(self) -> None:
        period = self.config.watchdog_timeout / 4
        while not self._closed.wait(period):
            with self._lock:
                last = self._last_command
                if last is not None and time.monotonic() - last > self.config.watchdog_timeout:
                    self.arm.stop()
                    self.watchdog_trips += 1
                    self._last_command = None  # re-armed by the next command

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
