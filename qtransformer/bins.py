"""Per-dimension discretisation of a continuous Box action into ``num_bins`` bins (Q-Transformer §3).

Bin ``k`` of dimension ``d`` covers ``[low_d + k*w_d, low_d + (k+1)*w_d)`` with ``w_d = (high_d-low_d)/K``
and decodes to its centre, so a round trip is off by at most half a bin width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class ActionBins:
    """Maps continuous actions (..., D) to integer bins (..., D) and back to bin centres."""

    def __init__(
        self, low: Sequence[float] | np.ndarray, high: Sequence[float] | np.ndarray, num_bins: int = 256
    ):
        low_a = np.asarray(low, dtype=np.float64).reshape(-1)
        high_a = np.asarray(high, dtype=np.float64).reshape(-1)
        if low_a.shape != high_a.shape:
            raise ValueError(f"action low {low_a.shape} and high {high_a.shape} must have the same shape")
        if not (np.all(np.isfinite(low_a)) and np.all(np.isfinite(high_a))):
            raise ValueError("action bounds must be finite to be discretised")
        if np.any(high_a <= low_a):
            raise ValueError(f"every action high must exceed low; got low={low_a}, high={high_a}")
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.low, self.high, self.num_bins = low_a, high_a, int(num_bins)
        self.width = (high_a - low_a) / num_bins
        self.centers = low_a[:, None] + (np.arange(num_bins)[None, :] + 0.5) * self.width[:, None]  # (D, K)

    @property
    def action_dim(self) -> int:
        return int(self.low.shape[0])

    def _check(self, actions: np.ndarray, tol: float) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape[-1:] != (self.action_dim,):
            raise ValueError(f"actions must end in dimension {self.action_dim}, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        bad = (a < self.low - tol) | (a > self.high + tol)
        if np.any(bad):
            idx = np.argwhere(bad)[0]
            raise ValueError(
                f"action {a[tuple(idx)]:.6g} in dimension {idx[-1]} is outside "
                f"[{self.low[idx[-1]]:.6g}, {self.high[idx[-1]]:.6g}]"
            )
        return a

    def discretize(self, actions: np.ndarray | torch.Tensor, tol: float = 1e-6) -> np.ndarray:
        """Continuous actions (..., D) -> int64 bins (..., D); raises on NaN/inf or out-of-range values."""
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        a = self._check(actions, tol)
        k = np.floor((a - self.low) / self.width).astype(np.int64)
        return np.clip(k, 0, self.num_bins - 1)  # the upper edge ``high`` belongs to the last bin

    def undiscretize(self, bins: np.ndarray | torch.Tensor) -> np.ndarray:
        """Bins (..., D) -> float32 bin centres (..., D)."""
        if isinstance(bins, torch.Tensor):
            bins = bins.detach().cpu().numpy()
        b = np.asarray(bins)
        if b.shape[-1:] != (self.action_dim,):
            raise ValueError(f"bins must end in dimension {self.action_dim}, got shape {b.shape}")
        if not np.issubdtype(b.dtype, np.integer):
            raise ValueError(f"bins must be integers, got dtype {b.dtype}")
        if b.size and (b.min() < 0 or b.max() >= self.num_bins):
            raise ValueError(f"bins must be in [0, {self.num_bins - 1}], got [{b.min()}, {b.max()}]")
        out = self.low + (b + 0.5) * self.width
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        return {"low": self.low.tolist(), "high": self.high.tolist(), "num_bins": self.num_bins}

    @classmethod
    def from_dict(cls, d: dict) -> ActionBins:
        return cls(d["low"], d["high"], d["num_bins"])


def neighbour_weights(bins: torch.Tensor, num_bins: int, sigma: float) -> torch.Tensor:
    """Integer bins (...) -> weights (..., num_bins): ``exp(-(k - bin)^2 / (2 sigma^2))``, 1 on the bin itself
    and falling off over its neighbours (``sigma`` in bins; 0 gives the one-hot).

    The bins of a dimension are ordered: an action one bin away from the data's is nearly the same action,
    which a one-hot target ignores; over many bins a continuous command then spreads the data thin.
    """
    if not (sigma >= 0 and np.isfinite(sigma)):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    k = torch.arange(num_bins, device=bins.device, dtype=torch.float32)
    if sigma == 0:
        return (k == bins[..., None]).float()
    return torch.exp(-0.5 * ((k - bins[..., None].float()) / sigma) ** 2)


def soft_bin_targets(bins: torch.Tensor, num_bins: int, sigma: float) -> torch.Tensor:
    """``neighbour_weights`` normalised to a distribution over bins: a cross-entropy's soft target."""
    w = neighbour_weights(bins, num_bins, sigma)
    return w / w.sum(-1, keepdim=True)
