"""Inference checkpoints: a directory with ``model.safetensors`` and ``config.json``, written atomically.

``config.json`` holds the model config, the action bounds and bins, the return definition the
Q-values were trained for (``returns``), the text encoder reference, free-form metadata and the SHA-256 of the weights file, so that a truncated or
swapped weights file is detected on load. A save builds the whole directory under a temporary name and
swaps it in with renames, so a crash never leaves a half-written checkpoint and the previous one
survives any failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from qtransformer.bins import ActionBins
from qtransformer.config import ModelConfig
from qtransformer.model import QTransformer
from qtransformer.returns import ReturnConfig

FORMAT = "qtransformer-policy"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or does not match the model it claims to hold."""


@dataclass
class PolicyCheckpoint:
    model_config: ModelConfig
    bins: ActionBins
    encoder: str
    state_dict: dict[str, torch.Tensor]
    returns: ReturnConfig
    """The return definition the Q-values were trained for (what a value of the policy means)."""
    meta: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_policy_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    bins: ActionBins,
    encoder: str,
    meta: dict[str, Any] | None = None,
    *,
    returns: ReturnConfig,
) -> Path:
    """Write ``model`` (a :class:`QTransformer`, possibly wrapped) as an inference checkpoint at ``path``,
    with the return definition its Q-values were trained for."""
    if not isinstance(returns, ReturnConfig):
        raise TypeError(f"returns must be a ReturnConfig, got {type(returns).__name__}")
    path = Path(path)
    inner = getattr(model, "module", model)
    if not isinstance(inner, QTransformer):
        raise TypeError(f"expected a QTransformer, got {type(inner).__name__}")
    if bins.action_dim != inner.cfg.action_dim or bins.num_bins != inner.cfg.num_bins:
        raise ValueError(
            f"action bins ({bins.action_dim} dims x {bins.num_bins}) do not match the model "
            f"({inner.cfg.action_dim} dims x {inner.cfg.num_bins})"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in inner.state_dict().items()}
        save_file(weights, str(tmp / WEIGHTS))
        config = {
            "format": FORMAT,
            "version": VERSION,
            "model": inner.cfg.to_dict(),
            "action_bins": bins.to_dict(),
            "returns": returns.to_dict(),
            "encoder": encoder,
            "meta": meta or {},
            "weights_sha256": _sha256(tmp / WEIGHTS),
        }
        with open(tmp / CONFIG, "w") as f:
            json.dump(config, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        with open(tmp / WEIGHTS, "rb+") as f:
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _entry(cfg_path: Path, config: dict[str, Any], name: str, parse: Callable[[Any], T]) -> T:
    """One typed entry of ``config.json``; a missing or invalid one is a CheckpointError naming it."""
    try:
        return parse(config[name])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{str(cfg_path)!r} has an invalid {name!r} entry: {e}") from e


def load_policy_checkpoint(path: str | os.PathLike) -> PolicyCheckpoint:
    """Read and verify a checkpoint directory; every failure names the file and the problem."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist")
    cfg_path, w_path = path / CONFIG, path / WEIGHTS
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {str(p)!r} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(cfg_path)!r} is not valid JSON (truncated?): {e}") from e
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{str(cfg_path)!r} is not a {FORMAT} config (format={config.get('format')!r})")
    if config.get("version") != VERSION:
        raise CheckpointError(
            f"{str(cfg_path)!r} has version {config.get('version')}, this code reads {VERSION}"
        )
    digest = _sha256(w_path)
    if digest != config.get("weights_sha256"):
        raise CheckpointError(
            f"{str(w_path)!r} does not match the SHA-256 recorded in {CONFIG} (truncated or replaced file)"
        )
    if "returns" not in config:
        raise CheckpointError(
            f"{str(cfg_path)!r} has no 'returns' entry: the return definition (gamma, n_step, "
            "timeout_is_failure, min_return) its Q-values were trained for is unknown"
        )
    model_config = _entry(cfg_path, config, "model", ModelConfig.from_dict)
    bins = _entry(cfg_path, config, "action_bins", ActionBins.from_dict)
    returns = _entry(cfg_path, config, "returns", ReturnConfig.from_dict)
    # The bins map the network's outputs to actions: a mismatch would index past the bins or leave
    # action dimensions undecoded, so it is refused here rather than at the first act().
    if (bins.action_dim, bins.num_bins) != (model_config.action_dim, model_config.num_bins):
        raise CheckpointError(
            f"{str(cfg_path)!r}: the action bins ({bins.action_dim} dims x {bins.num_bins} bins) do not "
            f"match the model config (action_dim={model_config.action_dim}, num_bins={model_config.num_bins})"
        )
    try:
        state_dict = load_file(str(w_path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"could not read {str(w_path)!r}: {e}") from e
    return PolicyCheckpoint(
        model_config, bins, config.get("encoder", "default"), state_dict, returns, config.get("meta", {})
    )


def build_model(ckpt: PolicyCheckpoint) -> QTransformer:
    """Instantiate the network and load the weights, naming any mismatched tensors."""
    model = QTransformer(ckpt.model_config)
    weights = ckpt.state_dict
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in expected if k in weights and expected[k].shape != weights[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"checkpoint weights do not match the model config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {wrong[:5]}"
        )
    model.load_state_dict(weights)
    return model.eval()
