"""What both language-conditioned MuJoCo tasks share: task choice, paraphrases and reset-free practice.

A subclass builds and simulates its world; this class decides *which* task comes next. In reset-free
mode (``reset_free=True``) only the first ``reset()`` builds a world. Later resets keep the world and
pick a task that may follow the previous one in the task graph (``envs.tasks.*_TASK_GRAPH``) and whose
precondition holds now (``_feasible``). When no task qualifies, "a human" resets the world: the world
is rebuilt, ``human_resets`` is incremented and ``info["human_reset_needed"]`` is True for that reset,
so reset-free experiments can count the interventions they would have needed.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import tasks as T
from envs.common import check_choice, check_observation, check_size, instruction_space


class LanguageTaskEnv(gym.Env):
    """Base class; subclasses set ``ENV_NAME``, ``TEMPLATES``, ``TASK_GRAPH`` and the world hooks."""

    # An instance attribute in gym.Env (Navigate sets its own render_fps), so not a ClassVar.
    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012
    ENV_NAME = ""
    TEMPLATES: ClassVar[dict[str, dict[str, tuple[str, ...]]]] = {}
    TASK_GRAPH: ClassVar[dict[str, tuple[str, ...]]] = {}
    CAUTIOUS_EXEMPT_DIMS: ClassVar[tuple[int, ...]] = ()
    """Action dimensions cautious exploration leaves at their full range (``AprlConfig.exempt_dims``)."""
    CAMERAS: ClassVar[dict[str, str]] = {}
    """Camera name -> MJCF camera of the ``image`` observation; the first is the default."""
    STATE_DIM: ClassVar[int] = 0
    """Length of the full state vector."""
    PROPRIO_DIM: ClassVar[int] = 0
    """``state[:PROPRIO_DIM]`` is what the robot knows of itself (joints, gripper, base odometry): the
    whole ``state`` of ``observation="pixels"``, where object, bin and landmark poses are left out."""

    def __init__(
        self,
        render_mode: str | None,
        image_size: int,
        render_size: int,
        paraphrases: str,
        tasks: str,
        reset_free: bool,
        max_episode_steps: int | None,
        observation: str = "state",
        camera: str | None = None,
    ) -> None:
        check_observation(observation, image_size)
        camera = next(iter(self.CAMERAS)) if camera is None else camera
        check_choice("camera", camera, tuple(self.CAMERAS))
        self.observation = observation
        self.camera = camera
        if render_mode is not None:
            check_choice("render_mode", render_mode, ("rgb_array",))
        check_size("image_size", image_size, allow_zero=True)
        check_size("render_size", render_size, allow_zero=False)
        if max_episode_steps is not None and (
            not isinstance(max_episode_steps, int) or max_episode_steps < 1
        ):
            raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")
        self.render_mode = render_mode
        self.image_size = int(image_size)
        self.render_size = int(render_size)
        self.paraphrases = paraphrases
        self.templates = T.select_templates(self.TEMPLATES, paraphrases)
        self.task_ids: tuple[str, ...] = T.select_tasks(self.ENV_NAME, tasks)
        self.reset_free = bool(reset_free)
        self.max_episode_steps = max_episode_steps
        self.human_resets = 0
        self.task_id = ""
        self.instruction = ""
        self.steps = 0
        self.episode = 0  # incremented by every reset; experts re-plan when it changes
        self._world_ready = False
        self._last_success = False

    # ------------------------------------------------------------------ hooks for subclasses
    def _new_world(self, task_id: str) -> None:
        """Randomise a fresh world in which ``task_id`` can be done (uses ``self.np_random``)."""
        raise NotImplementedError

    def _feasible(self, task_id: str) -> bool:
        """Whether ``task_id`` can start from the current world (reset-free mode)."""
        raise NotImplementedError

    def _between_tasks(self) -> None:
        """What the robot does by itself between reset-free tasks (e.g. open the gripper, go home)."""

    def _instruction_for(self, task_id: str, template: str) -> str:
        raise NotImplementedError

    def _state(self) -> np.ndarray:
        """The full state vector (the module docstring of each env gives its layout)."""
        raise NotImplementedError

    def _camera_image(self, size: int, which: str, camera: str) -> np.ndarray:
        raise NotImplementedError

    def _observation(self) -> dict[str, Any]:
        state = self._state()
        obs: dict[str, Any] = {
            "state": state[: self.PROPRIO_DIM] if self.observation == "pixels" else state,
            "instruction": self.instruction,
        }
        if self.image_size:
            obs["image"] = self._camera_image(self.image_size, "image", self.CAMERAS[self.camera])
        return obs

    def _observation_space(self) -> spaces.Dict:
        """``state`` (``state_dim()`` float32 values), ``instruction`` and, with ``image_size``, ``image``."""
        obs: dict[str, spaces.Space] = {
            "state": spaces.Box(-np.inf, np.inf, (self.state_dim(),), np.float32),
            "instruction": instruction_space(),
        }
        if self.image_size:
            obs["image"] = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        return spaces.Dict(obs)

    def state_dim(self) -> int:
        """Length of ``obs["state"]`` in this observation mode."""
        return self.PROPRIO_DIM if self.observation == "pixels" else self.STATE_DIM

    # ------------------------------------------------------------------ task choice
    def feasible(self, task_id: str) -> bool:
        """Whether ``task_id`` can start at the next reset without a person rebuilding the world: always
        in episodic mode (a reset builds a world for it); in reset-free mode, if the world as it is now
        allows it (e.g. not right after succeeding at it). ``reset(options={"task": t, "if_infeasible":
        "undo"})`` starts ``t`` when it is feasible and otherwise a task of the graph that undoes the last;
        only when none can start does a person rebuild the world, for ``t``."""
        self._check_task(task_id)
        return not (self.reset_free and self._world_ready) or self._feasible(task_id)

    def _check_task(self, task_id: str) -> None:
        if task_id not in self.task_ids:
            raise ValueError(f"unknown task {task_id!r} for this env; available: {list(self.task_ids)}")

    def _sample_task(self, candidates: list[str]) -> str:
        """Uniform over task families, then uniform within the family, so big families don't dominate."""
        fams = sorted({T.family(t) for t in candidates})
        fam = fams[int(self.np_random.integers(len(fams)))]
        in_fam = [t for t in candidates if T.family(t) == fam]
        return in_fam[int(self.np_random.integers(len(in_fam)))]

    def _successors(self) -> list[str]:
        allowed = set(self.TASK_GRAPH.get(T.family(self.task_id), ()))
        out = []
        for t in self.task_ids:
            follows = T.family(t) in allowed or (t == self.task_id and not self._last_success)
            if follows and self._feasible(t):
                out.append(t)
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        forced = (options or {}).get("task")
        if forced is not None:
            self._check_task(forced)
        if_infeasible = (options or {}).get("if_infeasible", "reset")
        if if_infeasible not in ("reset", "undo"):
            raise ValueError(f"options['if_infeasible'] must be 'reset' or 'undo', got {if_infeasible!r}")
        human_reset = False
        if self.reset_free and self._world_ready:
            self._between_tasks()
            task = forced if forced is not None and self._feasible(forced) else None
            if task is None and (forced is None or if_infeasible == "undo"):
                # The task graph picks what follows (for a forced task: one that undoes the last).
                candidates = self._successors()
                task = self._sample_task(candidates) if candidates else None
            if task is None:
                human_reset = True
                self.human_resets += 1
                task = forced if forced is not None else self._sample_task(list(self.task_ids))
                self._new_world(task)
        else:
            task = forced if forced is not None else self._sample_task(list(self.task_ids))
            self._new_world(task)
            self._world_ready = True
        self.task_id = task
        family_templates = self.templates[T.family(task)]
        self.instruction = self._instruction_for(task, T.pick_template(family_templates, self.np_random))
        self.steps = 0
        self.episode += 1
        self._last_success = False
        info: dict[str, Any] = {
            "task": task,
            "instruction": self.instruction,
            "is_success": False,
            "safety_violation": False,
            "safety_violations": [],
            "human_reset_needed": human_reset,
        }
        return self._observation(), info

    def _finish_step(
        self, success: bool, violations: list[str]
    ) -> tuple[dict[str, Any], float, bool, bool, dict]:
        self.steps += 1
        self._last_success = success
        truncated = (
            not success and self.max_episode_steps is not None and self.steps >= self.max_episode_steps
        )
        info = {
            "task": self.task_id,
            "instruction": self.instruction,
            "is_success": bool(success),
            "safety_violation": bool(violations),
            "safety_violations": list(violations),
            "human_reset_needed": False,
        }
        return self._observation(), float(success), bool(success), bool(truncated), info

    @staticmethod
    def _one_hot(index: int, n: int) -> np.ndarray:
        v = np.zeros(n, np.float32)
        v[index] = 1.0
        return v
