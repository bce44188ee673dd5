"""Typed, validated configuration for the model, the loss and the optimiser.

Every entry point (``qt pretrain``, ``qt finetune``, ``qt serve``...) builds its arguments from these
dataclasses, parsed by one CLI (``scripts/cli.py``, tyro): a field's docstring is its ``--help`` text.
Validation happens in ``__post_init__`` so that a bad value fails where it is written, not deep inside
a training run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import tyro

from qtransformer.returns import ReturnConfig


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass
class ModelConfig:
    """Shape of the Q-Transformer network."""

    state_dim: tyro.conf.Suppress[int] = 32
    """Length of the proprioceptive/object state vector."""
    action_dim: tyro.conf.Suppress[int] = 4
    """Number of action dimensions, each predicted by its own token (D)."""
    num_bins: int = 256
    """Bins per action dimension (K)."""
    image_size: tyro.conf.Suppress[int] = 0
    """Side of the square camera images in pixels; 0 means a state-only model."""
    num_images: tyro.conf.Suppress[int] = 1
    """Images per observation: cameras x frames of history (V)."""
    text_dim: tyro.conf.Suppress[int] = 384
    """Width of the sentence-encoder embedding (384 for all-MiniLM-L6-v2)."""
    d_model: int = 128
    """Transformer width."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads; must divide ``d_model``."""
    ff_mult: tyro.conf.Suppress[int] = 4
    """Feed-forward width as a multiple of ``d_model``."""
    image_tokens: tyro.conf.Suppress[int] = 4
    """Tokens per image after learned spatial attention pooling (TokenLearner-style)."""
    image_coords: bool = False
    """Add to each image token where its pooling attends: the expected (x, y) of its attention map over
    the feature grid (a spatial soft-argmax, as visuomotor policies since Levine et al. 2016 use), through
    a learned projection. Pooling alone keeps *what* a token attends to and loses *where*, which a policy
    that must drive or reach to what it sees needs."""
    conv_channels: tyro.conf.Suppress[tuple[int, ...]] = (32, 64, 96)
    """Channels of the FiLM conv stages (each halves the resolution)."""
    conv_blocks: tyro.conf.Suppress[int] = 0
    """Residual FiLM conv blocks after each downsampling stage (capacity that runs once per action)."""
    state_tokens: tyro.conf.Suppress[int] = 1
    """Tokens the state MLP produces."""
    state_layers: tyro.conf.Suppress[int] = 1
    """Hidden layers of the state MLP (the first FiLM-conditioned by the instruction). More layers read
    a dense state non-linearly before the transformer sees it."""
    state_hidden: tyro.conf.Suppress[int] = 0
    """Width of the state MLP's hidden layers; 0 means ``2 * d_model``."""
    state_ignore: tuple[int, ...] = ()
    """Indices of state values the network does not read (set to zero after standardisation), so a
    dataset's layout can stay as recorded while the policy leaves out values it should not act on,
    such as a velocity that is the previous action in disguise (the copycat problem of learning from
    proprioceptive history)."""
    dropout: float = 0.0
    """Dropout inside the transformer."""
    head_layernorm: tyro.conf.Suppress[bool] = True
    """LayerNorm in the Q head (stabilises high update-to-data fine-tuning, RLPD-style)."""
    head_dropout: tyro.conf.Suppress[float] = 0.0
    """Dropout in the Q head (DroQ-style regularisation for high update-to-data ratios)."""
    q_ensemble: int = 1
    """Q heads on the shared transformer (a REDQ-style ensemble, Chen et al. 2021): acting and serving
    use their mean; each head regresses toward one target, the minimum over a random subset of the
    target network's heads (``LossConfig.ensemble_subset``) at the bin their mean prefers. 1: one head."""
    q_activation: tyro.conf.Suppress[Literal["sigmoid", "none"]] = "sigmoid"
    """Sigmoid keeps Q in [0, 1], the range of discounted sparse 0/1 returns."""
    normalize_instruction: bool = False
    """Standardise the instruction embedding by the mean and std over the training data's distinct
    instructions (``QTransformer.set_instruction_stats``; pretraining takes them from the dataset).
    Embeddings of instructions that differ in one word share most of their direction; centring removes
    that shared part so the words that tell tasks apart reach the network at full scale. The statistics
    are buffers of the network, saved with its weights."""
    normalize_state: bool = False
    """Standardise the state by the training data's per-value mean and std before the state MLP
    (``QTransformer.set_state_stats``; pretraining, and fine-tuning from scratch with prior data, take
    them from the dataset's ``meta/stats.json``), so that small differences in values with a small
    spread are not drowned by values of order 1. The statistics are buffers of the network, so the
    checkpoint, the policy and the server apply the same scaling."""
    support_tau: float = 0.0
    """Support constraint (discrete BCQ, Fujimoto et al. 2019): when > 0 the network has a second head
    that predicts the data's bin distribution per dimension (trained by ``LossConfig.behavior_weight``),
    and every max over bins, in acting and in the TD target, is over the bins whose predicted
    probability is at least ``support_tau`` times that of the most likely bin, so that the max never
    picks a bin the data does not support (whose value nothing has corrected). 0 = no head, max over
    all bins."""

    def __post_init__(self) -> None:
        self.conv_channels = tuple(self.conv_channels)
        self.state_ignore = tuple(sorted({int(v) for v in self.state_ignore}))
        _check(self.state_dim >= 0, f"state_dim must be >= 0, got {self.state_dim}")
        _check(self.action_dim >= 1, f"action_dim must be >= 1, got {self.action_dim}")
        _check(self.num_bins >= 2, f"num_bins must be >= 2, got {self.num_bins}")
        _check(
            self.image_size == 0 or self.image_size >= 16,
            f"image_size must be 0 or >= 16, got {self.image_size}",
        )
        _check(self.num_images >= 1, f"num_images must be >= 1, got {self.num_images}")
        _check(self.state_dim > 0 or self.image_size > 0, "the model needs a state vector or images")
        _check(self.d_model % self.n_heads == 0, f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        _check(self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}")
        _check(self.q_ensemble >= 1, f"q_ensemble must be >= 1, got {self.q_ensemble}")
        _check(0.0 <= self.dropout < 1.0 and 0.0 <= self.head_dropout < 1.0, "dropout must be in [0, 1)")
        _check(len(self.conv_channels) >= 1, "conv_channels needs at least one stage")
        _check(0.0 <= self.support_tau <= 1.0, f"support_tau must be in [0, 1], got {self.support_tau}")
        _check(
            self.image_tokens >= 1 and self.state_tokens >= 1, "image_tokens and state_tokens must be >= 1"
        )
        _check(
            all(i >= 0 for i in self.state_ignore),
            f"state_ignore indices must be >= 0, got {list(self.state_ignore)}",
        )
        _check(self.state_layers >= 1, f"state_layers must be >= 1, got {self.state_layers}")
        _check(self.state_hidden >= 0, f"state_hidden must be >= 0 (0: 2 * d_model), got {self.state_hidden}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        d["state_ignore"] = list(self.state_ignore)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # Fast enough to pretrain and fine-tune on 2 CPU cores in minutes.
    "small": dict(d_model=128, n_layers=2, n_heads=4),
    # Camera + proprioception on 2 CPU cores: a compact conv tower at 48-64 px (560 samples/s at batch 64
    # and 48 px, 1.7x the default tower's in a same-run probe; docs/benchmarks.md).
    "pixels_small": dict(d_model=128, n_layers=2, n_heads=4, conv_channels=(16, 32, 64)),
    # Comparable with the public q-transformer package: about 9M parameters with 2 x 64x64 images.
    # As in the paper (FiLM-EfficientNet + a small transformer), most parameters sit in the vision tower,
    # which runs once per action; the transformer runs once per action dimension.
    "reference": dict(
        d_model=256,
        n_layers=3,
        n_heads=8,
        state_dim=32,
        action_dim=8,
        num_bins=256,
        image_size=64,
        num_images=2,
        conv_channels=(32, 64, 128, 256, 512),
        conv_blocks=1,
        image_tokens=4,
    ),
}


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """A named model size with field overrides, e.g. ``model_preset("reference", image_size=0)``."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose from {sorted(MODEL_PRESETS)}")
    return ModelConfig(**{**MODEL_PRESETS[name], **overrides})


@dataclass
class LossConfig:
    """Conservative Q-learning loss of Q-Transformer (Chebotar et al. 2023, §4)."""

    alpha: float = 1.0
    """Weight of the conservative regulariser on bins not taken (§4.2)."""
    online_alpha: tyro.conf.Suppress[float | None] = None
    """The regulariser's weight on samples collected online while fine-tuning (``batch.online``); None:
    ``alpha``. On practice samples the term pushes down every bin the agent did not take, which teaches
    the agent its own habits; with a support head the max already keeps to the bins the prior data
    supports, so fine-tuning resolves None to 0 for such a policy (``FinetuneArgs.loss``)."""
    use_mc_bound: bool = True
    """Lower-bound every target by the episode's Monte-Carlo return (§4.3)."""
    behavior_weight: float = 10.0
    """Weight of the cross-entropy that trains the support head (``ModelConfig.support_tau`` > 0) on
    the data's bins; unused without the head. The head shares the transformer with the Q-function, so
    its term is weighted up to hold its own against the TD and conservative terms."""
    behavior_successes_only: tyro.conf.Suppress[bool] = True
    """Train the support head on samples of successful episodes only (a Monte-Carlo return above
    ``ReturnConfig.min_return``), so that the Q-function chooses among what succeeded rather than among
    everything the data did (filtered behaviour cloning as the support)."""
    behavior_online: tyro.conf.Suppress[bool] = True
    """Train the support head on samples collected online while fine-tuning too (``batch.online``;
    fine-tuning's default is False, ``FinetuneArgs.loss``). Practice is acted with exploration, so even
    its successes carry noisier bins than the prior data; False keeps the head to the prior data, and
    the Q-function learns the new task among the bins that data supports."""
    bin_smoothing: float = 0.0
    """Std, in bins, over which each data bin is spread to its neighbours (``bins.neighbour_weights``;
    0: the bin alone), because neighbouring bins are nearly the same action. The TD term then also
    regresses the neighbours toward the target, by their weight; the conservative term spares them by
    the same weight; the cross-entropies (``bc_loss``, the support head) take the spread as a soft
    target; and in training the earlier dimensions' bins the network is conditioned on are moved by a
    rounded Gaussian of the same std, so that later dimensions do not learn to read the exact earlier
    bin."""

    online_mc_mix: tyro.conf.Suppress[float] = 0.0
    """On samples collected online, the weight ``w`` of the episode's Monte-Carlo return in the target:
    ``(1 - w) * TD + w * MC``. Bootstrapping alone keeps a state the agent gets stuck in near the value
    of the states around it (it never shows the time left); the return of what practice did there pulls
    it down. 0: the TD target alone."""

    ensemble_subset: tyro.conf.Suppress[int] = 2
    """Target heads (of ``ModelConfig.q_ensemble``) drawn at random for each batch; the TD target is
    their minimum (REDQ's in-target minimisation, which counters the max's overestimation). Capped at the
    ensemble's size."""

    image_shift: int = 4
    """DrQ random shift (``qtransformer.augment``): every training image is moved by up to this many
    pixels in each direction (border repeated), independently for the bootstrap observation. 0: none.
    Only image models are affected."""

    def __post_init__(self) -> None:
        _check(self.alpha >= 0.0, f"alpha must be >= 0, got {self.alpha}")
        _check(self.image_shift >= 0, f"image_shift must be >= 0, got {self.image_shift}")
        _check(self.ensemble_subset >= 1, f"ensemble_subset must be >= 1, got {self.ensemble_subset}")
        _check(
            self.online_alpha is None or self.online_alpha >= 0.0,
            f"online_alpha must be None or >= 0, got {self.online_alpha}",
        )
        _check(0.0 <= self.online_mc_mix <= 1.0, f"online_mc_mix must be in [0, 1], got {self.online_mc_mix}")
        _check(self.behavior_weight >= 0.0, f"behavior_weight must be >= 0, got {self.behavior_weight}")
        _check(
            math.isfinite(self.bin_smoothing) and self.bin_smoothing >= 0.0,
            f"bin_smoothing must be finite and >= 0, got {self.bin_smoothing}",
        )


@dataclass
class OptimConfig:
    """Optimiser, schedule and target-network settings shared by pretraining and fine-tuning."""

    lr: float = 1e-3
    """Peak learning rate (AdamW); larger networks want less (3e-4 for the ``reference`` preset)."""
    weight_decay: tyro.conf.Suppress[float] = 0.01
    """AdamW weight decay (not applied to norms, biases or embeddings)."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    """Schedule after warm-up."""
    total_steps: tyro.conf.Suppress[int] = 0
    """Length of the schedule (cosine decays to 10% of ``lr`` by then); 0 = the run's number of steps."""
    max_grad_norm: tyro.conf.Suppress[float] = 1.0
    """Gradient clipping by global norm; 0 disables."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated per optimiser step."""
    tau: tyro.conf.Suppress[float] = 0.005
    """Polyak rate at which the target network follows the online one, after every optimiser step."""

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(self.warmup_steps >= 0 and self.total_steps >= 0, "warmup_steps and total_steps must be >= 0")
        _check(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        _check(self.grad_accum_steps >= 1, f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        _check(0.0 < self.tau <= 1.0, f"tau must be in (0, 1], got {self.tau}")


@dataclass
class TrainConfig:
    """Everything the learner needs: model shape, return definition, loss and optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    returns: ReturnConfig = field(default_factory=ReturnConfig)
