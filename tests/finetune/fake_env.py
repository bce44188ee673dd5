"""A one-dimensional reaching world with the ``envs`` module's API, for fine-tuning tests without MuJoCo.

The goal is given only in language: "go left" (-0.7), "go right" (+0.7) are training tasks; "go to the
middle" (0.0) is held out. The state is (position, velocity-free step counter), so the instruction is
the only way to tell the goals apart. Actions with |a_0| > 0.9 count as safety violations (a stand-in
for pushing a robot too hard), which cautious exploration should reduce.
"""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np

from tests.fake_expert import ReachExpert

GOALS = {"go_left": -0.7, "go_right": 0.7, "go_middle": 0.0}
PHRASES = {"go_left": "go left", "go_right": "go right", "go_middle": "go to the middle"}
SPLITS = {"train": ("go_left", "go_right"), "tuning": ("go_middle",), "test": ()}
tasks = SimpleNamespace(
    train_task_ids=lambda name: SPLITS["train"],
    heldout_task_ids=lambda name: SPLITS["tuning"],
    split_task_ids=lambda name, split: SPLITS[split],
)


class ReachEnv(gym.Env):
    def __init__(
        self, tasks: str = "all", reset_free: bool = False, max_episode_steps: int = 15, **_: object
    ):
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict(
            {"state": gym.spaces.Box(-2.0, 2.0, (2,), np.float32), "instruction": gym.spaces.Text(64)}
        )
        self.task_ids = ("go_left", "go_right") if tasks == "train" else tuple(GOALS)
        self.reset_free, self.max_steps, self.pos, self.t = reset_free, max_episode_steps, None, 0
        self.task = "go_left"

    def _obs(self) -> dict:
        return {
            "state": np.array([self.pos, self.t / self.max_steps], np.float32),
            "instruction": PHRASES[self.task],
        }

    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        task = (options or {}).get("task") or self.task_ids[int(self.np_random.integers(len(self.task_ids)))]
        self.task = task
        if self.pos is None or not self.reset_free:
            self.pos = float(self.np_random.choice([-1.0, 1.0]) * self.np_random.uniform(0.3, 0.6))
        self.t = 0
        return self._obs(), {"task": task, "is_success": False, "human_reset_needed": False}

    def step(self, action):
        a = float(np.clip(action[0], -1, 1))
        self.pos = float(np.clip(self.pos + 0.2 * a, -1.5, 1.5))
        self.t += 1
        success = abs(self.pos - GOALS[self.task]) < 0.1
        info = {"task": self.task, "is_success": success, "safety_violation": abs(a) > 0.9}
        return self._obs(), float(success), success, (not success and self.t >= self.max_steps), info


class Expert(ReachExpert):
    def clean_action(self, obs: dict) -> float:
        return float(np.clip(3 * (GOALS[self.env.task] - self.env.pos), -0.8, 0.8))


def make_env(name: str, **kwargs) -> ReachEnv:
    return ReachEnv(**{k: v for k, v in kwargs.items() if k in ("tasks", "reset_free", "max_episode_steps")})


def make_expert(env, noise: float = 0.0, epsilon: float = 0.0, fail_prob: float = 0.0, seed=None) -> Expert:
    return Expert(env.unwrapped if hasattr(env, "unwrapped") else env, noise, epsilon, fail_prob, seed)
