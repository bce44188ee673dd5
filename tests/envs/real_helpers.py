"""A recording stand-in arm for unit tests of the safety layer's arithmetic."""

from __future__ import annotations

import numpy as np


class RecordingArm:
    """Remembers what reached it; the measured pose stays where it was put."""

    def __init__(self, position: tuple[float, float, float], yaw: float = 0.0) -> None:
        self.position, self.yaw = np.array(position, float), yaw
        self.sent: list[tuple[np.ndarray, float, float]] = []
        self.stops = 0
        self._gripper = 0.0

    def measured_ee(self) -> tuple[np.ndarray, float]:
        return self.position.copy(), self.yaw

    def send_ee(self, position: np.ndarray, yaw: float) -> None:
        self.sent.append((np.array(position), yaw, self._gripper))

    def send_gripper(self, closure: float) -> None:
        self._gripper = closure

    def stop(self) -> None:
        self.stops += 1
