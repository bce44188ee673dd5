"""The GarbageSort MJCF, written in code so the geometry constants below are the single source of truth.

Layout (metres, table top at z = 0, robot base at the origin, +x away from the robot):

* a 6-DoF arm (base yaw, shoulder, elbow, wrist pitch, wrist roll, hand yaw) whose hand is pulled to a
  mocap target by a weld constraint; the arm links are visual only and gravity-compensated, so the
  weld moves the hand like a stiff Cartesian controller and the joints follow;
* a parallel gripper: two slide-joint fingers with position actuators, grasping by friction;
* three open bins in a row at the far edge of the table; their slots are shuffled per episode;
* one free body per object kind; kinds not used in an episode are parked under the table with
  collisions off and gravity compensated, so they cost nothing.
"""

from __future__ import annotations

from envs.common import lookat_xyaxes
from envs.tasks import BINS, OBJECT_KINDS

TIMESTEP = 0.005
CONTROL_DT = 0.1  # 10 Hz
GRIP_OFFSET = 0.06  # grip site below the hand origin (where the finger pads meet)
FINGER_TRAVEL = 0.039  # each finger's inward travel from fully open to touching
BIN_SLOTS: tuple[tuple[float, float], ...] = ((0.78, -0.24), (0.78, 0.0), (0.78, 0.24))
BIN_HALF = 0.085  # inner half-width of a bin
BIN_WALL_HEIGHT = 0.09
BIN_COLOURS: dict[str, str] = {
    "recycling": "0.1 0.35 0.85 1",
    "compost": "0.2 0.6 0.15 1",
    "trash": "0.2 0.2 0.2 1",
}
SPAWN_LOW = (0.32, -0.28)
SPAWN_HIGH = (0.6, 0.28)
TABLE_HALF = (0.6, 0.6)
TABLE_CENTRE = (0.45, 0.0)
# Height of each object's centre when it rests upright on the table.
REST_Z: dict[str, float] = {
    "can": 0.045,
    "bottle": 0.025,
    "banana_peel": 0.02,
    "apple_core": 0.045,
    "wrapper": 0.012,
    "cup": 0.045,
}
# Height of each object's top above its centre (the palm must stay above it while grasping).
TOP_Z: dict[str, float] = {
    "can": 0.045,
    "bottle": 0.025,
    "banana_peel": 0.02,
    "apple_core": 0.035,
    "wrapper": 0.012,
    "cup": 0.047,
}
HOME_GRIP = (0.4, 0.0, 0.2)
PARK_Z = -0.35
CAMERA_POS = (0.5, -0.8, 0.85)
CAMERA_TARGET = (0.52, 0.0, 0.02)


def _object_body(kind: str, index: int) -> str:
    park = f"{-0.2 + 0.12 * index:.3f} 0 {PARK_Z}"
    common = 'friction="1.0 0.01 0.001" solref="0.01 1" density="300"'
    geoms = {
        "can": f'<geom name="can_g0" type="cylinder" size="0.028 0.045" {common}/>',
        "bottle": (
            f'<geom name="bottle_g0" type="capsule" fromto="-0.045 0 0 0.035 0 0" size="0.025" {common}/>'
            f'<geom name="bottle_g1" type="cylinder" fromto="0.035 0 0 0.075 0 0" size="0.011" {common}/>'
        ),
        "banana_peel": (
            f'<geom name="banana_peel_g0" type="capsule" fromto="-0.04 0 0 0.035 0 0" size="0.02" {common}/>'
            f'<geom name="banana_peel_g1" type="capsule" fromto="0.035 0 0 0.06 0.025 0" size="0.012" {common}/>'
        ),
        "apple_core": (
            f'<geom name="apple_core_g0" type="cylinder" size="0.018 0.035" {common}/>'
            f'<geom name="apple_core_g1" type="cylinder" pos="0 0 0.028" size="0.027 0.007" {common}/>'
            f'<geom name="apple_core_g2" type="cylinder" pos="0 0 -0.028" size="0.027 0.007" {common}/>'
        ),
        "wrapper": f'<geom name="wrapper_g0" type="box" size="0.045 0.028 0.012" {common}/>',
        "cup": (
            f'<geom name="cup_g0" type="cylinder" size="0.03 0.045" {common}/>'
            f'<geom name="cup_g1" type="cylinder" pos="0 0 0.043" size="0.033 0.004" {common}/>'
        ),
    }[kind]
    return f'<body name="obj_{kind}" pos="{park}"><freejoint name="obj_{kind}_jnt"/>{geoms}</body>'


def _bin_body(name: str, slot: tuple[float, float]) -> str:
    h, t, wh = BIN_HALF, 0.008, BIN_WALL_HEIGHT / 2
    rgba = BIN_COLOURS[name]
    o = h + t
    walls = [
        f'<geom name="bin_{name}_floor" type="box" pos="0 0 0.004" size="{o} {o} 0.004" rgba="{rgba}"/>',
        f'<geom name="bin_{name}_w0" type="box" pos="{o} 0 {wh}" size="{t} {o} {wh}" rgba="{rgba}"/>',
        f'<geom name="bin_{name}_w1" type="box" pos="{-o} 0 {wh}" size="{t} {o} {wh}" rgba="{rgba}"/>',
        f'<geom name="bin_{name}_w2" type="box" pos="0 {o} {wh}" size="{o} {t} {wh}" rgba="{rgba}"/>',
        f'<geom name="bin_{name}_w3" type="box" pos="0 {-o} {wh}" size="{o} {t} {wh}" rgba="{rgba}"/>',
    ]
    return f'<body name="bin_{name}" pos="{slot[0]} {slot[1]} 0">{"".join(walls)}</body>'


def _arm() -> str:
    vis = 'contype="0" conaffinity="0" group="1"'
    arm_rgba = 'rgba="0.85 0.85 0.88 1"'
    joint = 'damping="3" armature="0.05" stiffness="1"'
    finger = 'type="box" size="0.012 0.006 0.03" pos="0 0 -0.045" friction="1.5 0.05 0.002" condim="4" solref="0.005 1" rgba="0.25 0.25 0.3 1"'
    return f"""
    <body name="arm_base" pos="0 0 0" gravcomp="1">
      <geom type="cylinder" size="0.08 0.05" pos="0 0 0.05" {vis} rgba="0.3 0.3 0.35 1"/>
      <joint name="j0" type="hinge" axis="0 0 1" range="-2.5 2.5" {joint}/>
      <body name="shoulder" pos="0 0 0.25" gravcomp="1">
        <geom type="cylinder" fromto="0 0 -0.2 0 0 0" size="0.045" {vis} {arm_rgba}/>
        <joint name="j1" type="hinge" axis="0 1 0" range="-2.2 1.0" springref="-0.6" {joint}/>
        <geom type="capsule" fromto="0 0 0 0.45 0 0" size="0.04" {vis} {arm_rgba}/>
        <body name="elbow" pos="0.45 0 0" gravcomp="1">
          <joint name="j2" type="hinge" axis="0 1 0" range="-0.3 2.8" springref="1.4" {joint}/>
          <geom type="capsule" fromto="0 0 0 0.45 0 0" size="0.035" {vis} {arm_rgba}/>
          <body name="wrist" pos="0.45 0 0" gravcomp="1">
            <joint name="j3" type="hinge" axis="0 1 0" range="-2.5 2.5" springref="-0.8" {joint}/>
            <joint name="j4" type="hinge" axis="1 0 0" range="-1.5 1.5" {joint}/>
            <geom type="cylinder" fromto="0 0 0 0 0 -0.06" size="0.03" {vis} rgba="0.3 0.3 0.35 1"/>
            <body name="hand" pos="0 0 -0.08" gravcomp="1">
              <joint name="j5" type="hinge" axis="0 0 1" range="-3 3" {joint}/>
              <geom name="palm" type="box" size="0.02 0.055 0.015" rgba="0.3 0.3 0.35 1"/>
              <site name="grip" pos="0 0 {-GRIP_OFFSET}" size="0.005" rgba="1 0 0 0"/>
              <camera name="wrist" pos="-0.08 0 0.02" xyaxes="0 -1 0 1 0 0.35" fovy="80"/>
              <body name="finger_l" pos="0 0.045 0" gravcomp="1">
                <joint name="finger_l" type="slide" axis="0 -1 0" range="0 {FINGER_TRAVEL}" damping="5" armature="0.01"/>
                <geom name="finger_l" {finger}/>
              </body>
              <body name="finger_r" pos="0 -0.045 0" gravcomp="1">
                <joint name="finger_r" type="slide" axis="0 1 0" range="0 {FINGER_TRAVEL}" damping="5" armature="0.01"/>
                <geom name="finger_r" {finger}/>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def build_xml(render_size: int = 256) -> str:
    """The complete model as an MJCF string."""
    objects = "".join(_object_body(k, i) for i, k in enumerate(OBJECT_KINDS))
    bins = "".join(_bin_body(b, s) for b, s in zip(BINS, BIN_SLOTS))
    tx, ty = TABLE_CENTRE
    hx, hy = TABLE_HALF
    size = max(render_size, 64)
    return f"""<mujoco model="garbage_sort">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{size}" offheight="{size}"/>
    <quality shadowsize="0" offsamples="0" numslices="12" numstacks="8" numquads="1"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default><geom contype="1" conaffinity="1" condim="3"/></default>
  <worldbody>
    <light pos="0.5 0 2" dir="0 0 -1" diffuse="0.5 0.5 0.5" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" rgba="0.55 0.55 0.5 1"/>
    <geom name="table" type="box" pos="{tx} {ty} -0.02" size="{hx} {hy} 0.02" rgba="0.72 0.58 0.42 1"/>
    <geom type="box" pos="{tx} {ty} -0.4" size="0.05 0.05 0.35" contype="0" conaffinity="0" rgba="0.4 0.3 0.2 1"/>
    <camera name="overview" pos="{CAMERA_POS[0]} {CAMERA_POS[1]} {CAMERA_POS[2]}" xyaxes="{lookat_xyaxes(CAMERA_POS, CAMERA_TARGET)}" fovy="55"/>
    {_arm()}
    {bins}
    {objects}
    <body name="target" mocap="true" pos="{HOME_GRIP[0]} {HOME_GRIP[1]} {HOME_GRIP[2] + GRIP_OFFSET}"/>
  </worldbody>
  <equality>
    <weld body1="target" body2="hand" relpose="0 0 0 1 0 0 0" solref="0.02 1"/>
  </equality>
  <actuator>
    <position name="finger_l" joint="finger_l" kp="300" ctrlrange="0 {FINGER_TRAVEL}" forcerange="-12 12"/>
    <position name="finger_r" joint="finger_r" kp="300" ctrlrange="0 {FINGER_TRAVEL}" forcerange="-12 12"/>
  </actuator>
</mujoco>"""
