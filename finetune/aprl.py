"""Cautious exploration in the spirit of APRL (Smith et al. 2023, "Grow Your Limits").

A small ensemble of dynamics models learns ``s_{t+1} - s_t`` from the robot's own recent transitions.
Its one-step prediction error on fresh transitions, relative to the error it reached on its training
data, says whether the robot is somewhere the model understands. The allowed action range of each
dimension starts narrow and:
- widens by ``grow`` when the recent error is low (the model is confident: the robot may push harder);
- shrinks by ``shrink`` when the error is high, but only for dimensions that were used near their
  current limit when the surprise happened (those are the ones that pushed the robot somewhere new).
The policy then chooses bins only inside the range (``bin_limits`` of the Q-Transformer decode).
With prior data, the model is first fitted on its transitions (``prime_with_prior``), so that it knows
the robot before practice starts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
import tyro
from torch import nn

from finetune.episode import Episode
from qtransformer.bins import ActionBins


@dataclass
class AprlConfig:
    """Cautious-exploration settings."""

    enabled: bool = True
    """Restrict the action range by the dynamics model's confidence (off = plain exploration)."""
    initial_scale: tyro.conf.Suppress[float] = 0.5
    """Starting half-width of each dimension's allowed range, as a fraction of the full range."""
    min_scale: tyro.conf.Suppress[float] = 0.1
    """The range never shrinks below this fraction."""
    grow: tyro.conf.Suppress[float] = 0.05
    """Multiplicative widening per update when the model is confident."""
    shrink: tyro.conf.Suppress[float] = 0.15
    """Multiplicative narrowing per update, for dimensions used near their limit, when it is not."""
    low_error: tyro.conf.Suppress[float] = 2.0
    """Confident when recent error < low_error x the model's own held-out error."""
    high_error: tyro.conf.Suppress[float] = 4.0
    """Surprised when recent error > high_error x the model's own training error."""
    near_limit: tyro.conf.Suppress[float] = 0.8
    """A dimension 'pushed its limit' when |a| >= near_limit x its current half-width."""
    error_floor: tyro.conf.Suppress[float] = 0.1
    """Errors below this (in units of the typical state change) always count as confident."""
    window: tyro.conf.Suppress[int] = 50
    """Recent transitions the error is averaged over."""
    adapt_every: tyro.conf.Suppress[int] = 10
    """Environment steps between range updates (the range follows the robot within an episode)."""
    ensemble: tyro.conf.Suppress[int] = 3
    """Dynamics models in the ensemble."""
    hidden: tyro.conf.Suppress[int] = 128
    """Width of each dynamics model."""
    prime_with_prior: bool = True
    """Fit the dynamics model on the prior data's transitions before the first online step: the robot is
    the same, so its dynamics are known where the prior data went; the range then widens from the start
    wherever practice looks like the prior data and stays narrow where it does not. False starts the
    model from nothing (it learns from the first online episodes, while the range sits at
    ``initial_scale``)."""
    prime_iters: tyro.conf.Suppress[int] = 300
    """Gradient steps per ensemble member of that first fit."""
    exempt_dims: tyro.conf.Suppress[tuple[int, ...] | None] = None
    """Action dimensions the range never bounds; None takes the env's ``CAUTIOUS_EXEMPT_DIMS``
    (GarbageSort and the real arm: the gripper). The gripper's command is a finger position: a
    narrower range does not make a grasp gentler, it leaves the fingers half open or half closed, so
    the hand misses or drops what a full command would hold."""

    def __post_init__(self) -> None:
        if not 0 < self.min_scale <= self.initial_scale <= 1:
            raise ValueError("need 0 < min_scale <= initial_scale <= 1")
        if not self.low_error < self.high_error:
            raise ValueError("low_error must be below high_error")
        if self.prime_iters < 1:
            raise ValueError("prime_iters must be >= 1")
        if self.exempt_dims is not None and any(d < 0 for d in self.exempt_dims):
            raise ValueError(f"exempt_dims must be action dimension indices >= 0, got {self.exempt_dims}")


def env_exempt_dims(env: object) -> tuple[int, ...]:
    """The action dimensions an env asks cautious exploration to leave unbounded (``CAUTIOUS_EXEMPT_DIMS``
    of the unwrapped env; none for an env that declares nothing)."""
    return tuple(getattr(getattr(env, "unwrapped", env), "CAUTIOUS_EXEMPT_DIMS", ()))


class DynamicsEnsemble(nn.Module):
    """Predicts the state change from (state, action); members differ by initialisation and data order."""

    scale: torch.Tensor  # buffer (S,): per-value std of the state change, set when the ensemble is trained

    def __init__(self, state_dim: int, action_dim: int, members: int, hidden: int):
        super().__init__()
        self.nets = nn.ModuleList(
            nn.Sequential(
                nn.Linear(state_dim + action_dim, hidden),
                nn.ReLU(),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, state_dim),
            )
            for _ in range(members)
        )
        self.register_buffer("scale", torch.ones(state_dim))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        x = torch.cat([s, a], dim=-1)
        return torch.stack([net(x) for net in self.nets])  # (M, B, S)

    def error(self, s: torch.Tensor, a: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
        """Per-sample error of the ensemble mean, in units of the state-change scale: (B,)."""
        pred = self(s, a).mean(0)
        return (((s_next - s) - pred) / self.scale).pow(2).mean(-1).sqrt()


class CautiousRange:
    """The per-dimension allowed action range and the dynamics model that steers it."""

    def __init__(
        self,
        cfg: AprlConfig,
        bins: ActionBins,
        state_dim: int,
        seed: int = 0,
        exempt_dims: Iterable[int] = (),
    ):
        """``exempt_dims``: the dimensions left at their full range when ``cfg.exempt_dims`` is None
        (the env's); the config's own tuple wins when set."""
        self.cfg, self.bins = cfg, bins
        torch.manual_seed(seed)
        self.model = DynamicsEnsemble(state_dim, bins.action_dim, cfg.ensemble, cfg.hidden)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        exempt = tuple(cfg.exempt_dims if cfg.exempt_dims is not None else exempt_dims)
        if any(not 0 <= d < bins.action_dim for d in exempt):
            raise ValueError(f"exempt dimensions {exempt} outside the {bins.action_dim} action dimensions")
        self.free = np.zeros(bins.action_dim, dtype=bool)
        self.free[list(exempt)] = True
        self.scale = np.where(self.free, 1.0, cfg.initial_scale if cfg.enabled else 1.0)
        self.data: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque(maxlen=20_000)
        self.recent: deque[tuple[float, np.ndarray]] = deque(maxlen=cfg.window)
        self.train_error = float("nan")
        self.updates = 0
        self.observed = 0

    # ----------------------------------------------------------- range
    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (low, high) of the allowed range, centred in the action Box."""
        mid = (self.bins.low + self.bins.high) / 2
        half = (self.bins.high - self.bins.low) / 2 * self.scale
        return mid - half, mid + half

    def bin_limits(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) bin indices (batch, D) for ``QTransformer.decode``'s ``bin_limits``."""
        lo, hi = self.limits()
        b_lo = self.bins.discretize(np.clip(lo, self.bins.low, self.bins.high))
        b_hi = self.bins.discretize(np.clip(hi, self.bins.low, self.bins.high))
        return np.repeat(b_lo[None], batch, 0), np.repeat(b_hi[None], batch, 0)

    def adapt(self, error_ratio: float, near_limit: np.ndarray) -> None:
        """One range update from the recent error ratio and which dimensions pushed their limit."""
        c = self.cfg
        if not c.enabled:
            return
        if error_ratio < c.low_error:
            self.scale = np.minimum(1.0, self.scale * (1 + c.grow))
        elif error_ratio > c.high_error:
            shrink = np.where(near_limit & ~self.free, 1 - c.shrink, 1.0)
            self.scale = np.maximum(c.min_scale, self.scale * shrink)

    # ----------------------------------------------------------- data
    def observe(self, s: np.ndarray, a: np.ndarray, s_next: np.ndarray) -> None:
        """Record one real transition; scores it with the current model before learning from it."""
        self.data.append((s.astype(np.float32), a.astype(np.float32), s_next.astype(np.float32)))
        if self.updates == 0:
            return
        with torch.no_grad():
            err = self.model.error(*(torch.as_tensor(x)[None] for x in (s, a, s_next))).item()
        half = (self.bins.high - self.bins.low) / 2 * self.scale
        mid = (self.bins.low + self.bins.high) / 2
        self.recent.append((err, np.abs(a - mid) >= self.cfg.near_limit * half))
        self.observed += 1
        if self.observed % self.cfg.adapt_every == 0:
            self.step()

    def prime(self, episodes: Iterable[Episode], fit: bool = True) -> int:
        """Fit the model on earlier episodes of the same robot (prior data) before any online step.

        Their transitions join the model's training data (the most recent ``20,000`` are kept, so online
        practice gradually replaces them); ``fit=False`` only adds them (a resumed run whose model
        weights were restored). Returns how many transitions were added.
        """
        n = 0
        for ep in episodes:
            s = np.asarray(ep.state, np.float32)
            a = np.asarray(ep.action, np.float32)
            self.data.extend(zip(s[:-1], a, s[1:]))
            n += len(a)
        if n and fit:
            self.train(iters=self.cfg.prime_iters)
        return n

    def error_ratio(self) -> float:
        if not self.recent or not np.isfinite(self.train_error):
            return float("nan")
        return float(np.mean([e for e, _ in self.recent]) / max(self.train_error, self.cfg.error_floor))

    def step(self) -> None:
        """Adapt the range from the recent errors (called once per episode or every few env steps)."""
        ratio = self.error_ratio()
        if np.isnan(ratio):
            return
        near = np.mean([n for _, n in self.recent], axis=0) > 0.2
        self.adapt(ratio, near)

    def train(self, iters: int = 50, batch: int = 256, rng: np.random.Generator | None = None) -> float:
        """Fit the ensemble on the recorded transitions; returns its error on a held-out fifth of them.

        The held-out error is the reference "normal" error: fresh transitions from familiar situations
        score about the same, transitions from somewhere new score higher.
        """
        if len(self.data) < 32:
            return float("nan")
        rng = rng or np.random.default_rng(self.updates)
        s, a, s2 = (torch.as_tensor(np.stack(x)) for x in zip(*self.data))
        perm = torch.as_tensor(rng.permutation(len(s)))
        n_val = max(8, len(s) // 5)
        val, fit = perm[:n_val], perm[n_val:]
        self.model.scale.copy_((s2 - s).std(0).clamp(min=1e-3))
        for _ in range(iters):
            for net in self.model.nets:
                i = fit[torch.as_tensor(rng.integers(0, len(fit), size=min(batch, len(fit))))]
                pred = net(torch.cat([s[i], a[i]], -1))
                loss = (((s2[i] - s[i]) - pred) / self.model.scale).pow(2).mean()
                self.opt.zero_grad()
                loss.backward()
                self.opt.step()
        with torch.no_grad():
            self.train_error = self.model.error(s[val], a[val], s2[val]).mean().item()
        self.updates += 1
        return self.train_error

    def state_dict(self) -> dict:
        return {
            "scale": self.scale.copy(),
            "model": self.model.state_dict(),
            "train_error": self.train_error,
            "updates": self.updates,
        }

    def load_state_dict(self, d: dict) -> None:
        self.scale = np.where(self.free, 1.0, np.asarray(d["scale"], dtype=np.float64))
        self.model.load_state_dict(d["model"])
        self.train_error, self.updates = float(d["train_error"]), int(d["updates"])
