"""Navigate: drive a holonomic base to the landmark named in the instruction.

Action (Box[-1, 1]^3): ``(vx, vy, yaw_rate)`` in the base frame, scaled by ``max_speed`` (m/s) and
``max_yaw_rate`` (rad/s), held for one control step (``control_hz``, 10 Hz by default) by velocity
actuators.

Observation ``state`` (float32, 48 values, goal-agnostic: the goal comes only from the language):
  [0:7] base x, y, sin yaw, cos yaw, world vx, vy, yaw rate;
  [7:23] 16 range readings (``mj_multiRay`` from the base centre, every 22.5 degrees from its heading,
  divided by ``RAY_RANGE`` and capped at 1);
  then one 5-value slot per landmark shape in ``tasks.LANDMARK_SHAPES`` order: (x, y, colour index / 4,
  distance from the base, bearing relative to the heading / pi).
With ``observation="pixels"`` the state is ``[0:7]`` only (odometry: pose and velocities, no range
readings and no landmark slots) and the ``image`` comes from ``camera``: ``overhead`` (a fixed camera
above the arena, the default) or ``onboard`` (on the base, looking ahead).
Success: the base centre within ``success_radius`` (0.45 m) of the named landmark's centre.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from envs import navigate_scene as S
from envs import tasks as T
from envs.base import LanguageTaskEnv
from envs.common import check_action
from envs.navigate_planner import GridPlanner

N_RAYS = 16
RAY_RANGE = 3.0
STATE_DIM = 7 + N_RAYS + 5 * len(T.LANDMARK_SHAPES)
PROPRIO_DIM = 7
MIN_LANDMARK_SPACING = 0.75
MAX_PATH = 3.0  # metres; about 43 control steps at full speed


_RAY_NORMALS = "normal" in (mujoco.mj_multiRay.__doc__ or "")
"""Whether this MuJoCo's ``mj_multiRay`` takes a normals argument (3.4 and later)."""


def parse_task(task_id: str) -> tuple[str, str]:
    """``go_to:<colour>_<shape>`` -> (colour, shape)."""
    fam, _, target = task_id.partition(":")
    colour, _, shape = target.partition("_")
    if fam != "go_to" or colour not in T.LANDMARK_COLOURS or shape not in T.LANDMARK_SHAPES:
        raise ValueError(f"unknown Navigate task {task_id!r}")
    return colour, shape


class NavigateEnv(LanguageTaskEnv):
    """See the module docstring; kwargs are documented in docs/envs.md."""

    ENV_NAME = "navigate"
    TEMPLATES = T.NAVIGATE_TEMPLATES
    TASK_GRAPH = T.NAVIGATE_TASK_GRAPH
    CAMERAS: ClassVar[dict[str, str]] = {"overhead": "overview", "onboard": "ego"}
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
        success_radius: float = 0.45,
        control_hz: float = 1.0 / S.CONTROL_DT,
        observation: str = "state",
        camera: str | None = None,
    ) -> None:
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
        if not 0.32 <= success_radius <= 1.0:
            raise ValueError(
                f"success_radius must be in [0.32, 1.0] m (contact is at 0.3 m), got {success_radius}"
            )
        self.success_radius = float(success_radius)
        substeps = 1.0 / (float(control_hz) * S.TIMESTEP) if control_hz > 0 else 0.0
        if not (1.0 <= control_hz <= 50.0 and abs(substeps - round(substeps)) < 1e-6):
            raise ValueError(
                f"control_hz must be in [1, 50] Hz with a period that is a multiple of the "
                f"{S.TIMESTEP * 1000:g} ms physics step (e.g. 2, 4, 5, 10, 20), got {control_hz}"
            )
        self.n_substeps = round(substeps)
        self.max_speed, self.max_yaw_rate = 0.7, 2.0
        self.control_dt = self.n_substeps * S.TIMESTEP
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.control_dt)}
        self.model = mujoco.MjModel.from_xml_string(S.build_xml(max(render_size, image_size)))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.base_body = m.body("base").id
        self.base_geom = m.geom("base").id
        self.qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in ("base_x", "base_y", "base_yaw")])
        self.dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in ("base_x", "base_y", "base_yaw")])
        self.lm_body = [m.body(f"lm_{s}").id for s in T.LANDMARK_SHAPES]
        self.lm_geoms = [np.flatnonzero(m.geom_bodyid == b) for b in self.lm_body]
        self.obstacle_body = [m.body(f"obstacle{i}").id for i in range(S.N_OBSTACLES)]
        angles = np.arange(N_RAYS) * 2 * np.pi / N_RAYS
        self._ray_angles = angles
        self._ray_geomid = np.zeros(N_RAYS, np.int32)
        self._ray_dist = np.zeros(N_RAYS, np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.observation_space = self._observation_space()
        self._image_renderer: mujoco.Renderer | None = None
        self._render_renderer: mujoco.Renderer | None = None
        self.colour_of: list[str] = list(T.LANDMARK_COLOURS)
        self.landmarks: list[tuple[str, str]] = []
        self.obstacles: list[tuple[float, float, float, float]] = []

    # ------------------------------------------------------------------ world building
    def _new_world(self, task_id: str) -> None:
        colour, shape = parse_task(task_id)
        rng = self.np_random
        m, d = self.model, self.data
        for _ in range(100):
            perm = list(rng.permutation(len(T.LANDMARK_COLOURS)))
            s_idx, c_idx = T.LANDMARK_SHAPES.index(shape), T.LANDMARK_COLOURS.index(colour)
            j = perm.index(c_idx)
            perm[j], perm[s_idx] = perm[s_idx], perm[j]  # force the named colour onto the named shape
            self.colour_of = [T.LANDMARK_COLOURS[i] for i in perm]
            lm = self._spaced_points(len(T.LANDMARK_SHAPES), [], MIN_LANDMARK_SPACING, 1.2)
            obstacles = []
            for p in self._spaced_points(S.N_OBSTACLES, lm, 0.6, 1.0, min_between=0.75):
                hx, hy = S.OBSTACLE_HALF
                obstacles.append((p[0], p[1], hx, hy) if rng.random() < 0.5 else (p[0], p[1], hy, hx))
            start = self._spaced_points(1, lm + [np.array(o[:2]) for o in obstacles], 0.7, 1.25)[0]
            boxes = obstacles + [(p[0], p[1], S.LANDMARK_RADIUS, S.LANDMARK_RADIUS) for p in lm]
            planner = GridPlanner(boxes)
            if not planner.free[planner.cell(start)]:
                continue
            reach = planner.reachable(start)
            if not all(planner.can_reach(reach, p, self.success_radius - 0.05) for p in lm):
                continue
            # Keep episodes short: the named landmark is at most MAX_PATH metres of driving away.
            goal_boxes = obstacles + [
                (p[0], p[1], S.LANDMARK_RADIUS, S.LANDMARK_RADIUS) for p in lm if p is not lm[s_idx]
            ]
            path = GridPlanner(goal_boxes).plan(start, lm[s_idx], self.success_radius - 0.07)
            if path and np.sum(np.linalg.norm(np.diff([start, *path], axis=0), axis=1)) <= MAX_PATH:
                break
        self.landmarks = [(c, s) for c, s in zip(self.colour_of, T.LANDMARK_SHAPES)]
        for b, geoms, p, c in zip(self.lm_body, self.lm_geoms, lm, self.colour_of):
            m.body_pos[b][:2] = p
            m.geom_rgba[geoms] = (*T.COLOURS[c], 1.0)
        self.obstacles = obstacles
        for b, (x, y, hx, _) in zip(self.obstacle_body, obstacles):
            m.body_pos[b][:2] = (x, y)
            m.body_quat[b] = (
                (1, 0, 0, 0) if hx == S.OBSTACLE_HALF[0] else (np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4))
            )
        mujoco.mj_resetData(m, d)
        d.qpos[self.qadr] = (start[0], start[1], rng.uniform(-np.pi, np.pi))
        mujoco.mj_forward(m, d)

    def _spaced_points(
        self, n: int, avoid: list[np.ndarray], spacing: float, half: float, min_between: float | None = None
    ) -> list[np.ndarray]:
        rng = self.np_random
        out: list[np.ndarray] = []
        between = spacing if min_between is None else min_between
        for _ in range(n):
            for _ in range(300):
                p = rng.uniform(-half, half, 2)
                if all(np.linalg.norm(p - q) >= spacing for q in avoid) and all(
                    np.linalg.norm(p - q) >= between for q in out
                ):
                    break
            out.append(p)
        return out

    def _between_tasks(self) -> None:
        self.data.qvel[self.dadr] = 0.0
        self.data.ctrl[:] = 0.0

    # ------------------------------------------------------------------ queries (also used by the expert)
    @property
    def goal_index(self) -> int:
        """Index (shape slot) of the landmark the current task names."""
        return T.LANDMARK_SHAPES.index(parse_task(self.task_id)[1])

    def base_pose(self) -> tuple[np.ndarray, float]:
        q = self.data.qpos[self.qadr]
        return q[:2].copy(), float(q[2])

    def landmark_pos(self, index: int) -> np.ndarray:
        return self.model.body_pos[self.lm_body[index]][:2].copy()

    def obstacle_boxes(self, exclude_landmark: int | None = None) -> list[tuple[float, float, float, float]]:
        """Planning boxes: obstacles plus every landmark except ``exclude_landmark``."""
        boxes = list(self.obstacles)
        for i in range(len(self.lm_body)):
            if i != exclude_landmark:
                p = self.landmark_pos(i)
                boxes.append((p[0], p[1], S.LANDMARK_RADIUS, S.LANDMARK_RADIUS))
        return boxes

    def _feasible(self, task_id: str) -> bool:
        colour, shape = parse_task(task_id)
        i = T.LANDMARK_SHAPES.index(shape)
        if self.colour_of[i] != colour:
            return False
        pos, _ = self.base_pose()
        if self._base_in_contact():
            return False  # wedged against something: a person has to free the robot
        return bool(np.linalg.norm(self.landmark_pos(i) - pos) > self.success_radius + 0.2)

    def is_success(self) -> bool:
        pos, _ = self.base_pose()
        return bool(np.linalg.norm(self.landmark_pos(self.goal_index) - pos) < self.success_radius)

    # ------------------------------------------------------------------ language
    def _instruction_for(self, task_id: str, template: str) -> str:
        colour, shape = parse_task(task_id)
        return template.format(landmark=f"{colour} {shape}")

    # ------------------------------------------------------------------ stepping
    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if not self._world_ready:
            raise RuntimeError("call reset() before step()")
        a = check_action(action, (3,))
        d = self.data
        _, yaw = self.base_pose()
        c, s = np.cos(yaw), np.sin(yaw)
        vx, vy = a[0] * self.max_speed, a[1] * self.max_speed
        d.ctrl[:] = (c * vx - s * vy, s * vx + c * vy, a[2] * self.max_yaw_rate)
        collided = False
        done = 0
        while done < self.n_substeps:  # look for contact every 50 ms
            n = min(5, self.n_substeps - done)
            mujoco.mj_step(self.model, d, nstep=n)
            collided |= self._base_in_contact()
            done += n
        return self._finish_step(self.is_success(), ["collision"] if collided else [])

    def _base_in_contact(self) -> bool:
        d = self.data
        n = d.ncon
        if n == 0:
            return False
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
        return bool(np.any((g1 == self.base_geom) | (g2 == self.base_geom)))

    # ------------------------------------------------------------------ observations and rendering
    def _ranges(self) -> np.ndarray:
        d = self.data
        pos, yaw = self.base_pose()
        ang = yaw + self._ray_angles
        vec = np.stack([np.cos(ang), np.sin(ang), np.zeros(N_RAYS)], 1).ravel()
        origin = np.array([pos[0], pos[1], 0.1])
        args = (self.model, d, origin, vec, None, 1, self.base_body, self._ray_geomid, self._ray_dist)
        if _RAY_NORMALS:
            mujoco.mj_multiRay(*args, None, N_RAYS, RAY_RANGE)
        else:  # MuJoCo before 3.4 (Meta-World's pin, 3.3) has no normals argument
            mujoco.mj_multiRay(*args, N_RAYS, RAY_RANGE)
        dist = np.where(self._ray_dist < 0, RAY_RANGE, self._ray_dist)
        return np.minimum(dist / RAY_RANGE, 1.0)

    def _state(self) -> np.ndarray:
        d = self.data
        pos, yaw = self.base_pose()
        head = [pos[0], pos[1], np.sin(yaw), np.cos(yaw), *d.qvel[self.dadr]]
        slots = []
        for i, colour in enumerate(self.colour_of):
            p = self.landmark_pos(i)
            rel = p - pos
            bearing = (np.arctan2(rel[1], rel[0]) - yaw + np.pi) % (2 * np.pi) - np.pi
            slots += [p[0], p[1], T.LANDMARK_COLOURS.index(colour) / 4, np.linalg.norm(rel), bearing / np.pi]
        return np.concatenate([head, self._ranges(), slots]).astype(np.float32)

    def _camera_image(self, size: int, which: str, camera: str) -> np.ndarray:
        attr = f"_{which}_renderer"
        renderer = getattr(self, attr)
        if renderer is None:
            renderer = mujoco.Renderer(self.model, size, size)
            setattr(self, attr, renderer)
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().copy()

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self._camera_image(self.render_size, "render", "overview")

    def close(self) -> None:
        for attr in ("_image_renderer", "_render_renderer"):
            r = getattr(self, attr, None)
            if r is not None:
                r.close()
                setattr(self, attr, None)
