"""``qt actor``: practise on a robot's computer (or any machine) for a learner elsewhere.

The actor connects to ``qt finetune --listen HOST:PORT`` (or is started by ``qt finetune --actors N``),
builds its policy and env from the learner's hello (network shape, bins, text encoder name, env and
task, exploration and APRL settings: nothing to keep in step by hand), then collects episodes with the
newest weights the learner publishes and sends each one as it ends. Episodes wait in a spool directory
until the learner acknowledges them, so killing the actor loses at most the episode in progress, and a
learner restart is ridden out by reconnecting.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tyro

from finetune.actor import Actor, ExplorationConfig
from finetune.aprl import AprlConfig
from finetune.transport import ActorLink

if TYPE_CHECKING:
    from finetune.train import FinetuneArgs
    from qtransformer.policy import QTransformerPolicy

log = logging.getLogger("qtransformer.finetune.actor")

DEFAULT_TOKEN_ENV = "QT_LEARNER_TOKEN"


@dataclass
class ActorArgs:
    """Collect practice episodes for a fine-tuning learner that listens elsewhere (``qt finetune --listen``)."""

    learner: str
    """The learner's address, ``ws://HOST:PORT``."""
    actor_id: int = 0
    """This actor's number: it picks the exploration seed and the default spool directory."""
    spool: str | None = None
    """Where finished episodes wait until the learner acknowledges them; default runs/actor/<actor_id>.
    An actor restarted with the same spool resends what it had not got acknowledged."""
    token_env: str = DEFAULT_TOKEN_ENV
    """Environment variable holding the learner's token."""
    token_file: str | None = None
    """File whose first line is the learner's token (takes precedence over the environment variable)."""
    encoder: str | None = None
    """Local text encoder directory overriding the one the learner names."""
    prior_data: str | None = None
    """Prior dataset on this machine to prime APRL's dynamics model with (none: it learns online)."""
    episodes: int | None = None
    """Stop after this many episodes (None: until the learner ends the run)."""
    max_pending: int = 100
    """Episodes allowed to wait for acknowledgement; beyond this the actor waits before collecting more."""
    connect_timeout: float = 60.0
    """Seconds to wait for the learner at start."""
    reconnect_timeout: float = 600.0
    """Seconds the learner may stay unreachable (a restart) before the actor gives up."""
    torch_threads: int = 0
    """Intra-op threads for acting; 0 leaves torch's default (every core)."""
    token: tyro.conf.Suppress[str | None] = None
    """The token itself (actors that ``qt finetune`` starts get it this way)."""
    env_module: tyro.conf.Suppress[str] = "envs"
    """Module providing ``make_env`` (tests pass a fake)."""

    def __post_init__(self) -> None:
        if not self.learner.startswith(("ws://", "wss://")):
            raise ValueError(f"--learner must be ws://HOST:PORT, got {self.learner!r}")
        if self.torch_threads < 0:
            raise ValueError(f"torch_threads must be >= 0, got {self.torch_threads}")
        if self.actor_id < 0 or self.max_pending < 1 or (self.episodes is not None and self.episodes < 1):
            raise ValueError("actor_id >= 0, max_pending >= 1 and episodes >= 1 (or None) are required")


def run_id(out: str | os.PathLike) -> str:
    """The id of the run in ``out`` (made on first use, kept across ``--resume``): an actor's spooled
    episodes belong to it."""
    from finetune.store import _atomic_write

    path = Path(out) / "run_id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, secrets.token_hex(8).encode())
    return path.read_text().strip()


def actor_spec(
    args: FinetuneArgs, task: str, policy: QTransformerPolicy, encoder_name: str, run: str
) -> dict[str, Any]:
    """What an actor needs to practise ``task`` for run ``run``: sent in the learner's hello."""
    cfg = policy.model.cfg
    return {
        "run": run,
        "env": args.env,
        "env_kwargs": dict(policy.meta["env_kwargs"]),
        "task": task,
        "reset_free": args.reset_free,
        "model": cfg.to_dict(),
        "bins": policy.bins.to_dict(),
        "encoder": encoder_name,
        "exploration": dataclasses.asdict(args.exploration),
        "aprl": dataclasses.asdict(args.aprl),
        "seed": args.seed,
        "state_dim": cfg.state_dim,
        "action_dim": cfg.action_dim,
        "image": [cfg.image_size, cfg.image_size, 3] if cfg.image_size > 0 else None,
    }


def actor_from_spec(spec: dict[str, Any], actor_id: int, encoder: str | None, env_module: str) -> Actor:
    """The policy (weights follow from the learner) and env an actor practises with."""
    from finetune.builder import make_actor
    from finetune.train import FinetuneArgs
    from qtransformer.bins import ActionBins
    from qtransformer.config import ModelConfig
    from qtransformer.model import QTransformer
    from qtransformer.policy import QTransformerPolicy
    from qtransformer.text import TextEncoder

    cfg = ModelConfig.from_dict(spec["model"])
    policy = QTransformerPolicy(
        QTransformer(cfg),
        ActionBins.from_dict(spec["bins"]),
        TextEncoder(encoder or spec["encoder"]),
        {"env": spec["env"], "env_kwargs": spec["env_kwargs"]},
    )
    aprl = dict(spec["aprl"])
    if aprl.get("exempt_dims") is not None:
        aprl["exempt_dims"] = tuple(aprl["exempt_dims"])
    args = FinetuneArgs(
        env=spec["env"],
        task=spec["task"],
        reset_free=spec["reset_free"],
        exploration=ExplorationConfig(**spec["exploration"]),
        aprl=AprlConfig(**aprl),
        seed=int(spec["seed"]),
    )
    envs = importlib.import_module(env_module)
    return make_actor(args, policy, envs, seed=args.seed + 1000 * (actor_id + 1))


def run_actor(args: ActorArgs) -> dict[str, Any]:
    """Entry point of ``qt actor``: collect until the learner ends the run (or ``args.episodes``)."""
    from qtransformer.serving.auth import load_token

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    token = args.token or load_token(args.token_env, args.token_file)
    spool = Path(args.spool or os.path.join("runs", "actor", str(args.actor_id)))
    link = ActorLink(
        args.learner,
        token,
        spool=spool,
        connect_timeout=args.connect_timeout,
        reconnect_timeout=args.reconnect_timeout,
    )
    try:
        assert link.hello is not None
        spec = link.hello["spec"]
        actor = actor_from_spec(spec, args.actor_id, args.encoder, args.env_module)
        if actor.cautious.cfg.enabled and actor.cautious.cfg.prime_with_prior and args.prior_data:
            from finetune.builder import load_prior
            from finetune.train import FinetuneArgs

            prior = FinetuneArgs(env=spec["env"], prior_data=args.prior_data)
            actor.cautious.prime(load_prior(prior, use_images=False))
        log.info("actor %d practising %s for %s", args.actor_id, spec["task"], args.learner)
        env_steps = episodes = 0
        has_weights = False
        while not link.stopped:
            got = link.latest_weights(timeout=0.0 if has_weights else 60.0)
            if got is not None:
                actor.load_weights(got[1], got[0])
                has_weights = True
            if link.stopped:
                break
            if not has_weights:
                raise ConnectionError(f"actor {args.actor_id}: no weights from the learner within 60 s")
            while link.pending >= args.max_pending and not link.stopped:
                link.flush(timeout=1.0)
                link.check()  # raises if the learner has been gone too long
            ep, stats = actor.collect(env_steps)
            env_steps += len(ep)
            if link.stopped:
                break
            link.send_episode(ep, stats)
            episodes += 1
            if args.episodes is not None and episodes >= args.episodes:
                break
        link.flush(timeout=30.0)
        return {"episodes": episodes, "env_steps": env_steps, "unacknowledged": link.pending}
    finally:
        link.close()
