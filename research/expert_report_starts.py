"""The scripted expert from the report starts: the imitation ceiling a fine-tuned policy is compared with.

    python -m research.expert_report_starts --like runs/protocol/navigate/qt_s0/policy --split test \\
        --record navigate-expert-test

Plays the env's scripted expert (``envs.make_expert``, no noise) from exactly the starts ``qt evaluate``
plays (``pretrain.evaluate.REPORT_SEED``, one block of seeds per task), at the env settings a policy
checkpoint was trained at (``--like``: Navigate's control rate, GarbageSort's start jitter), and reports
its success and mean steps to success the same way. ``--record`` stores the entry in
docs/results/summary.json (method ``scripted expert``). Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

os.environ.setdefault("MUJOCO_GL", "egl")

import envs
from pretrain.evaluate import (
    REPORT_SEED,
    SUMMARY_PATH,
    TASK_SEED_STRIDE,
    env_labels,
    git_commit,
    group_stats,
    record_entry,
    success_stats,
    task_ids,
)
from qtransformer.checkpoint import load_policy_checkpoint
from research.eval_experts import expert_episode


def play_expert(env_name: str, env_kwargs: dict, tasks: list[str], episodes: int) -> dict[str, tuple]:
    """Per task: (successes, lengths) of the expert's episodes from the report starts."""
    env = envs.make_env(env_name, tasks="all", **env_kwargs)
    out: dict[str, tuple] = {}
    try:
        for ti, task in enumerate(tasks):
            wins, lengths = [], []
            for e in range(episodes):
                obs, _ = env.reset(seed=REPORT_SEED + TASK_SEED_STRIDE * ti + e, options={"task": task})
                won, steps, _ = expert_episode(env, obs, seed=e)
                wins.append(won)
                lengths.append(steps)
            out[task] = (wins, lengths)
    finally:
        env.close()
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--like", required=True, help="policy checkpoint whose env and env settings to use")
    p.add_argument("--split", default="test", choices=["train", "tuning", "test"])
    p.add_argument("--episodes", type=int, default=100, help="episodes per task")
    p.add_argument("--record", default=None, help="record the entry under this name")
    p.add_argument("--summary", default=SUMMARY_PATH)
    args = p.parse_args(argv)
    if not 1 <= args.episodes <= TASK_SEED_STRIDE:
        raise ValueError(f"--episodes must be in [1, {TASK_SEED_STRIDE}], got {args.episodes}")
    meta = load_policy_checkpoint(args.like).meta
    env_name, env_kwargs = meta.get("env"), dict(meta.get("env_kwargs") or {})
    if env_name is None:
        raise ValueError(f"checkpoint {args.like} records no env")
    tasks = task_ids(env_name, args.split)
    played = play_expert(env_name, env_kwargs, tasks, args.episodes)
    overall = success_stats(
        [[x for t in tasks for x in played[t][0]]], [[x for t in tasks for x in played[t][1]]]
    )
    result = {
        **env_labels(env_name),
        "tasks": tasks,
        "split": args.split,
        "method": "scripted expert",
        "observation": "state",
        "env_steps": 0,
        "seeds": 1,
        "episodes_per_task": args.episodes,
        **overall,
        "protocol": False,
        "protocol_gaps": ["a scripted controller, deterministic: no training seeds"],
        "oracle": True,
        "note": f"The scripted expert (it reads the simulator's state) at the env settings {env_kwargs}, "
        "from the report starts qt evaluate plays.",
        "first_seed": REPORT_SEED,
        "per_task": {t: success_stats([played[t][0]], [played[t][1]]) for t in tasks},
    }
    groups = group_stats(env_name, {t: [played[t][0]] for t in tasks}, {t: [played[t][1]] for t in tasks})
    if groups:
        result["per_group"] = groups
    if args.record:
        command = shlex.join(["python", "-m", "research.expert_report_starts", *(argv or sys.argv[1:])])
        result = {"name": args.record, **result, "command": command, "commit": git_commit()}
        record_entry(args.summary, result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
