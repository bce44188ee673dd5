"""Run a policy in any Gymnasium env whose observations are ``{"state", "image"?, "instruction"}``.

Used for evaluation by pretraining and fine-tuning alike. Knows nothing about a specific env: callers
make the env (``envs.make_env``) and pass it in. Frame history (``num_images > 1`` for one camera) is
kept here by repeating the first frame at the episode start, the same rule the offline loader uses.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qtransformer.policy import QTransformerPolicy


class FrameHistory:
    """Stacks the last ``n`` camera frames into (n, H, W, 3), oldest first."""

    def __init__(self, n: int):
        self.n = n
        self.frames: deque[np.ndarray] = deque(maxlen=n)

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.frames.clear()
        for _ in range(self.n):
            self.frames.append(frame)
        return np.stack(self.frames)

    def push(self, frame: np.ndarray) -> np.ndarray:
        self.frames.append(frame)
        return np.stack(self.frames)


def policy_inputs(obs: Mapping[str, Any], history: FrameHistory | None, first: bool) -> dict[str, np.ndarray]:
    """One env observation -> a batch of one for ``QTransformerPolicy.act``."""
    out = {"state": np.asarray(obs["state"], dtype=np.float32)[None]}
    if history is not None:
        if "image" not in obs:
            raise ValueError(
                "the policy reads images but the env gives none: make the env with image_size > 0"
            )
        frames = history.reset(obs["image"]) if first else history.push(obs["image"])
        out["image"] = frames[None]
    return out


@dataclass
class EpisodeResult:
    task: str
    instruction: str
    success: bool
    length: int
    safety_violations: int
    terminated: bool = False
    frames: list[np.ndarray] = field(default_factory=list)
    trajectory: dict[str, np.ndarray] | None = None
    """With ``keep_trajectory``: state/image (T+1, ...), action (T, D), reward (T,)."""
    last_info: dict[str, Any] = field(default_factory=dict)
    reset_info: dict[str, Any] = field(default_factory=dict)
    """The info of the episode's reset (``human_reset_needed`` is reported there)."""
    q_first: float | None = None
    """The policy's value of its first action (the last dimension's Q at the chosen bins), where the
    first action was the greedy one (no ``act_kwargs``): what the policy expects to earn."""


def run_episode(
    policy: QTransformerPolicy,
    env: Any,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    act_kwargs: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    record: bool = False,
    on_step: Callable[[dict[str, Any]], None] | None = None,
    keep_trajectory: bool = False,
) -> EpisodeResult:
    """One episode, greedy unless ``act_kwargs`` (a dict, or a function called every step) says otherwise."""
    cfg = policy.model.cfg
    history = FrameHistory(cfg.num_images) if cfg.image_size > 0 else None
    obs, info = env.reset(seed=seed, options=options)
    reset_info = dict(info)
    instruction = str(obs["instruction"])
    frames = [env.render()] if record else []
    traj: dict[str, list[Any]] = {
        "state": [obs["state"]],
        "image": [obs.get("image")],
        "action": [],
        "reward": [],
    }
    first, done, steps, violations, success, terminated = True, False, 0, 0, False, False
    q_first = None
    while not done:
        kwargs = act_kwargs() if callable(act_kwargs) else (act_kwargs or {})
        prev = obs
        greedy_first = first and not kwargs
        out = policy.act(policy_inputs(obs, history, first), [instruction], return_q=greedy_first, **kwargs)
        if greedy_first and out.q_values is not None:
            q_first = float(out.q_values[0, -1, out.bins[0, -1]])
        first = False
        obs, reward, terminated, truncated, info = env.step(out.actions[0])
        steps += 1
        violations += int(bool(info.get("safety_violation", False)))
        success = success or bool(info.get("is_success", False))
        done = terminated or truncated
        if keep_trajectory:
            traj["state"].append(obs["state"])
            traj["image"].append(obs.get("image"))
            traj["action"].append(out.actions[0])
            traj["reward"].append(reward)
        if record:
            frames.append(env.render())
        if on_step is not None:
            on_step({"prev_obs": prev, "obs": obs, "reward": reward, "info": info, "action": out.actions[0]})
    trajectory = None
    if keep_trajectory:
        trajectory = {
            "state": np.asarray(traj["state"], dtype=np.float32),
            "action": np.asarray(traj["action"], dtype=np.float32),
            "reward": np.asarray(traj["reward"], dtype=np.float32),
        }
        if traj["image"][0] is not None:
            trajectory["image"] = np.asarray(traj["image"], dtype=np.uint8)
    return EpisodeResult(
        str(info.get("task", "")),
        instruction,
        success,
        steps,
        violations,
        bool(terminated),
        frames,
        trajectory,
        dict(info),
        reset_info,
        q_first,
    )


def evaluate(
    policy: QTransformerPolicy,
    make_env: Callable[[], Any],
    tasks: list[str],
    episodes_per_task: int,
    seed: int = 10_000,
) -> dict[str, Any]:
    """Success rate per task over ``episodes_per_task`` seeded episodes each (seeds disjoint from training).

    Episode ``e`` of the ``ti``-th task starts from seed ``seed + 1000 * ti + e``. ``successes`` and
    ``lengths`` hold every episode's outcome and step count per task, in that order, for callers that
    pool episodes (intervals) or time the successful ones; ``q_first`` the policy's value of each
    episode's first action (to compare with the return the episode earned).
    """
    env = make_env()
    per_task: dict[str, list[bool]] = {}
    lengths: dict[str, list[int]] = {}
    q_first: dict[str, list[float | None]] = {}
    violations = 0
    try:
        for ti, task in enumerate(tasks):
            for e in range(episodes_per_task):
                r = run_episode(policy, env, seed=seed + 1000 * ti + e, options={"task": task})
                per_task.setdefault(task, []).append(r.success)
                lengths.setdefault(task, []).append(r.length)
                q_first.setdefault(task, []).append(r.q_first)
                violations += r.safety_violations
    finally:
        env.close()
    rates = {t: float(np.mean(v)) for t, v in per_task.items()}
    all_results = [x for v in per_task.values() for x in v]
    return {
        "success_rate": float(np.mean(all_results)) if all_results else 0.0,
        "per_task": rates,
        "episodes": len(all_results),
        "safety_violations": violations,
        "successes": per_task,
        "lengths": lengths,
        "q_first": q_first,
    }
