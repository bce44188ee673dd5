"""Practice throughput through the actor <-> learner link, with 1, 2 and 4 actor processes.

    python scripts/bench_actors.py [--env navigate] [--actors 1 2 4] [--seconds 30] [--tiny]

A learner end (``LearnerLink``) publishes the weights of a fresh network sized to the env (state only)
and stores nothing: it acknowledges every episode as it arrives and counts its env steps. Each actor is
the ``qt actor`` code (``finetune.remote.run_actor``) in its own process, with the fine-tuning defaults
(epsilon-greedy, APRL). The same-run baseline is one actor collecting in the measuring process itself,
as ``qt finetune`` without actors does (no link). Rates are counted over ``--seconds`` after every actor
has delivered its first episode, so process start-up is not in them.

Prints {"baseline_env_steps_per_s", "env_steps_per_s": {N: rate}, "ratio_to_baseline": {N: ratio}, ...}.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from finetune.remote import ActorArgs, actor_from_spec, actor_spec, run_actor
from finetune.train import FinetuneArgs
from finetune.transport import LearnerLink, new_token
from scripts.bench_common import machine, pin_threads, report


def make_spec(env_name: str, tiny: bool) -> tuple[dict, dict]:
    """The hello an actor gets, for a fresh state-only network sized to ``env_name``, and its weights."""
    import envs
    from finetune.builder import make_policy
    from qtransformer.config import ModelConfig

    model = ModelConfig(d_model=32, n_layers=1, n_heads=2) if tiny else ModelConfig()
    args = FinetuneArgs(env=env_name, model=model, task=envs.tasks.heldout_task_ids(env_name)[0])  # type: ignore[arg-type]
    policy, encoder = make_policy(args)
    assert args.task is not None
    spec = actor_spec(args, args.task, policy, encoder, "bench")
    return spec, policy.model.state_dict()


def baseline(spec: dict, weights: dict, seconds: float) -> float:
    """Env steps/s of one actor collecting in this process (no link)."""
    actor = actor_from_spec(spec, 0, None, "envs")
    actor.load_weights(weights, 0)
    actor.collect(0)  # warm-up
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ep, _ = actor.collect(steps)
        steps += len(ep)
    return steps / (time.perf_counter() - t0)


def through_link(spec: dict, weights: dict, n: int, seconds: float, root: Path) -> dict[str, float]:
    token = new_token()
    link = LearnerLink(token=token, spec=spec)
    link.publish(0, weights)
    ctx = mp.get_context("spawn")
    procs = []
    for i in range(n):
        a = ActorArgs(
            learner=link.url, actor_id=i, spool=str(root / f"{n}-{i}"), token=token, torch_threads=1
        )
        p = ctx.Process(target=run_actor, args=(a,), daemon=True)
        p.start()
        procs.append(p)
    try:
        first: set[str] = set()
        deadline = time.monotonic() + 300
        while len(first) < n:  # warm-up: every actor has started and delivered an episode
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(first)} of {n} actors delivered an episode within 300 s")
            for got in link.poll_episodes(timeout=0.5):
                first.add(got.session)
                link.ack(got)
        steps = episodes = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for got in link.poll_episodes(timeout=0.1):
                steps += len(got.episode)
                episodes += 1
                link.ack(got)
        dt = time.perf_counter() - t0
        return {"env_steps_per_s": steps / dt, "episodes_per_s": episodes / dt}
    finally:
        link.stop_actors()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
        link.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="navigate", choices=["navigate", "garbage_sort"])
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--tiny", action="store_true", help="smoke-test size (the figures mean nothing)")
    args = ap.parse_args()
    if args.seconds <= 0 or min(args.actors) < 1:
        raise ValueError("--seconds must be positive and every --actors count >= 1")
    pin_threads(1)  # the baseline actor runs on one thread, as each actor process does
    spec, weights = make_spec(args.env, args.tiny)
    base = baseline(spec, weights, args.seconds)
    rates: dict[str, float] = {}
    eps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.actors:
            r = through_link(spec, weights, n, args.seconds, Path(tmp))
            rates[str(n)] = round(r["env_steps_per_s"], 1)
            eps[str(n)] = round(r["episodes_per_s"], 2)
    report(
        {
            "env": args.env,
            "seconds": args.seconds,
            "baseline_env_steps_per_s": round(base, 1),
            "env_steps_per_s": rates,
            "episodes_per_s": eps,
            "ratio_to_baseline": {k: round(v / base, 2) for k, v in rates.items()},
            "tiny": args.tiny,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
