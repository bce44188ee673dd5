import numpy as np
import pytest

from finetune.aprl import AprlConfig, CautiousRange
from finetune.episode import Episode
from qtransformer.bins import ActionBins


def _range(**kw):
    return CautiousRange(AprlConfig(**kw), ActionBins([-1, -1], [1, 1], 256), state_dim=3)


def test_range_widens_when_confident_and_shrinks_only_dims_that_pushed_their_limit():
    cr = _range(initial_scale=0.5, grow=0.1, shrink=0.2)
    cr.adapt(error_ratio=0.5, near_limit=np.array([False, False]))
    np.testing.assert_allclose(cr.scale, [0.55, 0.55])
    cr.adapt(error_ratio=10.0, near_limit=np.array([True, False]))
    np.testing.assert_allclose(cr.scale, [0.44, 0.55])
    cr.adapt(error_ratio=2.0, near_limit=np.array([True, True]))  # in between: hold
    np.testing.assert_allclose(cr.scale, [0.44, 0.55])
    for _ in range(100):
        cr.adapt(0.1, np.array([False, False]))
    np.testing.assert_allclose(cr.scale, [1.0, 1.0])
    for _ in range(100):
        cr.adapt(100.0, np.array([True, True]))
    np.testing.assert_allclose(cr.scale, [0.1, 0.1])


def test_bin_limits_follow_the_range():
    cr = _range(initial_scale=0.5)
    lo, hi = cr.bin_limits(batch=2)
    assert lo.shape == (2, 2) and np.all(lo == 64) and np.all(hi == 192)
    assert np.all(_range(enabled=False).bin_limits()[0] == 0)


def test_dynamics_error_drives_the_range_on_synthetic_data():
    """Learned linear dynamics: familiar transitions keep errors low (range grows); a change in the
    dynamics while pushing dimension 0 to its limit raises the error and shrinks dimension 0 only."""
    rng = np.random.default_rng(0)
    cr = _range(initial_scale=0.5, window=20, adapt_every=10**9, low_error=1.5, high_error=3.0)
    A = rng.normal(size=(2, 3)) * 0.1

    def transition(a, broken=False):
        s = rng.normal(size=3).astype(np.float32)
        s2 = s + a @ A + (3.0 * a[0] if broken else 0.0)
        return s, a.astype(np.float32), s2.astype(np.float32)

    for _ in range(500):
        cr.observe(*transition(rng.uniform(-0.5, 0.5, 2)))
    cr.train(iters=300)
    for _ in range(20):
        cr.observe(*transition(rng.uniform(-0.3, 0.3, 2)))
    assert cr.error_ratio() < cr.cfg.low_error
    before = cr.scale.copy()
    cr.step()
    assert np.all(cr.scale > before)
    for _ in range(20):
        cr.observe(*transition(np.array([0.95 * cr.scale[0], 0.0]), broken=True))
    assert cr.error_ratio() > cr.cfg.high_error
    before = cr.scale.copy()
    cr.step()
    assert cr.scale[0] < before[0] and cr.scale[1] == before[1]


def test_priming_on_prior_episodes_makes_the_model_confident_before_any_online_step():
    """Prior episodes of the same linear dynamics: after ``prime`` the very first online transitions
    score as familiar and the first range update widens; without priming the model knows nothing
    (no error ratio, so the range holds at its initial scale)."""
    rng = np.random.default_rng(1)
    A = rng.normal(size=(2, 3)) * 0.1

    def episode(T=20):
        a = rng.uniform(-0.5, 0.5, (T, 2)).astype(np.float32)
        s = np.zeros((T + 1, 3), np.float32)
        s[0] = rng.normal(size=3)
        for t in range(T):
            s[t + 1] = s[t] + a[t] @ A
        return Episode(state=s, action=a, reward=np.zeros(T, np.float32), terminated=False, instruction="x")

    def online_steps(cr, n):
        ep = episode(n)
        for t in range(n):
            cr.observe(ep.state[t], ep.action[t], ep.state[t + 1])

    primed = _range(initial_scale=0.5, adapt_every=10, window=10)
    assert primed.prime([episode() for _ in range(30)]) == 600
    assert primed.updates == 1 and np.isfinite(primed.train_error)
    online_steps(primed, 10)
    assert primed.error_ratio() < primed.cfg.low_error
    np.testing.assert_allclose(primed.scale, 0.5 * (1 + primed.cfg.grow))

    cold = _range(initial_scale=0.5, adapt_every=10, window=10)
    online_steps(cold, 10)
    assert cold.updates == 0 and np.isnan(cold.error_ratio())
    np.testing.assert_allclose(cold.scale, 0.5)

    resumed = _range(initial_scale=0.5)
    assert resumed.prime([episode()], fit=False) == 20 and resumed.updates == 0 and len(resumed.data) == 20


def test_config_validation():
    with pytest.raises(ValueError, match="min_scale"):
        AprlConfig(min_scale=0.5, initial_scale=0.2)


def test_exempt_dims_keep_their_full_range_and_the_config_overrides_the_env():
    cr = CautiousRange(
        AprlConfig(initial_scale=0.5, shrink=0.2), ActionBins([-1, -1], [1, 1], 256), 3, exempt_dims=(1,)
    )
    np.testing.assert_allclose(cr.scale, [0.5, 1.0])
    cr.adapt(error_ratio=10.0, near_limit=np.array([True, True]))
    np.testing.assert_allclose(cr.scale, [0.4, 1.0])  # only the bounded dimension shrinks
    lo, hi = cr.bin_limits()
    assert (lo[0, 1], hi[0, 1]) == (0, 255) and 0 < lo[0, 0] < hi[0, 0] < 255
    cr.load_state_dict({**cr.state_dict(), "scale": np.array([0.3, 0.3])})  # an older run's saved scale
    np.testing.assert_allclose(cr.scale, [0.3, 1.0])
    own = CautiousRange(AprlConfig(exempt_dims=()), ActionBins([-1, -1], [1, 1], 256), 3, exempt_dims=(1,))
    np.testing.assert_allclose(own.scale, [0.5, 0.5])  # the config's empty tuple wins over the env's
    with pytest.raises(ValueError, match="outside the 2 action dimensions"):
        CautiousRange(AprlConfig(), ActionBins([-1, -1], [1, 1], 256), 3, exempt_dims=(2,))
    with pytest.raises(ValueError, match="exempt_dims"):
        AprlConfig(exempt_dims=(-1,))


def test_the_garbage_sort_actor_never_bounds_the_gripper():
    import envs
    from envs.garbage_sort import GRIPPER_DIM
    from finetune.actor import Actor, ExplorationConfig
    from qtransformer.model import QTransformer
    from qtransformer.policy import QTransformerPolicy
    from tests.finetune.test_finetune import _RecordingEncoder
    from tests.qtransformer.helpers import tiny_config

    env = envs.make_env("garbage_sort")
    cfg = tiny_config(state_dim=env.observation_space["state"].shape[0], action_dim=4)
    policy = QTransformerPolicy(QTransformer(cfg), ActionBins([-1] * 4, [1] * 4, 8), _RecordingEncoder())
    actor = Actor(policy, env, "sort:can", ExplorationConfig(), AprlConfig(initial_scale=0.5))
    lo, hi = actor.cautious.bin_limits()
    assert (lo[0, GRIPPER_DIM], hi[0, GRIPPER_DIM]) == (0, 7)
    assert lo[0, 0] > 0 and hi[0, 0] < 7
    env.close()
