"""Deliberate failures end when the expert comes to rest instead of logging idle frames."""

import numpy as np

from envs import make_env, make_expert
from pretrain.datagen import _rollout


def test_failed_navigate_episode_stops_when_the_expert_is_at_rest():
    env = make_env("navigate")
    cut, full = [], []
    for seed in range(4):
        ep = _rollout(env, make_expert(env, fail_prob=1.0, seed=seed), seed, "navigate", "failed", True)
        assert not ep.success and not ep.terminated
        cut.append(len(ep.action))
        if len(ep.action) < env.spec.max_episode_steps:
            np.testing.assert_array_equal(ep.action[-1], 0.0)  # the first idle action is the last one logged
            assert np.abs(ep.action[:-1]).sum(axis=1).min() > 0  # no idle frames before it
        ep = _rollout(env, make_expert(env, fail_prob=1.0, seed=seed), seed, "navigate", "failed", False)
        full.append(len(ep.action))
    env.close()
    assert all(f == env.spec.max_episode_steps for f in full)
    assert min(cut) < env.spec.max_episode_steps  # at least one failure reached its wrong landmark early
    assert all(c <= f for c, f in zip(cut, full))


def test_successful_episodes_are_unchanged():
    env = make_env("navigate")
    ep = _rollout(env, make_expert(env, seed=0), 7, "navigate", "expert", True)
    assert ep.success and ep.terminated
    env.close()
