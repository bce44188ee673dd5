"""The GarbageSort imitation probe's features are what they claim to be, read off a real env state."""

from __future__ import annotations

import numpy as np

import envs
from envs.garbage_sort import STATE_DIM
from research.garbage_outcomes import classify
from research.probe_garbage import relative_features


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


def test_outcomes_tell_a_missed_grasp_from_a_drop_and_a_wrong_bin() -> None:
    assert classify(True, "can", True, "recycling", "can") == "success"
    assert classify(False, "cup", False, "table", "can") == "wrong_object"
    assert classify(False, None, False, "table", "can") == "no_grasp"
    assert classify(False, "can", True, "table", "can") == "dropped"
    assert classify(False, "can", True, "held", "can") == "held_at_end"
    assert classify(False, "can", True, "trash", "can") == "wrong_bin"


def test_grasp_choice_reads_the_z_command_of_both_heads() -> None:
    import torch

    from qtransformer.bins import ActionBins
    from qtransformer.model import QTransformer
    from qtransformer.policy import QTransformerPolicy
    from research.garbage_outcomes import grasp_choice
    from tests.finetune.test_finetune import _RecordingEncoder
    from tests.qtransformer.helpers import tiny_config

    model = QTransformer(tiny_config(state_dim=4, action_dim=4, support_tau=0.3))
    policy = QTransformerPolicy(model, ActionBins([-1] * 4, [1] * 4, 8), _RecordingEncoder())
    centres = policy.bins.centers[2]  # 8 bins, -0.875 .. 0.875
    lift, still = int(np.argmax(centres)), int(np.argmin(np.abs(centres)))
    state = np.zeros(4, np.float32)
    with torch.no_grad():
        for head, favoured in ((model.head, still), (model.behavior_head, lift)):
            head[-1].weight.zero_()
            head[-1].bias.fill_(-5.0)
            head[-1].bias[favoured] = 5.0
    c = grasp_choice(policy, state, "lift it", stay_z=0.2)  # with 8 bins the nearest to 0 are +-0.125
    assert c["support_lift"] > 0.99  # the support head favours lifting...
    assert c["q_lift_minus_stay"] < -0.9  # ...and the Q head staying (sigmoid Q: ~0.007 against ~0.993)


def test_range_limits_bound_the_motion_and_leave_the_gripper_unless_asked() -> None:
    from envs.garbage_sort import GRIPPER_DIM
    from qtransformer.bins import ActionBins
    from qtransformer.model import QTransformer
    from qtransformer.policy import QTransformerPolicy
    from research.garbage_outcomes import range_limits
    from tests.finetune.test_finetune import _RecordingEncoder
    from tests.qtransformer.helpers import tiny_config

    env = envs.make_env("garbage_sort")
    model = QTransformer(tiny_config(state_dim=STATE_DIM, action_dim=4))
    policy = QTransformerPolicy(model, ActionBins([-1] * 4, [1] * 4, 256), _RecordingEncoder())
    lo, hi = range_limits(policy, env, 0.5)
    assert lo.shape == (1, 4) and (lo[0, GRIPPER_DIM], hi[0, GRIPPER_DIM]) == (0, 255)
    assert np.all(lo[0, :3] == 64) and np.all(hi[0, :3] == 192)
    lo, hi = range_limits(policy, env, 0.5, bound_gripper=True)
    assert (lo[0, GRIPPER_DIM], hi[0, GRIPPER_DIM]) == (64, 192)
    env.close()
