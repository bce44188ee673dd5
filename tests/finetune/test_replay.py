import numpy as np
import pytest
import torch

from finetune.replay import EpisodeReplay, mixed_sample
from qtransformer import batch as K
from qtransformer.bins import ActionBins
from qtransformer.returns import ReturnConfig, episode_targets

from .helpers import make_episode


def test_replay_transitions_match_episode_targets():
    ep = make_episode(T=6, success=True)
    rb = EpisodeReplay(ReturnConfig(gamma=0.9, n_step=3), seed=0)
    rb.add(ep)
    assert len(rb) == 6
    tg = episode_targets(ep.reward, True, 0.9, 3)
    d = rb.sample(200)
    for i in range(200):
        t = int(np.argmin(np.abs(ep.state[:-1] - d[K.STATE][i]).sum(1)))
        np.testing.assert_allclose(d[K.NEXT_STATE][i], ep.state[tg.next_index[t]])
        np.testing.assert_allclose(d[K.REWARDS][i], tg.rewards[t])
        assert d[K.BOOTSTRAP][i] == tg.bootstrap[t] and d[K.MC_RETURN][i] == pytest.approx(tg.mc_return[t])
        np.testing.assert_allclose(d[K.ACTION][i], ep.action[t])
    assert set(d[K.INSTRUCTION]) == {"go"}


def test_timeout_is_failure_stops_bootstrapping_at_the_end_of_a_failed_episode():
    ep = make_episode(T=5, success=False)
    assert not ep.terminated
    plain, failing = (
        EpisodeReplay(ReturnConfig(0.9, 2), seed=0),
        EpisodeReplay(ReturnConfig(0.9, 2, True), seed=0),
    )
    plain.add(ep)
    failing.add(ep)
    assert len(plain) == len(failing) == 5
    assert plain._tr["bootstrap"].data[:5].tolist() == [1, 1, 1, 1, 1]
    assert failing._tr["bootstrap"].data[:5].tolist() == [1, 1, 1, 0, 0]


def test_frame_history_repeats_first_frame_and_never_crosses_episodes():
    rb = EpisodeReplay(ReturnConfig(gamma=0.9, n_step=1), num_frames=3)
    a, b = make_episode(T=4, image=True, seed=1), make_episode(T=4, image=True, seed=2)
    rb.add(a)
    rb.add(b)
    frames = rb._frames(np.array([0, 1, 5, 6]))  # obs 5 is episode b's first observation
    np.testing.assert_array_equal(frames[0], np.stack([a.image[0]] * 3))
    np.testing.assert_array_equal(frames[1], np.stack([a.image[0], a.image[0], a.image[1]]))
    np.testing.assert_array_equal(frames[2], np.stack([b.image[0]] * 3))
    np.testing.assert_array_equal(frames[3], np.stack([b.image[0], b.image[0], b.image[1]]))
    d = rb.sample(4)
    assert d[K.IMAGE].shape == (4, 3, 8, 8, 3) and d[K.NEXT_IMAGE].shape == (4, 3, 8, 8, 3)


@pytest.mark.parametrize("fraction", [0.5, 0.25, 0.0, 1.0])
def test_batches_mix_offline_and_online_at_the_configured_ratio(fraction):
    off, on = EpisodeReplay(ReturnConfig(0.9, 2)), EpisodeReplay(ReturnConfig(0.9, 2))
    for s in range(3):
        off.add(make_episode(instruction="prior", seed=s))
    on.add(make_episode(instruction="fresh", seed=9))
    d = mixed_sample(off, on, 64, fraction, np.random.default_rng(0))
    assert d[K.INSTRUCTION].count("prior") == round(64 * fraction)
    assert len(d[K.INSTRUCTION]) == 64 and d[K.STATE].shape == (64, 3)
    # every sample says where it came from, for the loss's online_alpha
    assert [i == "fresh" for i in d[K.INSTRUCTION]] == d[K.ONLINE].tolist()
    action_dim = d[K.ACTION].shape[1]
    batch = K.make_batch(
        d, ActionBins(-np.ones(action_dim), np.ones(action_dim), 8), lambda s: torch.zeros(len(s), 4)
    )
    assert batch.online.dtype == torch.bool and batch.online.tolist() == d[K.ONLINE].tolist()


def test_mixing_falls_back_to_whichever_buffer_has_data():
    off, on = EpisodeReplay(ReturnConfig(0.9, 2)), EpisodeReplay(ReturnConfig(0.9, 2))
    off.add(make_episode(instruction="prior"))
    assert set(mixed_sample(off, on, 8, 0.5, np.random.default_rng(0))[K.INSTRUCTION]) == {"prior"}
    with pytest.raises(ValueError, match="empty"):
        mixed_sample(None, on, 8, 0.5, np.random.default_rng(0))


def test_replay_rejects_inconsistent_episodes():
    rb = EpisodeReplay(ReturnConfig(0.9, 2))
    rb.add(make_episode())
    with pytest.raises(ValueError, match="images"):
        rb.add(make_episode(image=True))
    with pytest.raises(ValueError, match="state shape"):
        rb.add(make_episode(S=4))
