"""The learner's batch: named fields with one time convention (``x`` at ``t``, ``next_x`` at ``t + nstep``).

Data pipelines (the offline loader in ``pretrain/``, the replay buffer in ``finetune/``) produce a
*transition dict* of numpy arrays with the keys below; ``make_batch`` turns it into a :class:`Batch` of
tensors by discretising actions and embedding instructions. Shapes use B (batch), S (state), V (images),
H, W (pixels), D (action dims), N (n-step window), E (text embedding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

import numpy as np
import torch

from qtransformer.bins import ActionBins

# Keys of a transition dict (numpy, produced by loaders and replay buffers).
STATE = "state"  # (B, S) float32
IMAGE = "image"  # (B, V, H, W, 3) uint8, optional
INSTRUCTION = "instruction"  # list[str] of length B
ACTION = "action"  # (B, D) float32, continuous, inside the action Box
REWARDS = "rewards"  # (B, N) float32: r_t .. r_{t+N-1}, zeros past the episode end
NSTEP = "nstep"  # (B,) int64: steps from t to the bootstrap observation
BOOTSTRAP = "bootstrap"  # (B,) float32: 0 where the episode terminated inside the window
NEXT_STATE = "next_state"  # (B, S) float32 at t + nstep
NEXT_IMAGE = "next_image"  # (B, V, H, W, 3) uint8 at t + nstep, optional
MC_RETURN = "mc_return"  # (B,) float32: discounted return from t to the episode end
ONLINE = "online"  # (B,) bool, optional: collected online while fine-tuning (not prior data)

REQUIRED_KEYS = (STATE, INSTRUCTION, ACTION, REWARDS, NSTEP, BOOTSTRAP, NEXT_STATE, MC_RETURN)


@dataclass
class Batch:
    """Tensors the loss reads. ``images``/``next_images`` are None for state-only models."""

    state: torch.Tensor  # (B, S) float32
    instruction_emb: torch.Tensor  # (B, E) float32
    action_bins: torch.Tensor  # (B, D) int64
    rewards: torch.Tensor  # (B, N) float32
    nstep: torch.Tensor  # (B,) float32
    bootstrap: torch.Tensor  # (B,) float32
    next_state: torch.Tensor  # (B, S) float32
    mc_return: torch.Tensor  # (B,) float32
    images: torch.Tensor | None = None  # (B, V, H, W, 3) uint8
    next_images: torch.Tensor | None = None  # (B, V, H, W, 3) uint8
    online: torch.Tensor | None = None  # (B,) bool: collected online (LossConfig.online_alpha applies)

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {
            f.name: (None if (v := getattr(self, f.name)) is None else v.to(device)) for f in fields(self)
        }
        return Batch(**moved)

    @property
    def size(self) -> int:
        return int(self.state.shape[0])


def make_batch(
    transitions: Mapping[str, object],
    bins: ActionBins,
    embed: Callable[[Sequence[str]], torch.Tensor],
    device: torch.device | str = "cpu",
) -> Batch:
    """Validate a transition dict and turn it into a :class:`Batch` on ``device``.

    ``embed`` maps instruction strings to a (B, E) tensor (e.g. ``TextEncoder.encode``, which caches).
    """
    missing = [k for k in REQUIRED_KEYS if k not in transitions]
    if missing:
        raise KeyError(f"transition dict is missing keys {missing}; has {sorted(transitions)}")
    state = np.asarray(transitions[STATE], dtype=np.float32)
    if state.ndim != 2:
        raise ValueError(f"'{STATE}' must be (B, S), got shape {state.shape}")
    B = state.shape[0]
    instructions = list(cast(Iterable[str], transitions[INSTRUCTION]))  # list[str] by the key's contract
    if len(instructions) != B:
        raise ValueError(f"got {len(instructions)} instructions for a batch of {B}")
    action = np.asarray(transitions[ACTION], dtype=np.float32)
    if action.shape != (B, bins.action_dim):
        raise ValueError(f"'{ACTION}' must be ({B}, {bins.action_dim}), got {action.shape}")
    rewards = np.asarray(transitions[REWARDS], dtype=np.float32)
    if rewards.ndim != 2 or rewards.shape[0] != B:
        raise ValueError(f"'{REWARDS}' must be (B, N), got shape {rewards.shape}")

    def t(x: object, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    images = transitions.get(IMAGE)
    next_images = transitions.get(NEXT_IMAGE)
    if (images is None) != (next_images is None):
        raise ValueError(f"'{IMAGE}' and '{NEXT_IMAGE}' must be given together")
    return Batch(
        state=t(state, torch.float32),
        instruction_emb=embed(instructions).to(device=device, dtype=torch.float32),
        action_bins=t(bins.discretize(action), torch.int64),
        rewards=t(rewards, torch.float32),
        nstep=t(transitions[NSTEP], torch.float32).reshape(B),
        bootstrap=t(transitions[BOOTSTRAP], torch.float32).reshape(B),
        next_state=t(transitions[NEXT_STATE], torch.float32),
        mc_return=t(transitions[MC_RETURN], torch.float32).reshape(B),
        images=None if images is None else t(images, torch.uint8),
        next_images=None if next_images is None else t(next_images, torch.uint8),
        online=None if ONLINE not in transitions else t(transitions[ONLINE], torch.bool).reshape(B),
    )
