"""The Navigate MJCF: a holonomic base in a walled arena with five landmarks and a few obstacles.

There is one landmark body per shape (``tasks.LANDMARK_SHAPES``); per episode their colours are a
permutation of ``tasks.LANDMARK_COLOURS`` and their positions are drawn from the seed, so every
episode shows each shape and each colour exactly once. Obstacles are static boxes moved per episode.
"""

from __future__ import annotations

from envs.common import lookat_xyaxes
from envs.tasks import LANDMARK_SHAPES

TIMESTEP = 0.01
CONTROL_DT = 0.1
ARENA_HALF = 1.5
BASE_RADIUS = 0.15
LANDMARK_RADIUS = 0.15  # footprint radius used for planning and spacing
N_OBSTACLES = 3
OBSTACLE_HALF = (0.28, 0.05)  # long, thin wall segments (half extents)
OBSTACLE_HEIGHT = 0.15
OVERVIEW_POS = (0.0, -2.6, 3.6)


def _landmark(shape: str) -> str:
    g = {
        "cone": (
            '<geom type="cylinder" pos="0 0 0.06" size="0.15 0.06"/>'
            '<geom type="cylinder" pos="0 0 0.18" size="0.1 0.06"/>'
            '<geom type="cylinder" pos="0 0 0.3" size="0.05 0.06"/>'
        ),
        "box": '<geom type="box" pos="0 0 0.13" size="0.12 0.12 0.13"/>',
        "cylinder": '<geom type="cylinder" pos="0 0 0.16" size="0.13 0.16"/>',
        "sphere": '<geom type="sphere" pos="0 0 0.14" size="0.14"/>',
        "pillar": '<geom type="box" pos="0 0 0.35" size="0.07 0.07 0.35"/>',
    }[shape]
    return f'<body name="lm_{shape}" pos="0 0 0">{g}</body>'


def build_xml(render_size: int = 256) -> str:
    """The complete model as an MJCF string."""
    a = ARENA_HALF
    walls = "".join(
        f'<geom name="wall{i}" type="box" pos="{x} {y} 0.15" size="{sx} {sy} 0.15" rgba="0.6 0.6 0.62 1"/>'
        for i, (x, y, sx, sy) in enumerate(
            [
                (a + 0.05, 0, 0.05, a + 0.1),
                (-a - 0.05, 0, 0.05, a + 0.1),
                (0, a + 0.05, a + 0.1, 0.05),
                (0, -a - 0.05, a + 0.1, 0.05),
            ]
        )
    )
    ox, oy = OBSTACLE_HALF
    obstacles = "".join(
        f'<body name="obstacle{i}" pos="0 0 0"><geom name="obstacle{i}" type="box" pos="0 0 {OBSTACLE_HEIGHT}" '
        f'size="{ox} {oy} {OBSTACLE_HEIGHT}" rgba="0.45 0.42 0.4 1"/></body>'
        for i in range(N_OBSTACLES)
    )
    landmarks = "".join(_landmark(s) for s in LANDMARK_SHAPES)
    size = max(render_size, 64)
    return f"""<mujoco model="navigate">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" gravity="0 0 0"/>
  <visual>
    <global offwidth="{size}" offheight="{size}"/>
    <quality shadowsize="0" offsamples="0" numslices="12" numstacks="8" numquads="1"/>
    <headlight ambient="0.5 0.5 0.5" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <default><geom contype="1" conaffinity="1" condim="3" friction="0.3 0 0"/></default>
  <worldbody>
    <geom name="floor" type="plane" size="{a + 0.2} {a + 0.2} 0.1" rgba="0.82 0.8 0.74 1" contype="0" conaffinity="0"/>
    <camera name="overview" pos="{OVERVIEW_POS[0]} {OVERVIEW_POS[1]} {OVERVIEW_POS[2]}" xyaxes="{lookat_xyaxes(OVERVIEW_POS, (0, -0.15, 0))}" fovy="50"/>
    {walls}
    {obstacles}
    {landmarks}
    <body name="base" pos="0 0 0.09">
      <joint name="base_x" type="slide" axis="1 0 0" damping="5"/>
      <joint name="base_y" type="slide" axis="0 1 0" damping="5"/>
      <joint name="base_yaw" type="hinge" axis="0 0 1" damping="1"/>
      <geom name="base" type="cylinder" size="{BASE_RADIUS} 0.07" mass="10" rgba="0.2 0.22 0.25 1"/>
      <geom name="nose" type="box" pos="0.11 0 0.08" size="0.04 0.03 0.015" contype="0" conaffinity="0" rgba="1 1 1 1"/>
      <camera name="ego" pos="0.13 0 0.12" xyaxes="0 -1 0 0.12 0 1" fovy="75"/>
    </body>
  </worldbody>
  <actuator>
    <velocity name="vx" joint="base_x" kv="300" ctrlrange="-1 1"/>
    <velocity name="vy" joint="base_y" kv="300" ctrlrange="-1 1"/>
    <velocity name="wz" joint="base_yaw" kv="30" ctrlrange="-3 3"/>
  </actuator>
</mujoco>"""
