"""The served model: loads a checkpoint, describes it for the handshake, and swaps it on reload.

A reload builds the new policy completely (off the event loop and off the inference thread) and only
then replaces the reference the inference thread reads at the start of each batch, so requests in
flight finish on the old model and no connection is dropped. Any failure leaves the old model serving.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qtransformer.checkpoint import CONFIG, CheckpointError
from qtransformer.policy import QTransformerPolicy
from qtransformer.text import TextEncoder


def _read_digest(path: Path) -> str:
    try:
        return str(json.loads((path / CONFIG).read_text()).get("weights_sha256", ""))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"could not read {str(path / CONFIG)!r}: {e}") from e


def _recorded_encoder(path: Path) -> str:
    try:
        return str(json.loads((path / CONFIG).read_text()).get("encoder", "default"))
    except (OSError, json.JSONDecodeError):
        return "default"  # load_policy_checkpoint reports the real problem with a clear message


@dataclass(frozen=True)
class Served:
    """One loaded model; replaced as a whole so the inference thread never sees a half-swapped state."""

    policy: QTransformerPolicy
    """The inference policy."""
    info: dict[str, Any]
    """Identity: absolute path, weights SHA-256, short version, training step, load time."""
    spec: dict[str, Any]
    """``policy.spec``, computed once: what requests must look like."""


class ModelStore:
    """Holds the current policy and its identity (path, weights SHA-256, training step)."""

    def __init__(self, device: torch.device | str = "cpu", encoder: TextEncoder | str | None = None) -> None:
        self.device = device
        self._encoder_override = encoder
        self.current: Served | None = None

    def _encoder_for(self, path: Path) -> TextEncoder | str | None:
        """Reuse the loaded text encoder when the checkpoint asks for the same one (saves seconds)."""
        if self._encoder_override is not None:
            return self._encoder_override
        current = self.current.policy.encoder if self.current is not None else None
        if current is not None and current.name == _recorded_encoder(path):
            return current
        return None

    def build(self, path: str | os.PathLike) -> Served:
        """Load ``path`` into a new policy without touching the one being served."""
        path = Path(path).expanduser().resolve()
        policy = QTransformerPolicy.from_checkpoint(path, self.device, encoder=self._encoder_for(path))
        digest = _read_digest(path)
        info = {
            "path": str(path),
            "weights_sha256": digest,
            "version": digest[:12],
            "step": policy.meta.get("step"),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return Served(policy, info, policy.spec)

    def swap(self, served: Served) -> None:
        """Make ``served`` the current model; the next batch uses it."""
        if isinstance(self._encoder_override, str):
            self._encoder_override = served.policy.encoder  # a path override is loaded once, then reused
        self.current = served

    @property
    def ready(self) -> bool:
        return self.current is not None
