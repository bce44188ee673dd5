"""``qt finetune``: master a new instruction online, starting from a pretrained Q-Transformer.

The recipe of real-world robot RL:
- prior data (the pretraining dataset) preloaded into its own replay buffer; every batch mixes
  offline and online samples half and half (RLPD, Ball et al. 2023);
- several gradient steps per environment step, kept stable by LayerNorm and dropout in the Q head;
- exploration over bins whose allowed range grows only where a learned dynamics model is confident
  (APRL, Smith et al. 2023), switchable to compare safety violations;
- reset-free practice through the envs' task graph, counting the human resets it would have needed;
- finished episodes written to disk as they end, learner snapshots after each episode: ``--resume``
  reloads every finished episode and continues the step count, optimiser and schedule.
The TD target and ``train_step`` are ``qtransformer``'s, shared with pretraining.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing as mp
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from finetune.actor import Actor, ExplorationConfig
from finetune.aprl import AprlConfig
from finetune.episode import Episode
from finetune.learner import Learner
from finetune.replay import EpisodeReplay
from finetune.store import EpisodeStore, load_snapshot, save_snapshot
from qtransformer.bins import ActionBins
from qtransformer.checkpoint import build_model, load_policy_checkpoint, save_policy_checkpoint
from qtransformer.config import LossConfig, ModelConfig, OptimConfig, TrainConfig
from qtransformer.dataset import write_json
from qtransformer.model import QTransformer
from qtransformer.policy import QTransformerPolicy
from qtransformer.rollout import evaluate
from qtransformer.text import DEFAULT_ENCODER, TextEncoder


@dataclass
class FinetuneArgs:
    """Online fine-tuning on one instruction (a held-out task of an env)."""

    env: Literal["garbage_sort", "navigate"] = "garbage_sort"
    """Env to practise in."""
    task: str | None = None
    """Task id to master; default: the env's first held-out task (never seen in pretraining)."""
    pretrained: str | None = None
    """Pretrained policy checkpoint directory; None trains from scratch (the baseline)."""
    prior_data: str | None = None
    """Dataset of prior episodes preloaded into the offline replay; None = no prior data."""
    control_hz: float | None = None
    """Navigate's control rate; None takes it from the pretrained policy or the prior data (the env's
    default without either). Must agree with both when given."""
    prior_success_only: bool = False
    """Preload only successful prior episodes."""
    prior_max_episodes: int | None = None
    """Cap on preloaded prior episodes (memory)."""
    out: str = "runs/finetune"
    """Run directory: episodes/, learner.pt, policy/, curve.json, tensorboard logs."""
    env_steps: int = 20_000
    """Environment steps of practice."""
    utd: float = 2.0
    """Gradient steps per environment step (update-to-data ratio)."""
    batch_size: int = 128
    """Samples per gradient step."""
    offline_fraction: float = 0.5
    """Share of every batch drawn from prior data (RLPD: 0.5)."""
    learning_starts: int = 200
    """Environment steps collected before the first update when there is no prior data."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape when training from scratch (a pretrained checkpoint brings its own)."""
    head_dropout: float = 0.01
    """Q-head dropout during fine-tuning (DroQ-style; stabilises high update ratios)."""
    loss: LossConfig = field(default_factory=lambda: LossConfig(behavior_online=False))
    """Loss settings; ``gamma`` and ``min_return`` default to those the pretrained policy was trained with.
    Practice samples do not train the support head (``behavior_online`` False), and with a support head
    they get no conservative term (``online_alpha`` None resolves to 0 then, to ``alpha`` without one;
    a value set explicitly is kept). With either, the agent imitates its own practice: a GarbageSort
    hand that held still a few steps after grasping had every other bin pushed down there and the head's
    mass moved to staying, and the policy fell from 80% to 10% in 2,000 steps. With both off it stayed at
    its zero-shot level (78% on 100 starts after 20,000 steps), and Navigate's full method rose from 82.5%
    to a mean of 87% (docs/results.md, section 3). Without a support head the term stays: the bins
    practice never took would be overrated."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=0, lr_schedule="constant", tau=0.01)
    )
    """Optimiser of the learner. The constant rate has to be low enough to keep what pretraining's
    annealed schedule fitted: a GarbageSort policy at 70% zero-shot fell to 5% in 4,000 steps at 1e-4
    and held 65-95% at 1e-5 (docs/results.md, section 3); Navigate's runs used 3e-4."""
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    aprl: AprlConfig = field(default_factory=AprlConfig)
    reset_free: bool = False
    """Practise without resets: the world carries over from one episode to the next. When it does not
    allow the target task (just after succeeding at it), the env's task graph picks a task that undoes
    it (GarbageSort: take the object out again; Navigate: drive to another landmark), practised with the
    same policy; a person is counted (``human_resets``) only when no task can start."""
    image_size: int = 0
    """Camera size when training from scratch with images (a checkpoint brings its own)."""
    actors: int = 0
    """Actor processes collecting in parallel (0: collect in the learner's process)."""
    publish_every: int = 50
    """Gradient steps between weight publications to the actors."""
    eval_every: int = 1000
    """Environment steps between greedy evaluations of the target task."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    encoder: str = DEFAULT_ENCODER
    """Text encoder for a from-scratch model (a checkpoint records its own)."""
    resume: bool = False
    """Continue the run in ``out``: every stored episode, step count, optimiser, schedule."""
    seed: int = 0
    """Seed for exploration, sampling and (from scratch) initialisation."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        if self.env_steps < 1 or self.batch_size < 1 or self.utd <= 0:
            raise ValueError("env_steps and batch_size must be >= 1 and utd > 0")
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError(f"offline_fraction must be in [0, 1], got {self.offline_fraction}")
        if self.actors < 0 or self.eval_every < 1 or self.eval_episodes < 0:
            raise ValueError("actors >= 0, eval_every >= 1 and eval_episodes >= 0 are required")


def _to_online_episode(ep: Any) -> Episode:
    """A dataset episode (T frames) as a replay episode (T'+1 observations)."""
    from qtransformer.dataset import with_final_observation

    d = with_final_observation(ep)
    image = next(iter(d["images"].values())) if d["images"] else None
    return Episode(
        state=np.asarray(d["state"], np.float32),
        action=np.asarray(d["action"], np.float32),
        reward=np.asarray(d["reward"], np.float32),
        terminated=bool(d["terminated"]),
        instruction=ep.instruction,
        task=ep.task_id,
        success=bool(ep.success),
        image=image,
    )


def load_prior(args: FinetuneArgs, use_images: bool) -> Iterator[Episode]:
    """The prior data's episodes (filtered as ``args`` asks), as replay episodes, one at a time."""
    from qtransformer.dataset import EpisodeFilter, load_episodes

    filt = EpisodeFilter(success_only=True) if args.prior_success_only else None
    episodes = load_episodes(
        args.prior_data,
        episode_filter=filt,
        cameras=None if use_images else [],
        max_episodes=args.prior_max_episodes,
    )
    return (_to_online_episode(ep) for ep in episodes if ep.length >= 2 or ep.terminated)


def known_instructions(args: FinetuneArgs) -> list[str]:
    """The instructions of the prior data (the skills the pretrained policy was taught), for exploring
    with ``ExplorationConfig.instruction_prob``; empty without prior data on this machine."""
    if not args.prior_data or not Path(args.prior_data, "meta", "info.json").exists():
        return []
    from qtransformer.dataset import DatasetMeta

    return sorted(set(DatasetMeta.load(args.prior_data).tasks))


def env_settings(args: FinetuneArgs, pretrained_meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Env keyword arguments (Navigate's control rate) that the pretrained policy and prior data imply.

    Practising at a different control rate than the one the policy and the prior data were recorded at
    would silently mix two dynamics in one replay buffer, so a disagreement is an error.
    """
    from qtransformer.dataset import dataset_env_kwargs

    found: dict[str, dict[str, Any]] = {}
    if args.control_hz is not None:
        if args.env != "navigate":
            raise ValueError(f"control_hz applies to the navigate env only (env={args.env!r})")
        found["control_hz"] = {"control_hz": float(args.control_hz)}
    if pretrained_meta is not None and pretrained_meta.get("env") == args.env:
        found["the pretrained policy"] = dict(pretrained_meta.get("env_kwargs") or {})
    if args.prior_data and Path(args.prior_data, "meta", "info.json").exists():
        from qtransformer.dataset import DatasetMeta

        found["the prior data"] = dataset_env_kwargs(
            args.env, DatasetMeta.load(args.prior_data).fps, args.prior_data
        )
    kwargs: dict[str, Any] = {}
    for kw in found.values():
        for k, v in kw.items():
            if k in kwargs and kwargs[k] != v:
                raise ValueError(
                    f"{k} differs between {', '.join(found)}: {[f.get(k) for f in found.values()]}; "
                    "fine-tune with prior data recorded at the policy's settings"
                )
            kwargs[k] = v
    return kwargs


EVAL_SEED = 500_000
"""Seed of the evaluation starts (disjoint from practice): every curve point uses the same starts."""

VALUE_SCALE_FIELDS = ("gamma", "min_return")


def value_scale(loss: LossConfig, pretrained_loss: Mapping[str, Any] | None) -> LossConfig:
    """``loss`` with the discount and minimal return the pretrained Q-function was trained with.

    Those two fix what a Q-value means (a discounted success probability with its floor), so a
    fine-tuning target with another discount would silently rescale every value the policy has
    learnt. Fields left at their defaults take the checkpoint's; a value set to something else is an
    error, because it would mean retraining the values, not fine-tuning them.
    """
    if not pretrained_loss:
        return loss
    default = LossConfig()
    changes = {}
    for name in VALUE_SCALE_FIELDS:
        if name not in pretrained_loss or pretrained_loss[name] == getattr(loss, name):
            continue
        if getattr(loss, name) != getattr(default, name):
            raise ValueError(
                f"loss.{name}={getattr(loss, name)} differs from the pretrained policy's "
                f"{name}={pretrained_loss[name]}; fine-tune with the value its Q-function was trained with"
            )
        changes[name] = pretrained_loss[name]
    return dataclasses.replace(loss, **changes)


def practice_loss(loss: LossConfig, support_head: bool) -> LossConfig:
    """``loss`` with ``online_alpha`` resolved: None becomes 0 for a policy with a support head (its
    targets and its actions already keep to the bins the prior data supports, and on practice samples
    the term would teach the agent its own habits) and stays None (``alpha``) without one."""
    if loss.online_alpha is None and support_head:
        return dataclasses.replace(loss, online_alpha=0.0)
    return loss


def make_policy(args: FinetuneArgs, env_module: str = "envs") -> tuple[QTransformerPolicy, str]:
    """The policy to fine-tune; its ``meta["env_kwargs"]`` are the env settings to practise with."""
    if args.pretrained:
        ckpt = load_policy_checkpoint(args.pretrained)
        model, bins, encoder_name = build_model(ckpt), ckpt.bins, ckpt.encoder
        text = TextEncoder(encoder_name)
        env_kwargs = env_settings(args, ckpt.meta)
    else:
        torch.manual_seed(args.seed)
        env_kwargs = env_settings(args, None)
        env = importlib.import_module(env_module).make_env(args.env, **env_kwargs)
        space = env.action_space
        cfg = dataclasses.replace(
            args.model,
            state_dim=env.observation_space["state"].shape[0],
            action_dim=space.shape[0],
            image_size=args.image_size,
        )
        env.close()
        model, bins, encoder_name = (
            QTransformer(cfg),
            ActionBins(space.low, space.high, cfg.num_bins),
            args.encoder,
        )
        text = TextEncoder(encoder_name)
        if cfg.normalize_state:
            if not args.prior_data:
                raise ValueError(
                    "model.normalize_state from scratch takes the state statistics from the prior data: "
                    "give --prior-data, or set normalize_state to False"
                )
            from qtransformer.dataset import apply_state_stats, dataset_meta

            apply_state_stats(model, dataset_meta(args.prior_data), args.prior_data)
        if cfg.normalize_instruction:
            if not args.prior_data:
                raise ValueError(
                    "model.normalize_instruction from scratch takes the instructions' statistics from the "
                    "prior data: give --prior-data, or set normalize_instruction to False"
                )
            from qtransformer.dataset import apply_instruction_stats, dataset_meta

            apply_instruction_stats(model, dataset_meta(args.prior_data)["instructions"], text)
    model.set_head_dropout(args.head_dropout)
    meta = {"env": args.env, "env_kwargs": env_kwargs}
    if args.pretrained:
        meta["loss"] = ckpt.meta.get("loss")
    return QTransformerPolicy(model, bins, text, meta), encoder_name


def run_actor_process(
    address: tuple[str, int], authkey: bytes, args: FinetuneArgs, actor_id: int, env_module: str = "envs"
) -> None:
    """An actor in its own process: build the env and policy, then collect until told to stop."""
    from finetune.transport import ActorEndpoint

    envs = importlib.import_module(env_module)
    endpoint = ActorEndpoint(address, authkey)
    policy, _ = make_policy(args, env_module)
    env = envs.make_env(
        args.env,
        image_size=policy.model.cfg.image_size,
        tasks="all",
        reset_free=args.reset_free,
        **policy.meta["env_kwargs"],
    )
    actor = Actor(
        policy,
        env,
        args.task or "",
        args.exploration,
        args.aprl,
        seed=args.seed + 1000 * (actor_id + 1),
        instructions=known_instructions(args),
    )
    if (
        args.aprl.enabled
        and args.aprl.prime_with_prior
        and args.prior_data
        and Path(args.prior_data).exists()
    ):
        # An actor on another machine may not have the prior data; it then learns the dynamics online.
        actor.cautious.prime(load_prior(args, use_images=False))
    env_steps, has_weights = 0, False
    while True:
        got = endpoint.latest_weights(timeout=0.0 if has_weights else 60.0)
        if got is not None:
            if got[0] < 0:  # the learner's stop signal
                break
            actor.load_weights(got[1], got[0])
            has_weights = True
        if not has_weights:
            raise ConnectionError(f"actor {actor_id}: no weights from the learner within 60 s")
        ep, stats = actor.collect(env_steps)
        env_steps += len(ep)
        try:
            endpoint.send_episode(ep, stats)
        except (OSError, EOFError):
            break
    endpoint.close()


def run_finetune(args: FinetuneArgs, *, env_module: str = "envs") -> dict[str, Any]:
    """Fine-tune; ``env_module`` names the module providing ``make_env`` and ``tasks`` (tests pass a fake)."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    envs = importlib.import_module(env_module)
    task = args.task or envs.tasks.heldout_task_ids(args.env)[0]
    args = dataclasses.replace(args, task=task)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policy, encoder_name = make_policy(args, env_module)
    args = dataclasses.replace(args, loss=value_scale(args.loss, policy.meta.get("loss")))
    args = dataclasses.replace(args, loss=practice_loss(args.loss, policy.model.cfg.support_tau > 0))
    mcfg = policy.model.cfg
    use_images = mcfg.image_size > 0
    cfg = TrainConfig(model=mcfg, loss=args.loss, optim=args.optim)
    learner_model = QTransformer(mcfg)
    learner_model.load_state_dict(policy.model.state_dict())
    learner = Learner(learner_model, cfg, policy.bins, policy.encoder, seed=args.seed)
    env_kwargs = policy.meta["env_kwargs"]
    actor = Actor(
        policy,
        envs.make_env(
            args.env, image_size=mcfg.image_size, tasks="all", reset_free=args.reset_free, **env_kwargs
        ),
        task,
        args.exploration,
        args.aprl,
        seed=args.seed,
        instructions=known_instructions(args),
    )
    offline = None
    n_prior = primed = 0
    prime = args.aprl.enabled and args.aprl.prime_with_prior
    if args.prior_data:
        offline = EpisodeReplay(
            cfg.loss.gamma, cfg.loss.n_step, mcfg.num_images, args.seed, cfg.loss.timeout_is_failure
        )
        for ep in load_prior(args, use_images):
            offline.add(ep)
            n_prior += 1
            if prime:  # APRL's dynamics model sees the prior transitions too (fitted below)
                primed += actor.cautious.prime([ep], fit=False)
    online = EpisodeReplay(
        cfg.loss.gamma, cfg.loss.n_step, mcfg.num_images, args.seed + 1, cfg.loss.timeout_is_failure
    )
    store = EpisodeStore(out / "episodes")
    snapshot_path = out / "learner.pt"
    counters = {
        "env_steps": 0,
        "episodes": 0,
        "human_resets": 0,
        "safety_violations": 0,
        "successes": 0,
        "other_instruction_episodes": 0,  # acted out on another known instruction (exploration)
        "other_instruction_successes": 0,
        "undo_episodes": 0,  # reset-free: a task of the graph that undoes the target, practised in between
        "undo_successes": 0,
    }
    curve: list[dict[str, Any]] = []
    make_env = lambda: envs.make_env(args.env, image_size=mcfg.image_size, tasks="all", **env_kwargs)  # noqa: E731
    if args.resume and snapshot_path.exists():
        snap = load_snapshot(snapshot_path)
        learner.load_state_dict(snap["learner"])
        actor.cautious.load_state_dict(snap["aprl"])
        curve = snap["curve"]
        counters.update(snap["counters"])
    if args.resume:
        stored = store.load_all()
        for ep in stored:
            online.add(ep)
        # Episodes finished after the last snapshot still count: the store is the record of practice.
        counters["env_steps"] = sum(len(e) for e in stored)
        counters["episodes"] = len(stored)
        actor.episodes = len(stored)
    if primed and actor.cautious.updates == 0:  # a resumed run keeps its restored dynamics model
        actor.cautious.train(iters=args.aprl.prime_iters)
    actor.load_weights(learner.weights(), learner.updates)

    writer = SummaryWriter(str(out / "logs"))
    endpoint, procs = None, []
    if args.actors:
        from finetune.transport import LearnerEndpoint

        authkey = np.random.default_rng().bytes(16)
        endpoint = LearnerEndpoint(authkey=authkey)
        endpoint.publish(learner.updates, learner.weights())
        ctx = mp.get_context("spawn")
        for i in range(args.actors):
            p = ctx.Process(
                target=run_actor_process, args=(endpoint.address, authkey, args, i, env_module), daemon=True
            )
            p.start()
            procs.append(p)

    def log(tag: str, value: float) -> None:
        writer.add_scalar(tag, value, counters["env_steps"])

    def run_eval() -> None:
        if not args.eval_episodes:
            return
        # The same start states at every point, so that the curve shows the policy changing rather
        # than one set of episodes being harder than the next.
        res = evaluate(policy, make_env, [task], args.eval_episodes, seed=EVAL_SEED)
        point = {
            "env_steps": counters["env_steps"],
            "success_rate": res["success_rate"],
            "updates": learner.updates,
            "safety_violations": counters["safety_violations"],
            "human_resets": counters["human_resets"],
        }
        curve.append(point)
        log("charts/eval_success_rate", res["success_rate"])
        write_json(out / "curve.json", curve)  # atomic: a reader never sees half a file

    if not curve:
        run_eval()  # zero-shot point at step 0
    bar = tqdm(
        total=args.env_steps,
        initial=counters["env_steps"],
        disable=not args.progress,
        desc=f"finetune {task}",
    )
    last_publish = learner.updates
    t0 = time.perf_counter()
    try:
        while counters["env_steps"] < args.env_steps:
            if endpoint is not None:
                new = [
                    (ep, {"success": ep.success, "safety_violations": 0, "human_reset": False, **stats})
                    for ep, stats in endpoint.poll_episodes(timeout=5.0)
                ]
            else:
                new = [actor.collect(counters["env_steps"])]
            for ep, stats in new:
                store.append(ep)
                online.add(ep)
                counters["env_steps"] += len(ep)
                counters["episodes"] += 1
                if ep.task != task:  # reset-free: an undo task in between (local or remote actor)
                    counters["undo_episodes"] += 1
                    counters["undo_successes"] += int(stats["success"])
                else:
                    counters["successes"] += int(stats["success"])
                counters["safety_violations"] += int(stats["safety_violations"])
                counters["human_resets"] += int(stats["human_reset"])
                if stats.get("other_instruction"):
                    counters["other_instruction_episodes"] += 1
                    counters["other_instruction_successes"] += int(stats["success"])
                bar.update(len(ep))
                log("charts/episode_success", float(stats["success"]))
                log("charts/safety_violations", counters["safety_violations"])
                log("charts/human_resets", counters["human_resets"])
                if "action_scale" in stats:
                    log("charts/aprl_action_scale", stats["action_scale"])
            ready = offline is not None or counters["env_steps"] >= args.learning_starts
            due = int(args.utd * counters["env_steps"]) - learner.updates if ready else 0
            terms: dict[str, float] = {}
            for _ in range(max(0, due)):
                terms = learner.update(
                    offline, online, args.batch_size, args.offline_fraction if offline else 0.0
                )
                if learner.updates - last_publish >= args.publish_every:
                    weights = learner.weights()
                    actor.load_weights(weights, learner.updates)
                    if endpoint is not None:
                        endpoint.publish(learner.updates, weights)
                    last_publish = learner.updates
            for k, v in terms.items():
                log(f"losses/{k}", v)
            log("charts/updates", learner.updates)
            if (
                counters["env_steps"] // args.eval_every
                > (counters["env_steps"] - sum(len(e) for e, _ in new)) // args.eval_every
            ):
                actor.load_weights(learner.weights(), learner.updates)
                run_eval()
            save_snapshot(
                snapshot_path,
                {
                    "learner": learner.state_dict(),
                    "aprl": actor.cautious.state_dict(),
                    "curve": curve,
                    "counters": counters,
                },
            )
    finally:
        bar.close()
        if endpoint is not None:
            endpoint.publish(-1, {})
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.terminate()
            endpoint.close()
    actor.load_weights(learner.weights(), learner.updates)
    if not curve or curve[-1]["env_steps"] != counters["env_steps"]:
        run_eval()
    save_policy_checkpoint(
        out / "policy",
        learner.acc.unwrap_model(learner.model),
        policy.bins,
        encoder_name,
        {
            "env": args.env,
            "env_kwargs": env_kwargs,
            "task": task,
            "env_steps": counters["env_steps"],
            "updates": learner.updates,
            "loss": dataclasses.asdict(args.loss),
        },
    )
    summary = {
        "task": task,
        "loss": dataclasses.asdict(args.loss),
        "prior_episodes": n_prior,
        "aprl_primed_transitions": primed,
        **counters,
        "updates": learner.updates,
        "curve": curve,
        "final_success_rate": curve[-1]["success_rate"] if curve else None,
        "seconds": time.perf_counter() - t0,
    }
    write_json(out / "summary.json", summary)
    writer.close()
    return summary
