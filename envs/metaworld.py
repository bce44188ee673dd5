"""Meta-World (Farama ``metaworld`` 3.1, optional extra ``.[metaworld]``) as language-instructed tasks.

Each of Meta-World's 50 Sawyer tasks (``reach-v3``, ``drawer-open-v3``, ...) is a task id here, with two
training phrasings and one held-out phrasing (``envs.tasks.METAWORLD_PHRASES``). One env is one
benchmark's task set: ``metaworld_mt10`` (MT10), ``metaworld_mt50`` (all 50) and ``metaworld_ml10``
(ML10: pretraining on its 10 training tasks; its 5 test tasks are held out for fine-tuning).

* **Observation.** ``state`` is Meta-World's standard 39 values: hand position (3), gripper opening (1),
  the pose of up to two objects (14), the same 18 values one step earlier, and the goal position (3).
  Object and goal poses make it the benchmark's state observation, oracle for a real robot.
  ``observation="pixels"`` keeps the hand and gripper (``PROPRIO_DIM`` = 4) and adds a camera image.
* **Goals.** Every reset draws the object and goal placement from the task's own random range (Meta-World's
  ``_random_reset_space``), seeded from the env's generator: ``reset(seed=s)`` repeats a start exactly.
* **Success.** Meta-World's ``info["success"]``; reward is 1 on success and 0 otherwise, and success ends
  the episode, as in the other envs. The time limit is Meta-World's 500 steps unless
  ``max_episode_steps`` says otherwise.
* **Reset-free.** Drawer, door, window and faucet open/close are each one scene
  (``envs.tasks.METAWORLD_INVERSES``). With ``reset_free=True``, after a success the next task is the
  inverse, continued from the current joint positions; a task that fails may be retried where it stands.
  Any other task needs its own scene, so it counts as a human reset.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from envs import tasks as T
from envs.base import LanguageTaskEnv
from envs.common import check_action

STATE_DIM = 39
PROPRIO_DIM = 4
"""Hand position (3) and gripper opening (1): what the arm knows of itself."""
MAX_PATH_LENGTH = 500
"""Meta-World's own time limit (``SawyerXYZEnv.max_path_length``)."""
INSTALL_HINT = "Meta-World is an optional extra: pip install -e '.[metaworld]' (metaworld==3.1.1)"


def require_metaworld() -> Any:
    """The ``metaworld`` module, or an ImportError that says how to install it."""
    try:
        import metaworld
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return metaworld


def make_task_env(task: str) -> Any:
    """A raw Meta-World env of ``task`` with its goal in the observation and a new random placement at
    every reset, drawn from the env's own seeded generator (``SawyerXYZEnv.seed``)."""
    require_metaworld()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    if task not in ALL_V3_ENVIRONMENTS:
        raise ValueError(f"unknown Meta-World task {task!r}; choose from {sorted(ALL_V3_ENVIRONMENTS)}")
    env = ALL_V3_ENVIRONMENTS[task]()
    # What metaworld.env_dict's goal-observable classes set, with the placement drawn per reset.
    env._partially_observable = False
    env.__dict__.pop("sawyer_observation_space", None)  # a cached space that hides the goal
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    env._set_task_called = True
    env.max_path_length = 10**9  # the time limit is this package's (TimeLimit, reset-free stages)
    return env


class MetaWorldEnv(LanguageTaskEnv):
    """See the module docstring; a subclass per benchmark sets ``ENV_NAME``."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 80}  # noqa: RUF012
    TEMPLATES = T.METAWORLD_TEMPLATES
    TASK_GRAPH = T.METAWORLD_TASK_GRAPH
    CAMERAS: ClassVar[dict[str, str]] = {
        "corner": "corner",
        "corner2": "corner2",
        "behind_gripper": "behindGripper",
        "gripper": "gripperPOV",
    }
    STATE_DIM = STATE_DIM
    PROPRIO_DIM = PROPRIO_DIM

    def __init__(
        self,
        render_mode: str | None = None,
        image_size: int = 0,
        render_size: int = 256,
        paraphrases: str = "train",
        tasks: str = "train",
        reset_free: bool = False,
        max_episode_steps: int | None = None,
        observation: str = "state",
        camera: str | None = None,
    ) -> None:
        require_metaworld()
        super().__init__(
            render_mode,
            image_size,
            render_size,
            paraphrases,
            tasks,
            reset_free,
            max_episode_steps,
            observation,
            camera,
        )
        if image_size > 480 or render_size > 480:
            raise ValueError(
                f"image_size and render_size must be <= 480 (Meta-World's offscreen buffer), "
                f"got {image_size} and {render_size}"
            )
        self.action_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.observation_space = self._observation_space()
        self._envs: dict[str, Any] = {}
        self._renderers: dict[tuple[str, int], mujoco.Renderer] = {}
        self._scene_task = ""  # the task whose Meta-World env holds the current world
        self._obs = np.zeros(STATE_DIM, np.float32)

    # ------------------------------------------------------------------ the Meta-World envs
    def task_env(self, task: str) -> Any:
        """The Meta-World env behind ``task`` (built on first use)."""
        if task not in self._envs:
            self._envs[task] = make_task_env(task)
        return self._envs[task]

    @property
    def sim(self) -> Any:
        """The Meta-World env that holds the current world (its ``model``, ``data``, ``_target_pos``)."""
        return self.task_env(self._scene_task)

    def _new_world(self, task_id: str) -> None:
        env = self.task_env(task_id)
        env.seed(int(self.np_random.integers(2**31 - 1)))
        obs, _ = env.reset()
        self._scene_task = task_id
        self._obs = np.asarray(obs, np.float32)

    def _feasible(self, task_id: str) -> bool:
        if task_id == self.task_id:
            return not self._last_success  # a retry where it stands
        return self._last_success and T.METAWORLD_INVERSES.get(self.task_id) == task_id

    def _continue_world(self, task_id: str) -> None:
        """Carry the world of the last task into ``task_id``'s env (the same scene): the placement, the
        joints and the hand, so the inverse task starts where the last one ended."""
        old, new = self.sim, self.task_env(task_id)
        new._last_rand_vec = np.array(old._last_rand_vec)
        new._freeze_rand_vec = True  # reset with the same placement (sets the goal and the bodies)
        try:
            new.reset()
        finally:
            new._freeze_rand_vec = False
        new.data.qpos[:] = old.data.qpos
        new.data.qvel[:] = old.data.qvel
        new.data.mocap_pos[:] = old.data.mocap_pos
        new.data.mocap_quat[:] = old.data.mocap_quat
        mujoco.mj_forward(new.model, new.data)
        obs = new._get_obs()
        new._prev_obs = obs[:18].copy()
        obs[18:36] = new._prev_obs
        self._scene_task = task_id
        self._obs = np.asarray(obs, np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        if self.task_id != self._scene_task:  # reset-free: the inverse task continues this world
            self._continue_world(self.task_id)
            obs = self._observation()
        return obs, info

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict]:
        a = check_action(action, (4,))
        obs, _, _, _, info = self.sim.step(a.astype(np.float32))
        self._obs = np.asarray(obs, np.float32)
        return self._finish_step(bool(info["success"]), [])

    # ------------------------------------------------------------------ observation
    def _instruction_for(self, task_id: str, template: str) -> str:
        return template

    def _state(self) -> np.ndarray:
        return self._obs.copy()

    def raw_observation(self) -> np.ndarray:
        """Meta-World's own 39-value observation of the current step (what its scripted policies read)."""
        return self._obs.astype(np.float64)

    def _camera_image(self, size: int, which: str, camera: str) -> np.ndarray:
        key = (self._scene_task, size)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.sim.model, size, size)
        renderer = self._renderers[key]
        renderer.update_scene(self.sim.data, camera=camera)
        return renderer.render()[::-1].copy()  # Meta-World's cameras are mounted upside down

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._camera_image(self.render_size, "render", self.CAMERAS[self.camera])

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
        for env in self._envs.values():
            env.close()
        self._envs.clear()


class MetaWorldMT10Env(MetaWorldEnv):
    ENV_NAME = "metaworld_mt10"


class MetaWorldMT50Env(MetaWorldEnv):
    ENV_NAME = "metaworld_mt50"


class MetaWorldML10Env(MetaWorldEnv):
    ENV_NAME = "metaworld_ml10"
