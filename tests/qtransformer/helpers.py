"""Small builders shared by the core tests."""

from __future__ import annotations

import torch
from torch import nn

from qtransformer.batch import Batch
from qtransformer.config import ModelConfig


def tiny_config(**kw) -> ModelConfig:
    base = dict(state_dim=5, action_dim=3, num_bins=8, text_dim=16, d_model=32, n_layers=2, n_heads=4)
    base.update(kw)
    return ModelConfig(**base)


def random_batch(cfg: ModelConfig, B: int = 4, N: int = 2, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    img = None
    if cfg.image_size:
        shape = (B, cfg.num_images, cfg.image_size, cfg.image_size, 3)
        img = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return Batch(
        state=torch.randn(B, cfg.state_dim, generator=g),
        instruction_emb=torch.randn(B, cfg.text_dim, generator=g),
        action_bins=torch.randint(0, cfg.num_bins, (B, cfg.action_dim), generator=g),
        rewards=(torch.rand(B, N, generator=g) > 0.7).float(),
        nstep=torch.full((B,), float(N)),
        bootstrap=torch.ones(B),
        next_state=torch.randn(B, cfg.state_dim, generator=g),
        mc_return=torch.rand(B, generator=g) * 0.5,
        images=img,
        next_images=None if img is None else img.flip(0),
    )


class TableQ(nn.Module):
    """A stand-in network whose Q-values are a table: Q[b, i, k] for the current state and, when
    ``next_table`` is given, for the next state (told apart by identity of the state tensor)."""

    def __init__(self, table: torch.Tensor, next_table: torch.Tensor | None = None, next_state=None):
        super().__init__()
        self.table = nn.Parameter(table.clone())
        self.next_table = next_table
        self.next_state = next_state

    def forward(self, state, instruction_emb, prev_bins, images=None):
        j = prev_bins.shape[1]
        if self.next_state is not None and state is self.next_state:
            return self.next_table[:, : j + 1]
        return self.table[:, : j + 1]
