import numpy as np
import pytest
import torch

from qtransformer.bins import ActionBins
from qtransformer.returns import ReturnConfig, ReturnOverrides, episode_targets, resolve_returns


def test_round_trip_within_half_bin():
    bins = ActionBins([-1.0, 0.0, -2.0], [1.0, 0.5, 3.0], num_bins=256)
    rng = np.random.default_rng(0)
    a = rng.uniform(bins.low, bins.high, size=(1000, 3))
    a[:3] = [bins.low, bins.high, (bins.low + bins.high) / 2]  # the edges belong to the first/last bin
    b = bins.discretize(a)
    assert b.dtype == np.int64 and b.min() >= 0 and b.max() <= 255
    err = np.abs(bins.undiscretize(b) - a)
    assert np.all(err <= bins.width / 2 + 1e-6)
    assert b[0].tolist() == [0, 0, 0] and b[1].tolist() == [255, 255, 255]


def test_bins_accept_tensors_and_bin_centres_map_to_themselves():
    bins = ActionBins([-1.0], [1.0], num_bins=4)
    assert bins.undiscretize(np.array([[0], [3]])).tolist() == [[-0.75], [0.75]]
    assert bins.discretize(torch.tensor([[-0.75], [0.75]])).tolist() == [[0], [3]]


@pytest.mark.parametrize(
    "action, match",
    [
        ([[np.nan, 0.0]], "NaN"),
        ([[0.0, np.inf]], "NaN or inf"),
        ([[1.5, 0.0]], "outside"),
        ([[0.0]], "dimension 2"),
    ],
)
def test_bad_actions_are_rejected_clearly(action, match):
    with pytest.raises(ValueError, match=match):
        ActionBins([-1, -1], [1, 1], 8).discretize(np.array(action))


def test_bad_bounds_and_bins():
    with pytest.raises(ValueError, match="exceed"):
        ActionBins([1.0], [1.0], 8)
    with pytest.raises(ValueError, match="finite"):
        ActionBins([-np.inf], [1.0], 8)
    with pytest.raises(ValueError, match=r"\[0, 7\]"):
        ActionBins([-1.0], [1.0], 8).undiscretize(np.array([[8]]))


def test_episode_targets_by_hand():
    r = [0.0, 0.0, 1.0]
    g = 0.5
    out = episode_targets(r, terminated=True, gamma=g, n=2)
    assert out.rewards.tolist() == [[0, 0], [0, 1], [1, 0]]
    assert out.nstep.tolist() == [2, 2, 1]
    assert out.next_index.tolist() == [2, 3, 3]
    assert out.bootstrap.tolist() == [1, 0, 0]  # windows that reach the terminal state do not bootstrap
    np.testing.assert_allclose(out.mc_return, [0.25, 0.5, 1.0])


def test_truncated_episode_keeps_bootstrapping():
    out = episode_targets([0.0, 0.0, 0.0], terminated=False, gamma=0.9, n=5)
    assert out.bootstrap.tolist() == [1, 1, 1]
    assert out.nstep.tolist() == [3, 2, 1]
    assert out.next_index.tolist() == [3, 3, 3]


def test_episode_targets_reject_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        episode_targets([], True, 0.9, 3)
    with pytest.raises(ValueError, match="NaN"):
        episode_targets([np.nan], True, 0.9, 3)


def test_return_config_validates_its_fields():
    assert ReturnConfig.from_dict(ReturnConfig(gamma=0.9, n_step=5).to_dict()) == ReturnConfig(0.9, 5)
    for bad, match in (
        (dict(gamma=0.0), "gamma"),
        (dict(gamma=1.5), "gamma"),
        (dict(n_step=0), "n_step"),
        (dict(n_step=2.5), "n_step"),
        (dict(min_return=float("nan")), "min_return"),
        (dict(timeout_is_failure="yes"), "timeout_is_failure"),
    ):
        with pytest.raises(ValueError, match=match):
            ReturnConfig(**bad)
    with pytest.raises(ValueError, match="exactly the fields"):
        ReturnConfig.from_dict({"gamma": 0.9})


def test_resolve_returns_keeps_what_a_pretrained_value_means():
    pre = ReturnConfig(gamma=0.9, n_step=5, timeout_is_failure=True, min_return=0.0)
    assert resolve_returns(pre, ReturnOverrides()) == pre  # nothing given: the checkpoint's
    # An explicit value equal to ReturnConfig's default is the user's, not replaced by the checkpoint's.
    assert resolve_returns(pre, ReturnOverrides(n_step=3)).n_step == 3
    assert resolve_returns(pre, ReturnOverrides(timeout_is_failure=False)).timeout_is_failure is False
    # gamma and min_return may be restated, never changed.
    assert resolve_returns(pre, ReturnOverrides(gamma=0.9, min_return=0.0)) == pre
    with pytest.raises(ValueError, match=r"returns.gamma=0.98 differs .* gamma=0.9"):
        resolve_returns(pre, ReturnOverrides(gamma=0.98))
    with pytest.raises(ValueError, match=r"returns.min_return=-1.0 differs"):
        resolve_returns(pre, ReturnOverrides(min_return=-1.0))
    # From scratch: ReturnConfig's defaults with whatever is given, gamma included.
    assert resolve_returns(None, ReturnOverrides()) == ReturnConfig()
    assert resolve_returns(None, ReturnOverrides(gamma=0.95, n_step=1)) == ReturnConfig(gamma=0.95, n_step=1)
    with pytest.raises(ValueError, match="gamma"):
        resolve_returns(None, ReturnOverrides(gamma=2.0))
