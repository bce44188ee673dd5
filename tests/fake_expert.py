"""The scripted expert shared by the fake one-dimensional envs of the data and fine-tuning tests.

Both fakes are "reach a point on a line": the clean action drives ``a[0]`` toward the goal. This class
adds what the real experts' ``quality`` settings add: ``fail_prob`` (walk away from the goal for a whole
episode), Gaussian ``noise`` on ``a[0]`` and, with probability ``epsilon``, a uniformly random action.
"""

from __future__ import annotations

import numpy as np


class ReachExpert:
    """Subclasses implement ``clean_action(obs) -> float`` (the noise-free ``a[0]``)."""

    def __init__(
        self, env, noise: float = 0.0, epsilon: float = 0.0, fail_prob: float = 0.0, seed: int | None = None
    ) -> None:
        self.env, self.noise, self.epsilon, self.fail_prob = env, noise, epsilon, fail_prob
        self.rng = np.random.default_rng(seed)
        self.fail = False

    def clean_action(self, obs: dict) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        self.fail = self.rng.random() < self.fail_prob

    def act(self, obs: dict) -> np.ndarray:
        a = np.array([self.clean_action(obs), 0.0], np.float32)
        if self.fail:
            a = -a
        a[0] += self.noise * self.rng.standard_normal()
        if self.rng.random() < self.epsilon:
            a = self.rng.uniform(-1, 1, 2).astype(np.float32)
        return np.clip(a, -1, 1)
