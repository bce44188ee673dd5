import pytest
import torch

from qtransformer.exploration import Boltzmann, EpsilonGreedy
from qtransformer.model import QTransformer

from .helpers import tiny_config


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("images", [False, True])
def test_cached_decode_equals_naive_decode(seed, images):
    torch.manual_seed(seed)
    kw = dict(image_size=16, num_images=2, conv_channels=(8, 16)) if images else {}
    cfg = tiny_config(action_dim=6, num_bins=32, **kw)
    model = QTransformer(cfg).eval()
    with torch.no_grad():  # sharpen the Q-values so the argmax is not decided by float noise alone
        model.head[-1].weight.mul_(50)
    B = 7
    state, emb = torch.randn(B, cfg.state_dim), torch.randn(B, cfg.text_dim)
    img = torch.randint(0, 256, (B, 2, 16, 16, 3), dtype=torch.uint8) if images else None
    b1, q1 = model.decode(state, emb, img, use_cache=True)
    b2, q2 = model.decode(state, emb, img, use_cache=False)
    assert torch.equal(b1, b2)
    torch.testing.assert_close(q1, q2, atol=1e-5, rtol=1e-5)
    # The teacher-forced pass on the decoded bins reproduces the decode's Q-values.
    torch.testing.assert_close(model(state, emb, b1[:, :-1], img), q1, atol=1e-5, rtol=1e-5)
    assert torch.equal(b1, q1.argmax(-1))


def test_dimension_i_depends_only_on_earlier_bins():
    torch.manual_seed(0)
    cfg = tiny_config(action_dim=4)
    model = QTransformer(cfg).eval()
    state, emb = torch.randn(2, cfg.state_dim), torch.randn(2, cfg.text_dim)
    bins = torch.randint(0, cfg.num_bins, (2, 3))
    q = model(state, emb, bins)
    changed = bins.clone()
    changed[:, 2] = (changed[:, 2] + 1) % cfg.num_bins
    q2 = model(state, emb, changed)
    torch.testing.assert_close(q[:, :3], q2[:, :3])  # dims 0..2 never see bin 2
    assert not torch.allclose(q[:, 3], q2[:, 3])  # dim 3 does


def test_q_values_are_bounded_by_sigmoid_and_instruction_matters():
    torch.manual_seed(0)
    cfg = tiny_config()
    model = QTransformer(cfg).eval()
    state = torch.randn(1, cfg.state_dim).repeat(2, 1)
    emb = torch.randn(2, cfg.text_dim)
    q = model(state, emb, torch.zeros(2, 2, dtype=torch.long))
    assert q.min() >= 0 and q.max() <= 1
    assert not torch.allclose(q[0], q[1])


def test_state_tokens_depend_on_the_instruction():
    torch.manual_seed(0)
    cfg = tiny_config()
    enc = QTransformer(cfg).state_in.eval()
    for p in enc.film.parameters():  # FiLM starts as the identity; make it read the text
        torch.nn.init.normal_(p, std=0.1)
    state = torch.randn(1, cfg.state_dim).repeat(2, 1)
    emb = torch.randn(2, cfg.text_dim)
    tokens = enc(state, emb)
    assert tokens.shape == (2, cfg.state_tokens * cfg.d_model)
    assert not torch.allclose(tokens[0], tokens[1])


def test_deeper_state_mlp_adds_hidden_layers_and_keeps_one_layer_names():
    one = QTransformer(tiny_config())
    deep = QTransformer(tiny_config(state_layers=3, state_hidden=24))
    names_one = {k for k in one.state_dict() if k.startswith("state_in.")}
    names_deep = {k for k in deep.state_dict() if k.startswith("state_in.")}
    assert names_one == {f"state_in.{m}.{p}" for m in ("inp", "film.proj", "out") for p in ("weight", "bias")}
    assert names_deep - names_one == {f"state_in.hidden.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    assert deep.state_in.inp.out_features == 24 and deep.state_in.out.in_features == 24
    # The added layers are on the path from the state to its tokens.
    enc = deep.state_in.eval()
    torch.manual_seed(0)
    state, emb = torch.randn(1, 5), torch.randn(1, 16)
    before = enc(state, emb)
    with torch.no_grad():
        enc.hidden[1].weight.mul_(2.0)
    assert not torch.allclose(enc(state, emb), before)
    with pytest.raises(ValueError, match="state_layers"):
        tiny_config(state_layers=0)


def test_ignored_state_values_do_not_reach_the_network():
    torch.manual_seed(0)
    model = QTransformer(tiny_config(state_ignore=(1, 3))).eval()
    state, emb = torch.randn(2, 5), torch.randn(2, 16)
    changed = state.clone()
    changed[:, [1, 3]] += 10.0
    assert torch.equal(model.encode_context(state, emb), model.encode_context(changed, emb))
    changed[:, 0] += 10.0  # a value it reads
    assert not torch.allclose(model.encode_context(state, emb), model.encode_context(changed, emb))
    # The mask follows the config, not the weights: a checkpoint's tensors are the same as without it.
    assert set(model.state_dict()) == set(QTransformer(tiny_config()).state_dict())
    with pytest.raises(ValueError, match="beyond state_dim=5"):
        QTransformer(tiny_config(state_ignore=(5,)))
    with pytest.raises(ValueError, match="state_ignore"):
        tiny_config(state_ignore=(-1,))


def test_state_statistics_standardise_the_state_and_travel_with_the_weights(tmp_path):
    from qtransformer.bins import ActionBins
    from qtransformer.checkpoint import build_model, load_policy_checkpoint, save_policy_checkpoint
    from qtransformer.returns import ReturnConfig

    torch.manual_seed(0)
    cfg = tiny_config(normalize_state=True)
    model = QTransformer(cfg).eval()
    plain = QTransformer(cfg).eval()
    plain.load_state_dict(model.state_dict())  # same weights, identity statistics
    mean, std = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0]), torch.tensor([2.0, 0.5, 1.0, 0.001, 4.0])
    model.set_state_stats(mean, std)
    assert model.state_std[3] == QTransformer.STATE_STD_FLOOR  # a near-constant value is not blown up
    state, emb, prev = torch.randn(3, 5), torch.randn(3, cfg.text_dim), torch.randint(0, 8, (3, 2))
    scaled = (state - mean) / std.clamp_min(QTransformer.STATE_STD_FLOOR)
    assert torch.allclose(model(state, emb, prev), plain(scaled, emb, prev), atol=1e-6)
    assert not torch.allclose(model(state, emb, prev), plain(state, emb, prev))
    # The statistics are part of the checkpoint: a loaded policy scales the same way.
    bins = ActionBins(-torch.ones(3).numpy(), torch.ones(3).numpy(), cfg.num_bins)
    save_policy_checkpoint(tmp_path / "p", model, bins, encoder="default", meta={}, returns=ReturnConfig())
    loaded = build_model(load_policy_checkpoint(tmp_path / "p"))
    assert torch.equal(loaded.state_mean, mean) and torch.allclose(
        loaded(state, emb, prev), model(state, emb, prev)
    )
    with pytest.raises(ValueError, match="5 values"):
        model.set_state_stats([0.0] * 4, [1.0] * 4)
    with pytest.raises(ValueError, match="std >= 0"):
        model.set_state_stats([0.0] * 5, [1.0, 1.0, -1.0, 1.0, 1.0])


def test_instruction_statistics_standardise_the_embedding_and_travel_with_the_weights(tmp_path):
    from qtransformer.bins import ActionBins
    from qtransformer.checkpoint import build_model, load_policy_checkpoint, save_policy_checkpoint
    from qtransformer.returns import ReturnConfig

    torch.manual_seed(0)
    cfg = tiny_config(normalize_instruction=True)
    model = QTransformer(cfg).eval()
    for p in model.state_in.film.parameters():  # FiLM starts as the identity; make it read the text
        torch.nn.init.normal_(p, std=0.1)
    plain = QTransformer(tiny_config()).eval()
    plain.load_state_dict(model.state_dict())  # same weights, no standardisation
    mean, std = torch.randn(16), torch.rand(16) + 0.1
    std[2] = 1e-6
    model.set_instruction_stats(mean, std)
    assert model.instruction_std[2] == QTransformer.INSTRUCTION_STD_FLOOR
    state, emb, prev = torch.randn(3, 5), torch.randn(3, 16), torch.randint(0, 8, (3, 2))
    scaled = (emb - mean) / std.clamp_min(QTransformer.INSTRUCTION_STD_FLOOR)
    # Every reader of the instruction (its token and the state MLP's FiLM) sees the standardised one.
    assert torch.allclose(model(state, emb, prev), plain(state, scaled, prev), atol=1e-5)
    assert not torch.allclose(model(state, emb, prev), plain(state, emb, prev))
    bins = ActionBins(-torch.ones(3).numpy(), torch.ones(3).numpy(), cfg.num_bins)
    save_policy_checkpoint(tmp_path / "p", model, bins, encoder="default", meta={}, returns=ReturnConfig())
    loaded = build_model(load_policy_checkpoint(tmp_path / "p")).eval()
    assert torch.allclose(loaded(state, emb, prev), model(state, emb, prev))
    with pytest.raises(ValueError, match="16 values"):
        model.set_instruction_stats([0.0] * 4, [1.0] * 4)


def test_bin_limits_are_respected():
    torch.manual_seed(0)
    cfg = tiny_config(action_dim=3, num_bins=16)
    model = QTransformer(cfg).eval()
    state, emb = torch.randn(5, cfg.state_dim), torch.randn(5, cfg.text_dim)
    low = torch.full((5, 3), 6)
    high = torch.full((5, 3), 8)
    for select in (None, EpsilonGreedy(1.0), Boltzmann(10.0)):
        kw = {} if select is None else {"select": select}
        bins, _ = model.decode(state, emb, bin_limits=(low, high), **kw)
        assert bins.min() >= 6 and bins.max() <= 8


def test_exploration_only_when_asked():
    torch.manual_seed(0)
    cfg = tiny_config(num_bins=64)
    model = QTransformer(cfg).eval()
    state, emb = torch.randn(32, cfg.state_dim), torch.randn(32, cfg.text_dim)
    greedy1, _ = model.decode(state, emb)
    greedy2, _ = model.decode(state, emb)
    assert torch.equal(greedy1, greedy2)
    explored, _ = model.decode(state, emb, select=EpsilonGreedy(1.0, torch.Generator().manual_seed(0)))
    assert not torch.equal(explored, greedy1)


def test_bad_inputs_name_the_problem():
    cfg = tiny_config(image_size=16, conv_channels=(8,))
    model = QTransformer(cfg)
    emb = torch.randn(2, cfg.text_dim)
    with pytest.raises(ValueError, match="state must be"):
        model(
            torch.randn(2, 99),
            emb,
            torch.zeros(2, 0, dtype=torch.long),
            torch.zeros(2, 1, 16, 16, 3, dtype=torch.uint8),
        )
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(2, cfg.state_dim), emb, torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="uint8"):
        model(
            torch.randn(2, cfg.state_dim),
            emb,
            torch.zeros(2, 0, dtype=torch.long),
            torch.zeros(2, 1, 16, 16, 3),
        )
    with pytest.raises(ValueError, match="prev_bins"):
        model(torch.randn(2, cfg.state_dim), emb, torch.zeros(2, 3, dtype=torch.long))


def test_config_validation():
    with pytest.raises(ValueError, match="must divide"):
        tiny_config(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="num_bins"):
        tiny_config(num_bins=1)


def test_support_head_restricts_every_greedy_choice_to_supported_bins():
    torch.manual_seed(0)
    cfg = tiny_config(action_dim=3, num_bins=8, support_tau=0.3)
    model = QTransformer(cfg).eval()
    assert QTransformer(tiny_config()).behavior_head is None
    last = model.behavior_head[-1]
    torch.nn.init.zeros_(last.weight)
    with torch.no_grad():
        last.bias.fill_(-10.0)
        last.bias[[2, 3]] = 0.0  # the data's bins: 2 and 3 in every dimension
    state, emb = torch.randn(64, cfg.state_dim), torch.randn(64, cfg.text_dim)
    free, _ = model.decode(state, emb, support_tau=0.0)
    assert not torch.isin(free, torch.tensor([2, 3])).all()  # unconstrained, it picks other bins
    for use_cache in (True, False):
        bins, q = model.decode(state, emb, use_cache=use_cache)
        assert torch.isin(bins, torch.tensor([2, 3])).all()
        assert torch.equal(bins, torch.where(q[..., 2] >= q[..., 3], 2, 3))  # the better of the two
    # with limits, the supported choice is clipped into them: where the support and the range do not
    # meet, that is the allowed bin nearest to the support, not the Q-function's pick among the rest
    low, high = torch.full((64, 3), 5), torch.full((64, 3), 7)
    bins, _ = model.decode(state, emb, bin_limits=(low, high))
    assert torch.equal(bins, torch.full((64, 3), 5))
    low, high = torch.zeros(64, 3, dtype=torch.long), torch.ones(64, 3, dtype=torch.long)
    bins, _ = model.decode(state, emb, bin_limits=(low, high))
    assert torch.equal(bins, torch.ones(64, 3, dtype=torch.long))
    # and where they meet, a supported bin below the range is clipped to its lower edge
    bins, _ = model.decode(state, emb, bin_limits=(torch.full((64, 3), 3), torch.full((64, 3), 6)))
    assert torch.equal(bins, torch.full((64, 3), 3))
    q, logits = model(state, emb, bins[:, :2], return_behavior=True)
    assert q.shape == logits.shape == (64, 3, 8)
    # the choice among the supported bins comes first, the limits clip it: with 2 and 6 supported and
    # the Q-values preferring 6, a limit at 4 gives 4 (the preferred move, slower), never 2
    with torch.no_grad():
        last.bias.fill_(-10.0)
        last.bias[[2, 6]] = 0.0
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
        model.head[-1].bias[6] = 2.0
    limits = (torch.zeros(64, 3, dtype=torch.long), torch.full((64, 3), 4))
    assert torch.equal(model.decode(state, emb)[0], torch.full((64, 3), 6))
    assert torch.equal(model.decode(state, emb, bin_limits=limits)[0], torch.full((64, 3), 4))
    explored, _ = model.decode(state, emb, bin_limits=limits, select=EpsilonGreedy(1.0))
    assert torch.isin(explored, torch.tensor([2, 4])).all()  # exploring: a supported bin, clipped
    with pytest.raises(ValueError, match="support head"):
        QTransformer(tiny_config()).decode(state, emb, support_tau=0.3)
    with pytest.raises(ValueError, match="support_tau"):
        tiny_config(support_tau=1.5)


def test_image_coords_add_where_each_token_attends():
    """With ``image_coords`` a token whose attention sits on one feature cell carries that cell's
    (row, column) in [-1, 1]; without it the same pooled features give the same token wherever they are."""
    torch.manual_seed(0)
    cfg = tiny_config(image_size=16, num_images=1, conv_channels=(8, 8), image_coords=True, image_tokens=2)
    enc = QTransformer(cfg).images_in
    frames = torch.randint(0, 256, (1, 16, 16, 3), dtype=torch.uint8)
    text = torch.randn(1, cfg.text_dim)
    feats = {}

    class Peaked(torch.nn.Module):
        """Token 0 attends to cell (0, 3) of the 4x4 feature grid, token 1 to cell (2, 1)."""

        def forward(self, x):
            feats["x"] = x
            logits = torch.full((x.shape[0], 2, 4, 4), -1e4)
            logits[:, 0, 0, 3] = 0.0
            logits[:, 1, 2, 1] = 0.0
            return logits

    enc.attn_maps = Peaked()
    out = enc.frame_tokens(frames, text)
    x = feats["x"][0]
    pooled = torch.stack([x[:, 0, 3], x[:, 2, 1]])  # (T, C)
    where = torch.tensor([[-1.0, 1.0], [1.0 / 3.0, -1.0 / 3.0]])  # linspace(-1, 1, 4) at (0, 3), (2, 1)
    torch.testing.assert_close(out[0], enc.out(pooled) + enc.coords(where))
    plain = QTransformer(tiny_config(image_size=16, num_images=1, conv_channels=(8, 8))).images_in
    assert plain.coords is None
