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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import tyro

from pretrain.builder import PretrainRun, build_pretrain, save_checkpoint
from qtransformer.batch import make_batch
from qtransformer.config import LossConfig, ModelConfig, OptimConfig
from qtransformer.dataset import write_json
from qtransformer.learning import train_step
from qtransformer.policy import QTransformerPolicy
from qtransformer.returns import ReturnConfig
from qtransformer.text import DEFAULT_ENCODER


@dataclass
class PretrainArgs:
    """Offline pretraining. ``--model.*``, ``--loss.*`` and ``--optim.*`` set the nested configs; the
    command line's defaults are the recipe of the dataset's env (``scripts/recipes.py``)."""

    dataset: str
    """Dataset root (LeRobot v3 layout, written by ``qt datagen``)."""
    recipe: str | None = None
    """Recipe these defaults come from (the CLI picks the one the dataset was generated with, else its
    env's; ``--recipe NAME`` another)."""
    out: str = "runs/pretrain"
    """Run directory: checkpoints/, policy/ (inference export), tensorboard logs, summary JSON."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape; state_dim, action_dim and image_size are taken from the dataset."""
    method: Literal["qtransformer", "cql", "bc"] = "qtransformer"
    """Loss to train with: the Q-Transformer's conservative Q-learning; ``cql``, the same TD term with
    CQL's regulariser (the offline-RL baseline, weighted by ``--loss.alpha``); or behaviour cloning
    (``bc``: cross-entropy on the data's bins with the same network, no target network)."""
    returns: ReturnConfig = field(default_factory=ReturnConfig)
    """The return definition (discount, n-step horizon, timeouts, minimal return) the Q-values learn;
    stored in the exported policy."""
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 2000
    """Optimiser steps to train for; the learning-rate schedule spans them."""
    batch_size: int = 64
    """Samples per process per micro-batch (the global batch is batch_size x processes x accumulation)."""
    num_frames: int = 1
    """Camera frames of history per observation (the model's num_images)."""
    image_size: int | None = None
    """Train on the dataset's camera images (which must have this size); None: the dataset's images when
    it was made with ``--observation pixels``, else state only."""
    shuffle_buffer: tyro.conf.Suppress[int] = 20_000
    """Transitions held in the streaming shuffle buffer per process."""
    success_only: bool = False
    """Train only on successful episodes."""
    encoder: str = DEFAULT_ENCODER
    """Text encoder: 'default' (packaged all-MiniLM-L6-v2) or a local Hugging Face model directory."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Autocast precision (bf16 on recent GPUs and CPUs)."""
    eval_every: int = 0
    """Steps between greedy-policy evaluations in the env (0: only at the end when eval_episodes > 0)."""
    eval_episodes: int = 0
    """Episodes per task for each evaluation (0 disables evaluation)."""
    save_every: int = 500
    """Steps between checkpoints."""
    resume: bool = False
    """Continue from the newest complete checkpoint in ``out`` (step, optimiser, schedule, RNG, data)."""
    seed: int = 0
    """Seed for initialisation and data order."""
    log_every: tyro.conf.Suppress[int] = 50
    """Steps between scalar logs."""
    progress: tyro.conf.Suppress[bool | None] = None
    """Progress bar on the main process (None: when stderr is a terminal)."""

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_frames", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.eval_episodes < 0:
            raise ValueError("eval_every and eval_episodes must be >= 0")
        if self.method == "cql" and self.model.support_tau > 0:
            raise ValueError(
                "method cql regularises every bin through its logsumexp and has no support head: "
                "pass --model.support-tau 0"
            )


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def evaluate_run(run: PretrainRun) -> dict[str, Any]:
    """Greedy success on the env's training tasks, training and held-out phrasings (main process)."""
    from pretrain.evaluate import evaluate_policy, task_ids

    policy_meta = {"env": run.meta["env"], "env_kwargs": run.meta["env_kwargs"]}
    policy = QTransformerPolicy(
        run.acc.unwrap_model(run.model), run.bins, run.encoder, policy_meta, run.acc.device
    )
    res = evaluate_policy(
        policy,
        run.meta["env"],
        task_ids(run.meta["env"], "train"),
        run.args.eval_episodes,
        ("train", "heldout"),
    )
    run.acc.log(
        {
            "eval/success_rate": res["train"]["success_rate"],
            "eval/success_rate_heldout_paraphrases": res["heldout"]["success_rate"],
        },
        step=run.counter.step,
    )
    return res


def train(run: PretrainRun) -> dict[str, Any]:
    """The loop: batches from the loader through the one ``train_step`` until ``args.steps``, with
    logs, checkpoints and evaluations on their schedules. Returns the run's summary."""
    from tqdm.auto import tqdm

    args, acc, counter = run.args, run.acc, run.counter
    data = iter(run.loader)
    bar = tqdm(
        total=args.steps,
        initial=counter.step,
        # None: shown when stderr is a terminal; never on the other ranks
        disable=True if not acc.is_main_process else None if args.progress is None else not args.progress,
        desc="pretrain",
    )
    t_last, n_last = time.perf_counter(), 0
    last_terms: dict[str, float] = {}
    evals: list[dict[str, Any]] = []
    while counter.step < args.steps:
        batch = make_batch(next(data), run.bins, run.encoder.encode, acc.device)
        terms, stepped = train_step(
            run.model,
            run.target,
            run.optimizer,
            batch,
            run.cfg,
            acc,
            run.scheduler,
            counter.step,
            args.method,
        )
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
            save_checkpoint(run)
        if args.eval_episodes and args.eval_every and counter.step % args.eval_every == 0:
            if acc.is_main_process:
                evals.append({"step": counter.step, **evaluate_run(run)})
            acc.wait_for_everyone()
    bar.close()
    if acc.is_main_process and args.eval_episodes and (not evals or evals[-1]["step"] != counter.step):
        evals.append({"step": counter.step, **evaluate_run(run)})
    return {
        "step": counter.step,
        "final_terms": last_terms,
        "weights_sha256": weights_digest(acc.unwrap_model(run.model)),
        "processes": acc.num_processes,
        "distributed_type": str(acc.distributed_type),
        "evals": evals,
    }


def run_pretrain(args: PretrainArgs) -> Path:
    """Train; returns the run directory (``<out>/policy`` holds the inference checkpoint)."""
    run = build_pretrain(args)
    if run.acc.is_main_process:
        run.out.mkdir(parents=True, exist_ok=True)
        write_json(run.out / "config.json", {"args": _jsonable(args), "model": run.cfg.model.to_dict()})
    run.acc.init_trackers("pretrain")
    summary = train(run)
    run.out.mkdir(parents=True, exist_ok=True)
    write_json(run.out / f"summary_rank{run.acc.process_index}.json", summary)
    run.acc.end_training()
    return run.out


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):  # an instance, not a dataclass class
        return {k: _jsonable(v) for k, v in dataclasses.asdict(x).items()}
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x if isinstance(x, (int, float, str, bool, type(None))) else str(x)
