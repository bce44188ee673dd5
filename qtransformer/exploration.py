"""Bin selectors for exploration. Greedy is the default everywhere; these are used only when passed in.

Each selector maps the Q-values of one action dimension (B, K) to chosen bins (B,); bins masked to
``-inf`` (outside a cautious-exploration range) are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EpsilonGreedy:
    """With probability ``epsilon`` per dimension, a uniformly random allowed bin; else the argmax."""

    epsilon: float
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")

    def __call__(self, q: torch.Tensor, dim: int) -> torch.Tensor:
        greedy = q.argmax(-1)
        allowed = torch.isfinite(q).float()
        random = torch.multinomial(allowed, 1, generator=self.generator).squeeze(-1)
        explore = torch.rand(q.shape[0], generator=self.generator, device=q.device) < self.epsilon
        return torch.where(explore, random, greedy)


@dataclass
class Boltzmann:
    """Samples bins with probability proportional to ``exp(Q / temperature)``."""

    temperature: float
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def __call__(self, q: torch.Tensor, dim: int) -> torch.Tensor:
        probs = torch.softmax(q.float() / self.temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
