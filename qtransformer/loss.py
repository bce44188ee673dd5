"""The losses: the Q-Transformer loss (Chebotar et al. 2023, §4) and the behaviour-cloning baseline.

Each is a pure function of (model, [target model,] batch, config) returning the scalar loss to minimise
and its named terms (detached, for logging); ``LossMethod`` names them for ``train_step``'s
``method``. ``gamma`` and ``min_return`` below are the run's :class:`~qtransformer.returns.ReturnConfig`.

The Q-Transformer loss (``qtransformer_loss``).

For a sample with dataset bins ``a_1..a_D`` (0-indexed below as dims 0..D-1):
- dims ``i < D-1`` (§4.1, per-dimension backup inside one time step, no discount):
  ``y_i = max_k Q_target_{i+1}(s_t, a_{<=i}, k)``;
- last dim (§4.1 with n-step returns, §4.4):
  ``y_{D-1} = sum_k gamma^k r_{t+k} + bootstrap * gamma^n * max_k Q_target_0(s_{t+n}, k)``;
- Monte-Carlo lower bound (§4.3): ``y_i <- max(y_i, G_t)`` with ``G_t`` the episode's return from ``t``;
- on samples collected online while fine-tuning (``batch.online``), with ``online_mc_mix`` w > 0:
  ``y_i <- (1 - w) y_i + w G_t`` (fine-tuning's default w = 1: practice is valued by what it earned);
- TD term: ``0.5 * mean_(b, i) (Q_i(s_t, a_{<i}, a_i) - y_i)^2``;
- conservative term (§4.2): ``0.5 * mean_(b, i) mean_{k != a_i} (Q_i(s_t, a_{<i}, k) - min_return)^2``,
  pushing the bins the data did not take toward the lowest possible return;
- with ``bin_smoothing`` s > 0, the data bin is spread over its neighbours by the weights
  ``w_k = exp(-(k - a_i)^2 / 2s^2)``: the TD term is ``sum_k w_k (Q_i(.., k) - y_i)^2 / sum_k w_k`` and
  the conservative term weighs bin ``k`` by ``1 - w_k`` (s = 0 gives the two terms above), the
  cross-entropies take ``w / sum(w)`` as their target, and in training the earlier dimensions' bins
  the network is conditioned on are moved by a rounded Gaussian of std s;
- total: ``td + alpha * conservative``; samples collected online while fine-tuning (``batch.online``)
  weigh the conservative term by ``online_alpha`` instead, when it is set.
With an ensemble of Q heads (``ModelConfig.q_ensemble`` = E > 1, REDQ), every head takes the TD and
conservative terms above (averaged over heads), and each ``max_k Q_target`` becomes
``min_{e in M} Q_target^e(.., k*)`` with ``k*`` the bin the heads' mean prefers and ``M`` a random subset
of ``ensemble_subset`` heads, drawn once per batch.
The CQL baseline (``method="cql"``, Kumar et al. 2020, CQL(H) over the same bins) keeps the TD term
and replaces the conservative term by ``mean_(b, i) [logsumexp_k Q_i(s_t, a_{<i}, k) - Q_i(s_t, a_{<i}, a_i)]``,
which pushes every bin down by its softmax weight and the data's bin up (the data's bin alone, also
with ``bin_smoothing``). With the sigmoid head's Q in [0, 1] the softmax over K bins is nearly uniform:
each bin is pushed down by about 1/K, and the term mostly lifts the data's bin.
With a support head (``ModelConfig.support_tau`` > 0, discrete BCQ) every ``max_k`` above runs over
the bins the target network's support head allows, and the loss adds ``behavior_weight`` times the
head's cross-entropy on the dataset's bins (of successful episodes only, by default; without the
samples collected online when ``behavior_online`` is off).

The behaviour-cloning loss (``bc_loss``, the BC baseline of the paper's comparisons) trains the same
network by cross-entropy on the dataset's bins, ``-mean_(b, i) sum_k p_k log softmax(Q_i(s_t, a_{<i}))_k``
with ``p`` the one-hot of ``a_i`` (or its ``bin_smoothing`` spread), and uses no target network. The
network must emit raw logits (``ModelConfig.q_activation = "none"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from qtransformer.batch import Batch
from qtransformer.bins import neighbour_weights, soft_bin_targets
from qtransformer.config import LossConfig, ModelConfig
from qtransformer.model import supported
from qtransformer.returns import ReturnConfig

LossMethod = Literal["qtransformer", "bc", "cql"]
"""Which loss ``train_step`` applies: ``qtransformer_loss`` (with a target network), the same with CQL's
regulariser (``cql``, the offline-RL baseline), or ``bc_loss``."""


def config_of(model: nn.Module) -> ModelConfig | None:
    """The ModelConfig of a (possibly DDP-wrapped) QTransformer; None for stand-ins without one."""
    return getattr(getattr(model, "module", model), "cfg", None)


def support_tau(model: nn.Module) -> float:
    """``ModelConfig.support_tau`` of a (possibly wrapped) model; 0 for stand-ins without a config."""
    return float(getattr(config_of(model), "support_tau", 0.0))


def ensemble_size(model: nn.Module) -> int:
    """``ModelConfig.q_ensemble`` of a (possibly wrapped) model; 1 for stand-ins without a config."""
    return int(getattr(config_of(model), "q_ensemble", 1))


def check_batch(batch: Batch, num_bins: int) -> None:
    """Entry-point shape checks; the model checks observation shapes itself."""
    B = batch.size
    D = batch.action_bins.shape[-1]
    for name, x, shape in (
        ("action_bins", batch.action_bins, (B, D)),
        ("nstep", batch.nstep, (B,)),
        ("bootstrap", batch.bootstrap, (B,)),
        ("mc_return", batch.mc_return, (B,)),
    ):
        if tuple(x.shape) != shape:
            raise ValueError(f"batch.{name} must have shape {shape}, got {tuple(x.shape)}")
    if batch.rewards.ndim != 2 or batch.rewards.shape[0] != B:
        raise ValueError(f"batch.rewards must be (B, N), got {tuple(batch.rewards.shape)}")
    if batch.action_bins.dtype != torch.int64:
        raise ValueError(f"batch.action_bins must be int64, got {batch.action_bins.dtype}")
    if batch.action_bins.numel() and (batch.action_bins.min() < 0 or batch.action_bins.max() >= num_bins):
        raise ValueError(f"batch.action_bins must lie in [0, {num_bins - 1}]")


@torch.no_grad()
def td_targets(
    target_model: nn.Module, batch: Batch, cfg: LossConfig, returns: ReturnConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension targets (B, D) and the mask (B, D) of where the MC bound was active.

    This is the only TD target in the project: pretraining and fine-tuning both come through here.
    """
    bins = batch.action_bins
    D = bins.shape[1]
    tau = support_tau(target_model)
    E = ensemble_size(target_model)
    # REDQ: one random subset of the target's heads per batch; its minimum is the value of a bin.
    subset = torch.randperm(E, device=bins.device)[: min(cfg.ensemble_subset, E)] if E > 1 else None

    def target_q(state: torch.Tensor, prev: torch.Tensor, images) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The target network's Q ((E,) B, j+1, K) and, with a support constraint, the bins it allows."""
        kw = {"members": True} if subset is not None else {}
        if tau <= 0:
            return target_model(state, batch.instruction_emb, prev, images, **kw), None
        q, logits = target_model(state, batch.instruction_emb, prev, images, return_behavior=True, **kw)
        return q, supported(logits, tau)

    def best(q_target: torch.Tensor, ok: torch.Tensor | None) -> torch.Tensor:
        """max_k of the target's Q over the last axis (over the supported bins only, with a support
        constraint). With an ensemble (a leading axis of heads): the bin the heads' mean prefers, valued
        at the minimum over the batch's subset of heads."""
        if subset is None:
            if ok is not None:
                q_target = q_target.masked_fill(~ok, float("-inf"))
            return q_target.max(dim=-1).values
        mean = q_target.mean(0)
        if ok is not None:
            mean = mean.masked_fill(~ok, float("-inf"))
        k = mean.argmax(-1, keepdim=True)  # (B, j, 1)
        low = q_target[subset].min(0).values  # (B, j, K)
        return low.gather(-1, k).squeeze(-1)

    # Q_target(s_t, a_{<i+1}, .) for dims 1..D-1, teacher-forced with the dataset's bins.
    targets = []
    if D > 1:
        q_same, ok = target_q(batch.state, bins[:, :-1], batch.images)  # ((E,) B, D, K)
        ok = None if ok is None else ok[:, 1:]
        targets.append(best(q_same[..., 1:, :], ok))
    # The last dimension bootstraps from the first dimension at s_{t+n}.
    empty = bins[:, :0]
    q_next, ok = target_q(batch.next_state, empty, batch.next_images)
    q_next = q_next[..., :1, :]  # ((E,) B, 1, K)
    ok = None if ok is None else ok[:, :1]
    next_value = best(q_next, ok)[:, 0]  # (B,)
    N = batch.rewards.shape[1]
    discounts = returns.gamma ** torch.arange(N, device=bins.device, dtype=torch.float32)
    nstep_reward = (batch.rewards * discounts).sum(dim=1)  # rewards past the episode end are zero
    last = nstep_reward + batch.bootstrap * returns.gamma**batch.nstep * next_value
    targets.append(last[:, None])
    y = torch.cat(targets, dim=1).float()  # (B, D)
    if cfg.use_mc_bound:
        mc = batch.mc_return[:, None].expand_as(y)
        active = mc > y
        y = torch.maximum(y, mc)
    else:
        active = torch.zeros_like(y, dtype=torch.bool)
    if cfg.online_mc_mix > 0 and batch.online is not None:
        w = cfg.online_mc_mix * batch.online.float()[:, None]
        y = (1.0 - w) * y + w * batch.mc_return[:, None]
    return y, active


def _soft_target(bins: torch.Tensor, num_bins: int, cfg: LossConfig) -> torch.Tensor:
    """The cross-entropies' target: the data's bins (B, D), or with ``bin_smoothing`` their spread over
    the neighbours, normalised to a distribution (B, D, K)."""
    return bins if cfg.bin_smoothing == 0 else soft_bin_targets(bins, num_bins, cfg.bin_smoothing)


def _conditioning_bins(model: nn.Module, batch: Batch, cfg: LossConfig) -> torch.Tensor:
    """The earlier dimensions' bins (B, D-1) the network is teacher-forced with.

    With ``bin_smoothing`` in training they are moved by a rounded Gaussian of the same std: greedy
    decoding conditions on its own choices, which are often a few bins off the data's, and without the
    jitter later dimensions learn to read the exact earlier bin.
    """
    prev = batch.action_bins[:, :-1]
    mcfg = config_of(model)
    if cfg.bin_smoothing > 0 and model.training and mcfg is not None:
        noise = torch.randn(prev.shape, device=prev.device) * cfg.bin_smoothing
        prev = (prev + noise.round().long()).clamp(0, mcfg.num_bins - 1)
    return prev


def bc_loss(model: nn.Module, batch: Batch, cfg: LossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Behaviour cloning: cross-entropy of the network's per-dimension outputs on the data's bins.

    Returns the scalar loss and its named terms (``bc``, ``bc_accuracy``, ``q_mean``). Of ``cfg`` only
    ``bin_smoothing`` applies (soft targets and the jitter of the conditioning bins).
    """
    mcfg = config_of(model)
    if mcfg is not None and mcfg.q_activation != "none":
        raise ValueError(
            "behaviour cloning needs raw logits: build the model with q_activation='none' "
            "(a sigmoid head bounds the logits to [0, 1] and the softmax over bins stays nearly uniform)"
        )
    bins = batch.action_bins
    logits = model(batch.state, batch.instruction_emb, _conditioning_bins(model, batch, cfg), batch.images)
    check_batch(batch, logits.shape[-1])  # (B, D, K)
    target = _soft_target(bins, logits.shape[-1], cfg)
    bc = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(0, 1))
    acc = (logits.argmax(-1) == bins).float().mean()
    return bc, {"bc": bc.detach(), "bc_accuracy": acc, "q_mean": logits.detach().float().mean()}


def qtransformer_loss(
    model: nn.Module,
    target_model: nn.Module,
    batch: Batch,
    cfg: LossConfig,
    returns: ReturnConfig,
    regulariser: Literal["bins", "cql"] = "bins",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The conservative Q-learning loss; ``regulariser="cql"`` swaps the paper's conservative term for
    CQL(H)'s (the baseline). Returns the scalar loss and its named terms (detached): ``td``,
    ``conservative``, ``mc_bound_active_fraction``, ``q_mean``, ``q_max``, ``target_mean``,
    ``q_last_dim_mean`` and, with a support head, ``behavior_ce`` and ``behavior_samples_fraction``."""
    if target_model is None:
        raise ValueError("the Q-Transformer loss needs a target model (only the bc loss runs without)")
    bins = batch.action_bins
    prev = _conditioning_bins(model, batch, cfg)
    behavior = None
    members = ensemble_size(model) > 1
    kw = {"members": True} if members else {}
    if support_tau(model) > 0:
        q, behavior = model(
            batch.state, batch.instruction_emb, prev, batch.images, return_behavior=True, **kw
        )
    else:
        q = model(batch.state, batch.instruction_emb, prev, batch.images, **kw)
    q = q.float() if members else q.float()[None]  # (E, B, D, K): every head regresses toward y
    check_batch(batch, q.shape[-1])
    y, mc_active = td_targets(target_model, batch, cfg, returns)
    q_taken = q.gather(-1, bins[None, ..., None].expand(q.shape[0], -1, -1, 1)).squeeze(-1)  # (E, B, D)
    K = q.shape[-1]
    if cfg.bin_smoothing > 0:
        w = neighbour_weights(bins, K, cfg.bin_smoothing)  # (B, D, K), 1 on the data's bin
        td = 0.5 * ((q - y[..., None]).pow(2) * w).sum(-1).div(w.sum(-1)).mean()
        not_taken = 1.0 - w
    else:
        td = 0.5 * (q_taken - y).pow(2).mean()
        not_taken = torch.ones_like(q[0]).scatter_(-1, bins[..., None], 0.0)  # (B, D, K): 1 off the data
    # (B,): the conservative term of each sample, averaged over the heads.
    if regulariser == "cql":
        per_sample = (torch.logsumexp(q, dim=-1) - q_taken).mean(-1).mean(0)
    else:
        per_sample = 0.5 * ((q - returns.min_return).pow(2) * not_taken).sum(-1).div(K - 1).mean(-1).mean(0)
    q_taken = q_taken.mean(0)  # (B, D): the ensemble's value of the data's bins
    conservative = per_sample.mean()
    weight = torch.full_like(per_sample, cfg.alpha)
    if cfg.online_alpha is not None and batch.online is not None:
        weight = torch.where(batch.online, torch.full_like(weight, cfg.online_alpha), weight)
    loss = td + (weight * per_sample).mean()
    terms: dict[str, torch.Tensor] = {}
    if behavior is not None:
        # The support head learns the data's bins (of successful episodes only, by default).
        ce = F.cross_entropy(
            behavior.flatten(0, 1).float(), _soft_target(bins, K, cfg).flatten(0, 1), reduction="none"
        )
        ce = ce.view(bins.shape).mean(-1)  # (B,)
        use = (
            (batch.mc_return > returns.min_return + 1e-6).float()
            if cfg.behavior_successes_only
            else torch.ones_like(ce)
        )
        if not cfg.behavior_online and batch.online is not None:
            use = use * (~batch.online).float()
        behavior_loss = (ce * use).sum() / use.sum().clamp_min(1.0)
        loss = loss + cfg.behavior_weight * behavior_loss
        terms["behavior_ce"] = behavior_loss.detach()
        terms["behavior_samples_fraction"] = use.mean()
    terms |= {
        "td": td.detach(),
        "conservative": conservative.detach(),
        "mc_bound_active_fraction": mc_active.float().mean(),
        "q_mean": q_taken.detach().mean(),
        "q_max": q_taken.detach().max(),
        "target_mean": y.mean(),
        "q_last_dim_mean": q_taken.detach()[:, -1].mean(),
    }
    return loss, terms
