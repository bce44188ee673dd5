"""The learner's building blocks: optimiser, schedule, target network and the one ``train_step``.

``train_step`` is shared by offline pretraining (``pretrain/``) and online fine-tuning (``finetune/``);
both hand it a :class:`~qtransformer.batch.Batch` and an ``accelerate.Accelerator`` (a single-process CPU
one for fine-tuning and tests). It follows the Accelerate recipe: ``accumulate`` -> ``backward`` -> clip
-> step, and moves the target network only when gradients were actually synchronised and applied.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from qtransformer.augment import augment_batch
from qtransformer.batch import Batch
from qtransformer.config import OptimConfig, TrainConfig
from qtransformer.loss import LossMethod, bc_loss, qtransformer_loss

if TYPE_CHECKING:
    from accelerate import Accelerator


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on norms, biases, embeddings or position tables)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and "emb" not in name and "pos" not in name
        (decay if is_matrix else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then constant or cosine decay to 10% of the peak by ``total_steps``."""
    if cfg.lr_schedule == "cosine" and cfg.total_steps < 1:
        raise ValueError("a cosine schedule needs total_steps >= 1 (set it to the run's number of steps)")

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_target(model: nn.Module) -> nn.Module:
    """A frozen copy that never receives gradient; kept in eval mode (no dropout in the targets)."""
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target.eval()


@torch.no_grad()
def update_target(online: nn.Module, target: nn.Module, cfg: OptimConfig) -> None:
    """Polyak averaging, ``target <- target + tau * (online - target)``; buffers (the input statistics)
    are copied."""
    src = [p.detach() for p in online.parameters()]
    dst: list[torch.Tensor] = list(target.parameters())
    if len(src) != len(dst):
        raise ValueError("online and target networks have different parameter lists")
    torch._foreach_lerp_(dst, [s.to(d.dtype) for s, d in zip(src, dst)], cfg.tau)
    for b_dst, b_src in zip(target.buffers(), online.buffers()):
        b_dst.copy_(b_src)


def train_step(
    model: nn.Module,
    target_model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    cfg: TrainConfig,
    accelerator: Accelerator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    opt_step: int = 0,
    method: LossMethod = "qtransformer",
) -> tuple[dict[str, torch.Tensor], bool]:
    """One micro-batch of learning. Returns (named terms, whether an optimiser step was applied).

    ``model`` and ``optimizer`` must come from ``accelerator.prepare``; the scheduler is stepped here,
    once per applied optimiser step, so the schedule does not depend on the number of processes.
    ``opt_step`` is the count of optimiser steps before this call (named when the loss is not finite).
    ``method`` picks the loss: ``"qtransformer"`` and ``"cql"`` (the same TD term with CQL's
    regulariser) need ``target_model`` and move it after every applied step; ``"bc"`` trains without
    one (``target_model`` must be None). Images are augmented first (``LossConfig.image_shift``).
    """
    if method not in ("qtransformer", "bc", "cql"):
        raise ValueError(f"method must be 'qtransformer', 'cql' or 'bc', got {method!r}")
    if method != "bc" and target_model is None:
        raise ValueError(f"method={method!r} needs a target model")
    if method == "bc" and target_model is not None:
        raise ValueError("method='bc' trains without a target network: pass target_model=None")
    model.train()
    batch = augment_batch(batch, cfg.loss.image_shift)
    with accelerator.accumulate(model):
        with accelerator.autocast():
            if method == "bc":
                loss, terms = bc_loss(model, batch, cfg.loss)
            else:
                assert target_model is not None  # checked above
                loss, terms = qtransformer_loss(
                    model, target_model, batch, cfg.loss, cfg.returns, "cql" if method == "cql" else "bins"
                )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss.item()} at optimiser step {opt_step}: {terms}")
        accelerator.backward(loss)
        stepped = accelerator.sync_gradients
        if stepped and cfg.optim.max_grad_norm > 0:
            terms["grad_norm"] = accelerator.clip_grad_norm_(
                model.parameters(), cfg.optim.max_grad_norm
            ).detach()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if stepped:
        if scheduler is not None:
            scheduler.step()
        if target_model is not None:
            update_target(accelerator.unwrap_model(model), target_model, cfg.optim)
    terms["loss"] = loss.detach()
    terms["lr"] = torch.tensor(optimizer.param_groups[0]["lr"])
    return terms, stepped
