"""Render a rollout of one task to a GIF (and optionally a contact sheet PNG): the scripted expert's, or
a trained policy's (greedy, ``--checkpoint``).

    python scripts/render_rollout.py --env garbage_sort --task sort:bottle --out runs/sort_bottle.gif
    python scripts/render_rollout.py --env navigate --task go_to:red_cone --out runs/nav.gif --sheet runs/nav.png
    python scripts/render_rollout.py --env navigate --task go_to:red_sphere --checkpoint runs/finetune/policy \
        --out runs/policy.gif --sheet runs/policy.png

Prints {"out", "task", "instruction", "success", "steps"} as its last line.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import imageio.v2 as imageio
import numpy as np

import envs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", required=True, choices=list(envs.ENV_IDS))
    p.add_argument("--task", default=None, help="task id (default: sampled); see env.unwrapped.task_ids")
    p.add_argument("--out", required=True, help="GIF path, e.g. runs/x.gif")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="frame size in pixels")
    p.add_argument("--fail-prob", type=float, default=0.0, help="1.0 renders a deliberate failure")
    p.add_argument("--sheet", default=None, help="also write 8 evenly spaced frames side by side to this PNG")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="a policy directory (qt pretrain/finetune's policy/): render it, not the expert",
    )
    args = p.parse_args()
    policy, env_kwargs = None, {}
    if args.checkpoint:
        from qtransformer.policy import QTransformerPolicy

        policy = QTransformerPolicy.from_checkpoint(args.checkpoint)
        if policy.meta.get("env", args.env) != args.env:
            raise ValueError(f"{args.checkpoint} was trained on {policy.meta['env']!r}, not {args.env!r}")
        env_kwargs = {"image_size": policy.model.cfg.image_size, **policy.meta.get("env_kwargs", {})}
    env = envs.make_env(args.env, tasks="all", render_mode="rgb_array", render_size=args.size, **env_kwargs)
    if args.task is not None and args.task not in env.unwrapped.task_ids:
        raise ValueError(f"unknown task {args.task!r}; choose from {list(env.unwrapped.task_ids)}")
    options = {"task": args.task} if args.task else None
    if policy is not None:
        from qtransformer.rollout import run_episode

        r = run_episode(policy, env, seed=args.seed, options=options, record=True)
        frames, task, instruction, success = r.frames, r.task, r.instruction, r.success
    else:
        obs, info = env.reset(seed=args.seed, options=options)
        task, instruction = info["task"], str(obs["instruction"])
        expert = envs.make_expert(env, fail_prob=args.fail_prob, seed=args.seed)
        frames = [env.render()]
        done, step_info = False, info
        while not done:
            obs, _, terminated, truncated, step_info = env.step(expert.act(obs))
            frames.append(env.render())
            done = terminated or truncated
        success = bool(step_info["is_success"])
    frames += [frames[-1]] * 5  # linger on the result
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(out, frames, duration=1000 / env.metadata["render_fps"], loop=0)
    if args.sheet:
        idx = np.linspace(0, len(frames) - 6, 8).astype(int)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(args.sheet, np.concatenate([frames[i] for i in idx], axis=1))
    env.close()
    result = {
        "out": str(out),
        "task": task,
        "instruction": instruction,
        "success": success,
        "steps": len(frames) - 6,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
