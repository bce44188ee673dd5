"""Episode replay for fine-tuning: whole episodes in, n-step transition dicts out.

Targets (n-step reward windows, bootstrap masks, Monte-Carlo returns) are computed once per episode at
insertion with :func:`qtransformer.returns.episode_targets`, the same function the offline loader uses.
Storage is flat, growable numpy arrays, so sampling a batch is a handful of fancy-indexing ops.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import numpy.typing as npt

from finetune.episode import Episode
from qtransformer import batch as K
from qtransformer.returns import ReturnConfig, episode_targets


class _Growable:
    """An append-only array with amortised doubling."""

    def __init__(self, shape: tuple[int, ...], dtype: npt.DTypeLike, capacity: int = 1024):
        self.data = np.zeros((capacity, *shape), dtype=dtype)
        self.size = 0

    def extend(self, x: np.ndarray) -> None:
        need = self.size + len(x)
        if need > len(self.data):
            new = np.zeros((max(need, 2 * len(self.data)), *self.data.shape[1:]), dtype=self.data.dtype)
            new[: self.size] = self.data[: self.size]
            self.data = new
        self.data[self.size : need] = x
        self.size = need

    def view(self) -> np.ndarray:
        return self.data[: self.size]


class EpisodeReplay:
    """Uniform transition sampling over every stored episode."""

    def __init__(self, returns: ReturnConfig, num_frames: int = 1, seed: int = 0):
        if not isinstance(returns, ReturnConfig):
            raise TypeError(f"returns must be a ReturnConfig, got {type(returns).__name__}")
        self.returns, self.num_frames = returns, num_frames
        self.rng = np.random.default_rng(seed)
        self._obs: dict[str, _Growable] = {}
        self._ep_start = _Growable((), np.int64)  # per observation: index of its episode's first obs
        self._tr: dict[str, _Growable] = {}
        self.instructions: list[str] = []
        self._instr_ids: dict[str, int] = {}
        self.num_episodes = 0

    def __len__(self) -> int:
        return self._tr["obs"].size if self._tr else 0

    def add(self, ep: Episode, practice: bool = False) -> None:
        """Store ``ep``'s transitions; ``practice`` marks them as collected by the agent (an earlier
        stage's practice kept in the prior-data replay), which ``mixed_sample`` reports as ``online``."""
        T = len(ep)
        if not self._obs:
            self._obs["state"] = _Growable(ep.state.shape[1:], np.float32)
            if ep.image is not None:
                self._obs["image"] = _Growable(ep.image.shape[1:], np.uint8)
            for name, shape, dt in (
                ("obs", (), np.int64),
                ("next_obs", (), np.int64),
                ("action", ep.action.shape[1:], np.float32),
                ("rewards", (self.returns.n_step,), np.float32),
                ("nstep", (), np.int64),
                ("bootstrap", (), np.float32),
                ("mc_return", (), np.float32),
                ("instr", (), np.int64),
                ("practice", (), np.bool_),
            ):
                self._tr[name] = _Growable(shape, dt)
        if ("image" in self._obs) != (ep.image is not None):
            raise ValueError("every episode in a replay must have images, or none")
        if ep.state.shape[1:] != self._obs["state"].data.shape[1:]:
            raise ValueError(
                f"state shape {ep.state.shape[1:]} differs from the replay's {self._obs['state'].data.shape[1:]}"
            )
        base = self._obs["state"].size
        r = self.returns
        tg = episode_targets(ep.reward, ep.terminated or r.timeout_is_failure, r.gamma, r.n_step)
        self._obs["state"].extend(ep.state.astype(np.float32))
        if ep.image is not None:
            self._obs["image"].extend(ep.image)
        self._ep_start.extend(np.full(T + 1, base, dtype=np.int64))
        if ep.instruction not in self._instr_ids:
            self._instr_ids[ep.instruction] = len(self.instructions)
            self.instructions.append(ep.instruction)
        t = np.arange(T)
        self._tr["obs"].extend(base + t)
        self._tr["next_obs"].extend(base + tg.next_index)
        self._tr["action"].extend(ep.action.astype(np.float32))
        self._tr["rewards"].extend(tg.rewards)
        self._tr["nstep"].extend(tg.nstep)
        self._tr["bootstrap"].extend(tg.bootstrap)
        self._tr["mc_return"].extend(tg.mc_return)
        self._tr["instr"].extend(np.full(T, self._instr_ids[ep.instruction]))
        self._tr["practice"].extend(np.full(T, practice))
        self.num_episodes += 1

    def _frames(self, obs_idx: np.ndarray) -> np.ndarray:
        """(B, V, H, W, 3): the last ``num_frames`` images, repeating the episode's first frame."""
        start = self._ep_start.view()[obs_idx]
        offsets = np.arange(self.num_frames - 1, -1, -1)
        idx = np.maximum(obs_idx[:, None] - offsets[None], start[:, None])
        return self._obs["image"].view()[idx]

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> dict[str, object]:
        """A transition dict (see ``qtransformer.batch``) of ``batch_size`` uniform samples."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        rng = rng or self.rng
        i = rng.integers(0, len(self), size=batch_size)
        tr = {k: v.view()[i] for k, v in self._tr.items()}
        out: dict[str, object] = {
            K.STATE: self._obs["state"].view()[tr["obs"]],
            K.NEXT_STATE: self._obs["state"].view()[tr["next_obs"]],
            K.ACTION: tr["action"],
            K.REWARDS: tr["rewards"],
            K.NSTEP: tr["nstep"],
            K.BOOTSTRAP: tr["bootstrap"],
            K.MC_RETURN: tr["mc_return"],
            K.INSTRUCTION: [self.instructions[j] for j in tr["instr"]],
            K.ONLINE: tr["practice"],
        }
        if "image" in self._obs:
            out[K.IMAGE] = self._frames(tr["obs"])
            out[K.NEXT_IMAGE] = self._frames(tr["next_obs"])
        return out


def concat_transitions(parts: list[dict[str, object]]) -> dict[str, object]:
    """Concatenate transition dicts along the batch (instructions are lists)."""
    keys = set(parts[0])
    for p in parts[1:]:
        if set(p) != keys:
            raise ValueError(f"cannot mix transition dicts with keys {sorted(keys)} and {sorted(p)}")
    out: dict[str, object] = {}
    for k in keys:
        if k == K.INSTRUCTION:
            out[k] = [s for p in parts for s in cast(list[str], p[k])]
        else:
            out[k] = np.concatenate([np.asarray(p[k]) for p in parts], axis=0)
    return out


def mixed_sample(
    offline: EpisodeReplay | None,
    online: EpisodeReplay,
    batch_size: int,
    offline_fraction: float,
    rng: np.random.Generator,
) -> dict[str, object]:
    """RLPD's symmetric sampling: ``offline_fraction`` of every batch from prior data, the rest online.

    Before any online data exists (or without prior data) the batch comes wholly from the one that has data.
    Every sample carries ``online`` (True where it came from the online buffer, or from practice stored
    with the prior data: ``EpisodeReplay.add(practice=True)``), so that the loss treats practice as
    practice (``LossConfig.online_alpha``, ``online_mc_mix``, ``behavior_online``).
    """
    if not 0.0 <= offline_fraction <= 1.0:
        raise ValueError(f"offline_fraction must be in [0, 1], got {offline_fraction}")
    has_off = offline is not None and len(offline) > 0
    has_on = len(online) > 0
    if not has_off and not has_on:
        raise ValueError("both replay buffers are empty")
    n_off = round(batch_size * offline_fraction) if (has_off and has_on) else (batch_size if has_off else 0)
    parts = []
    if n_off:
        parts.append(offline.sample(n_off, rng))  # type: ignore[union-attr]
    if batch_size - n_off:
        parts.append({**online.sample(batch_size - n_off, rng), K.ONLINE: np.ones(batch_size - n_off, bool)})
    return concat_transitions(parts) if len(parts) > 1 else parts[0]
