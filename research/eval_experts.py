"""Success rate of the scripted experts, per env and per task family.

    python -m research.eval_experts [--episodes 200] [--env garbage_sort navigate] [--tasks all]
    python -m research.eval_experts --fail-prob 1.0      # deliberate failures must all fail

Episode ``i`` uses seed ``i``; the task is drawn by the env from ``--tasks``. Prints one JSON object on
its last line: {"<env>": {"success_rate", "episodes", "mean_steps", "safety_violation_rate",
"per_family": {...}}, ...}.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

import envs
from envs.tasks import family


def expert_episode(env, obs, seed: int, **expert_kwargs) -> tuple[bool, int, bool]:
    """The scripted expert's episode from ``obs`` (the reset's): (success, steps, any safety violation)."""
    expert = envs.make_expert(env, seed=seed, **expert_kwargs)
    done, steps, violated = False, 0, False
    while not done:
        obs, _, terminated, truncated, step_info = env.step(expert.act(obs))
        steps += 1
        violated |= bool(step_info["safety_violation"])
        done = terminated or truncated
    return bool(step_info["is_success"]), steps, violated


def evaluate(name: str, episodes: int, which: str, noise: float, epsilon: float, fail_prob: float) -> dict:
    env = envs.make_env(name, tasks=which)
    per_family: dict[str, list[bool]] = defaultdict(list)
    lengths, unsafe = [], []
    for seed in range(episodes):
        obs, info = env.reset(seed=seed)
        won, steps, violated = expert_episode(
            env, obs, seed, noise=noise, epsilon=epsilon, fail_prob=fail_prob
        )
        per_family[family(info["task"])].append(won)
        lengths.append(steps)
        unsafe.append(violated)
    env.close()
    every = [s for v in per_family.values() for s in v]
    return {
        "success_rate": float(np.mean(every)),
        "episodes": episodes,
        "mean_steps": float(np.mean(lengths)),
        "safety_violation_rate": float(np.mean(unsafe)),
        "per_family": {f: round(float(np.mean(v)), 4) for f, v in sorted(per_family.items())},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=200, help="episodes per env (seeds 0..N-1)")
    p.add_argument("--env", nargs="+", default=list(envs.ENV_IDS), choices=list(envs.ENV_IDS))
    p.add_argument("--tasks", default="all", choices=["train", "heldout", "all"])
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--epsilon", type=float, default=0.0)
    p.add_argument("--fail-prob", type=float, default=0.0)
    args = p.parse_args()
    if args.episodes < 1:
        raise ValueError("--episodes must be positive")
    out = {}
    for name in args.env:
        out[name] = evaluate(name, args.episodes, args.tasks, args.noise, args.epsilon, args.fail_prob)
        print(f"{name}: {out[name]['success_rate']:.3f} over {args.episodes} episodes", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
