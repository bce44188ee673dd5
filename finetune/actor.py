"""The actor: collects episodes on the robot (or in sim) with the newest weights it was sent.

Exploration over bins follows a schedule; the cautious range (APRL) bounds which bins may be chosen;
in reset-free mode, when the world does not allow the target task (right after succeeding at it), the
env's task graph picks a task that undoes it, practised with the current policy, so that no person has
to reset the world between attempts.
The same class runs inside the learner's process (single-process mode) or as its own process,
possibly on another machine (``qt actor``, ``finetune.remote``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from finetune.aprl import AprlConfig, CautiousRange, env_exempt_dims
from finetune.episode import Episode
from qtransformer.exploration import Boltzmann, EpsilonGreedy
from qtransformer.model import BinSelector
from qtransformer.policy import QTransformerPolicy
from qtransformer.rollout import run_episode


@dataclass
class ExplorationConfig:
    """Exploration over bins while collecting (evaluation is always greedy)."""

    kind: Literal["epsilon", "boltzmann", "none"] = "epsilon"
    """Epsilon-greedy per action dimension, Boltzmann over Q-values, or greedy."""
    epsilon_start: float = 0.2
    """Epsilon at the first environment step."""
    epsilon_end: float = 0.02
    """Epsilon after ``decay_steps`` environment steps."""
    decay_steps: int = 5000
    """Environment steps of linear decay."""
    temperature: float = 0.02
    """Boltzmann temperature (Q-values lie in [0, 1])."""

    def __post_init__(self) -> None:
        if not (0 <= self.epsilon_end <= 1 and 0 <= self.epsilon_start <= 1):
            raise ValueError("epsilon_start and epsilon_end must be in [0, 1]")
        if self.decay_steps < 1 or self.temperature <= 0:
            raise ValueError("decay_steps must be >= 1 and temperature > 0")

    def epsilon(self, env_steps: int) -> float:
        frac = min(1.0, env_steps / self.decay_steps)
        return self.epsilon_start + frac * (self.epsilon_end - self.epsilon_start)

    def selector(self, env_steps: int, generator: torch.Generator) -> BinSelector | None:
        if self.kind == "epsilon":
            return EpsilonGreedy(self.epsilon(env_steps), generator)
        if self.kind == "boltzmann":
            return Boltzmann(self.temperature, generator)
        return None


class Actor:
    def __init__(
        self,
        policy: QTransformerPolicy,
        env: Any,
        task: str,
        exploration: ExplorationConfig,
        aprl: AprlConfig,
        seed: int = 0,
    ):
        self.policy, self.env, self.task, self.exploration = policy, env, task, exploration
        state_dim = policy.model.cfg.state_dim
        self.cautious = CautiousRange(
            aprl, policy.bins, state_dim, seed=seed, exempt_dims=env_exempt_dims(env)
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.episodes = 0
        self.version = 0

    def load_weights(self, state_dict: dict[str, Any], version: int) -> None:
        self.policy.model.load_state_dict({k: torch.as_tensor(v) for k, v in state_dict.items()})
        self.policy.model.eval()
        self.version = version

    def needs_undo(self) -> bool:
        """Reset-free practice: the target task cannot start from the world as it is now, so the next
        episode is one of the task graph's undo tasks."""
        env = self.env.unwrapped
        return (
            bool(getattr(env, "reset_free", False))
            and hasattr(env, "feasible")
            and not env.feasible(self.task)
        )

    def collect(self, env_steps: int) -> tuple[Episode, dict[str, Any]]:
        """One episode of practice; returns it with its statistics. In reset-free mode an episode may be
        one of the task graph's undo tasks (``stats["undo"]``), recorded under that task."""
        select = self.exploration.selector(env_steps, self.generator)

        def act_kwargs() -> dict[str, Any]:
            kw: dict[str, Any] = {"select": select} if select is not None else {}
            if self.cautious.cfg.enabled:
                kw["bin_limits"] = self.cautious.bin_limits(1)
            return kw

        def on_step(step: dict[str, Any]) -> None:
            if self.cautious.cfg.enabled:
                self.cautious.observe(step["prev_obs"]["state"], step["action"], step["obs"]["state"])

        r = run_episode(
            self.policy,
            self.env,
            seed=self.seed * 1_000_003 + self.episodes,
            # Reset-free: the env starts the task if the world allows it, else a task that undoes it.
            options={"task": self.task, "if_infeasible": "undo"},
            act_kwargs=act_kwargs,
            on_step=on_step,
            keep_trajectory=True,
        )
        self.episodes += 1
        if self.cautious.cfg.enabled and self.episodes % 5 == 1:
            self.cautious.train(iters=100)  # the range itself adapts every few steps inside observe()
        tr = r.trajectory
        assert tr is not None
        ep = Episode(
            state=tr["state"],
            action=tr["action"],
            reward=tr["reward"],
            terminated=r.terminated,
            instruction=r.instruction,
            task=r.task,
            success=r.success,
            image=tr.get("image"),
        )
        stats = {
            "success": r.success,
            "length": r.length,
            "task": r.task,
            "safety_violations": r.safety_violations,
            "human_reset": bool(r.reset_info.get("human_reset_needed", False)),
            "action_scale": float(np.mean(self.cautious.scale)),
            "epsilon": self.exploration.epsilon(env_steps) if self.exploration.kind == "epsilon" else 0.0,
            "undo": r.task != self.task,
        }
        return ep, stats
