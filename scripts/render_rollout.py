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
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import imageio.v2 as imageio
import numpy as np

import envs
from qtransformer.rollout import EpisodeResult, run_episode


def check_task(env: Any, task: str | None) -> None:
    """A clear error for a task id the env does not have (None lets the env pick)."""
    if task is not None and task not in env.unwrapped.task_ids:
        raise ValueError(f"unknown task {task!r}; choose from {list(env.unwrapped.task_ids)}")


def policy_rollout(
    policy: Any, env_name: str, task: str | None, seed: int, size: int = 256
) -> tuple[EpisodeResult, float]:
    """One greedy episode of ``policy`` with rendered frames, at the policy's control rate and camera
    size; returns it with the env's frame rate."""
    if policy.meta.get("env", env_name) != env_name:
        raise ValueError(f"the policy was trained on {policy.meta['env']!r}, not {env_name!r}")
    env = envs.make_env(
        env_name,
        image_size=policy.model.cfg.image_size,
        tasks="all",
        render_mode="rgb_array",
        render_size=size,
        **policy.meta.get("env_kwargs", {}),
    )
    try:
        check_task(env, task)
        r = run_episode(policy, env, seed=seed, options={"task": task} if task else None, record=True)
    finally:
        env.close()
    return r, float(env.metadata["render_fps"])


def render_frame(env: Any) -> np.ndarray:
    """``env.render()`` of an env made with ``render_mode="rgb_array"``: one (H, W, 3) frame."""
    frame = env.render()
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"render() returned {type(frame).__name__}, not an rgb_array frame")
    return frame


def save_gif(path: str | Path, frames: list[np.ndarray], fps: float) -> None:
    """Frames as a looping GIF, each shown for one control step (imageio's duration is in ms)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # imageio's stub asks for an invariant List[ArrayLike]; any sequence of arrays works.
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)  # type: ignore[arg-type]


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
    if args.checkpoint:
        from qtransformer.policy import QTransformerPolicy

        policy = QTransformerPolicy.from_checkpoint(args.checkpoint)
        r, fps = policy_rollout(policy, args.env, args.task, args.seed, args.size)
        frames, task, instruction, success = r.frames, r.task, r.instruction, r.success
    else:
        env = envs.make_env(args.env, tasks="all", render_mode="rgb_array", render_size=args.size)
        check_task(env, args.task)
        obs, info = env.reset(seed=args.seed, options={"task": args.task} if args.task else None)
        task, instruction = info["task"], str(obs["instruction"])
        expert = envs.make_expert(env, fail_prob=args.fail_prob, seed=args.seed)
        frames = [render_frame(env)]
        done, step_info = False, info
        while not done:
            obs, _, terminated, truncated, step_info = env.step(expert.act(obs))
            frames.append(render_frame(env))
            done = terminated or truncated
        success, fps = bool(step_info["is_success"]), float(env.metadata["render_fps"])
        env.close()
    frames += [frames[-1]] * 5  # linger on the result
    out = Path(args.out)
    save_gif(out, frames, fps)
    if args.sheet:
        idx = np.linspace(0, len(frames) - 6, 8).astype(int)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        imageio.imwrite(args.sheet, np.concatenate([frames[i] for i in idx], axis=1))
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
