"""Dataset statistics: the running mean/std/min/max that ``meta/stats.json`` holds, and how a model takes
its input standardisation from a dataset (``ModelConfig.normalize_state`` / ``normalize_instruction``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from qtransformer.dataset.schema import ACTION, REWARD, STATE

if TYPE_CHECKING:  # type names only: reading a dataset's statistics needs neither torch nor the encoder
    from qtransformer.model import QTransformer
    from qtransformer.text import TextEncoder

STATS_KEYS = (STATE, ACTION, REWARD)
"""Columns whose statistics the writer keeps in ``meta/stats.json``."""


class RunningStats:
    """Mean/std/min/max per feature dimension, mergeable and restorable from ``stats.json``."""

    def __init__(self) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sumsq: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if len(x) == 0:
            return
        s, ss, lo, hi = x.sum(0), (x * x).sum(0), x.min(0), x.max(0)
        self._merge(len(x), s, ss, lo, hi)

    def _merge(self, n: int, s: np.ndarray, ss: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        if self.count == 0:
            self.count, self.sum, self.sumsq, self.min, self.max = n, s, ss, lo, hi
            return
        total, total_sq, low, high = self._arrays()
        self.count += n
        self.sum, self.sumsq = total + s, total_sq + ss
        self.min, self.max = np.minimum(low, lo), np.maximum(high, hi)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sum, sumsq, min, max); all set together by the first merge."""
        if self.sum is None or self.sumsq is None or self.min is None or self.max is None:
            raise ValueError("RunningStats has seen no data yet")
        return self.sum, self.sumsq, self.min, self.max

    def merge_json(self, d: dict[str, Any]) -> None:
        n = int(np.asarray(d["count"]).reshape(-1)[0])
        mean, std = np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64)
        self._merge(
            n,
            mean * n,
            (std**2 + mean**2) * n,
            np.asarray(d["min"], np.float64),
            np.asarray(d["max"], np.float64),
        )

    def to_json(self) -> dict[str, list[float]]:
        total, total_sq, low, high = self._arrays()
        mean = total / self.count
        std = np.sqrt(np.maximum(total_sq / self.count - mean**2, 0.0))
        return {
            "mean": mean.tolist(),
            "std": std.tolist(),
            "min": low.tolist(),
            "max": high.tolist(),
            "count": [self.count],
        }


def apply_state_stats(model: QTransformer, meta: dict[str, Any], dataset: str) -> None:
    """Standardise the model's state input by the dataset's statistics (``ModelConfig.normalize_state``).

    ``meta`` is ``dataset_meta(dataset)``; ``dataset`` names the data in the error.
    """
    if meta.get("state_stats") is None:
        raise ValueError(
            f"{dataset}: meta/stats.json has no observation.state mean/std, which "
            "model.normalize_state needs; regenerate the dataset's meta or set normalize_state to False"
        )
    model.set_state_stats(*meta["state_stats"])


def apply_instruction_stats(model: QTransformer, instructions: list[str], encoder: TextEncoder) -> None:
    """Standardise the model's instruction input by the mean and std of these instructions' embeddings
    (each distinct instruction counted once; ``ModelConfig.normalize_instruction``)."""
    distinct = sorted(set(instructions))
    if len(distinct) < 2:
        raise ValueError(
            f"model.normalize_instruction needs at least two distinct instructions in the data, got "
            f"{len(distinct)}: with one there is no spread to scale by"
        )
    emb = encoder.encode(distinct).float()
    model.set_instruction_stats(emb.mean(0), emb.std(0, unbiased=False))


def apply_input_stats(model: QTransformer, meta: dict[str, Any], dataset: str, encoder: TextEncoder) -> None:
    """The input standardisation the model's config asks for (``normalize_state`` and/or
    ``normalize_instruction``), from the dataset ``meta = dataset_meta(dataset)`` describes."""
    if model.cfg.normalize_state:
        apply_state_stats(model, meta, dataset)
    if model.cfg.normalize_instruction:
        apply_instruction_stats(model, meta["instructions"], encoder)
