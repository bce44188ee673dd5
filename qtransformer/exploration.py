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


def smooth_bins(q: torch.Tensor, sigma: float) -> torch.Tensor:
    """Q-values (B, K) averaged over neighbouring bins with a Gaussian of ``sigma`` bins.

    Bins are ordered points of a continuous range, so a bin whose value stands far above its
    neighbours is more likely an error than a narrow optimum. Bins at ``-inf`` (masked) stay masked
    and take no part in their neighbours' averages; near the range's ends the average is over the
    bins that exist.
    """
    if sigma <= 0:
        return q
    r = max(1, int(3 * sigma + 0.5))
    x = torch.arange(-r, r + 1, device=q.device, dtype=torch.float32)
    w = torch.exp(-0.5 * (x / sigma) ** 2)[None, None]  # (1, 1, 2r+1)
    ok = torch.isfinite(q)
    qf = torch.where(ok, q.float(), torch.zeros((), device=q.device))
    num = torch.nn.functional.conv1d(qf[:, None], w, padding=r)[:, 0]
    den = torch.nn.functional.conv1d(ok.float()[:, None], w, padding=r)[:, 0]
    out = num / den.clamp_min(1e-12)
    return torch.where(ok, out, torch.full_like(out, float("-inf"))).to(q.dtype)


@dataclass
class SmoothedGreedy:
    """The argmax of the Q-values smoothed over neighbouring bins (``smooth_bins``)."""

    sigma: float

    def __post_init__(self) -> None:
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")

    def __call__(self, q: torch.Tensor, dim: int) -> torch.Tensor:
        return smooth_bins(q, self.sigma).argmax(-1)
