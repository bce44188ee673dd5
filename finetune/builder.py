"""What online fine-tuning is made of, built from its arguments (the loop is ``finetune.train``).

``build_finetune`` makes the policy to practise with, the learner (on the Accelerate device: a GPU when
there is one), the actor, the prior-data and online replays, the episode store and the counters, with a
resumed run's state already loaded. Nothing here collects a step or takes an update.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from finetune.actor import Actor
from finetune.episode import Episode
from finetune.learner import Learner
from finetune.replay import EpisodeReplay
from finetune.store import EpisodeStore, load_snapshot
from qtransformer.bins import ActionBins
from qtransformer.checkpoint import build_model, load_policy_checkpoint
from qtransformer.config import LossConfig, TrainConfig
from qtransformer.model import QTransformer
from qtransformer.policy import QTransformerPolicy
from qtransformer.returns import ReturnConfig, resolve_returns
from qtransformer.text import DEFAULT_ENCODER, TextEncoder

if TYPE_CHECKING:
    from finetune.train import FinetuneArgs

COUNTERS = (
    "env_steps",
    "episodes",
    "human_resets",
    "safety_violations",
    "successes",
    "undo_episodes",  # reset-free: a task of the graph that undoes the target, practised in between
    "undo_successes",
)
"""What a fine-tuning run counts (stored with each snapshot and in the summary)."""


@dataclass
class FinetuneRun:
    """Everything the practice loop needs, made once from the arguments."""

    args: FinetuneArgs
    """The arguments with ``task`` and ``loss`` resolved (the held-out task; ``online_alpha``)."""
    out: Path
    returns: ReturnConfig
    """The return definition the run learns (the pretrained policy's, with the arguments' overrides)."""
    policy: QTransformerPolicy
    """The acting policy (CPU, in the learner's process): it gets the learner's weights as they change."""
    encoder_name: str
    learner: Learner
    actor: Actor
    offline: EpisodeReplay | None
    """Prior data (None without)."""
    online: EpisodeReplay
    store: EpisodeStore
    """Every finished practice episode, on disk the moment it ends."""
    make_env: Callable[[], Any]
    """A fresh env for evaluation, with the policy's env settings."""
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    curve: list[dict[str, Any]] = field(default_factory=list)
    n_prior: int = 0
    n_earlier: int = 0
    """Episodes of earlier stages' practice in the prior-data replay (``FinetuneArgs.earlier_practice``)."""
    primed: int = 0
    """Prior transitions APRL's dynamics model was fitted on."""
    sources: set[tuple[str, int]] = field(default_factory=set)
    """(actor session, sequence number) of every stored episode an actor sent (a resumed run's), so that
    an actor resending one it has no acknowledgement for is not counted twice."""

    @property
    def task(self) -> str:
        assert self.args.task is not None
        return self.args.task

    @property
    def snapshot_path(self) -> Path:
        return self.out / "learner.pt"


def load_prior(args: FinetuneArgs, use_images: bool) -> Iterator[Episode]:
    """The prior data's episodes (filtered as ``args`` asks), as replay episodes, one at a time."""
    from qtransformer.dataset import EpisodeFilter, load_episodes, with_final_observation

    if args.prior_data is None:
        raise ValueError("load_prior needs FinetuneArgs.prior_data (a dataset directory)")
    filt = EpisodeFilter(success_only=True) if args.prior_success_only else None
    episodes = load_episodes(
        args.prior_data,
        episode_filter=filt,
        cameras=None if use_images else [],
        max_episodes=args.prior_max_episodes,
    )
    for ep in episodes:
        if ep.length < 2 and not ep.terminated:
            continue
        d = with_final_observation(ep)  # T frames -> T'+1 observations
        image = next(iter(d["images"].values())) if d["images"] else None
        yield Episode(
            state=np.asarray(d["state"], np.float32),
            action=np.asarray(d["action"], np.float32),
            reward=np.asarray(d["reward"], np.float32),
            terminated=bool(d["terminated"]),
            instruction=ep.instruction,
            task=ep.task_id,
            success=bool(ep.success),
            image=image,
        )


def earlier_practice(runs: Sequence[str | Path], budget: int) -> Iterator[Episode]:
    """The practice stored by earlier runs (``<run>/episodes``) within ``budget`` transitions, shared
    equally among the runs; each keeps its latest episodes (the best its policy did), in order."""
    if budget < 1:
        raise ValueError(f"the replay budget must be >= 1 transition, got {budget}")
    share = budget // max(1, len(runs))
    for run in runs:
        store = Path(run) / "episodes"
        if not store.is_dir():
            raise ValueError(f"earlier practice {run!r} has no episodes/ directory: is it a qt finetune run?")
        kept: list[Episode] = []
        used = 0
        for ep in reversed(EpisodeStore(store).load_all()):
            if used + len(ep) > share:
                break
            kept.append(ep)
            used += len(ep)
        yield from reversed(kept)


def env_settings(args: FinetuneArgs, pretrained_meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """Env keyword arguments (Navigate's control rate, GarbageSort's start jitter) that the pretrained
    policy and the prior data imply.

    Practising at other settings than those the policy and the prior data were recorded at would
    silently mix two dynamics in one replay buffer, so a disagreement is an error.
    """
    from qtransformer.dataset import DatasetMeta, dataset_env_kwargs

    found: dict[str, dict[str, Any]] = {}
    if pretrained_meta is not None and pretrained_meta.get("env") == args.env:
        found["the pretrained policy"] = dict(pretrained_meta.get("env_kwargs") or {})
    if args.prior_data and Path(args.prior_data, "meta", "info.json").exists():
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


def practice_loss(loss: LossConfig, support_head: bool) -> LossConfig:
    """``loss`` with ``online_alpha`` resolved: None becomes 0 for a policy with a support head (its
    targets and its actions already keep to the bins the prior data supports, and on practice samples
    the term would teach the agent its own habits) and stays None (``alpha``) without one."""
    if loss.online_alpha is None and support_head:
        return dataclasses.replace(loss, online_alpha=0.0)
    return loss


INPUT_STATS = ("state_mean", "state_std", "instruction_mean", "instruction_std")
"""The network's buffers that hold the training data's statistics (``ModelConfig.normalize_*``)."""


def standardise_from_prior(model: QTransformer, args: FinetuneArgs, text: TextEncoder) -> None:
    """A new network's input statistics from the prior data (``ModelConfig.normalize_*``)."""
    from qtransformer.dataset import apply_input_stats, dataset_meta

    cfg = model.cfg
    for name, on in (
        ("normalize_state", cfg.normalize_state),
        ("normalize_instruction", cfg.normalize_instruction),
    ):
        if on and not args.prior_data:
            raise ValueError(
                f"model.{name} from scratch takes its statistics from the prior data: give --prior-data, "
                f"or set {name} to False"
            )
    if cfg.normalize_state or cfg.normalize_instruction:
        apply_input_stats(model, dataset_meta(str(args.prior_data)), str(args.prior_data), text)


def refuse_behaviour_cloning(meta: Mapping[str, Any], path: str | None) -> None:
    """A ValueError if the checkpoint at ``path`` (its ``meta``) was trained by behaviour cloning: its
    outputs are action scores, not Q-values to practise with."""
    if meta.get("method") == "bc":
        raise ValueError(
            f"{path} is a behaviour-cloning policy: its outputs are action scores, not Q-values to "
            "practise with; fine-tune a policy pretrained with --method qtransformer"
        )


def make_policy(args: FinetuneArgs, env_module: str = "envs") -> tuple[QTransformerPolicy, str]:
    """The policy to fine-tune; its ``meta["env_kwargs"]`` are the env settings to practise with.

    ``init="scratch"`` keeps the pretrained checkpoint's network shape, bins and encoder and draws new
    weights (the from-scratch baseline at equal architecture); without a checkpoint the network is
    ``args.model`` sized to the env."""
    ckpt = load_policy_checkpoint(args.pretrained) if args.pretrained else None
    if ckpt is not None:
        refuse_behaviour_cloning(ckpt.meta, args.pretrained)
    env_kwargs = env_settings(args, ckpt.meta if ckpt is not None else None)
    if ckpt is not None and args.init == "pretrained":
        model, bins, encoder_name = build_model(ckpt), ckpt.bins, ckpt.encoder
        text = TextEncoder(encoder_name)
    else:
        torch.manual_seed(args.seed)
        if ckpt is not None:
            cfg, bins, encoder_name = ckpt.model_config, ckpt.bins, ckpt.encoder
        else:
            env = importlib.import_module(env_module).make_env(args.env, **env_kwargs)
            space = env.action_space
            cfg = dataclasses.replace(
                args.model, state_dim=env.observation_space["state"].shape[0], action_dim=space.shape[0]
            )
            env.close()
            bins, encoder_name = ActionBins(space.low, space.high, cfg.num_bins), DEFAULT_ENCODER
        model = QTransformer(cfg)
        text = TextEncoder(encoder_name)
        if ckpt is not None:
            # The input statistics are the data's, not learnt: the baseline scales its inputs alike.
            model.load_state_dict({k: ckpt.state_dict[k] for k in INPUT_STATS}, strict=False)
        else:
            standardise_from_prior(model, args, text)
    model.set_head_dropout(args.head_dropout)
    meta: dict[str, Any] = {"env": args.env, "env_kwargs": env_kwargs}
    if ckpt is not None:
        # The pretrained return definition, also for the from-scratch baseline in its shape.
        meta["returns"] = ckpt.returns.to_dict()
    return QTransformerPolicy(model, bins, text, meta), encoder_name


def make_actor(args: FinetuneArgs, policy: QTransformerPolicy, envs: Any, seed: int) -> Actor:
    """An actor practising ``args.task`` in a fresh env with the policy's env settings."""
    env = envs.make_env(
        args.env,
        image_size=policy.model.cfg.image_size,
        tasks="all",
        reset_free=args.reset_free,
        **policy.meta["env_kwargs"],
    )
    return Actor(policy, env, args.task or "", args.exploration, args.aprl, seed=seed)


def build_finetune(args: FinetuneArgs, env_module: str = "envs") -> FinetuneRun:
    """Make the run's pieces; with ``args.resume``, load the last snapshot and every stored episode."""
    envs = importlib.import_module(env_module)
    args = dataclasses.replace(args, task=args.task or envs.tasks.heldout_task_ids(args.env)[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    policy, encoder_name = make_policy(args, env_module)
    pretrained = ReturnConfig.from_dict(policy.meta["returns"]) if "returns" in policy.meta else None
    returns = resolve_returns(pretrained, args.returns)
    args = dataclasses.replace(args, loss=practice_loss(args.loss, policy.model.cfg.support_tau > 0))
    mcfg = policy.model.cfg
    cfg = TrainConfig(model=mcfg, loss=args.loss, optim=args.optim, returns=returns)
    learner_model = QTransformer(mcfg)
    learner_model.load_state_dict(policy.model.state_dict())
    learner = Learner(learner_model, cfg, policy.bins, policy.encoder, seed=args.seed)
    actor = make_actor(args, policy, envs, seed=args.seed)
    env_kwargs = policy.meta["env_kwargs"]
    run = FinetuneRun(
        args=args,
        out=out,
        policy=policy,
        encoder_name=encoder_name,
        learner=learner,
        actor=actor,
        offline=None,
        returns=returns,
        online=EpisodeReplay(returns, mcfg.num_images, args.seed + 1),
        store=EpisodeStore(out / "episodes"),
        make_env=lambda: envs.make_env(args.env, image_size=mcfg.image_size, tasks="all", **env_kwargs),
    )
    prime = args.aprl.enabled and args.aprl.prime_with_prior
    if args.prior_data:
        run.offline = EpisodeReplay(returns, mcfg.num_images, args.seed)
        for ep in load_prior(args, use_images=mcfg.image_size > 0):
            run.offline.add(ep)
            run.n_prior += 1
            if prime:  # APRL's dynamics model sees the prior transitions too (fitted below)
                run.primed += actor.cautious.prime([ep], fit=False)
    if args.earlier_practice:
        # Earlier stages' practice (continual learning) joins the prior data: it is sampled in the
        # prior-data share of every batch. Kept as practice (the loss treats it as its own practice), or
        # as data ("practice+support": the support head learns its successes, the conservative term
        # covers it).
        if run.offline is None:
            run.offline = EpisodeReplay(returns, mcfg.num_images, args.seed)
        as_practice = args.continual.replay != "practice+support"
        for ep in earlier_practice(args.earlier_practice, args.continual.budget):
            run.offline.add(ep, practice=as_practice)
            run.n_earlier += 1
    if args.resume and run.snapshot_path.exists():
        snap = load_snapshot(run.snapshot_path)
        learner.load_state_dict(snap["learner"])
        actor.cautious.load_state_dict(snap["aprl"])
        run.curve = snap["curve"]
        run.counters.update({k: v for k, v in snap["counters"].items() if k in COUNTERS})
    if args.resume:
        stored = run.store.load_all()
        for ep in stored:
            run.online.add(ep)
            if "source" in ep.info:
                run.sources.add(ep.info["source"])
        # Episodes finished after the last snapshot still count: the store is the record of practice.
        run.counters["env_steps"] = sum(len(e) for e in stored)
        run.counters["episodes"] = len(stored)
        actor.episodes = len(stored)
    if run.primed and actor.cautious.updates == 0:  # a resumed run keeps its restored dynamics model
        actor.cautious.train(iters=args.aprl.prime_iters)
    actor.load_weights(learner.weights(), learner.updates)
    return run
