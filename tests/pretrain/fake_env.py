"""A tiny stand-in for ``envs`` with the same API, so data tests run without MuJoCo.

Point-reaching on a line: the state is (position, goal); the expert moves toward the goal and succeeds
(reward 1, terminated) within a few steps; ``fail_prob=1`` makes it walk away until the time limit.
``QT_FAKE_CRASH_AT=<shard>:<episode>`` makes ``reset`` raise there once per process (crash tests).
"""

from __future__ import annotations

import os

import numpy as np

from tests.fake_expert import ReachExpert

TRAIN_INSTRUCTIONS = {"left": ["go left", "move to the left"], "right": ["go right", "move to the right"]}
_resets = {"count": 0}


class FakeEnv:
    def __init__(
        self,
        name: str,
        image_size: int = 0,
        tasks: str = "train",
        paraphrases: str = "train",
        max_episode_steps: int = 12,
    ) -> None:
        if tasks != "train" or paraphrases != "train":
            raise ValueError("the fake env only has training tasks")
        self.image_size, self.max_steps = image_size, max_episode_steps
        self.rng = np.random.default_rng(0)

    def _obs(self) -> dict:
        obs = {"state": np.array([self.pos, self.goal], np.float32), "instruction": self.instruction}
        if self.image_size:
            v = int(np.clip((self.pos + 1) * 127, 0, 255))
            obs["image"] = np.full((self.image_size, self.image_size, 3), v, np.uint8)
        return obs

    def reset(self, seed: int | None = None):
        crash = os.environ.get("QT_FAKE_CRASH_AT")
        _resets["count"] += 1
        if crash and _resets["count"] == int(crash):
            raise RuntimeError("simulated crash")
        self.rng = np.random.default_rng(seed)
        self.task = "left" if self.rng.random() < 0.5 else "right"
        self.goal = -0.8 if self.task == "left" else 0.8
        self.instruction = TRAIN_INSTRUCTIONS[self.task][int(self.rng.integers(2))]
        self.pos, self.t = float(self.rng.uniform(-0.2, 0.2)), 0
        return self._obs(), {"task": self.task, "is_success": False}

    def step(self, action):
        self.pos = float(np.clip(self.pos + 0.25 * float(np.clip(action[0], -1, 1)), -1, 1))
        self.t += 1
        success = abs(self.pos - self.goal) < 0.1
        truncated = not success and self.t >= self.max_steps
        return self._obs(), float(success), success, truncated, {"task": self.task, "is_success": success}

    def close(self) -> None:
        pass


class FakeExpert(ReachExpert):
    def clean_action(self, obs: dict) -> float:
        pos, goal = obs["state"]
        return float(np.clip((goal - pos) * 4, -1, 1))


def make_env(name: str, **kwargs) -> FakeEnv:
    return FakeEnv(name, **kwargs)


def make_expert(
    env: FakeEnv, noise: float = 0.0, epsilon: float = 0.0, fail_prob: float = 0.0, seed: int | None = None
) -> FakeExpert:
    return FakeExpert(env, noise, epsilon, fail_prob, seed)
