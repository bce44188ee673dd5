"""Where GarbageSort episodes fail: each greedy episode of a policy is sorted into one outcome.

    python -m research.garbage_outcomes --checkpoint runs/exp_pretrain/.../policy \
        --task place:apple_core:recycling --episodes 40

Outcomes, for the task's object (single-object tasks only):
  success        the object ended where the task asks
  wrong_object   the hand first closed on another object, and the task failed
  no_grasp       the hand never held the object (it closed on nothing, or never closed)
  dropped        it was held, then ended on the table or off it (``lost``)
  wrong_bin      it ended in another bin than the one asked for
  held_at_end    it was still in the hand when the episode ended
Episode e of every task starts from seed ``--seed + e``; for one task with ``--seed 500000`` those are
the fine-tuning curve's starts (``qtransformer.rollout.evaluate`` offsets later tasks by 1000 each).
At the first state of each episode in which the hand holds the object, the script also reads the
policy's choice of the z command (given its greedy x and y): the support head's probability of a lift
(z >= 0.5) and the best lifting Q-value minus the best Q-value of staying put (|z| <= 0.1), and it counts
the steps from that grasp until the hand has risen 3 cm (``steps_to_lift``; a hand that never rises
counts the rest of the episode). A policy that grasps and then holds still shows it there.
``--range-scale S`` acts inside a fixed cautious range (APRL's ``bin_limits``) of S times the full range in
every dimension the env does not exempt (``CAUTIOUS_EXEMPT_DIMS``: the gripper; ``--bound-gripper``
bounds it too): what practice looks like while the range is narrow.
``--first-step N`` also compares the policy's first action with the scripted expert's over N fresh starts
per task: the mean absolute error of the x, y, z commands and how often the x and y signs agree (where
the reach goes wrong first).
Prints one JSON object last: the counts, per outcome the mean step of the first grasp, and the first-step
figures.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

import envs
from envs.garbage_sort import parse_task
from finetune.aprl import AprlConfig, CautiousRange, env_exempt_dims
from qtransformer.policy import QTransformerPolicy
from qtransformer.rollout import run_episode

OUTCOMES = ("success", "wrong_object", "no_grasp", "dropped", "wrong_bin", "held_at_end")


def classify(
    success: bool, first_held: str | None, ever_held_target: bool, final_location: str, target: str
) -> str:
    """One episode's outcome (see the module docstring) from what was tracked during it."""
    if success:
        return "success"
    if first_held is not None and first_held != target:
        return "wrong_object"
    if not ever_held_target:
        return "no_grasp"
    if final_location == "held":
        return "held_at_end"
    if final_location in ("table", "lost"):
        return "dropped"
    return "wrong_bin"


LIFT_Z, STAY_Z, RISE_M = 0.5, 0.1, 0.03


@torch.no_grad()
def grasp_choice(
    policy: Any, state: np.ndarray, instruction: str, lift_z: float = LIFT_Z, stay_z: float = STAY_Z
) -> dict[str, float]:
    """How the policy weighs lifting against staying put in ``state`` (z command, after its greedy x, y).

    ``q_lift_minus_stay``: the best Q-value over z bins >= ``lift_z`` minus the best over |z| <= ``stay_z``;
    ``support_lift``: the support head's probability of z >= ``lift_z`` (absent without a support head).
    """
    model = policy.model
    prev = torch.as_tensor(
        policy.act({"state": state[None]}, [instruction]).bins[:, :2], device=policy.device
    )
    s = torch.as_tensor(state[None], dtype=torch.float32, device=policy.device)
    emb = policy.encoder.encode([instruction]).to(policy.device)
    z = policy.bins.centers[2]
    lift, stay = torch.as_tensor(z >= lift_z), torch.as_tensor(np.abs(z) <= stay_z)
    out: dict[str, float] = {}
    if model.cfg.support_tau > 0:
        q, logits = model(s, emb, prev, return_behavior=True)
        out["support_lift"] = float(logits[0, 2].softmax(-1)[lift].sum())
    else:
        q = model(s, emb, prev)
    out["q_lift_minus_stay"] = float(q[0, 2][lift].max() - q[0, 2][stay].max())
    return out


def range_limits(
    policy: Any, env: Any, scale: float, bound_gripper: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Bin limits (1, D) of a cautious range held at ``scale`` (the dimensions the env exempts stay full)."""
    cfg = AprlConfig(initial_scale=scale, min_scale=min(scale, 0.1))
    exempt = () if bound_gripper else env_exempt_dims(env)
    return CautiousRange(cfg, policy.bins, policy.model.cfg.state_dim, exempt_dims=exempt).bin_limits(1)


def outcomes(
    policy: Any,
    task: str,
    episodes: int,
    seed: int,
    range_scale: float = 1.0,
    bound_gripper: bool = False,
) -> dict[str, Any]:
    spec = parse_task(task)
    if len(spec.kinds) != 1:
        raise ValueError(f"outcomes are defined for single-object tasks, not {task!r}")
    target = spec.kinds[0]
    env = envs.make_env("garbage_sort", tasks="all", **policy.meta.get("env_kwargs", {}))
    inner = env.unwrapped
    act = {"bin_limits": range_limits(policy, env, range_scale, bound_gripper)} if range_scale < 1 else None
    counts: Counter[str] = Counter()
    grasp_steps: dict[str, list[int]] = {o: [] for o in OUTCOMES}
    at_grasp: list[dict[str, Any]] = []
    try:
        for e in range(episodes):
            track: dict[str, Any] = {
                "first": None,
                "target": False,
                "step": 0,
                "grasp_step": None,
                "grasp_z": None,
                "lift": None,
            }

            def on_step(step: dict[str, Any], track: dict[str, Any] = track) -> None:
                track["step"] += 1
                held = inner.held_kind()
                if held is not None and track["first"] is None:
                    track["first"], track["grasp_step"] = held, track["step"]
                if held == target and track["grasp_z"] is None:
                    track["grasp_z"], track["target_step"] = inner.grip_pos()[2], track["step"]
                    track["choice"] = grasp_choice(
                        policy, step["obs"]["state"], str(step["obs"]["instruction"])
                    )
                z0 = track["grasp_z"]
                if z0 is not None and track["lift"] is None and inner.grip_pos()[2] > z0 + RISE_M:
                    track["lift"] = track["step"] - track["target_step"]
                track["target"] = track["target"] or held == target

            r = run_episode(
                policy, env, seed=seed + e, options={"task": task}, act_kwargs=act, on_step=on_step
            )
            o = classify(r.success, track["first"], track["target"], inner.location(target), target)
            counts[o] += 1
            if track["grasp_step"] is not None:
                grasp_steps[o].append(track["grasp_step"])
            if track["grasp_z"] is not None:
                lift = track["lift"] if track["lift"] is not None else track["step"] - track["target_step"]
                at_grasp.append({"outcome": o, "steps_to_lift": lift, **track["choice"]})
    finally:
        env.close()
    return {
        "task": task,
        "episodes": episodes,
        "range_scale": range_scale,
        "bound_gripper": bound_gripper,
        "counts": {o: counts[o] for o in OUTCOMES},
        "mean_first_grasp_step": {o: float(np.mean(v)) for o, v in grasp_steps.items() if v},
        "grasped": len(at_grasp),
        "at_grasp": {
            k: float(np.mean(v))
            for k in ("steps_to_lift", "q_lift_minus_stay", "support_lift")
            if (v := [g[k] for g in at_grasp if k in g])
        },
    }


def first_step_agreement(policy: Any, tasks: list[str], starts: int, seed: int) -> dict[str, list[float]]:
    """The policy's first greedy action against the scripted expert's, over ``starts`` starts per task."""
    if policy.model.cfg.image_size:
        raise ValueError("the first-step check feeds the state alone; this policy reads images")
    env = envs.make_env("garbage_sort", tasks="all", **policy.meta.get("env_kwargs", {}))
    expert = envs.make_expert(env, seed=seed)
    err, agree = [], []
    try:
        for task in tasks:
            for e in range(starts):
                obs, _ = env.reset(seed=seed + e, options={"task": task})
                want = expert.act(obs)
                got = policy.act({"state": obs["state"][None]}, [str(obs["instruction"])]).actions[0]
                err.append(np.abs(want[:3] - got[:3]))
                agree.append(np.sign(want[:2]) == np.sign(got[:2]))
    finally:
        env.close()
    return {
        "mean_abs_error_xyz": np.mean(err, axis=0).round(3).tolist(),
        "sign_agreement_xy": np.mean(agree, axis=0).round(3).tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--task", action="append", required=True, help="repeat for several tasks")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=500_000)
    ap.add_argument(
        "--first-step", type=int, default=0, help="fresh starts per task for the first-step check"
    )
    ap.add_argument(
        "--range-scale", type=float, default=1.0, help="act inside a cautious range of this fraction"
    )
    ap.add_argument("--bound-gripper", action="store_true", help="--range-scale bounds the gripper too")
    a = ap.parse_args()
    if not 0 < a.range_scale <= 1:
        ap.error(f"--range-scale must be in (0, 1], got {a.range_scale}")
    policy = QTransformerPolicy.from_checkpoint(a.checkpoint)
    res = (
        [outcomes(policy, t, a.episodes, a.seed, a.range_scale, a.bound_gripper) for t in a.task]
        if a.episodes
        else []
    )
    for r in res:
        print(r["task"], r["counts"], "at the grasp:", r["at_grasp"])
    out: dict[str, Any] = {"checkpoint": a.checkpoint, "results": res}
    if a.first_step:
        out["first_step"] = first_step_agreement(policy, a.task, a.first_step, a.seed + 200_000)
        print("first step", out["first_step"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
