"""Probe behind the GarbageSort findings in docs/results.md (section 3): how learnable is the task from
a dataset when language is taken out of the question?

    python -m research.probe_garbage --dataset runs/data/garbage_5000 --features full
    python -m research.probe_garbage --dataset runs/data/garbage_5000 --features relative

An MLP gets a one-hot of the task id (``--language``: the instruction's sentence embedding) and the
state (standardised by the data's statistics), regresses the continuous actions of the successful
episodes (MSE; the gripper acts on the sign of its output, as the expert's gripper command is -1 or +1;
``--bins K`` classifies each dimension into K bins instead, as the Q-Transformer acts; ``--smooth S``
spreads each target bin over its neighbours, std S bins, as ``LossConfig.bin_smoothing``), and is evaluated
greedily on the training tasks. ``full`` is the env's whole 124-value state. ``relative`` keeps only
what the expert's actions depend on: the grip height, closure and grasp flag, the bins' and the
objects' positions relative to the grip point, and the objects' present masks; it drops the absolute
positions, velocities, joint angles, orientations and colours, which vary from episode to episode
without changing the action; ``--add`` puts groups of them back. ``minimal`` keeps the same values
in absolute coordinates (the state without ``envs.garbage_sort.EXPERT_IGNORES``: what a network given
``ModelConfig.state_ignore`` reads). The gap is how much those values cost an imitation learner at this
amount of data. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from envs import make_env
from envs import tasks as T
from envs.garbage_sort import EXPERT_IGNORES, OBJ_SLOT, STATE_DIM, STATE_HEAD
from pretrain.evaluate import task_ids
from qtransformer.dataset import EpisodeFilter, load_episodes
from research.probe_navigate import _embedding_goal, _fit_mlp, _success_rate

GRIP, PROPRIO = slice(0, 3), 16  # state layout of envs/garbage_sort.py: [0:16] the robot
BINS = slice(16, 22)


ADDABLE = ("colour", "orientation", "proprio")
"""Groups of the full state that ``--add`` puts back on top of the relative features."""


def relative_features(state: np.ndarray, add: tuple[str, ...] = ()) -> np.ndarray:
    """(N, 124) states -> (N, 33): grip z, closure, grasp flag; bins (x, y) and objects (x, y, z)
    relative to the grip point (zeros for absent objects); the objects' present masks. ``add`` appends
    groups of the full state: the objects' colour one-hots (54), their quaternions (24), or the rest of
    the proprioception (grip x, y, hand yaw, grip velocity, joint angles: 13)."""
    s = np.atleast_2d(state)
    grip = s[:, GRIP]
    bins = s[:, BINS].reshape(len(s), len(T.BINS), 2) - grip[:, None, :2]
    slots = s[:, STATE_HEAD:].reshape(len(s), len(T.OBJECT_KINDS), OBJ_SLOT)
    mask = slots[:, :, :1]
    objects = (slots[:, :, 1:4] - grip[:, None]) * mask
    groups = {
        "colour": slots[:, :, 8:].reshape(len(s), -1),
        "orientation": slots[:, :, 4:8].reshape(len(s), -1),
        "proprio": np.concatenate([s[:, 0:2], s[:, 3:5], s[:, 7:PROPRIO]], 1),
    }
    base = [s[:, 2:3], s[:, 5:7], bins.reshape(len(s), -1), objects.reshape(len(s), -1), mask[:, :, 0]]
    return np.concatenate(base + [groups[g] for g in add], 1)


def oracle_bc(
    dataset: str,
    features: str,
    steps: int,
    episodes: int,
    seed: int,
    hidden: int,
    add: tuple[str, ...] = (),
    language: bool = False,
    bins: int = 0,
    smooth: float = 0.0,
) -> dict[str, object]:
    eps = load_episodes(dataset, cameras=[], episode_filter=EpisodeFilter(success_only=True))
    tids = task_ids("garbage_sort", "train")
    if add and features != "relative":
        raise ValueError("--add puts groups back on top of --features relative")

    keep = np.array([i for i in range(STATE_DIM) if i not in set(EXPERT_IGNORES)])

    def feat(state: np.ndarray) -> np.ndarray:
        if features == "relative":
            return relative_features(state, add)
        return np.atleast_2d(state)[:, keep] if features == "minimal" else np.atleast_2d(state)

    if language:  # the instruction's sentence embedding, as the Q-Transformer is given the task
        goal = _embedding_goal()
    else:

        def goal(task: str, instruction: str, n: int) -> np.ndarray:
            out = np.zeros((n, len(tids)), np.float32)
            out[:, tids.index(task)] = 1.0
            return out

    x = np.concatenate(
        [np.concatenate([feat(e.state), goal(e.task_id, e.instruction, len(e.state))], 1) for e in eps]
    )
    mean, std = x.mean(0), np.maximum(x.std(0), 0.01)
    act = _fit_mlp(
        ((x - mean) / std).astype(np.float32),
        np.concatenate([e.action for e in eps]),
        bins,
        steps,
        seed,
        hidden,
        smooth,
    )
    env = make_env("garbage_sort")
    starts = [(7000 + k, tids[k % len(tids)]) for k in range(episodes)]

    def policy(obs: dict) -> np.ndarray:
        row = np.concatenate([feat(obs["state"]), goal(env.unwrapped.task_id, str(obs["instruction"]), 1)], 1)
        a = act(torch.tensor(((row - mean) / std).astype(np.float32)))
        a[3] = 1.0 if a[3] > 0 else -1.0  # the gripper is open or closed
        return a

    rate = _success_rate(env, starts, policy)
    return {
        "features": features,
        "added": list(add),
        "language": language,
        "bins": bins,
        "smooth": smooth,
        "hidden": hidden,
        "inputs": int(x.shape[1]),
        "successful_episodes": len(eps),
        "transitions": len(x),
        "success_rate": rate,
        "episodes": episodes,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--features", choices=["full", "relative", "minimal"], default="full")
    ap.add_argument("--steps", type=int, default=12000, help="gradient steps of batch 256")
    ap.add_argument("--episodes", type=int, default=60, help="evaluation episodes over the training tasks")
    ap.add_argument("--add", nargs="*", default=[], choices=ADDABLE, help="groups to put back (relative)")
    ap.add_argument("--language", action="store_true", help="the instruction's embedding, not the task id")
    ap.add_argument("--bins", type=int, default=0, help="classify each dimension into K bins (0: regress)")
    ap.add_argument(
        "--smooth",
        type=float,
        default=0.0,
        help="with --bins: spread each target over neighbouring bins (std)",
    )
    ap.add_argument("--hidden", type=int, default=512, help="width of the MLP's two hidden layers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(
        json.dumps(
            oracle_bc(
                args.dataset,
                args.features,
                args.steps,
                args.episodes,
                args.seed,
                args.hidden,
                tuple(args.add),
                args.language,
                args.bins,
                args.smooth,
            )
        )
    )


if __name__ == "__main__":
    main()
