import numpy as np
import pytest
import torch

from qtransformer.bins import ActionBins
from qtransformer.returns import episode_targets


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
