import json

import numpy as np
import pytest
import torch

from qtransformer import checkpoint as ckpt_mod
from qtransformer.bins import ActionBins
from qtransformer.checkpoint import (
    CheckpointError,
    build_model,
    load_policy_checkpoint,
    save_policy_checkpoint,
)
from qtransformer.exploration import EpsilonGreedy
from qtransformer.model import QTransformer
from qtransformer.policy import QTransformerPolicy
from qtransformer.returns import ReturnConfig

from .helpers import tiny_config


def _model(**kw):
    torch.manual_seed(0)
    return QTransformer(tiny_config(text_dim=384, **kw))


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _model()
    bins = ActionBins([-1] * 3, [1] * 3, 8)
    save_policy_checkpoint(tmp_path / "ck", model, bins, "default", {"step": 7}, returns=ReturnConfig())
    loaded = load_policy_checkpoint(tmp_path / "ck")
    assert loaded.meta == {"step": 7} and loaded.encoder == "default"
    m2 = build_model(loaded)
    s, e = torch.randn(3, 5), torch.randn(3, 384)
    b = torch.randint(0, 8, (3, 2))
    torch.testing.assert_close(model.eval()(s, e, b), m2(s, e, b))


def test_the_return_definition_travels_typed_and_is_required(tmp_path):
    bins = ActionBins([-1] * 3, [1] * 3, 8)
    returns = ReturnConfig(gamma=0.9, n_step=5, timeout_is_failure=True, min_return=0.0)
    path = save_policy_checkpoint(tmp_path / "ck", _model(), bins, "default", returns=returns)
    loaded = load_policy_checkpoint(path)
    assert isinstance(loaded.returns, ReturnConfig) and loaded.returns == returns
    with pytest.raises(TypeError, match="ReturnConfig"):
        save_policy_checkpoint(tmp_path / "ck2", _model(), bins, "default", returns={"gamma": 0.9})  # type: ignore[arg-type]
    cfg = json.loads((path / "config.json").read_text())
    cfg["returns"]["n_step"] = 0
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="invalid 'returns' entry.*n_step"):
        load_policy_checkpoint(path)
    del cfg["returns"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no 'returns' entry"):
        load_policy_checkpoint(path)


@pytest.mark.parametrize(
    "bins, match",
    [
        ({"low": [-1] * 3, "high": [1] * 3, "num_bins": 16}, r"3 dims x 16 bins\) do not match .*num_bins=8"),
        ({"low": [-1] * 2, "high": [1] * 2, "num_bins": 8}, r"2 dims .* do not match .*action_dim=3"),
        (
            {"low": [-1, 1, -1], "high": [1, 1, 1], "num_bins": 8},
            r"invalid 'action_bins' entry.*high must exceed",
        ),
        ({"low": [-1] * 3, "high": [1, float("inf"), 1], "num_bins": 8}, r"'action_bins'.*finite"),
        ({"low": [-1] * 3, "num_bins": 8}, r"invalid 'action_bins' entry.*high"),
    ],
)
def test_loading_checks_the_action_bins_against_the_model(tmp_path, bins, match):
    path = save_policy_checkpoint(
        tmp_path / "ck", _model(), ActionBins([-1] * 3, [1] * 3, 8), "default", returns=ReturnConfig()
    )
    cfg = json.loads((path / "config.json").read_text())
    cfg["action_bins"] = bins
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=match):
        load_policy_checkpoint(path)


def test_overwrite_is_atomic_and_failure_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    bins = ActionBins([-1] * 3, [1] * 3, 8)
    save_policy_checkpoint(path, _model(), bins, "default", {"step": 1}, returns=ReturnConfig())

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_policy_checkpoint(path, _model(), bins, "default", {"step": 2}, returns=ReturnConfig())
    assert load_policy_checkpoint(path).meta == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temporary left behind


def test_truncated_missing_and_mismatched_checkpoints_are_named(tmp_path):
    bins = ActionBins([-1] * 3, [1] * 3, 8)
    path = save_policy_checkpoint(tmp_path / "ck", _model(), bins, "default", returns=ReturnConfig())
    w = path / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated"):
        load_policy_checkpoint(path)
    w.unlink()
    with pytest.raises(CheckpointError, match="model.safetensors.*missing"):
        load_policy_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy_checkpoint(tmp_path / "nope")
    path = save_policy_checkpoint(tmp_path / "ck2", _model(), bins, "default", returns=ReturnConfig())
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["d_model"] = 64
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the model config"):
        build_model(load_policy_checkpoint(path))
    (path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config.json.*not valid JSON"):
        load_policy_checkpoint(path)
    with pytest.raises(ValueError, match="do not match the model"):
        save_policy_checkpoint(
            tmp_path / "ck3", _model(), ActionBins([-1] * 2, [1] * 2, 8), "default", returns=ReturnConfig()
        )


@pytest.fixture
def policy(tmp_path, text_encoder):
    model = _model(image_size=16, num_images=2, conv_channels=(8,))
    path = save_policy_checkpoint(
        tmp_path / "ck", model, ActionBins([-1, -1, 0], [1, 1, 2], 8), "default", returns=ReturnConfig()
    )
    return QTransformerPolicy.from_checkpoint(path, encoder=text_encoder)


def _obs(B=2):
    rng = np.random.default_rng(0)
    return {
        "state": rng.normal(size=(B, 5)).astype(np.float32),
        "image": rng.integers(0, 255, (B, 2, 16, 16, 3), dtype=np.uint8),
    }


def test_policy_acts_greedily_with_actions_inside_bounds(policy):
    out = policy.act(_obs(), ["put the can in the recycling bin", "go to the red cone"], return_q=True)
    assert out.actions.shape == (2, 3) and out.bins.shape == (2, 3) and out.q_values.shape == (2, 3, 8)
    assert np.all(out.actions[:, 2] >= 0) and np.all(out.actions[:, 2] <= 2)
    np.testing.assert_array_equal(out.bins, out.q_values.argmax(-1))
    np.testing.assert_allclose(out.actions, policy.bins.undiscretize(out.bins))
    again = policy.act(_obs(), ["put the can in the recycling bin", "go to the red cone"])
    np.testing.assert_array_equal(out.bins, again.bins)
    assert again.q_values is None
    explored = policy.act(_obs(64), ["x"] * 64, select=EpsilonGreedy(1.0))
    assert not np.array_equal(explored.bins, policy.act(_obs(64), ["x"] * 64).bins)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda o: o.pop("state"), "missing 'state'"),
        (lambda o: o.update(state=o["state"][:, :3]), "'state' must have shape"),
        (lambda o: o["state"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda o: o.pop("image"), "missing 'image'"),
        (lambda o: o.update(image=o["image"].astype(np.float32)), "uint8"),
        (lambda o: o.update(image=o["image"][:, :, :8]), "'image' must have shape"),
    ],
)
def test_policy_rejects_bad_observations(policy, mutate, match):
    obs = _obs()
    mutate(obs)
    with pytest.raises(ValueError, match=match):
        policy.act(obs, ["a", "b"])


def test_policy_rejects_bad_instructions(policy):
    with pytest.raises(ValueError, match="exceeds the limit"):
        policy.act(_obs(1), ["x" * 10_000])
    with pytest.raises(ValueError, match="non-empty"):
        policy.act(_obs(1), [""])
    with pytest.raises(TypeError, match="sequence"):
        policy.act(_obs(1), "one string")
    assert policy.spec["observation"]["image"]["shape"] == [2, 16, 16, 3]


def test_frame_token_cache_keeps_actions_and_forgets_on_new_weights(policy):
    """A frame stream (frame 1 of step t is frame 0 of step t-1) through the frame-token cache gets the
    same bins as decoding the images, encodes each frame once, and never serves tokens made with old
    weights."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (9, 2, 16, 16, 3), dtype=np.uint8)  # (step, robot, H, W, 3)
    state = rng.normal(size=(2, 5)).astype(np.float32)
    texts = ["put the can in the recycling bin", "go to the red cone"]
    cache = policy.frame_cache
    assert cache is not None
    model = policy.model
    for t in range(1, 9):
        obs = {"state": state, "image": np.stack([frames[t], frames[t - 1]], axis=1)}
        out = policy.act(obs, texts, return_q=True)
        emb = policy.encoder.encode(texts)
        want_bins, want_q = model.decode(torch.from_numpy(state), emb, torch.from_numpy(obs["image"]))
        np.testing.assert_array_equal(out.bins, want_bins.numpy())
        np.testing.assert_allclose(out.q_values, want_q.numpy(), atol=1e-6)
    assert cache.misses == 2 * 9 and cache.hits == 2 * 7  # each robot's frames encoded once
    obs = {"state": state, "image": np.stack([frames[8], frames[7]], axis=1)}
    before = policy.act(obs, texts, return_q=True).q_values
    with torch.no_grad():  # an in-place weight change, as an optimiser step or load_state_dict makes
        model.images_in.out.weight.mul_(3.0)
    after = policy.act(obs, texts, return_q=True)
    emb = policy.encoder.encode(texts)
    want = model.decode(torch.from_numpy(state), emb, torch.from_numpy(obs["image"]))[1]
    assert not np.allclose(after.q_values, before)
    np.testing.assert_allclose(after.q_values, want.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="frame_tokens must be"):
        model.decode(torch.from_numpy(state), emb, None, frame_tokens=torch.zeros(2, 1, 4, 32))
