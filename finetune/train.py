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
The TD target and ``train_step`` are ``qtransformer``'s, shared with pretraining; what the loop runs on
is made by ``finetune.builder``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import tyro

from envs.common import EnvName
from finetune.actor import ExplorationConfig
from finetune.aprl import AprlConfig
from finetune.builder import FinetuneRun, build_finetune
from finetune.continual import ContinualConfig, run_continual
from finetune.episode import Episode
from finetune.store import save_snapshot
from qtransformer.checkpoint import save_policy_checkpoint
from qtransformer.config import LossConfig, ModelConfig, OptimConfig
from qtransformer.dataset import write_json
from qtransformer.returns import ReturnOverrides
from qtransformer.rollout import evaluate


@dataclass
class FinetuneArgs:
    """Online fine-tuning on one instruction (a held-out task of an env). The command line's defaults
    are the env's recipe (``scripts/recipes.py``)."""

    env: EnvName = "garbage_sort"
    """Env to practise in."""
    recipe: str | None = None
    """Recipe these defaults come from (the CLI picks the env's; ``--recipe NAME`` another)."""
    task: str | None = None
    """Task id to master; default: the env's first held-out task (never seen in pretraining)."""
    tasks: tuple[str, ...] = ()
    """Several task ids, learned one after another (continual learning, ``finetune.continual``): each
    stage practises one for ``env_steps`` from the previous stage's weights, and every stage's policy is
    scored on all of them and on the pretraining tasks. Replaces ``--task``."""
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    pretrained: str | None = None
    """Pretrained policy checkpoint directory."""
    init: Literal["pretrained", "scratch"] = "pretrained"
    """Start from the pretrained weights, or from new weights in the pretrained network's shape (the
    from-scratch baseline; without ``--pretrained`` the network is a default one sized to the env)."""
    prior_data: str | None = None
    """Dataset of prior episodes preloaded into the offline replay; None = no prior data."""
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
    head_dropout: float = 0.01
    """Q-head dropout during fine-tuning (DroQ-style regularisation for high update ratios)."""
    returns: ReturnOverrides = field(default_factory=ReturnOverrides)
    """Return definition: each field left unset takes the pretrained policy's (``ReturnConfig``'s default
    without a checkpoint). The discount and the minimal return are always the pretrained policy's: they
    fix what its Q-values mean."""
    loss: LossConfig = field(default_factory=lambda: LossConfig(behavior_online=False, online_mc_mix=1.0))
    """Loss settings. Practice samples do not train the support head (``behavior_online`` False), and with a support head
    they get no conservative term (``online_alpha`` None resolves to 0 then, to ``alpha`` without one),
    so that the agent does not learn to imitate its own practice. Their target is their episode's
    Monte-Carlo return (``online_mc_mix`` 1)."""
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, warmup_steps=0, lr_schedule="constant", tau=0.01)
    )
    """Optimiser of the learner: a constant rate, low enough to keep what pretraining fitted."""
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    aprl: AprlConfig = field(default_factory=AprlConfig)
    reset_free: bool = False
    """Practise without resets: the world carries over from one episode to the next. When it does not
    allow the target task (just after succeeding at it), the env's task graph picks a task that undoes
    it (GarbageSort: take the object out again; Navigate: drive to another landmark), practised with the
    same policy; a person is counted (``human_resets``) only when no task can start."""
    actors: int = 0
    """Actor processes this command starts, collecting in parallel (0 and no ``--listen``: collect in the
    learner's process)."""
    listen: str | None = None
    """``HOST:PORT`` to accept actors on (``qt actor --learner ws://HOST:PORT`` on a robot's computer);
    a non-loopback host needs a token (``--token-env`` / ``--token-file``)."""
    token_env: str = "QT_LEARNER_TOKEN"
    """Environment variable holding the token actors must present (``--listen``)."""
    token_file: str | None = None
    """File whose first line is that token (takes precedence over the environment variable)."""
    actor_launcher: Literal["process", "ray"] = "process"
    """How ``--actors`` are started: child processes of this command, or Ray tasks (one CPU each) on a
    local Ray instance or the cluster at ``--ray-address`` (``pip install ray``)."""
    ray_address: str | None = None
    """Ray cluster to start actors on (``auto``: the one this machine is part of); None starts a local
    instance."""
    eval_every: int = 1000
    """Environment steps between greedy evaluations of the target task."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    resume: bool = False
    """Continue the run in ``out``: every stored episode, step count, optimiser, schedule."""
    seed: int = 0
    """Seed for exploration, sampling and (from scratch) initialisation."""
    model: tyro.conf.Suppress[ModelConfig] = field(default_factory=ModelConfig)
    """Network shape from scratch without a pretrained checkpoint (sized to the env)."""
    learning_starts: tyro.conf.Suppress[int] = 200
    """Environment steps collected before the first update when there is no prior data."""
    publish_every: tyro.conf.Suppress[int] = 50
    """Gradient steps between weight publications to the actors."""
    progress: tyro.conf.Suppress[bool | None] = None
    """Progress bar (None: when stderr is a terminal)."""
    earlier_practice: tyro.conf.Suppress[tuple[str, ...]] = ()
    """Run directories of earlier stages whose stored practice joins the prior-data replay, within
    ``continual.budget`` (set by the continual stage loop)."""

    def __post_init__(self) -> None:
        if self.env_steps < 1 or self.batch_size < 1 or self.utd <= 0:
            raise ValueError("env_steps and batch_size must be >= 1 and utd > 0")
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError(f"offline_fraction must be in [0, 1], got {self.offline_fraction}")
        if self.actors < 0 or self.eval_every < 1 or self.eval_episodes < 0:
            raise ValueError("actors >= 0, eval_every >= 1 and eval_episodes >= 0 are required")
        if self.listen is not None:
            listen_address(self.listen)
        if self.tasks and self.task is not None:
            raise ValueError("give --task (one task) or --tasks (a sequence), not both")
        if self.tasks and (self.actors or self.listen):
            raise ValueError(
                "--tasks (continual learning) collects in the learner's process: drop --actors/--listen"
            )


def listen_address(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port), or a ValueError naming the problem."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


EVAL_SEED = 500_000
"""Seed of the evaluation starts (disjoint from practice): every curve point uses the same starts."""


def value_calibration(res: Mapping[str, Any], task: str, gamma: float) -> dict[str, float]:
    """How far the critic's value of its greedy first action is from what the episode then earned: the
    mean predicted value (``q_greedy``), the mean discounted return of the greedy episode (``gamma`` to
    the power of the steps before the success reward, 0 for a failure; ``return_greedy``), and their
    difference (``overestimation``)."""
    qs = res["q_first"][task]
    if not qs or any(q is None for q in qs):
        return {}
    earned = [gamma ** (n - 1) if ok else 0.0 for ok, n in zip(res["successes"][task], res["lengths"][task])]
    q, g = float(np.mean(qs)), float(np.mean(earned))
    return {"q_greedy": q, "return_greedy": g, "overestimation": q - g}


def evaluate_run(run: FinetuneRun, writer: Any) -> None:
    """One curve point: greedy success on the target task from the fixed evaluation starts (the same at
    every point, so the curve shows the policy changing rather than one set of starts being harder)."""
    if not run.args.eval_episodes:
        return
    res = evaluate(run.policy, run.make_env, [run.task], run.args.eval_episodes, seed=EVAL_SEED)
    over = value_calibration(res, run.task, run.returns.gamma)
    run.curve.append(
        {
            "env_steps": run.counters["env_steps"],
            "success_rate": res["success_rate"],
            **over,
            "updates": run.learner.updates,
            "safety_violations": run.counters["safety_violations"],
            "human_resets": run.counters["human_resets"],
        }
    )
    writer.add_scalar("charts/eval_success_rate", res["success_rate"], run.counters["env_steps"])
    for k, v in over.items():
        writer.add_scalar(f"charts/{k}", v, run.counters["env_steps"])
    write_json(run.out / "curve.json", run.curve)  # atomic: a reader never sees half a file


def count_episode(run: FinetuneRun, ep: Episode, stats: Mapping[str, Any], writer: Any) -> None:
    """Store a finished practice episode, add it to the online replay and count it."""
    c = run.counters
    run.store.append(ep)
    run.online.add(ep)
    c["env_steps"] += len(ep)
    c["episodes"] += 1
    if ep.task != run.task:  # reset-free: an undo task in between (local or remote actor)
        c["undo_episodes"] += 1
        c["undo_successes"] += int(stats["success"])
    else:
        c["successes"] += int(stats["success"])
    c["safety_violations"] += int(stats["safety_violations"])
    c["human_resets"] += int(stats["human_reset"])
    for tag, value in (
        ("charts/episode_success", float(stats["success"])),
        ("charts/safety_violations", c["safety_violations"]),
        ("charts/human_resets", c["human_resets"]),
        ("charts/aprl_action_scale", stats.get("action_scale")),
    ):
        if value is not None:
            writer.add_scalar(tag, value, c["env_steps"])


def start_actors(run: FinetuneRun, env_module: str = "envs") -> tuple[Any, Any]:
    """Listen for actors (``--listen``, else on a free loopback port) and start ``--actors`` of them
    (child processes, or Ray tasks): the same ``qt actor`` a robot's computer runs."""
    from finetune.remote import ActorArgs, actor_spec, run_id
    from finetune.transport import LearnerLink, new_token
    from qtransformer.serving.auth import is_loopback, load_token

    args = run.args
    host, port = listen_address(args.listen) if args.listen else ("127.0.0.1", 0)
    token = load_token(args.token_env, args.token_file)
    if token is None:
        if not is_loopback(host):
            raise ValueError(
                f"--listen {args.listen} accepts actors from the network: set {args.token_env} or "
                "--token-file to the token they present"
            )
        token = new_token()  # only the actors started here know it
    elif len(token) < 16:
        raise ValueError(
            f"the learner token (from {args.token_env} or --token-file) must be at least 16 characters"
        )
    spec = actor_spec(args, run.task, run.policy, run.encoder_name, run_id(run.out))
    link = LearnerLink(host, port, token, spec=spec, seen=run.sources)
    link.publish(run.learner.updates, run.learner.weights())
    if args.listen:
        print(f"learner listening for actors at {link.url}", flush=True)
    dial = host
    if host in ("0.0.0.0", "", "::"):  # bound everywhere: local actors dial loopback, Ray's nodes this node
        dial = "127.0.0.1" if args.actor_launcher == "process" else _node_ip()
    actor_args = [
        ActorArgs(
            learner=f"ws://{dial}:{link.address[1]}",
            actor_id=i,
            spool=str(run.out / "actors" / str(i)),
            token=token,
            prior_data=args.prior_data,
            env_module=env_module,
        )
        for i in range(args.actors)
    ]
    return link, launch_actors(actor_args, args.actor_launcher, args.ray_address)


def _node_ip() -> str:
    import ray

    return str(ray.util.get_node_ip_address())


class _ActorProcesses:
    """``--actor-launcher process``: spawned child processes."""

    def __init__(self, actor_args: list[Any]):
        from finetune.remote import run_actor

        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=run_actor, args=(a,), daemon=True) for a in actor_args]
        for p in self.procs:
            p.start()

    def join(self, timeout: float) -> None:
        for p in self.procs:
            p.join(timeout=timeout)
            if p.is_alive():
                p.terminate()


class _RayActors:
    """``--actor-launcher ray``: one Ray task per actor, one CPU each, on a local Ray instance or the
    cluster at ``ray_address``; Ray places them and restarts a task whose worker died."""

    def __init__(self, actor_args: list[Any], address: str | None):
        import ray

        from finetune.remote import run_actor

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        task = ray.remote(num_cpus=1, max_retries=3)(run_actor)
        self.refs = [task.remote(a) for a in actor_args]

    def join(self, timeout: float) -> None:
        _, running = self.ray.wait(self.refs, num_returns=len(self.refs), timeout=timeout)
        for ref in running:
            self.ray.cancel(ref, force=True)
        if self.started:
            self.ray.shutdown()


def launch_actors(actor_args: list[Any], launcher: str, ray_address: str | None) -> Any:
    """Start one actor per entry of ``actor_args``; the result's ``join(timeout)`` waits for them to
    finish after the learner told them to stop, and ends the ones that do not."""
    if launcher == "ray":
        return _RayActors(actor_args, ray_address)
    return _ActorProcesses(actor_args)


def practise(run: FinetuneRun, env_module: str = "envs") -> None:
    """The loop: collect episodes (here or from actor processes), take ``utd`` updates per env step on
    RLPD-mixed batches, publish weights, evaluate on schedule and snapshot after every round."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm.auto import tqdm

    args, c, learner = run.args, run.counters, run.learner
    writer = SummaryWriter(str(run.out / "logs"))
    link: Any = None
    actors: Any = None
    if args.actors or args.listen:
        link, actors = start_actors(run, env_module)
    if not run.curve:
        evaluate_run(run, writer)  # zero-shot point at step 0
    bar = tqdm(
        total=args.env_steps,
        initial=c["env_steps"],
        disable=None if args.progress is None else not args.progress,
        desc=f"finetune {run.task}",
    )
    last_publish = learner.updates
    try:
        while c["env_steps"] < args.env_steps:
            before = c["env_steps"]
            if link is not None:
                for got in link.poll_episodes(timeout=5.0):
                    if c["env_steps"] >= args.env_steps:
                        # The budget is spent: what actors sent meanwhile stays in their spools,
                        # unacknowledged, for a --resume with a larger budget.
                        break
                    got.episode.info["source"] = (got.session, got.seq)
                    stats = {"success": got.episode.success, "safety_violations": 0, "human_reset": False}
                    count_episode(run, got.episode, {**stats, **got.stats}, writer)
                    link.ack(got)  # stored on disk: the actor may forget it
                    bar.update(len(got.episode))
            else:
                ep, stats = run.actor.collect(c["env_steps"])
                count_episode(run, ep, stats, writer)
                bar.update(len(ep))
            ready = run.offline is not None or c["env_steps"] >= args.learning_starts
            due = int(args.utd * c["env_steps"]) - learner.updates if ready else 0
            terms: dict[str, float] = {}
            for _ in range(max(0, due)):
                terms = learner.update(
                    run.offline, run.online, args.batch_size, args.offline_fraction if run.offline else 0.0
                )
                if learner.updates - last_publish >= args.publish_every:
                    weights = learner.weights()
                    run.actor.load_weights(weights, learner.updates)
                    if link is not None:
                        link.publish(learner.updates, weights)
                    last_publish = learner.updates
            for k, v in terms.items():
                writer.add_scalar(f"losses/{k}", v, c["env_steps"])
            writer.add_scalar("charts/updates", learner.updates, c["env_steps"])
            if c["env_steps"] // args.eval_every > before // args.eval_every:
                run.actor.load_weights(learner.weights(), learner.updates)
                evaluate_run(run, writer)
            save_snapshot(
                run.snapshot_path,
                {
                    "learner": learner.state_dict(),
                    "aprl": run.actor.cautious.state_dict(),
                    "curve": run.curve,
                    "counters": c,
                },
            )
    finally:
        bar.close()
        if link is not None:
            link.stop_actors()
            actors.join(timeout=30)
            link.close()
    run.actor.load_weights(learner.weights(), learner.updates)
    if not run.curve or run.curve[-1]["env_steps"] != c["env_steps"]:
        evaluate_run(run, writer)
    writer.close()


def run_finetune(args: FinetuneArgs, *, env_module: str = "envs") -> dict[str, Any]:
    """Fine-tune (with ``args.tasks``, on each in turn: ``finetune.continual``); ``env_module`` names the
    module providing ``make_env`` and ``tasks`` (tests pass a fake)."""
    if args.tasks:
        return run_continual(args, env_module)
    t0 = time.perf_counter()
    run = build_finetune(args, env_module)
    practise(run, env_module)
    learner = run.learner
    save_policy_checkpoint(
        run.out / "policy",
        learner.acc.unwrap_model(learner.model),
        run.policy.bins,
        run.encoder_name,
        {
            "env": run.args.env,
            "env_kwargs": run.policy.meta["env_kwargs"],
            "task": run.task,
            "recipe": run.args.recipe,
            "env_steps": run.counters["env_steps"],
            # The budget: runs of one configuration end a few steps apart (an episode finishes past it).
            "env_steps_budget": run.args.env_steps,
            "seed": run.args.seed,
            "updates": learner.updates,
            "loss": dataclasses.asdict(run.args.loss),
        },
        returns=run.returns,
    )
    summary = {
        "task": run.task,
        "loss": dataclasses.asdict(run.args.loss),
        "returns": run.returns.to_dict(),
        "prior_episodes": run.n_prior,
        "earlier_practice_episodes": run.n_earlier,
        "aprl_primed_transitions": run.primed,
        **run.counters,
        "updates": learner.updates,
        "curve": run.curve,
        "final_success_rate": run.curve[-1]["success_rate"] if run.curve else None,
        "seconds": time.perf_counter() - t0,
    }
    write_json(run.out / "summary.json", summary)
    return summary
