"""Inference-only policy: a checkpoint in, continuous actions out. Imports nothing that trains.

``QTransformerPolicy.act`` takes a batch of observations (numpy) and instructions and decodes the
action dimension by dimension with the model's KV cache. Exploration happens only when a selector is
passed explicitly; the default is greedy.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
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


class FrameTokenCache:
    """The vision tower's tokens of recently seen camera frames, so each frame is encoded once.

    An observation's frame history repeats the previous step's frames (the second frame of one step is
    the first frame of the step before), and a frame's tokens depend only on its pixels, its instruction
    and the weights. Entries are keyed by a hash of the pixels and the instruction embedding, and the
    whole cache empties whenever a weight of the vision path changes in place (an optimiser step or
    ``load_state_dict`` bumps the tensors' version counters), so a stale entry is never used.
    """

    def __init__(self, model: QTransformer, capacity: int = 512):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.model, self.capacity = model, capacity
        self._entries: OrderedDict[bytes, torch.Tensor] = OrderedDict()
        self._version: tuple[int, ...] = ()
        self.hits = self.misses = 0

    def _weights_version(self) -> tuple[int, ...]:
        m = self.model
        assert m.images_in is not None
        tensors = [*m.images_in.parameters(), m.instruction_mean, m.instruction_std]
        return (id(m), *(t._version for t in tensors))

    def tokens(self, images: np.ndarray, emb: torch.Tensor) -> torch.Tensor:
        """(B, V, H, W, 3) uint8 frames and (B, E) instruction embeddings -> frame tokens (B, V, T, d)."""
        version = self._weights_version()
        if version != self._version:
            self._entries.clear()
            self._version = version
        B, V = images.shape[:2]
        emb_bytes = [emb[b].float().cpu().numpy().tobytes() for b in range(B)]
        keys = [
            [
                hashlib.blake2b(images[b, v].tobytes() + emb_bytes[b], digest_size=16).digest()
                for v in range(V)
            ]
            for b in range(B)
        ]
        missing: dict[bytes, tuple[int, int]] = {}
        for b in range(B):
            for v in range(V):
                if keys[b][v] in self._entries:
                    self._entries.move_to_end(keys[b][v])
                else:
                    missing.setdefault(keys[b][v], (b, v))
        self.misses += len(missing)
        self.hits += B * V - len(missing)
        if missing:
            where = list(missing.values())
            frames = torch.from_numpy(np.stack([images[b, v] for b, v in where])).to(emb.device)
            out = self.model.frame_tokens(frames, emb[[b for b, _ in where]])  # (N, T, d)
            self._entries.update(zip(missing, out))
        tokens = torch.stack([torch.stack([self._entries[k] for k in row]) for row in keys])
        while len(self._entries) > self.capacity:  # after reading: a batch larger than the cache still works
            self._entries.popitem(last=False)
        return tokens


class QTransformerPolicy:
    """Wraps a trained :class:`QTransformer`, its action bins and its text encoder for acting."""

    def __init__(
        self,
        model: QTransformer,
        bins: ActionBins,
        encoder: TextEncoder,
        meta: Mapping[str, Any] | None = None,
        device: torch.device | str = "cpu",
        frame_cache: int = 512,
    ):
        """``frame_cache``: how many camera frames' tokens :class:`FrameTokenCache` keeps (0: none)."""
        if encoder.dim != model.cfg.text_dim:
            raise ValueError(
                f"text encoder width {encoder.dim} does not match the model's text_dim {model.cfg.text_dim}"
            )
        self.model = model.to(device).eval()
        self.bins, self.encoder, self.meta = bins, encoder, dict(meta or {})
        self.device = torch.device(device)
        self.frame_cache = (
            FrameTokenCache(self.model, frame_cache) if frame_cache and model.images_in else None
        )

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
    ) -> tuple[torch.Tensor, np.ndarray | None]:
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
            images = np.ascontiguousarray(img)
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
        frames = None
        if images is not None and self.frame_cache is not None:
            frames = self.frame_cache.tokens(images, emb)
            images = None
        bins, q = self.model.decode(
            state,
            emb,
            None if images is None else torch.from_numpy(images).to(self.device),
            select=select or greedy_selector,
            bin_limits=limits,
            frame_tokens=frames,
        )
        bins_np = bins.cpu().numpy()
        return PolicyOutput(
            actions=self.bins.undiscretize(bins_np),
            bins=bins_np,
            q_values=q.float().cpu().numpy() if return_q else None,
        )
