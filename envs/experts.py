"""Scripted experts that read privileged sim state, with knobs to make mixed-quality data.

``make_expert(env, noise, epsilon, fail_prob, seed)`` returns an object with ``reset()`` and
``act(obs) -> action``. The quality knobs exist because offline Q-learning needs good, mediocre and
bad behaviour to rank actions:

* ``noise``: std of Gaussian noise added to every action (then clipped to [-1, 1]);
* ``epsilon``: probability of replacing an action by a uniformly random one;
* ``fail_prob``: probability that an episode is a deliberate failure (GarbageSort: the object goes to
  a wrong bin or is dropped on the table; Navigate: the robot drives to a wrong landmark). With
  ``fail_prob=1`` every episode fails;
* ``halt``: a range ``(lo, hi)`` of fractions: each episode the expert acts cleanly for a fraction drawn
  uniformly from it of its expected length, then stops and stays still until the time limit, as an
  autonomous policy that stalls half-way does.

The plan is re-derived from the env each step, so ``act`` works right after any ``env.reset`` (also in
reset-free mode) even if ``reset()`` of the expert was not called.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, cast

import numpy as np

from envs import garbage_scene as S
from envs import tasks as T
from envs.garbage_sort import GRIPPER_DIM, MAX_STEP, MAX_YAW_STEP, GarbageSortEnv
from envs.metaworld import MetaWorldEnv
from envs.navigate import NavigateEnv
from envs.navigate_planner import GridPlanner

HOVER_Z = 0.15
CARRY_Z = 0.2
RETREAT_BIN_Z = 0.26  # above anything stacked in a bin
PHASE_TIMEOUT = 25
FUNNEL_INNER = 0.008  # m of horizontal error inside which the hand descends all the way
FUNNEL_OUTER = 0.03  # m beyond which it stays at hover height
METAWORLD_TYPICAL_STEPS = 80
"""About how many steps Meta-World's scripted policies take on an MT10 task (35-125 by task)."""
GARBAGE_TYPICAL_STEPS = 31
"""About how many steps the GarbageSort expert takes at 10 Hz and full servo gain (its mean over 30
training-task episodes with jittered starts): what a halting fraction is taken of. Tasks with several
objects take longer, so there a halt falls within the first objects."""
SERVO_GAIN = 1.0
"""Share of the remaining position error the hand is commanded to close per step (up to ``MAX_STEP``).
At 1 the command is the whole error, clipped to +-1: exactly +-1 (one action bin) until the last 5 cm,
then spread over a hundred bins. ``qt datagen --expert-gain`` sets a gentler servo (0.4: proportional
over the last 12.5 cm, about 10 steps more per episode)."""


def check_halt(halt: tuple[float, float] | None) -> tuple[float, float] | None:
    """A halting range ``(lo, hi)`` with ``0 <= lo <= hi <= 1``, checked (None: the expert never halts)."""
    if halt is None:
        return None
    if len(halt) != 2 or not 0.0 <= float(halt[0]) <= float(halt[1]) <= 1.0:
        raise ValueError(f"halt must be a range (lo, hi) with 0 <= lo <= hi <= 1, got {halt}")
    return float(halt[0]), float(halt[1])


class _ExpertBase:
    def __init__(
        self,
        env: Any,
        noise: float,
        epsilon: float,
        fail_prob: float,
        seed: int | None,
        halt: tuple[float, float] | None = None,
    ) -> None:
        for name, v in (("noise", noise), ("epsilon", epsilon), ("fail_prob", fail_prob)):
            if not np.isfinite(v) or v < 0 or (name != "noise" and v > 1):
                raise ValueError(f"{name} must be finite, >= 0 (and <= 1 for probabilities), got {v}")
        self.env = env.unwrapped
        self.noise, self.epsilon, self.fail_prob = float(noise), float(epsilon), float(fail_prob)
        self.halt = check_halt(halt)
        self.rng = np.random.default_rng(seed)
        self.action_dim = int(self.env.action_space.shape[0])
        self._episode: int | None = None
        self.halt_step: int | None = None
        self.steps = 0

    def reset(self) -> None:
        """Forget the current plan; the next ``act`` plans for the env's current task."""
        self._episode = None

    @property
    def finished(self) -> bool:
        """True once the expert has nothing left to do but wait (a deliberate failure has come to rest).

        Data generation ends such an episode there, as an operator would stop recording, instead of
        logging idle frames until the time limit.
        """
        return self._episode is not None and self._finished()

    def _finished(self) -> bool:
        return False

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        if self.env.episode != self._episode:
            self._episode = self.env.episode
            self.failing = bool(self.rng.random() < self.fail_prob)
            self._plan()
            self.steps = 0
            self.halt_step = None
            if self.halt is not None:
                frac = self.rng.uniform(*self.halt)
                self.halt_step = round(frac * self._expected_steps())
            self.last_action = np.zeros(self.action_dim, np.float32)
        self.steps += 1
        if self.halt_step is not None and self.steps > self.halt_step:
            return self._still()  # stalled: still until the time limit
        a = self._clean_action()
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, a.shape)
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            a = self.rng.uniform(-1.0, 1.0, a.shape)
        self.last_action = np.clip(a, -1.0, 1.0).astype(np.float32)
        return self.last_action

    def _still(self) -> np.ndarray:
        """The action that keeps the robot where it is (zero velocities)."""
        return np.zeros(self.action_dim, np.float32)

    def _plan(self) -> None:
        raise NotImplementedError

    def _clean_action(self) -> np.ndarray:
        raise NotImplementedError

    def _expected_steps(self) -> float:
        """About how many steps the clean expert takes on this episode (what ``halt`` is a fraction of)."""
        raise NotImplementedError


class GarbageExpert(_ExpertBase):
    """Pick-and-place state machine: approach (a funnel down onto the object), close, lift, carry, (lower,)
    release, retreat."""

    gain = SERVO_GAIN

    def _plan(self) -> None:
        env: GarbageSortEnv = self.env
        spec = env.task_spec()
        self.jobs_done: set[str] = set()
        self.phase, self.phase_steps = "approach", 0
        self.kind: str | None = None  # the object being moved; None between jobs
        self.idle = False
        self.spec = spec
        self.table_spot: np.ndarray | None = None
        # "drop" / "wrong_bin" until chosen, then ("bin", the wrong bin); None for a clean run.
        self.fail_mode: str | tuple[str, str] | None = None
        if self.failing:
            self.fail_mode = "wrong_bin" if spec.family == "unplace" or self.rng.random() < 0.6 else "drop"

    # -------------------------------------------------------------- job choice
    def _next_job(self) -> tuple[str, str] | None:
        """(kind, destination) where destination is a bin name or "table"."""
        env: GarbageSortEnv = self.env
        spec = self.spec
        if spec.family == "sort_all":
            todo = [k for k in env.present if k not in self.jobs_done and env.location(k) != T.CATEGORY[k]]
            if not todo:
                return None
            k = min(todo, key=lambda k: np.linalg.norm(env.object_pos(k)[:2] - env.grip_pos()[:2]))
            return k, T.CATEGORY[k]
        k = spec.kinds[0]
        if k in self.jobs_done:
            return None
        return k, spec.dest if spec.dest is not None else "table"

    def _destination(self, kind: str, dest: str) -> tuple[np.ndarray, bool]:
        """(xy, is_bin) of where this job really goes, after any deliberate failure."""
        env: GarbageSortEnv = self.env
        if self.fail_mode == "drop":
            if self.table_spot is None:
                self.table_spot = self._free_spot(kind)
            return self.table_spot, False
        if self.fail_mode == "wrong_bin":
            if dest == "table":
                here = env.location(kind)
                wrong = here if here in T.BINS else T.CATEGORY[kind]
            else:
                choices = [b for b in T.BINS if b != dest]
                wrong = choices[int(self.rng.integers(len(choices)))]
            self.fail_mode = ("bin", wrong)
        if isinstance(self.fail_mode, tuple):
            return self._drop_point(self.fail_mode[1]), True
        if dest == "table":
            if self.table_spot is None:
                self.table_spot = self._free_spot(kind)
            return self.table_spot, False
        return self._drop_point(dest), True

    def _drop_point(self, bin_name: str) -> np.ndarray:
        """Bin centre, shifted a little per job so a second object does not land on the first."""
        shift = 0.035 * (1 if len(self.jobs_done) % 2 else -1) if self.spec.family == "sort_all" else 0.0
        return self.env.bin_pos[bin_name] + (shift, 0.0)

    def _free_spot(self, kind: str) -> np.ndarray:
        env: GarbageSortEnv = self.env
        others = [env.object_pos(k)[:2] for k in env.present if k != kind]
        best, best_d = None, -1.0
        for _ in range(30):
            p = self.rng.uniform(np.add(S.SPAWN_LOW, 0.03), np.subtract(S.SPAWN_HIGH, 0.03))
            d = float(min((np.linalg.norm(p - q) for q in others), default=1.0))
            if d >= 0.13:
                return p
            if d > best_d:
                best, best_d = p, d
        return cast(np.ndarray, best)  # set by the first draw: every distance beats -1

    # -------------------------------------------------------------- control
    def _servo(self, target: np.ndarray, gripper: float, yaw: float = 0.0) -> np.ndarray:
        env: GarbageSortEnv = self.env
        a = np.zeros(self.action_dim)
        a[:3] = np.clip(self.gain * (target - env.grip_pos()) / MAX_STEP, -1.0, 1.0)
        a[3] = gripper
        if self.action_dim == 5:
            err = (yaw - env.hand_yaw() + np.pi / 2) % np.pi - np.pi / 2
            a[4] = np.clip(err / MAX_YAW_STEP, -1.0, 1.0)
        return a

    def _grasp_yaw(self, kind: str) -> float:
        if self.action_dim < 5 or kind not in ("bottle", "banana_peel", "wrapper"):
            return 0.0
        return float((self.env.object_yaw(kind) + np.pi / 2) % np.pi - np.pi / 2)

    def _go(self, phase: str) -> None:
        self.phase, self.phase_steps = phase, 0

    def _expected_steps(self) -> float:
        return GARBAGE_TYPICAL_STEPS

    def _still(self) -> np.ndarray:
        # The gripper command is a position, not a velocity: a stalled arm keeps its grip.
        a = np.zeros(self.action_dim, np.float32)
        a[GRIPPER_DIM] = self.last_action[GRIPPER_DIM]
        return a

    def _finished(self) -> bool:
        return bool(self.idle)

    def _clean_action(self) -> np.ndarray:
        env: GarbageSortEnv = self.env
        grip = env.grip_pos()
        if self.idle:
            return self._servo(np.array([grip[0], grip[1], max(grip[2], HOVER_Z)]), -1.0)
        if self.kind is None:
            job = self._next_job()
            if job is None:
                self.idle = True
                return self._clean_action()
            self.kind, self.dest = job
            self.table_spot = None
            self._go("approach")
        k = self.kind
        self.phase_steps += 1
        if self.phase_steps > PHASE_TIMEOUT:
            self._go("approach")
        obj = env.object_pos(k)
        r = S.REST_Z[k]
        yaw = self._grasp_yaw(k)
        if self.phase == "approach":
            # A funnel: the height to go to is a function of the horizontal error alone (hover height
            # beyond FUNNEL_OUTER, grasp height inside FUNNEL_INNER), so the action depends on what the
            # state shows and not on a hidden phase. A cloning or Q-network has to learn a smooth map
            # instead of a switch that flips at one centimetre.
            err = float(np.linalg.norm(grip[:2] - obj[:2]))
            if err > 0.03 and grip[2] < HOVER_Z - 0.04:
                return self._servo(np.array([grip[0], grip[1], HOVER_Z]), -1.0, yaw)
            gz = max(obj[2], obj[2] + S.TOP_Z[k] - 0.04, obj[2] - r + 0.018)  # palm clears the top
            w = np.clip((err - FUNNEL_INNER) / (FUNNEL_OUTER - FUNNEL_INNER), 0.0, 1.0)
            if err < FUNNEL_INNER + 0.002 and abs(grip[2] - gz) < 0.01:
                self._go("close")
                return self._servo(grip, 1.0, yaw)
            return self._servo(np.array([obj[0], obj[1], gz + w * (HOVER_Z - gz)]), -1.0, yaw)
        if self.phase == "close":
            # Closed until the fingers hold it (grasp flag) or meet (closure): both are in the state.
            if env.held_kind() == k or self.phase_steps >= PHASE_TIMEOUT // 5:
                self._go("lift")
            return self._servo(grip, 1.0, yaw)
        if self.phase == "lift":
            if grip[2] > CARRY_Z - 0.03:
                self._go("carry" if env.held_kind() == k else "approach")
            return self._servo(np.array([grip[0], grip[1], CARRY_Z]), 1.0, yaw)
        xy, is_bin = self._destination(k, self.dest)
        if self.phase == "carry":
            if env.held_kind() != k:
                self._go("approach")
                return self._servo(grip, -1.0)
            if np.linalg.norm(grip[:2] - xy) < 0.02:
                self._go("release" if is_bin else "lower")
            return self._servo(np.array([xy[0], xy[1], CARRY_Z]), 1.0, yaw)
        if self.phase == "lower":
            gz = max(r + 0.012, 0.03)
            if grip[2] - gz < 0.012:
                self._go("release")
            return self._servo(np.array([xy[0], xy[1], gz]), 1.0, yaw)
        if self.phase == "release":
            if self.phase_steps >= 2:
                self._go("retreat")
            return self._servo(grip, -1.0, yaw)
        # retreat: rise clear of the object, then the job is done
        clear_z = RETREAT_BIN_Z if is_bin else HOVER_Z
        if grip[2] > clear_z - 0.03:
            self.jobs_done.add(k)
            self.kind = None
            if self.fail_mode is not None:
                self.idle = True
        return self._servo(np.array([grip[0], grip[1], clear_z]), -1.0)


class NavigateExpert(_ExpertBase):
    """Plans a path on an occupancy grid around obstacles and other landmarks, then follows it."""

    def _plan(self) -> None:
        env: NavigateEnv = self.env
        goal = env.goal_index
        if self.failing:
            others = [i for i in range(len(env.landmarks)) if i != goal]
            goal = others[int(self.rng.integers(len(others)))]
        self.goal = goal
        self.stopped = False
        pos, _ = self.env.base_pose()
        boxes = self.env.obstacle_boxes(exclude_landmark=goal)
        if self.failing:  # keep out of the true goal's success zone on the way to the wrong landmark
            p, half = self.env.landmark_pos(env.goal_index), self.env.success_radius - 0.15
            boxes.append((p[0], p[1], half, half))
        planner = GridPlanner(boxes)
        # Plan to just inside the success radius; the env ends the episode on arrival.
        self.path: list[np.ndarray] = planner.plan(
            pos, self.env.landmark_pos(goal), self.env.success_radius - 0.07
        )

    def _finished(self) -> bool:
        return self.stopped

    def _expected_steps(self) -> float:
        pos, _ = self.env.base_pose()
        points = [pos, *self.path, self.env.landmark_pos(self.goal)]
        length = sum(float(np.linalg.norm(b - a)) for a, b in itertools.pairwise(points))
        return max(length - self.env.success_radius, 0.0) / (self.env.max_speed * self.env.control_dt)

    def _clean_action(self) -> np.ndarray:
        env: NavigateEnv = self.env
        pos, yaw = env.base_pose()
        goal = env.landmark_pos(self.goal)
        if np.linalg.norm(goal - pos) < env.success_radius - 0.1:
            self.stopped = True
            return np.zeros(3)  # arrived (only reached when told to stop at a wrong landmark)
        while len(self.path) > 1 and np.linalg.norm(self.path[0] - pos) < 0.1:
            self.path.pop(0)
        if len(self.path) == 1 and np.linalg.norm(self.path[0] - pos) < 0.05:
            self.path = []  # end of the plan: close the last few centimetres straight at the landmark
        if not self.path and self.failing:
            self.stopped = True
            return np.zeros(3)  # no way round the true goal: wait (still a failure)
        target = self.path[0] if self.path else goal
        world_v = (target - pos) / (env.max_speed * env.control_dt)
        n = np.linalg.norm(world_v)
        if n > 1.0:
            world_v /= n
        # Body-frame velocity command; turn to face the goal so the camera sees it.
        c, s = np.cos(yaw), np.sin(yaw)
        vx, vy = c * world_v[0] + s * world_v[1], -s * world_v[0] + c * world_v[1]
        heading = np.arctan2(goal[1] - pos[1], goal[0] - pos[0])
        err = (heading - yaw + np.pi) % (2 * np.pi) - np.pi
        wz = np.clip(err / (env.max_yaw_rate * env.control_dt), -1.0, 1.0)
        return np.array([vx, vy, wz])


class MetaWorldExpert(_ExpertBase):
    """Meta-World's own scripted policy of the task (``metaworld.policies``), reading the env's 39-value
    observation. A failing episode reads every object and the goal shifted by one offset, 8-15 cm in a
    random horizontal direction: it reaches for the wrong place, as an attempt at a misjudged pose does."""

    def _plan(self) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        policy_cls: Any = ENV_POLICY_MAP[self.env.task_id]  # each task's concrete Policy subclass
        self.policy = policy_cls()
        self.offset = np.zeros(3)
        if self.failing:
            angle = self.rng.uniform(0.0, 2 * np.pi)
            self.offset = self.rng.uniform(0.08, 0.15) * np.array([np.cos(angle), np.sin(angle), 0.0])

    def _expected_steps(self) -> float:
        return METAWORLD_TYPICAL_STEPS

    def _still(self) -> np.ndarray:
        return np.array([0.0, 0.0, 0.0, self.last_action[3]], np.float32)  # hold, keep the grip

    def _clean_action(self) -> np.ndarray:
        obs = self.env.raw_observation()
        if self.failing:
            for start in (4, 11, 22, 29, 36):  # the objects (now and one step earlier) and the goal
                obs[start : start + 3] += self.offset
        with warnings.catch_warnings():  # its gains saturate the action on purpose, and it warns each time
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(self.policy.get_action(obs), np.float64)


def check_gain(gain: float, name: str = "gain") -> float:
    """A GarbageSort servo gain, checked: in (0, 1] (``name`` is what the error calls it)."""
    if not 0.0 < gain <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} must be in (0, 1], got {gain}")
    return float(gain)


def make_expert(
    env: Any,
    noise: float = 0.0,
    epsilon: float = 0.0,
    fail_prob: float = 0.0,
    seed: int | None = None,
    gain: float | None = None,
    halt: tuple[float, float] | None = None,
) -> GarbageExpert | NavigateExpert | MetaWorldExpert:
    """The scripted expert for ``env`` (a GarbageSort or Navigate env, wrapped or not). ``gain`` is the
    GarbageSort expert's servo gain (None: ``SERVO_GAIN``); ``halt`` makes it stall part-way (module
    docstring)."""
    inner = env.unwrapped
    if isinstance(inner, GarbageSortEnv):
        expert = GarbageExpert(env, noise, epsilon, fail_prob, seed, halt)
        if gain is not None:
            expert.gain = check_gain(gain)
        return expert
    if gain is not None:
        raise ValueError(f"gain applies to the GarbageSort expert only, not {type(inner).__name__}")
    if isinstance(inner, NavigateEnv):
        return NavigateExpert(env, noise, epsilon, fail_prob, seed, halt)
    if isinstance(inner, MetaWorldEnv):
        return MetaWorldExpert(env, noise, epsilon, fail_prob, seed, halt)
    raise ValueError(
        f"no expert for {type(inner).__name__}: expected GarbageSortEnv, NavigateEnv or MetaWorldEnv"
    )
