"""The return definition and its n-step windows and Monte-Carlo returns, shared by every learner.

:class:`ReturnConfig` is the one owner of what a Q-value means (discount, n-step horizon, how timeouts
end, the minimal return); the offline loader, the online replay, the loss and the policy checkpoint all
take it from here. For a transition at time ``t`` of an episode of length ``T`` (``T`` actions, ``T+1``
observations), :func:`episode_targets` gives:
- ``rewards[t, k] = r_{t+k}`` for ``k < n_t`` and 0 after, where ``n_t = min(n, T - t)``;
- ``next_index[t] = t + n_t``: the observation the last action dimension bootstraps from;
- ``bootstrap[t] = 0`` only when the episode *terminated* at ``T`` and the window reaches it
  (truncation by a time limit keeps bootstrapping, Q-Transformer §4.1 / standard time-limit handling);
- ``mc_return[t] = sum_{k >= 0} gamma^k r_{t+k}`` to the end of the episode (Q-Transformer §4.3).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import tyro


@dataclass(frozen=True)
class ReturnConfig:
    """What a return, and so a Q-value, is: the discounted sum of sparse rewards the learner targets."""

    gamma: float = 0.98
    """Discount per environment step."""
    n_step: int = 3
    """Steps in the n-step return of the last action dimension."""
    timeout_is_failure: bool = False
    """Treat an episode that stopped without success (time limit, or recording stopped) as ending in a
    terminal failure (no bootstrap after its last step) instead of bootstrapping from its last
    observation. The states do not show the time left, so only as a terminal failure does running out
    of time lower the value of the states that led there."""
    min_return: tyro.conf.Suppress[float] = 0.0
    """The lowest return an episode can earn (0 for sparse 0/1 rewards): the value the conservative
    term pushes unseen bins toward, and the line above which an episode counts as a success."""

    def __post_init__(self) -> None:
        if not (isinstance(self.gamma, (int, float)) and 0.0 < self.gamma <= 1.0):
            raise ValueError(f"returns.gamma must be in (0, 1], got {self.gamma}")
        if isinstance(self.n_step, bool) or not isinstance(self.n_step, int) or self.n_step < 1:
            raise ValueError(f"returns.n_step must be an integer >= 1, got {self.n_step!r}")
        if not isinstance(self.timeout_is_failure, bool):
            raise ValueError(f"returns.timeout_is_failure must be a bool, got {self.timeout_is_failure!r}")
        if not (isinstance(self.min_return, (int, float)) and math.isfinite(self.min_return)):
            raise ValueError(f"returns.min_return must be a finite number, got {self.min_return}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReturnConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) != names:
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"a ReturnConfig entry needs exactly the fields {sorted(names)}, got {got}")
        return cls(**d)


@dataclass(frozen=True)
class ReturnOverrides:
    """Fine-tuning's return settings: each field None takes the pretrained checkpoint's value (or
    ``ReturnConfig``'s default from scratch). ``gamma`` and ``min_return`` fix what the pretrained
    Q-values mean, so they can only be restated, never changed; ``n_step`` and ``timeout_is_failure``
    change only how the targets are formed and may differ."""

    gamma: tyro.conf.Suppress[float | None] = None
    """Discount per environment step (None: the pretrained policy's; must equal it when given)."""
    n_step: int | None = None
    """Steps in the n-step return of the last action dimension (None: the pretrained policy's)."""
    timeout_is_failure: bool | None = None
    """End a practice or prior episode that stopped without success as a terminal failure (None: the
    pretrained policy's)."""
    min_return: tyro.conf.Suppress[float | None] = None
    """The lowest return an episode can earn (None: the pretrained policy's; must equal it when given)."""


FIXED_BY_PRETRAINING = ("gamma", "min_return")
"""ReturnConfig fields a fine-tuned Q-function must keep: changing them rescales every learnt value."""


def resolve_returns(pretrained: ReturnConfig | None, overrides: ReturnOverrides) -> ReturnConfig:
    """The return definition to fine-tune with: the pretrained one (or the default from scratch) with
    the fields ``overrides`` gives. Raises ValueError when ``gamma`` or ``min_return`` is given and
    differs from the pretrained checkpoint's."""
    base = ReturnConfig() if pretrained is None else pretrained
    given = {k: v for k, v in dataclasses.asdict(overrides).items() if v is not None}
    if pretrained is not None:
        for name in FIXED_BY_PRETRAINING:
            if name in given and given[name] != getattr(pretrained, name):
                raise ValueError(
                    f"returns.{name}={given[name]} differs from the pretrained policy's "
                    f"{name}={getattr(pretrained, name)}; its Q-values were trained for that value, so "
                    f"fine-tune with it (leave returns.{name} unset)"
                )
    return dataclasses.replace(base, **given)


@dataclass
class EpisodeTargets:
    rewards: np.ndarray  # (T, n) float32
    nstep: np.ndarray  # (T,) int64, 1 <= nstep <= n
    next_index: np.ndarray  # (T,) int64, index into the T+1 observations
    bootstrap: np.ndarray  # (T,) float32 in {0, 1}
    mc_return: np.ndarray  # (T,) float32


def episode_targets(rewards: np.ndarray, terminated: bool, gamma: float, n: int) -> EpisodeTargets:
    """Compute n-step reward windows, bootstrap masks and MC returns for one episode.

    ``rewards``: (T,) rewards ``r_0..r_{T-1}``; ``terminated``: whether the episode ended in a terminal
    state (success or failure) rather than by truncation.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    T = r.shape[0]
    if T == 0:
        raise ValueError("an episode needs at least one transition")
    if not np.all(np.isfinite(r)):
        raise ValueError("episode rewards contain NaN or inf")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    t = np.arange(T)
    nstep = np.minimum(n, T - t)
    padded = np.concatenate([r, np.zeros(n)])
    windows = np.stack([padded[t + k] for k in range(n)], axis=1)  # (T, n)
    windows *= np.arange(n)[None, :] < nstep[:, None]
    reaches_end = t + nstep == T
    bootstrap = np.where(reaches_end & terminated, 0.0, 1.0)
    mc = np.zeros(T)
    acc = 0.0
    for i in range(T - 1, -1, -1):
        acc = r[i] + gamma * acc
        mc[i] = acc
    return EpisodeTargets(
        rewards=windows.astype(np.float32),
        nstep=nstep.astype(np.int64),
        next_index=(t + nstep).astype(np.int64),
        bootstrap=bootstrap.astype(np.float32),
        mc_return=mc.astype(np.float32),
    )
