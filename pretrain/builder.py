"""What offline pretraining is made of, built from its arguments (the loop is ``pretrain.train``).

``build_pretrain`` turns ``PretrainArgs`` and the dataset's metadata into the pieces the loop runs on:
the Accelerator, the network and its target, the optimiser and schedule, the action bins, the text
encoder and the streaming loader, with a resumed state already loaded. Nothing here takes a step.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qtransformer.bins import ActionBins
from qtransformer.checkpoint import save_policy_checkpoint
from qtransformer.config import TrainConfig
from qtransformer.learning import build_optimizer, build_scheduler, make_target
from qtransformer.model import QTransformer
from qtransformer.text import TextEncoder

if TYPE_CHECKING:
    from accelerate import Accelerator

    from pretrain.loader import OfflineLoader
    from pretrain.train import PretrainArgs

KEEP_CHECKPOINTS = 3
"""Complete training checkpoints kept on disk (the newest ones)."""

ACTION_BOUNDS = (-1.0, 1.0)
"""The action Box every dimension of the envs lies in; actions are binned inside it."""


class Counter:
    """Optimiser-step counter saved with the Accelerate state."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.step = int(d["step"])


@dataclass
class PretrainRun:
    """Everything the training loop needs, made once from the arguments."""

    args: PretrainArgs
    cfg: TrainConfig
    meta: dict[str, Any]
    """What the dataset says (``dataset_meta``): shapes, env, env settings, statistics."""
    out: Path
    acc: Accelerator
    model: torch.nn.Module
    """The network as prepared by Accelerate (DDP-wrapped with several processes)."""
    target: torch.nn.Module | None
    """The target network (None for behaviour cloning, which has no TD target)."""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    counter: Counter
    bins: ActionBins
    encoder: TextEncoder
    loader: OfflineLoader

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"


def model_config(args: PretrainArgs, meta: dict[str, Any]) -> TrainConfig:
    """The model shape follows the dataset; everything else comes from the arguments."""
    image_size = args.image_size
    if image_size is None and meta["env_kwargs"].get("observation") == "pixels":
        # A pixel dataset's state is proprioception only: its policy must read the camera.
        image_size = next(iter(meta["image_shapes"].values()))[0]
    image_size = image_size or 0
    if image_size:
        if not meta["cameras"]:
            raise ValueError(
                f"--image-size {image_size} asked for, but the dataset {args.dataset} has no camera images"
            )
        for cam, shape in meta["image_shapes"].items():
            if shape[:2] != (image_size, image_size):
                raise ValueError(
                    f"camera {cam!r} of {args.dataset} has images {shape}, not {image_size}x{image_size}"
                )
    model = dataclasses.replace(
        args.model,
        state_dim=meta["state_dim"],
        action_dim=meta["action_dim"],
        image_size=image_size,
        num_images=args.num_frames * max(1, len(meta["cameras"])) if image_size else 1,
        # Behaviour cloning reads the head's outputs as logits of a softmax over bins: no sigmoid.
        q_activation="none" if args.method == "bc" else args.model.q_activation,
    )
    optim = args.optim
    if optim.total_steps == 0:
        optim = dataclasses.replace(optim, total_steps=args.steps)
    return TrainConfig(model=model, loss=args.loss, optim=optim, returns=args.returns)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """Newest complete checkpoint (temporary ones start with a dot and are never picked)."""
    done = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir())
    return done[-1] if done else None


def build_pretrain(args: PretrainArgs) -> PretrainRun:
    """Make the run's pieces; with ``args.resume``, load the newest complete checkpoint into them."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    from pretrain.loader import OfflineLoader
    from qtransformer.dataset import EpisodeFilter, apply_input_stats, dataset_meta

    out = Path(args.out)
    meta = dataset_meta(args.dataset)
    cfg = model_config(args, meta)
    acc = Accelerator(
        # Accelerate needs cpu=True to form a MULTI_CPU group; ACCELERATE_USE_CPU=1 keeps a GPU machine on the CPU.
        cpu=not torch.cuda.is_available()
        or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true"),
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=cfg.optim.grad_accum_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    set_seed(args.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model = QTransformer(cfg.model)
    encoder = TextEncoder(args.encoder)
    apply_input_stats(model, meta, args.dataset, encoder)
    target = None if args.method == "bc" else make_target(model).to(acc.device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim)
    model, optimizer = acc.prepare(model, optimizer)
    counter = Counter()
    acc.register_for_checkpointing(scheduler, counter)
    if target is not None:
        acc.register_for_checkpointing(target)
    lo, hi = ACTION_BOUNDS
    bins = ActionBins([lo] * cfg.model.action_dim, [hi] * cfg.model.action_dim, cfg.model.num_bins)
    loader = OfflineLoader(
        args.dataset,
        args.batch_size,
        returns=cfg.returns,
        rank=acc.process_index,
        world_size=acc.num_processes,
        seed=args.seed,
        shuffle_buffer=args.shuffle_buffer,
        frame_history=args.num_frames,
        cameras=meta["cameras"] if cfg.model.image_size else [],
        episode_filter=EpisodeFilter(success_only=True) if args.success_only else None,
    )
    run = PretrainRun(
        args, cfg, meta, out, acc, model, target, optimizer, scheduler, counter, bins, encoder, loader
    )
    if args.resume and (last := latest_checkpoint(run.ckpt_dir)) is not None:
        acc.load_state(str(last))
        loader.load_state_dict(json.loads((last / f"loader_rank{acc.process_index}.json").read_text()))
        acc.print(f"resumed from {last} at step {counter.step}")
    return run


def export_policy(run: PretrainRun, path: Path) -> None:
    """The inference checkpoint (``<out>/policy``): weights, bins, encoder and what the policy needs to
    be evaluated and fine-tuned in the env its data came from."""
    save_policy_checkpoint(
        path,
        run.acc.unwrap_model(run.model),
        run.bins,
        run.args.encoder,
        {
            "env": run.meta.get("env"),
            "env_kwargs": run.meta["env_kwargs"],
            "step": run.counter.step,
            "dataset": str(run.args.dataset),
            "recipe": run.args.recipe,
            "method": run.args.method,
            "loss": dataclasses.asdict(run.cfg.loss),
        },
        returns=run.cfg.returns,
    )


def save_checkpoint(run: PretrainRun) -> None:
    """A complete training checkpoint, written under a temporary name and renamed when whole (so
    ``--resume`` never finds half of one), then the policy export; collective over all ranks."""
    acc, step = run.acc, run.counter.step
    final = run.ckpt_dir / f"step_{step:08d}"
    tmp = run.ckpt_dir / f".tmp_step_{step:08d}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))
    (tmp / f"loader_rank{acc.process_index}.json").write_text(json.dumps(run.loader.state_dict()))
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in sorted(p for p in run.ckpt_dir.glob("step_*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        export_policy(run, run.out / "policy")
    acc.wait_for_everyone()
