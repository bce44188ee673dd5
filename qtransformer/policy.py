"""Inference-only policy: a checkpoint in, continuous actions out. Imports nothing that trains.

``QTransformerPolicy.act`` takes a batch of observations (numpy) and instructions and decodes the
action dimension by dimension with the model's KV cache. Exploration happens only when a selector is
passed explicitly; the default is greedy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qtransformer.bins import ActionBins
from qtransformer.checkpoint import build_model, load_policy_checkpoint
from qtransformer.model import BinSelector, QTransformer, greedy_selector
from qtransformer.text import TextEncoder

MAX_INSTRUCTION_CHARS = 512


@dataclass
class PolicyOutput:
    actions: np.ndarray  # (B, D) float32 bin centres
    bins: np.ndarray  # (B, D) int64
    q_values: np.ndarray | None = None  # (B, D, K) float32, only when asked for


class QTransformerPolicy:
    """Wraps a trained :class:`QTransformer`, its action bins and its text encoder for acting."""

    def __init__(
        self,
        model: QTransformer,
        bins: ActionBins,
        encoder: TextEncoder,
        meta: Mapping[str, Any] | None = None,
        device: torch.device | str = "cpu",
    ):
        if encoder.dim != model.cfg.text_dim:
            raise ValueError(
                f"text encoder width {encoder.dim} does not match the model's text_dim {model.cfg.text_dim}"
            )
        self.model = model.to(device).eval()
        self.bins, self.encoder, self.meta = bins, encoder, dict(meta or {})
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: torch.device | str = "cpu",
        encoder: TextEncoder | str | None = None,
    ) -> QTransformerPolicy:
        """Load a checkpoint directory. ``encoder`` overrides the recorded text encoder (path or object)."""
        ckpt = load_policy_checkpoint(path)
        if not isinstance(encoder, TextEncoder):
            encoder = TextEncoder(encoder or ckpt.encoder, device=device)
        return cls(build_model(ckpt), ckpt.bins, encoder, ckpt.meta, device)

    @property
    def spec(self) -> dict[str, Any]:
        """What a client must send and will receive (used by the server's handshake)."""
        c = self.model.cfg
        obs: dict[str, Any] = {"state": {"shape": [c.state_dim], "dtype": "float32"}}
        if c.image_size > 0:
            obs["image"] = {"shape": [c.num_images, c.image_size, c.image_size, 3], "dtype": "uint8"}
        return {
            "observation": obs,
            "action": {
                "shape": [c.action_dim],
                "low": self.bins.low.tolist(),
                "high": self.bins.high.tolist(),
            },
            "num_bins": c.num_bins,
            "max_instruction_chars": MAX_INSTRUCTION_CHARS,
            "meta": self.meta,
        }

    def _observation_tensors(
        self, observations: Mapping[str, Any], batch: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.model.cfg
        if "state" not in observations:
            raise ValueError("observation is missing 'state'")
        state = np.asarray(observations["state"])
        if state.dtype.kind not in "fiu":
            raise ValueError(f"'state' must be numeric, got dtype {state.dtype}")
        if state.shape != (batch, c.state_dim):
            raise ValueError(f"'state' must have shape ({batch}, {c.state_dim}), got {state.shape}")
        if not np.all(np.isfinite(state)):
            raise ValueError("'state' contains NaN or inf")
        images = None
        if c.image_size > 0:
            if "image" not in observations:
                raise ValueError("observation is missing 'image' (this model reads camera images)")
            img = np.asarray(observations["image"])
            want = (batch, c.num_images, c.image_size, c.image_size, 3)
            if c.num_images == 1 and img.shape == want[:1] + want[2:]:
                img = img[:, None]
            if img.shape != want:
                raise ValueError(f"'image' must have shape {want}, got {img.shape}")
            if img.dtype != np.uint8:
                raise ValueError(f"'image' must be uint8, got {img.dtype}")
            images = torch.from_numpy(np.ascontiguousarray(img)).to(self.device)
        return torch.as_tensor(state, dtype=torch.float32, device=self.device), images

    @torch.inference_mode()
    def act(
        self,
        observations: Mapping[str, Any],
        instructions: Sequence[str],
        *,
        return_q: bool = False,
        select: BinSelector | None = None,
        bin_limits: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> PolicyOutput:
        """Actions for a batch: ``observations['state']`` (B, S), optional ``'image'`` (B, V, H, W, 3)."""
        if isinstance(instructions, str):
            raise TypeError("instructions must be a sequence of strings, one per observation")
        B = len(instructions)
        if B == 0:
            raise ValueError("empty batch: pass at least one instruction")
        for t in instructions:
            if not isinstance(t, str) or not t.strip():
                raise ValueError("every instruction must be a non-empty string")
            if len(t) > MAX_INSTRUCTION_CHARS:
                raise ValueError(
                    f"instruction of {len(t)} characters exceeds the limit of {MAX_INSTRUCTION_CHARS}"
                )
        state, images = self._observation_tensors(observations, B)
        emb = self.encoder.encode(instructions).to(self.device)
        limits: tuple[torch.Tensor, torch.Tensor] | None = None
        if bin_limits is not None:
            low, high = (
                torch.as_tensor(np.asarray(x), dtype=torch.long, device=self.device) for x in bin_limits
            )
            limits = (low, high)
        bins, q = self.model.decode(state, emb, images, select=select or greedy_selector, bin_limits=limits)
        bins_np = bins.cpu().numpy()
        return PolicyOutput(
            actions=self.bins.undiscretize(bins_np),
            bins=bins_np,
            q_values=q.float().cpu().numpy() if return_q else None,
        )
