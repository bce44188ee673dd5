"""Every loss term computed by hand on tiny tensors; gradient isolation of target and terms."""

import pytest
import torch

from qtransformer.config import LossConfig
from qtransformer.loss import bc_loss, qtransformer_loss, td_targets
from qtransformer.model import QTransformer
from qtransformer.returns import ReturnConfig

from .helpers import TableQ, random_batch, tiny_config

RETURNS = ReturnConfig()


def _setup(B=2, D=3, K=4, N=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = tiny_config(action_dim=D, num_bins=K)
    batch = random_batch(cfg, B=B, N=N, seed=seed)
    q_online = torch.rand(B, D, K, generator=g)
    q_target = torch.rand(B, D, K, generator=g)
    q_target_next = torch.rand(B, D, K, generator=g)
    online = TableQ(q_online)
    target = TableQ(q_target, q_target_next, batch.next_state)
    return batch, online, target, q_online, q_target, q_target_next


def test_targets_and_terms_by_hand():
    batch, online, target, qo, qt, qn = _setup()
    batch.rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    batch.nstep = torch.tensor([2.0, 1.0])
    batch.bootstrap = torch.tensor([1.0, 1.0])
    batch.mc_return = torch.tensor([0.0, 0.0])
    cfg = LossConfig(alpha=0.5, use_mc_bound=False)
    loss, terms = qtransformer_loss(online, target, batch, cfg, ReturnConfig(gamma=0.9))
    B, D, K = qo.shape
    a = batch.action_bins
    y = torch.zeros(B, D)
    for b in range(B):
        for i in range(D - 1):
            y[b, i] = qt[b, i + 1].max()
        R = sum(0.9**k * batch.rewards[b, k] for k in range(2))
        y[b, D - 1] = R + 0.9 ** batch.nstep[b] * qn[b, 0].max()
    taken = torch.stack([torch.stack([qo[b, i, a[b, i]] for i in range(D)]) for b in range(B)])
    td = 0.5 * ((taken - y) ** 2).mean()
    cons = 0
    for b in range(B):
        for i in range(D):
            cons += sum(qo[b, i, k] ** 2 for k in range(K) if k != a[b, i]) / (K - 1)
    cons = 0.5 * cons / (B * D)
    torch.testing.assert_close(terms["td"], td)
    torch.testing.assert_close(terms["conservative"], cons)
    torch.testing.assert_close(loss, td + 0.5 * cons)
    assert terms["mc_bound_active_fraction"] == 0


def test_reward_changes_only_the_last_dimension_target():
    batch, _, target, *_ = _setup()
    cfg = LossConfig(use_mc_bound=False)
    y0, _ = td_targets(target, batch, cfg, RETURNS)
    batch.rewards = batch.rewards + torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    y1, _ = td_targets(target, batch, cfg, RETURNS)
    assert torch.allclose(y0[:, :-1], y1[:, :-1])
    assert torch.isclose(y1[0, -1] - y0[0, -1], torch.tensor(1.0))
    assert torch.isclose(y1[1, -1], y0[1, -1])


def test_terminal_masks_bootstrap():
    batch, _, target, *_ = _setup()
    batch.rewards = torch.zeros_like(batch.rewards)
    batch.bootstrap = torch.tensor([0.0, 1.0])
    y, _ = td_targets(target, batch, LossConfig(use_mc_bound=False), RETURNS)
    assert y[0, -1] == 0.0
    assert y[1, -1] > 0.0


def test_mc_bound_lifts_targets_per_sample():
    batch, _, target, *_ = _setup()
    batch.mc_return = torch.tensor([5.0, -1.0])
    y, active = td_targets(target, batch, LossConfig(use_mc_bound=True), RETURNS)
    assert torch.all(y[0] == 5.0) and torch.all(active[0])
    assert not active[1].any() and torch.all(y[1] < 5.0)


def test_online_mc_mix_blends_the_return_into_online_targets_only():
    batch, _, target, *_ = _setup()
    batch.mc_return = torch.tensor([0.0, 0.0])  # below every TD target: the MC bound stays inactive
    y_td, _ = td_targets(target, batch, LossConfig(), RETURNS)
    batch.online = torch.tensor([False, True])
    y, _ = td_targets(target, batch, LossConfig(online_mc_mix=0.25), RETURNS)
    torch.testing.assert_close(y[0], y_td[0])  # prior data: the TD target alone
    torch.testing.assert_close(y[1], 0.75 * y_td[1] + 0.25 * 0.0)
    batch.mc_return = torch.tensor([0.0, 0.2])
    y, _ = td_targets(target, batch, LossConfig(online_mc_mix=1.0, use_mc_bound=False), RETURNS)
    torch.testing.assert_close(y[1], torch.full_like(y[1], 0.2))  # w = 1: the Monte-Carlo return
    batch.online = None  # pretraining marks nothing online: nothing changes
    y, _ = td_targets(target, batch, LossConfig(online_mc_mix=0.5, use_mc_bound=False), RETURNS)
    torch.testing.assert_close(y, td_targets(target, batch, LossConfig(use_mc_bound=False), RETURNS)[0])
    with pytest.raises(ValueError, match="online_mc_mix"):
        LossConfig(online_mc_mix=1.5)


def test_cql_regulariser_by_hand_pushes_the_softmax_down_and_the_data_bin_up():
    batch, online, target, qo, *_ = _setup()
    cfg = LossConfig(alpha=0.7)
    loss, terms = qtransformer_loss(online, target, batch, cfg, RETURNS, regulariser="cql")
    _same, paper = qtransformer_loss(online, target, batch, cfg, RETURNS)
    B, D, K = qo.shape
    a = batch.action_bins
    cql = sum(
        torch.log(torch.exp(qo[b, i]).sum()) - qo[b, i, a[b, i]] for b in range(B) for i in range(D)
    ) / (B * D)
    torch.testing.assert_close(terms["conservative"], cql)
    torch.testing.assert_close(terms["td"], paper["td"])  # the same TD term, only the regulariser differs
    torch.testing.assert_close(loss, terms["td"] + 0.7 * cql)
    # Its gradient: softmax(Q) on every bin, minus 1 on the data's bin.
    online.table.grad = None
    qtransformer_loss(online, target, batch, LossConfig(alpha=1.0), RETURNS, "cql")[0].backward()
    with_cql = online.table.grad.clone()
    online.table.grad = None
    qtransformer_loss(online, target, batch, LossConfig(alpha=0.0), RETURNS, "cql")[0].backward()
    expected = (torch.softmax(qo, -1) - torch.nn.functional.one_hot(a, K)) / (B * D)
    torch.testing.assert_close(with_cql - online.table.grad, expected)


def test_conservative_gradient_touches_only_bins_not_taken():
    batch, online, target, *_ = _setup()
    grads = []
    for alpha in (0.0, 1.0):
        online.table.grad = None
        loss, _ = qtransformer_loss(online, target, batch, LossConfig(alpha=alpha), RETURNS)
        loss.backward()
        grads.append(online.table.grad.clone())
    cons_grad = grads[1] - grads[0]  # the regulariser's own gradient
    a = batch.action_bins[..., None]
    assert torch.all(cons_grad.gather(-1, a) == 0)
    assert torch.all(cons_grad.scatter(-1, a, 1.0) > 0)  # pushes every other bin down toward min_return = 0


def test_online_alpha_weighs_the_conservative_term_on_online_samples_only():
    batch, online, target, *_ = _setup(B=2)
    batch.online = torch.tensor([False, True])

    def grad(cfg: LossConfig) -> torch.Tensor:
        online.table.grad = None
        loss, _ = qtransformer_loss(online, target, batch, cfg, RETURNS)
        loss.backward()
        return online.table.grad.clone()

    td_only = grad(LossConfig(alpha=0.0))
    full = grad(LossConfig(alpha=1.0))
    mixed = grad(LossConfig(alpha=1.0, online_alpha=0.0))
    assert torch.allclose(mixed[0], full[0])  # the prior sample keeps the regulariser
    assert torch.allclose(mixed[1], td_only[1])  # the online sample has none of it
    assert not torch.allclose(full[1], td_only[1])
    half = grad(LossConfig(alpha=1.0, online_alpha=0.5))
    assert torch.allclose(half[1] - td_only[1], 0.5 * (full[1] - td_only[1]), atol=1e-6)
    batch.online = None  # without the mark (pretraining), every sample gets alpha
    assert torch.allclose(grad(LossConfig(alpha=1.0, online_alpha=0.0)), full)
    with pytest.raises(ValueError, match="online_alpha"):
        LossConfig(online_alpha=-1.0)


def test_td_gradient_touches_only_taken_bins_and_never_the_target():
    batch, online, target, *_ = _setup()
    loss, _ = qtransformer_loss(online, target, batch, LossConfig(alpha=0.0), RETURNS)
    loss.backward()
    a = batch.action_bins
    g = online.table.grad
    assert torch.all(g.scatter(-1, a[..., None], 0.0) == 0)
    assert g.abs().sum() > 0
    assert target.table.grad is None


def test_real_network_target_gets_no_gradient():
    cfg = tiny_config(image_size=16, num_images=2, conv_channels=(8, 8))
    online, target = QTransformer(cfg), QTransformer(cfg)
    for p in target.parameters():
        p.requires_grad_(False)
    batch = random_batch(cfg, B=3)
    loss, terms = qtransformer_loss(online, target, batch, LossConfig(), RETURNS)
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert sum(p.grad.abs().sum() for p in online.parameters() if p.grad is not None) > 0
    assert set(terms) >= {"td", "conservative", "mc_bound_active_fraction", "q_mean"}


def test_bc_loss_is_cross_entropy_on_dataset_bins_by_hand():
    batch, online, _, qo, *_ = _setup(B=2, D=3, K=4)
    loss, terms = bc_loss(online, batch, LossConfig())
    a = batch.action_bins
    B, D, K = qo.shape
    nll = 0.0
    for b in range(B):
        for i in range(D):
            log_z = torch.log(sum(torch.exp(qo[b, i, k]) for k in range(K)))
            nll += log_z - qo[b, i, a[b, i]]
    torch.testing.assert_close(loss, nll / (B * D))
    torch.testing.assert_close(terms["bc"], loss.detach())
    assert terms["bc_accuracy"] == (qo.argmax(-1) == a).float().mean()
    # Every bin of every dimension gets gradient: the taken bin up, the others down.
    loss.backward()
    g = online.table.grad
    assert torch.all(g.gather(-1, a[..., None]) < 0) and torch.all(g.scatter(-1, a[..., None], 1.0) > 0)


def test_loss_rejects_bad_batches():
    batch, online, target, *_ = _setup()
    batch.mc_return = torch.zeros(5)
    with pytest.raises(ValueError, match="mc_return"):
        qtransformer_loss(online, target, batch, LossConfig(), RETURNS)
    with pytest.raises(ValueError, match="target model"):
        qtransformer_loss(online, None, _setup()[0], LossConfig(), RETURNS)  # type: ignore[arg-type]


def test_bc_loss_refuses_a_sigmoid_head():
    cfg = tiny_config()
    with pytest.raises(ValueError, match="raw logits"):
        bc_loss(QTransformer(cfg), random_batch(cfg), LossConfig())
    loss, _ = bc_loss(QTransformer(tiny_config(q_activation="none")), random_batch(cfg), LossConfig())
    assert torch.isfinite(loss)


class _SupportTableQ(TableQ):
    """TableQ with a support head whose logits are a second table."""

    def __init__(self, table, logits, next_table, next_logits, next_state, tau):
        super().__init__(table, next_table, next_state)
        self.logits, self.next_logits = logits, next_logits
        self.cfg = tiny_config(support_tau=tau)

    def forward(self, state, instruction_emb, prev_bins, images=None, return_behavior=False):
        q = super().forward(state, instruction_emb, prev_bins, images)
        if not return_behavior:
            return q
        j = prev_bins.shape[1]
        lg = self.next_logits if state is self.next_state else self.logits
        return q, lg[:, : j + 1]


def test_support_constraint_takes_every_target_max_over_supported_bins_only():
    batch, _, _, _, qt, qn = _setup()
    g = torch.Generator().manual_seed(3)
    logits, next_logits = torch.randn(qt.shape, generator=g) * 2, torch.randn(qn.shape, generator=g) * 2
    target = _SupportTableQ(qt, logits, qn, next_logits, batch.next_state, tau=0.3)
    batch.rewards = torch.zeros_like(batch.rewards)
    batch.bootstrap = torch.ones_like(batch.bootstrap)
    cfg = LossConfig(use_mc_bound=False)
    y, _ = td_targets(target, batch, cfg, ReturnConfig(gamma=0.9))

    def allowed(lg):
        p = lg.softmax(-1)
        return p >= 0.3 * p.max()

    B, D, _ = qt.shape
    for b in range(B):
        for i in range(D - 1):
            assert y[b, i] == qt[b, i + 1][allowed(logits[b, i + 1])].max()
        want = 0.9 ** batch.nstep[b] * qn[b, 0][allowed(next_logits[b, 0])].max()
        assert torch.isclose(y[b, -1], want)
    plain, _ = td_targets(TableQ(qt, qn, batch.next_state), batch, cfg, ReturnConfig(gamma=0.9))
    assert torch.all(y <= plain) and torch.any(y < plain)


def test_support_head_learns_from_successful_episodes_only():
    cfg = tiny_config(support_tau=0.3)
    model = QTransformer(cfg)
    target = QTransformer(cfg)
    batch = random_batch(cfg, B=6)
    for successes, expect_grad in ((torch.zeros(6), False), (torch.tensor([0, 0, 0.5, 0, 0.9, 0]), True)):
        batch.mc_return = successes
        model.zero_grad()
        loss, terms = qtransformer_loss(model, target, batch, LossConfig(), RETURNS)
        loss.backward()
        grad = model.behavior_head[-1].weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect_grad
        assert terms["behavior_samples_fraction"] == successes.gt(0).float().mean()
    model.zero_grad()
    loss, _ = qtransformer_loss(model, target, batch, LossConfig(behavior_successes_only=False), RETURNS)
    loss.backward()
    assert model.behavior_head[-1].weight.grad.abs().sum() > 0
    # The head's cross-entropy enters the loss scaled by behavior_weight and nothing else changes.
    with torch.no_grad():
        l0, t0 = qtransformer_loss(model, target, batch, LossConfig(behavior_weight=0.0), RETURNS)
        l10, t10 = qtransformer_loss(model, target, batch, LossConfig(behavior_weight=10.0), RETURNS)
    assert t0["behavior_ce"] > 0
    assert torch.isclose(l10 - l0, 10.0 * t10["behavior_ce"], rtol=1e-4)
    with pytest.raises(ValueError, match="behavior_weight"):
        LossConfig(behavior_weight=-1.0)


def test_support_head_can_leave_out_the_online_samples():
    cfg = tiny_config(support_tau=0.3)
    model, target = QTransformer(cfg), QTransformer(cfg)
    batch = random_batch(cfg, B=4)
    batch.mc_return = torch.tensor([0.9, 0.9, 0.9, 0.0])  # three successes, the last sample failed

    def head_terms(online: torch.Tensor | None, cfg_loss: LossConfig) -> tuple[float, float]:
        batch.online = online
        with torch.no_grad():
            _, terms = qtransformer_loss(model, target, batch, cfg_loss, RETURNS)
        return float(terms["behavior_ce"]), float(terms["behavior_samples_fraction"])

    prior_only = LossConfig(behavior_online=False)
    every = head_terms(torch.tensor([False, True, True, False]), LossConfig())
    kept = head_terms(torch.tensor([False, True, True, False]), prior_only)
    assert every[1] == 0.75 and kept[1] == 0.25  # only the prior success is left
    alone = head_terms(torch.tensor([False, False, False, False]), LossConfig())
    batch.online = None
    assert head_terms(None, prior_only) == alone  # without the mark (pretraining) nothing changes
    # What is left is the prior success's cross-entropy: as if it were the batch's only success.
    batch.mc_return = torch.tensor([0.9, 0.0, 0.0, 0.0])
    assert head_terms(None, LossConfig())[0] == pytest.approx(kept[0])
    assert kept[0] != pytest.approx(every[0])


def test_bin_smoothing_spreads_the_data_bin_over_its_neighbours_by_hand():
    batch, online, target, qo, *_ = _setup(B=2, D=3, K=8)
    cfg = LossConfig(use_mc_bound=False, alpha=0.5, bin_smoothing=1.5)
    loss, terms = qtransformer_loss(online, target, batch, cfg, RETURNS)
    y, _ = td_targets(target, batch, cfg, RETURNS)
    a = batch.action_bins
    B, D, K = qo.shape
    td = cons = 0.0
    for b in range(B):
        for i in range(D):
            w = [float(torch.exp(torch.tensor(-0.5 * ((k - a[b, i].item()) / 1.5) ** 2))) for k in range(K)]
            td += sum(w[k] * (qo[b, i, k] - y[b, i]) ** 2 for k in range(K)) / sum(w)
            cons += sum((1 - w[k]) * qo[b, i, k] ** 2 for k in range(K)) / (K - 1)
    torch.testing.assert_close(terms["td"], 0.5 * td / (B * D))
    torch.testing.assert_close(terms["conservative"], 0.5 * cons / (B * D))
    torch.testing.assert_close(loss, terms["td"] + 0.5 * terms["conservative"])
    with pytest.raises(ValueError, match="bin_smoothing"):
        LossConfig(bin_smoothing=-1.0)


def test_bin_smoothing_lets_the_neighbours_learn_the_return_the_conservative_term_hides():
    """One state whose data bin returned 1: the bin next to it ends near 1 when smoothed, near the
    minimal return when not; a bin far away is pushed down either way."""
    batch, *_ = _setup(B=1, D=1, K=16)
    batch.action_bins = torch.tensor([[8]])
    batch.mc_return = torch.tensor([1.0])  # the Monte-Carlo bound makes the target 1
    ends = {}
    for sigma in (0.0, 2.0):
        online = TableQ(torch.full((1, 1, 16), 0.5))
        opt = torch.optim.SGD(online.parameters(), lr=0.5)
        for _ in range(300):
            loss, _ = qtransformer_loss(
                online, TableQ(torch.zeros(1, 1, 16)), batch, LossConfig(bin_smoothing=sigma), RETURNS
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        ends[sigma] = online.table.detach()[0, 0]
    assert ends[0.0][8] > 0.9 and ends[0.0][9] < 0.05
    assert ends[2.0][9] > 0.5 and ends[2.0][8] > 0.9 and ends[2.0][0] < 0.05
    assert ends[2.0].argmax() == 8


def test_bin_smoothing_soft_targets_for_the_cross_entropies():
    batch, online, _, qo, *_ = _setup(B=2, D=3, K=8)
    loss, _ = bc_loss(online, batch, LossConfig(bin_smoothing=1.0))
    k = torch.arange(8.0)
    w = torch.exp(-0.5 * (k - batch.action_bins[..., None].float()) ** 2)
    expected = -(w / w.sum(-1, keepdim=True) * torch.log_softmax(qo, -1)).sum(-1).mean()
    torch.testing.assert_close(loss, expected)


def test_bin_smoothing_jitters_the_conditioning_bins_in_training_only():
    cfg = tiny_config(action_dim=3, num_bins=64, q_activation="none")
    model = QTransformer(cfg)
    batch = random_batch(cfg, B=256)
    seen = []
    forward = model.forward

    def spy(state, emb, prev_bins, *a, **kw):
        seen.append(prev_bins.clone())
        return forward(state, emb, prev_bins, *a, **kw)

    model.forward = spy
    data = batch.action_bins[:, :-1]
    bc_loss(model, batch, LossConfig(bin_smoothing=2.0))
    moved = seen[-1] - data
    assert 0.3 < (moved != 0).float().mean() < 0.9 and moved.abs().max() <= 10
    assert seen[-1].min() >= 0 and seen[-1].max() < 64
    bc_loss(model, batch, LossConfig())
    assert torch.equal(seen[-1], data)
    model.eval()
    bc_loss(model, batch, LossConfig(bin_smoothing=2.0))
    assert torch.equal(seen[-1], data)


class TableEnsemble(torch.nn.Module):
    """A stand-in ensemble: Q tables (E, B, D, K) for the current and the next state; the mean when
    called without ``members``."""

    def __init__(self, table: torch.Tensor, next_table: torch.Tensor, next_state: torch.Tensor):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())
        self.next_table, self.next_state = next_table, next_state
        self.cfg = tiny_config(action_dim=table.shape[2], num_bins=table.shape[3], q_ensemble=table.shape[0])

    def forward(self, state, instruction_emb, prev_bins, images=None, members=False):
        j = prev_bins.shape[1]
        t = self.next_table if state is self.next_state else self.table
        t = t[:, :, : j + 1]
        return t if members else t.mean(0)


def test_ensemble_target_is_the_subset_minimum_at_the_mean_s_best_bin():
    E, B, D, K = 4, 3, 3, 5
    g = torch.Generator().manual_seed(1)
    cfg_m = tiny_config(action_dim=D, num_bins=K)
    batch = random_batch(cfg_m, B=B, N=1)
    batch.mc_return = torch.zeros(B)
    qt, qn = torch.rand(E, B, D, K, generator=g), torch.rand(E, B, D, K, generator=g)
    target = TableEnsemble(qt, qn, batch.next_state)
    cfg = LossConfig(use_mc_bound=False, ensemble_subset=2)
    torch.manual_seed(7)
    y, _ = td_targets(target, batch, cfg, RETURNS)
    torch.manual_seed(7)
    subset = torch.randperm(E)[:2]
    for b in range(B):
        for i in range(D - 1):
            k = qt[:, b, i + 1].mean(0).argmax()
            torch.testing.assert_close(y[b, i], qt[subset, b, i + 1, k].min())
        k = qn[:, b, 0].mean(0).argmax()
        want = batch.rewards[b, 0] + RETURNS.gamma * batch.bootstrap[b] * qn[subset, b, 0, k].min()
        torch.testing.assert_close(y[b, D - 1], want)
    # Another draw takes another subset: the targets differ (a subset of every head does not).
    ys = {tuple(td_targets(target, batch, cfg, RETURNS)[0].flatten().tolist()) for _ in range(20)}
    assert len(ys) > 1
    full = LossConfig(use_mc_bound=False, ensemble_subset=E)
    y_all = td_targets(target, batch, full, RETURNS)[0]
    k = qt[:, 0, 1].mean(0).argmax()
    torch.testing.assert_close(y_all[0, 0], qt[:, 0, 1, k].min())


def test_every_ensemble_head_regresses_toward_the_shared_target():
    E, B, D, K = 3, 2, 2, 4
    g = torch.Generator().manual_seed(2)
    batch = random_batch(tiny_config(action_dim=D, num_bins=K), B=B, N=1)
    online = TableEnsemble(torch.rand(E, B, D, K, generator=g), torch.rand(E, B, D, K), batch.next_state)
    target = TableEnsemble(torch.rand(E, B, D, K, generator=g), torch.rand(E, B, D, K), batch.next_state)
    cfg = LossConfig(alpha=0.0, use_mc_bound=False, ensemble_subset=E)
    _, terms = qtransformer_loss(online, target, batch, cfg, RETURNS)
    y, _ = td_targets(target, batch, cfg, RETURNS)
    a = batch.action_bins
    taken = online.table.detach().gather(-1, a[None, ..., None].expand(E, -1, -1, 1)).squeeze(-1)  # (E, B, D)
    torch.testing.assert_close(terms["td"], 0.5 * ((taken - y) ** 2).mean())
    loss, _ = qtransformer_loss(online, target, batch, cfg, RETURNS)
    loss.backward()
    grad = online.table.grad
    assert all(grad[e].abs().sum() > 0 for e in range(E))  # every head learns
    untaken = torch.ones_like(grad, dtype=torch.bool).scatter_(
        -1, a[None, ..., None].expand(E, -1, -1, 1), False
    )
    assert grad[untaken].abs().max() == 0  # alpha 0: only the data's bins move


def test_real_ensemble_network_trains_every_head_and_acts_on_their_mean():
    cfg = tiny_config(q_ensemble=3, support_tau=0.0)
    torch.manual_seed(0)
    model, target = QTransformer(cfg), QTransformer(cfg)
    target.load_state_dict(model.state_dict())
    batch = random_batch(cfg, B=4)
    members = model(batch.state, batch.instruction_emb, batch.action_bins[:, :-1], members=True)
    assert members.shape == (3, 4, cfg.action_dim, cfg.num_bins)
    mean = model(batch.state, batch.instruction_emb, batch.action_bins[:, :-1])
    torch.testing.assert_close(mean, members.mean(0))
    bins, q = model.decode(batch.state, batch.instruction_emb)
    torch.testing.assert_close(q[:, 0], mean[:, 0])
    assert torch.equal(bins[:, 0], mean[:, 0].argmax(-1))
    loss, _ = qtransformer_loss(model, target, batch, LossConfig(), RETURNS)
    loss.backward()
    for head in model.q_heads():
        assert head[-1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in target.parameters())
    one = QTransformer(tiny_config())  # one head keeps the one-head parameter names
    assert not any(k.startswith("extra_heads") for k in one.state_dict())
