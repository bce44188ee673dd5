"""The GarbageSort imitation probe's features are what they claim to be, read off a real env state."""

from __future__ import annotations

import numpy as np

import envs
from envs.garbage_sort import STATE_DIM
from scripts.probe_garbage import relative_features


def test_relative_features_are_positions_from_the_grip_point() -> None:
    env = envs.make_env("garbage_sort", max_distractors=0)
    obs, _ = env.reset(seed=1, options={"task": "sort:bottle"})
    u = env.unwrapped
    f = relative_features(obs["state"])[0]
    assert f.shape == (33,)
    np.testing.assert_allclose(f[0], u.grip_pos()[2], atol=1e-6)
    # Objects come after grip z, closure, grasp flag and the three bins' (x, y); kinds in OBJECT_KINDS order.
    bottle = 3 + 6 + 3 * envs.tasks.OBJECT_KINDS.index("bottle")
    np.testing.assert_allclose(f[bottle : bottle + 3], u.object_pos("bottle") - u.grip_pos(), atol=1e-5)
    np.testing.assert_allclose(f[3:5], u.bin_pos["recycling"] - u.grip_pos()[:2], atol=1e-5)
    absent = 3 + 6 + 3 * envs.tasks.OBJECT_KINDS.index("can")
    assert not f[absent : absent + 3].any() and f[-6:].sum() == 1  # one object present, the rest zeros
    assert relative_features(obs["state"], ("colour", "orientation", "proprio")).shape == (1, STATE_DIM)
