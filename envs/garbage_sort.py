"""GarbageSort: sort household waste into labelled bins with a 6-DoF arm, told what to do in language.

Action (Box[-1, 1]): ``(dx, dy, dz, gripper)`` or, with ``use_yaw=True``, ``(dx, dy, dz, gripper, dyaw)``.
Each control step (10 Hz) moves the hand target by up to ``MAX_STEP`` metres per axis from where the
hand is now (so a blocked arm never winds up a large error), turns it by up to ``MAX_YAW_STEP`` and sets
the finger targets (-1 open .. +1 closed).

Observation ``state`` (float32, 124 values, the same layout for every task):
  [0:3] grip site position, [3:5] sin/cos hand yaw, [5] gripper closure (0 open, 1 closed),
  [6] grasp flag (both fingers touch one object), [7:10] grip velocity, [10:16] arm joint angles,
  [16:22] (x, y) of the recycling, compost and trash bins (their slots are shuffled per episode),
  then one 17-value slot per object kind in ``tasks.OBJECT_KINDS`` order:
  present mask, position (3), quaternion (4), colour one-hot over ``tasks.COLOUR_NAMES`` (9).
  Absent kinds are all zeros, so the mask tells the policy which slots are real.
With ``observation="pixels"`` the state is ``[0:16]`` only (the arm's own values: no bin and no object
poses) and the ``image`` comes from ``camera``: ``scene`` (fixed, facing the table, the default) or
``wrist`` (on the hand, looking down past the fingers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from envs import garbage_scene as S
from envs import tasks as T
from envs.base import LanguageTaskEnv
from envs.common import check_action, instruction_space

MAX_STEP = 0.05
GRIPPER_DIM = 3  # action (dx, dy, dz, gripper[, yaw]): the gripper command, -1 open .. 1 closed
MAX_YAW_STEP = 0.3
WORKSPACE_LOW = np.array([0.15, -0.42, 0.0])  # grip-site bounds; z = 0 lets the fingertips touch the table
WORKSPACE_HIGH = np.array([0.92, 0.42, 0.32])
EXCESS_FORCE_N = 60.0
SAFETY_CHECKS_PER_STEP = 4
OBJ_SLOT = 17
STATE_HEAD = 22  # the robot's values and the bins' positions; object slots follow
STATE_DIM = STATE_HEAD + OBJ_SLOT * len(T.OBJECT_KINDS)
PROPRIO_DIM = 16  # grip position, hand yaw, gripper closure, grasp flag, grip velocity, joint angles
MIN_SPACING = 0.11
MAX_START_JITTER = 0.15
START_MIN_Z = 0.12  # the lowest start of the grip site: clear of every object's top
EXPERT_IGNORES: tuple[int, ...] = (
    3,
    4,
    *range(7, 16),
    *(STATE_HEAD + OBJ_SLOT * j + i for j in range(len(T.OBJECT_KINDS)) for i in range(4, OBJ_SLOT)),
)
"""State values the scripted expert's actions do not depend on: hand yaw, grip velocity, joint angles,
the objects' orientations and colours (for ``ModelConfig.state_ignore``). What is left (35 values) is
the grip position, closure and grasp flag, the bins' positions, and the objects' masks and positions."""

RELATIVE_POSITIONS: tuple[tuple[int, int, int], ...] = (
    *((STATE_HEAD + OBJ_SLOT * j + 1, 0, 3) for j in range(len(T.OBJECT_KINDS))),
    *((16 + 2 * b, 0, 2) for b in range(3)),
)
"""Every object's position and every bin's (x, y) relative to the grip point, as
``ModelConfig.state_relative`` triples: what the expert's reaching and carrying commands are a clipped
multiple of."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task asks for, in sim terms: which objects go where (``dest`` None = the table)."""

    family: str
    kinds: tuple[str, ...]
    dest: str | None


def parse_task(task_id: str) -> TaskSpec:
    parts = task_id.split(":")
    fam = parts[0]
    if fam in ("sort", "throw_away"):
        return TaskSpec(fam, (parts[1],), T.CATEGORY[parts[1]])
    if fam == "place":
        return TaskSpec(fam, (parts[1],), parts[2])
    if fam == "unplace":
        return TaskSpec(fam, (parts[1],), None)
    if fam == "sort_all":
        return TaskSpec(fam, (), None)
    raise ValueError(f"unknown GarbageSort task {task_id!r}")


def garbage_sort_spaces(
    use_yaw: bool, image_size: int, observation: str = "state"
) -> tuple[spaces.Box, spaces.Dict]:
    """The action and observation spaces of GarbageSort, shared with ``RealArmEnv`` so the two never drift."""
    action = spaces.Box(-1.0, 1.0, (5 if use_yaw else 4,), np.float32)
    state_dim = PROPRIO_DIM if observation == "pixels" else STATE_DIM
    obs: dict[str, spaces.Space] = {
        "state": spaces.Box(-np.inf, np.inf, (state_dim,), np.float32),
        "instruction": instruction_space(),
    }
    if image_size:
        obs["image"] = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    return action, spaces.Dict(obs)


class GarbageSortEnv(LanguageTaskEnv):
    """See the module docstring; kwargs are documented in docs/envs.md."""

    ENV_NAME = "garbage_sort"
    TEMPLATES = T.GARBAGE_TEMPLATES
    TASK_GRAPH = T.GARBAGE_TASK_GRAPH
    CAUTIOUS_EXEMPT_DIMS = (GRIPPER_DIM,)
    CAMERAS: ClassVar[dict[str, str]] = {"scene": "overview", "wrist": "wrist"}
    STATE_DIM = STATE_DIM
    PROPRIO_DIM = PROPRIO_DIM
    action_space: spaces.Box  # gym.Env types it as any Space; GarbageSort's is always a Box

    def __init__(
        self,
        render_mode: str | None = None,
        image_size: int = 0,
        render_size: int = 256,
        paraphrases: str = "train",
        tasks: str = "train",
        reset_free: bool = False,
        max_episode_steps: int | None = None,
        use_yaw: bool = False,
        max_distractors: int = 2,
        start_jitter: float = 0.0,
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
        if not 0 <= max_distractors <= len(T.OBJECT_KINDS) - 1:
            raise ValueError(
                f"max_distractors must be in [0, {len(T.OBJECT_KINDS) - 1}], got {max_distractors}"
            )
        if not 0.0 <= start_jitter <= MAX_START_JITTER:
            raise ValueError(f"start_jitter must be in [0, {MAX_START_JITTER}] m, got {start_jitter}")
        self.use_yaw = bool(use_yaw)
        self.max_distractors = int(max_distractors)
        self.start_jitter = float(start_jitter)
        self.model = mujoco.MjModel.from_xml_string(S.build_xml(max(render_size, image_size)))
        self.data = mujoco.MjData(self.model)
        self.n_substeps = round(S.CONTROL_DT / self.model.opt.timestep)
        self._ids()
        self._home_qpos = self._settle_home()
        self.action_space, self.observation_space = garbage_sort_spaces(
            self.use_yaw, self.image_size, self.observation
        )
        self._image_renderer: mujoco.Renderer | None = None
        self._render_renderer: mujoco.Renderer | None = None
        self.present: list[str] = []
        self.colours: dict[str, str] = {}
        self.bin_pos: dict[str, np.ndarray] = {}
        self._prev_grip = np.zeros(3)

    # ------------------------------------------------------------------ model bookkeeping
    def _ids(self) -> None:
        m = self.model
        self.grip_site = m.site("grip").id
        self.hand_body = m.body("hand").id
        self.mocap = m.body_mocapid[m.body("target").id]
        self.table_geom = m.geom("table").id
        self.finger_geoms = (m.geom("finger_l").id, m.geom("finger_r").id)
        self.robot_geoms = np.array([m.geom("palm").id, *self.finger_geoms])
        self.arm_qadr = np.array([m.jnt_qposadr[m.joint(f"j{i}").id] for i in range(6)])
        self.finger_qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in ("finger_l", "finger_r")])
        self.obj_body = {k: m.body(f"obj_{k}").id for k in T.OBJECT_KINDS}
        self.obj_qadr = {k: m.jnt_qposadr[m.joint(f"obj_{k}_jnt").id] for k in T.OBJECT_KINDS}
        self.obj_dadr = {k: m.jnt_dofadr[m.joint(f"obj_{k}_jnt").id] for k in T.OBJECT_KINDS}
        self.obj_geoms = {k: np.flatnonzero(m.geom_bodyid == self.obj_body[k]) for k in T.OBJECT_KINDS}
        self.geom_kind = np.full(m.ngeom, -1)
        for i, k in enumerate(T.OBJECT_KINDS):
            self.geom_kind[self.obj_geoms[k]] = i
        self.bin_body = {b: m.body(f"bin_{b}").id for b in T.BINS}

    def _settle_home(self) -> np.ndarray:
        """Joint angles of the home pose, found once by letting the weld pull the arm there."""
        d = self.data
        d.qpos[self.arm_qadr[1:4]] = (-0.6, 1.4, -0.8)
        for k in T.OBJECT_KINDS:
            self._park(k)
        mujoco.mj_step(self.model, d, nstep=400)
        return d.qpos[self.arm_qadr].copy()

    def _park(self, kind: str) -> None:
        """Move an unused object out of the scene: no collisions, gravity compensated, at rest."""
        m, d = self.model, self.data
        m.body_gravcomp[self.obj_body[kind]] = 1.0
        m.geom_contype[self.obj_geoms[kind]] = 0
        m.geom_conaffinity[self.obj_geoms[kind]] = 0
        q = self.obj_qadr[kind]
        d.qpos[q : q + 7] = (-0.2 + 0.12 * T.OBJECT_KINDS.index(kind), 0.0, S.PARK_Z, 1, 0, 0, 0)
        d.qvel[self.obj_dadr[kind] : self.obj_dadr[kind] + 6] = 0.0

    def _place(self, kind: str, xy: np.ndarray, z: float, yaw: float) -> None:
        m, d = self.model, self.data
        m.body_gravcomp[self.obj_body[kind]] = 0.0
        m.geom_contype[self.obj_geoms[kind]] = 1
        m.geom_conaffinity[self.obj_geoms[kind]] = 1
        colour = T.COLOURS[self.colours[kind]]
        m.geom_rgba[self.obj_geoms[kind]] = (*colour, 1.0)
        q = self.obj_qadr[kind]
        d.qpos[q : q + 7] = (xy[0], xy[1], z, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2))
        d.qvel[self.obj_dadr[kind] : self.obj_dadr[kind] + 6] = 0.0

    # ------------------------------------------------------------------ world building
    def _new_world(self, task_id: str) -> None:
        rng = self.np_random
        spec = parse_task(task_id)
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[self.arm_qadr] = self._home_qpos
        self._set_target(np.array(S.HOME_GRIP), 0.0)
        for k in T.OBJECT_KINDS:
            self._park(k)
        if self.start_jitter > 0:
            self._move_hand_to(self._start_point())
        slots = rng.permutation(len(S.BIN_SLOTS))
        self.bin_pos = {}
        for b, s in zip(T.BINS, slots):
            self.bin_pos[b] = np.array(S.BIN_SLOTS[s])
            m.body_pos[self.bin_body[b]][:2] = S.BIN_SLOTS[s]
        others = [k for k in T.OBJECT_KINDS if k not in spec.kinds]
        if spec.family == "sort_all":
            kinds = [others[i] for i in rng.choice(len(others), size=2, replace=False)]
        else:
            n_extra = int(rng.integers(self.max_distractors + 1))
            kinds = list(spec.kinds) + [
                others[i] for i in rng.choice(len(others), size=n_extra, replace=False)
            ]
        self.present = [k for k in T.OBJECT_KINDS if k in kinds]
        self.colours = {}
        spots = self._table_spots(len(kinds))
        for k, xy in zip(kinds, spots):
            self.colours[k] = T.KIND_COLOURS[k][int(rng.integers(len(T.KIND_COLOURS[k])))]
            if spec.family == "unplace" and k in spec.kinds:
                b = T.BINS[int(rng.integers(len(T.BINS)))]
                xy = self.bin_pos[b] + rng.uniform(-0.015, 0.015, 2)
                z = S.REST_Z[k] + 0.012
            else:
                z = S.REST_Z[k] + 0.002
            self._place(k, xy, z, self._random_yaw(k))
        mujoco.mj_forward(m, d)
        mujoco.mj_step(m, d, nstep=20)  # let objects settle onto the table / bin floor
        self._prev_grip = d.site_xpos[self.grip_site].copy()

    def _start_point(self) -> np.ndarray:
        """Where the hand starts (``start_jitter``): home, moved by up to the jitter in x and y and half
        of it in z, kept above the tallest object so that objects placed after it never spawn inside it."""
        j = self.start_jitter
        off = self.np_random.uniform(-1.0, 1.0, 3) * (j, j, j / 2)
        p = np.array(S.HOME_GRIP) + off
        low = np.array([WORKSPACE_LOW[0], WORKSPACE_LOW[1], START_MIN_Z])
        return np.clip(p, low, WORKSPACE_HIGH)

    def _move_hand_to(self, target: np.ndarray) -> None:
        """Drive the (empty-handed) arm to ``target`` through the weld, a few centimetres at a time."""
        m, d = self.model, self.data
        mujoco.mj_forward(m, d)
        start = d.site_xpos[self.grip_site].copy()
        n = max(1, int(np.ceil(np.abs(target - start).max() / MAX_STEP)))
        for i in range(1, n + 1):
            self._set_target(start + (target - start) * i / n, 0.0)
            mujoco.mj_step(m, d, nstep=self.n_substeps)
        mujoco.mj_step(m, d, nstep=self.n_substeps)  # come to rest at the last waypoint
        d.qvel[:] = 0.0

    def _random_yaw(self, kind: str) -> float:
        """Long objects lie roughly along x so a fixed-yaw gripper closes across them; ``use_yaw`` frees this."""
        rng = self.np_random
        if kind in ("bottle", "banana_peel", "wrapper"):
            span = np.pi / 2 if self.use_yaw else 0.3
            return float(rng.uniform(-span, span))
        return float(rng.uniform(-np.pi, np.pi))

    def _table_spots(self, n: int, avoid: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """``n`` spawn points at least ``MIN_SPACING`` apart (and from ``avoid``), by rejection sampling."""
        rng = self.np_random
        taken = list(avoid or [])
        out: list[np.ndarray] = []
        for _ in range(n):
            for _ in range(200):
                p = rng.uniform(S.SPAWN_LOW, S.SPAWN_HIGH)
                if all(np.linalg.norm(p - q) >= MIN_SPACING for q in taken):
                    break
            taken.append(p)
            out.append(p)
        return out

    def _set_target(self, grip: np.ndarray, yaw: float) -> None:
        d = self.data
        d.mocap_pos[self.mocap] = np.asarray(grip, float) + np.array([0.0, 0.0, S.GRIP_OFFSET])
        d.mocap_quat[self.mocap] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))

    def _between_tasks(self) -> None:
        """Open the gripper, rise straight up, then go home, so the next task starts from the same pose."""
        d = self.data
        d.ctrl[:] = 0.0
        grip = d.site_xpos[self.grip_site].copy()
        self._set_target(grip, self.hand_yaw())
        mujoco.mj_step(self.model, d, nstep=30)
        home = np.array(S.HOME_GRIP)
        up = np.array([grip[0], grip[1], max(grip[2], home[2])])
        waypoints = [grip + (up - grip) * i / 3 for i in (1, 2, 3)] + [
            up + (home - up) * i / 5 for i in range(1, 6)
        ]
        for w in waypoints:
            self._set_target(w, 0.0)
            mujoco.mj_step(self.model, d, nstep=self.n_substeps)
        mujoco.mj_step(self.model, d, nstep=self.n_substeps)
        self._prev_grip = d.site_xpos[self.grip_site].copy()

    # ------------------------------------------------------------------ world queries (also used by the expert)
    def object_pos(self, kind: str) -> np.ndarray:
        return self.data.xpos[self.obj_body[kind]].copy()

    def grip_pos(self) -> np.ndarray:
        return self.data.site_xpos[self.grip_site].copy()

    def hand_yaw(self) -> float:
        xm = self.data.xmat[self.hand_body]
        return float(np.arctan2(xm[3], xm[0]))

    def object_yaw(self, kind: str) -> float:
        xm = self.data.xmat[self.obj_body[kind]]
        return float(np.arctan2(xm[3], xm[0]))

    def _touching(self) -> dict[str, set[int]]:
        """Object kinds (indices) each finger touches, plus robot-table contact flags."""
        d = self.data
        n = d.ncon
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
        out = {}
        for name, fg in zip(("l", "r"), self.finger_geoms):
            other = np.concatenate([g2[g1 == fg], g1[g2 == fg]])
            out[name] = {int(self.geom_kind[g]) for g in other if self.geom_kind[g] >= 0}
        return out

    def held_kind(self) -> str | None:
        """The object both fingers touch, if any: the grasp flag."""
        t = self._touching()
        both = t["l"] & t["r"]
        return T.OBJECT_KINDS[min(both)] if both else None

    def touched_by_fingers(self, kind: str) -> bool:
        t = self._touching()
        return T.OBJECT_KINDS.index(kind) in (t["l"] | t["r"])

    def location(self, kind: str) -> str:
        """ "table", a bin name, "held" or "lost" (fell off, tipped over a wall, absent)."""
        if kind not in self.present:
            return "lost"
        if self.touched_by_fingers(kind):
            return "held"
        p = self.object_pos(kind)
        for b, c in self.bin_pos.items():
            if (
                np.all(np.abs(p[:2] - c) < S.BIN_HALF) and p[2] < S.BIN_WALL_HEIGHT + 0.06
            ):  # may rest on another
                return b
        on_table = (
            S.SPAWN_LOW[0] - 0.12 <= p[0] <= S.BIN_SLOTS[0][0] - 0.11
            and abs(p[1]) <= S.SPAWN_HIGH[1] + 0.1
            and p[2] < S.REST_Z[kind] + 0.02
        )
        return "table" if on_table else "lost"

    def _feasible(self, task_id: str) -> bool:
        spec = parse_task(task_id)
        locs = {k: self.location(k) for k in self.present}
        if spec.family == "sort_all":
            on_table = [k for k, v in locs.items() if v == "table"]
            return len(on_table) >= 1 and "lost" not in locs.values()
        k = spec.kinds[0]
        if k not in locs:
            return False
        if spec.family == "unplace":
            return locs[k] in T.BINS
        return locs[k] == "table"

    def is_success(self) -> bool:
        spec = parse_task(self.task_id)
        if spec.family == "sort_all":
            return bool(self.present) and all(self.location(k) == T.CATEGORY[k] for k in self.present)
        k = spec.kinds[0]
        return self.location(k) == (spec.dest if spec.dest is not None else "table")

    def task_spec(self) -> TaskSpec:
        return parse_task(self.task_id)

    # ------------------------------------------------------------------ language
    def _instruction_for(self, task_id: str, template: str) -> str:
        spec = parse_task(task_id)
        if spec.family == "sort_all":
            return template
        k = spec.kinds[0]
        if spec.family == "unplace":
            bin_name = self.location(k) if self.location(k) in T.BINS else T.CATEGORY[k]
        else:
            bin_name = spec.dest or T.CATEGORY[k]
        return template.format(obj=T.object_phrase(k, self.colours[k]), bin=bin_name)

    # ------------------------------------------------------------------ stepping
    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if not self._world_ready:
            raise RuntimeError("call reset() before step()")
        a = check_action(action, self.action_space.shape)
        d = self.data
        violations: set[str] = set()
        grip = d.site_xpos[self.grip_site]
        target = grip + a[:3] * MAX_STEP
        clipped = np.clip(target, WORKSPACE_LOW, WORKSPACE_HIGH)
        if np.any(np.abs(clipped - target) > 1e-9):
            violations.add("workspace_exit")
        yaw = (
            float(np.clip(self.hand_yaw() + a[4] * MAX_YAW_STEP, -np.pi / 2, np.pi / 2))
            if self.use_yaw
            else 0.0
        )
        self._set_target(clipped, yaw)
        d.ctrl[:] = S.FINGER_TRAVEL * (a[GRIPPER_DIM] + 1.0) / 2.0
        self._prev_grip = grip.copy()
        chunk = self.n_substeps // SAFETY_CHECKS_PER_STEP
        for _ in range(SAFETY_CHECKS_PER_STEP):
            mujoco.mj_step(self.model, d, nstep=chunk)
            violations |= self._contact_violations()
        return self._finish_step(self.is_success(), sorted(violations))

    def _contact_violations(self) -> set[str]:
        d = self.data
        n = d.ncon
        if n == 0:
            return set()
        g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
        robot = np.isin(g1, self.robot_geoms) | np.isin(g2, self.robot_geoms)
        out = set()
        if np.any(robot & ((g1 == self.table_geom) | (g2 == self.table_geom))):
            out.add("table_collision")
        force = np.zeros(6)
        for i in np.flatnonzero(robot):
            mujoco.mj_contactForce(self.model, d, int(i), force)
            if force[0] > EXCESS_FORCE_N:
                out.add("excess_force")
                break
        return out

    # ------------------------------------------------------------------ observations and rendering
    def _state(self) -> np.ndarray:
        d = self.data
        grip = d.site_xpos[self.grip_site]
        yaw = self.hand_yaw()
        closure = float(np.mean(d.qpos[self.finger_qadr])) / S.FINGER_TRAVEL
        held = self.held_kind() is not None
        head = [
            grip,
            [np.sin(yaw), np.cos(yaw), closure, float(held)],
            (grip - self._prev_grip) / S.CONTROL_DT,
        ]
        head.append(d.qpos[self.arm_qadr])
        head.extend(self.bin_pos[b] for b in T.BINS)
        slots = []
        for k in T.OBJECT_KINDS:
            if k in self.present:
                q = self.obj_qadr[k]
                colour = self._one_hot(T.COLOUR_NAMES.index(self.colours[k]), len(T.COLOUR_NAMES))
                slots.append(np.concatenate([[1.0], d.qpos[q : q + 7], colour]))
            else:
                slots.append(np.zeros(OBJ_SLOT))
        return np.concatenate([np.concatenate(head), *slots]).astype(np.float32)

    def _camera_image(self, size: int, which: str, camera: str = "overview") -> np.ndarray:
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
        return self._camera_image(self.render_size, "render")

    def close(self) -> None:
        for attr in ("_image_renderer", "_render_renderer"):
            r = getattr(self, attr, None)
            if r is not None:
                r.close()
                setattr(self, attr, None)
