"""``qt pretrain``: offline Q-Transformer pretraining with Hugging Face Accelerate.

The same command runs on one CPU, one GPU, or many GPUs and nodes::

    qt pretrain --dataset runs/data/garbage_small                      # one process
    torchrun --nproc_per_node 2 -m scripts.cli pretrain --dataset ...  # 2 processes (gloo on CPU)
    accelerate launch --multi_gpu --num_processes 8 -m scripts.cli pretrain --dataset ...

Every rank streams its own shards of the dataset; gradients are averaged by DDP; the target network is
moved only when gradients were synchronised (``train_step``). Checkpoints are ``accelerator.save_state``
directories written under a temporary name and renamed when complete, so ``--resume`` always finds a
whole one; they include the target network, the LR schedule, every rank's RNG and data position.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from qtransformer.batch import make_batch
from qtransformer.bins import ActionBins
from qtransformer.checkpoint import save_policy_checkpoint
from qtransformer.config import LossConfig, ModelConfig, OptimConfig, TrainConfig
from qtransformer.dataset import apply_instruction_stats, apply_state_stats, dataset_meta
from qtransformer.learning import build_optimizer, build_scheduler, make_target, train_step
from qtransformer.model import QTransformer
from qtransformer.policy import QTransformerPolicy
from qtransformer.text import DEFAULT_ENCODER, TextEncoder


@dataclass
class PretrainArgs:
    """Offline pretraining. ``--model.*``, ``--loss.*`` and ``--optim.*`` set the nested configs."""

    dataset: str
    """Dataset root (LeRobot v3 layout, written by ``qt datagen``)."""
    out: str = "runs/pretrain"
    """Run directory: checkpoints/, policy/ (inference export), tensorboard logs, summary JSON."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape; state_dim, action_dim and image_size are taken from the dataset."""
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 2000
    """Optimiser steps to train for (the schedule length follows it unless --optim.total-steps is set)."""
    batch_size: int = 64
    """Samples per process per micro-batch (the global batch is batch_size x processes x accumulation)."""
    num_frames: int = 1
    """Camera frames of history per observation (the model's num_images)."""
    image_size: int | None = None
    """Train on the dataset's camera images (which must have this size); None = state-only."""
    action_bounds: tuple[float, float] = (-1.0, 1.0)
    """The action Box every dimension lies in (the envs use [-1, 1]); actions are binned inside it."""
    shuffle_buffer: int = 20_000
    """Transitions held in the streaming shuffle buffer per process."""
    success_only: bool = False
    """Train only on successful episodes (the 'BC on successes' baseline)."""
    encoder: str = DEFAULT_ENCODER
    """Text encoder: 'default' (packaged all-MiniLM-L6-v2) or a local Hugging Face model directory."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast precision (bf16 on recent GPUs/CPUs)."""
    log_every: int = 50
    """Steps between scalar logs."""
    eval_every: int = 0
    """Steps between greedy-policy evaluations in the env (0: only at the end when eval_episodes > 0)."""
    eval_episodes: int = 0
    """Episodes per task for each evaluation (0 disables evaluation)."""
    save_every: int = 500
    """Steps between checkpoints."""
    keep_last: int = 3
    """Checkpoints kept on disk."""
    resume: bool = False
    """Continue from the newest complete checkpoint in ``out`` (step, optimiser, schedule, RNG, data)."""
    seed: int = 0
    """Seed for initialisation and data order."""
    cpu: bool = False
    """Force CPU even when a GPU is present."""
    progress: bool = True
    """Show a tqdm progress bar on the main process."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_frames", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.eval_episodes < 0:
            raise ValueError("eval_every and eval_episodes must be >= 0")


class Counter:
    """Optimiser-step counter saved with the Accelerate state."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.step = int(d["step"])


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """Newest complete checkpoint (temporary ones start with a dot and are never picked)."""
    done = sorted(p for p in ckpt_dir.glob("step_*") if p.is_dir())
    return done[-1] if done else None


def build_run(args: PretrainArgs, meta: dict[str, Any]) -> TrainConfig:
    """The model shape follows the dataset; everything else comes from the arguments."""
    image_size = args.image_size or 0
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
        q_activation="none" if args.loss.behavior_cloning else args.model.q_activation,
    )
    optim = args.optim
    if optim.total_steps == 0:
        optim = dataclasses.replace(optim, total_steps=args.steps)
    return TrainConfig(model=model, loss=args.loss, optim=optim)


def run_pretrain(args: PretrainArgs) -> Path:
    """Train; returns the run directory (``<out>/policy`` holds the inference checkpoint)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from tqdm.auto import tqdm

    from pretrain.loader import OfflineLoader
    from qtransformer.dataset import EpisodeFilter

    out = Path(args.out)
    ckpt_dir = out / "checkpoints"
    meta = dataset_meta(args.dataset)
    cfg = build_run(args, meta)
    acc = Accelerator(
        cpu=args.cpu or not torch.cuda.is_available(),  # Accelerate needs cpu=True to form a MULTI_CPU group
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=cfg.optim.grad_accum_steps,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    set_seed(args.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(
            json.dumps({"args": _jsonable(args), "model": cfg.model.to_dict()}, indent=2)
        )
    acc.init_trackers("pretrain")
    model = QTransformer(cfg.model)
    if cfg.model.normalize_state:
        apply_state_stats(model, meta, args.dataset)
    encoder = TextEncoder(args.encoder)
    if cfg.model.normalize_instruction:
        apply_instruction_stats(model, meta["instructions"], encoder)
    target = None if cfg.loss.behavior_cloning else make_target(model).to(acc.device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim)
    model, optimizer = acc.prepare(model, optimizer)
    counter = Counter()
    acc.register_for_checkpointing(scheduler, counter)
    if target is not None:
        acc.register_for_checkpointing(target)
    lo, hi = args.action_bounds
    bins = ActionBins([lo] * cfg.model.action_dim, [hi] * cfg.model.action_dim, cfg.model.num_bins)
    loader = OfflineLoader(
        args.dataset,
        args.batch_size,
        gamma=cfg.loss.gamma,
        n_step=cfg.loss.n_step,
        timeout_is_failure=cfg.loss.timeout_is_failure,
        rank=acc.process_index,
        world_size=acc.num_processes,
        seed=args.seed,
        shuffle_buffer=args.shuffle_buffer,
        frame_history=args.num_frames,
        cameras=meta["cameras"] if cfg.model.image_size else [],
        episode_filter=EpisodeFilter(success_only=True) if args.success_only else None,
    )
    if args.resume and (last := latest_checkpoint(ckpt_dir)) is not None:
        acc.load_state(str(last))
        loader.load_state_dict(json.loads((last / f"loader_rank{acc.process_index}.json").read_text()))
        acc.print(f"resumed from {last} at step {counter.step}")

    def save() -> None:
        final = ckpt_dir / f"step_{counter.step:08d}"
        tmp = ckpt_dir / f".tmp_step_{counter.step:08d}"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        (tmp / f"loader_rank{acc.process_index}.json").write_text(json.dumps(loader.state_dict()))
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in sorted(p for p in ckpt_dir.glob("step_*"))[: -args.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            export(out / "policy")
        acc.wait_for_everyone()

    def export(path: Path) -> None:
        save_policy_checkpoint(
            path,
            acc.unwrap_model(model),
            bins,
            args.encoder,
            {
                "env": meta.get("env"),
                "env_kwargs": meta["env_kwargs"],
                "step": counter.step,
                "dataset": str(args.dataset),
                "loss": dataclasses.asdict(cfg.loss),
            },
        )

    def run_eval() -> dict[str, Any]:
        from pretrain.evaluate import evaluate_policy, task_ids

        policy_meta = {"env": meta["env"], "env_kwargs": meta["env_kwargs"]}
        policy = QTransformerPolicy(acc.unwrap_model(model), bins, encoder, policy_meta, acc.device)
        res = evaluate_policy(
            policy, meta["env"], task_ids(meta["env"], "train"), args.eval_episodes, ("train", "heldout")
        )
        acc.log(
            {
                "eval/success_rate": res["train"]["success_rate"],
                "eval/success_rate_heldout_paraphrases": res["heldout"]["success_rate"],
            },
            step=counter.step,
        )
        return res

    data = iter(loader)
    bar = tqdm(
        total=args.steps,
        initial=counter.step,
        disable=not (args.progress and acc.is_main_process),
        desc="pretrain",
    )
    t_last, n_last = time.perf_counter(), 0
    last_terms: dict[str, float] = {}
    evals: list[dict[str, Any]] = []
    while counter.step < args.steps:
        batch = make_batch(next(data), bins, encoder.encode, acc.device)
        terms, stepped = train_step(model, target, optimizer, batch, cfg, acc, scheduler, counter.step)
        n_last += batch.size
        if not stepped:
            continue
        counter.step += 1
        bar.update(1)
        if counter.step % args.log_every == 0 or counter.step == args.steps:
            last_terms = {k: float(v) for k, v in terms.items()}
            dt = time.perf_counter() - t_last
            logs = {f"losses/{k}": v for k, v in last_terms.items()}
            logs["charts/samples_per_s"] = n_last * acc.num_processes / max(dt, 1e-9)
            acc.log(logs, step=counter.step)
            bar.set_postfix(loss=f"{last_terms['loss']:.4f}")
            t_last, n_last = time.perf_counter(), 0
        if counter.step % args.save_every == 0 or counter.step == args.steps:
            save()
        if args.eval_episodes and args.eval_every and counter.step % args.eval_every == 0:
            if acc.is_main_process:
                evals.append({"step": counter.step, **run_eval()})
            acc.wait_for_everyone()
    bar.close()
    if acc.is_main_process and args.eval_episodes and (not evals or evals[-1]["step"] != counter.step):
        evals.append({"step": counter.step, **run_eval()})
    summary = {
        "step": counter.step,
        "final_terms": last_terms,
        "weights_sha256": weights_digest(acc.unwrap_model(model)),
        "processes": acc.num_processes,
        "distributed_type": str(acc.distributed_type),
        "evals": evals,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"summary_rank{acc.process_index}.json").write_text(json.dumps(summary, indent=2))
    acc.end_training()
    return out


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(x).items()}
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x if isinstance(x, (int, float, str, bool, type(None))) else str(x)
