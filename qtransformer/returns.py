"""n-step windows and Monte-Carlo returns of one episode, shared by the offline loader and online replay.

For a transition at time ``t`` of an episode of length ``T`` (``T`` actions, ``T+1`` observations):
- ``rewards[t, k] = r_{t+k}`` for ``k < n_t`` and 0 after, where ``n_t = min(n, T - t)``;
- ``next_index[t] = t + n_t``: the observation the last action dimension bootstraps from;
- ``bootstrap[t] = 0`` only when the episode *terminated* at ``T`` and the window reaches it
  (truncation by a time limit keeps bootstrapping, Q-Transformer §4.1 / standard time-limit handling);
- ``mc_return[t] = sum_{k >= 0} gamma^k r_{t+k}`` to the end of the episode (Q-Transformer §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
