import pytest
import torch
from accelerate import Accelerator

from qtransformer.config import LossConfig, OptimConfig, TrainConfig
from qtransformer.learning import build_optimizer, build_scheduler, make_target, train_step, update_target
from qtransformer.model import QTransformer

from .helpers import random_batch, tiny_config


def _learner(optim: OptimConfig, loss: LossConfig | None = None):
    torch.manual_seed(0)
    cfg = TrainConfig(model=tiny_config(), loss=loss or LossConfig(), optim=optim)
    acc = Accelerator(cpu=True)
    model = QTransformer(cfg.model)
    target = make_target(model)
    opt = build_optimizer(model, cfg.optim)
    sched = build_scheduler(opt, cfg.optim)
    model, opt = acc.prepare(model, opt)
    return cfg, acc, model, target, opt, sched


def test_train_step_reduces_loss_on_a_fixed_batch_and_moves_the_target():
    cfg, acc, model, target, opt, sched = _learner(
        OptimConfig(lr=1e-3, warmup_steps=0, tau=0.05, total_steps=100)
    )
    batch = random_batch(cfg.model, B=8)
    before = [p.clone() for p in target.parameters()]
    losses = []
    for step in range(60):
        terms, stepped = train_step(model, target, opt, batch, cfg, acc, sched, step)
        assert stepped
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    assert any(not torch.equal(a, b) for a, b in zip(before, target.parameters()))
    assert all(p.grad is None for p in target.parameters())
    assert sched.last_epoch == 60


def test_bc_method_trains_without_a_target_network():
    torch.manual_seed(0)
    cfg = TrainConfig(
        model=tiny_config(q_activation="none"), optim=OptimConfig(warmup_steps=0, lr_schedule="constant")
    )
    acc = Accelerator(cpu=True)
    model = QTransformer(cfg.model)
    opt = build_optimizer(model, cfg.optim)
    model, opt = acc.prepare(model, opt)
    batch = random_batch(cfg.model, B=8)
    losses = [train_step(model, None, opt, batch, cfg, acc, method="bc")[0]["loss"].item() for _ in range(30)]
    assert losses[-1] < 0.8 * losses[0]  # from log(8) = 2.08 at the start
    terms, _ = train_step(model, None, opt, batch, cfg, acc, method="bc")
    assert "bc_accuracy" in terms and "td" not in terms
    with pytest.raises(ValueError, match="without a target network"):
        train_step(model, make_target(model), opt, batch, cfg, acc, method="bc")
    with pytest.raises(ValueError, match="needs a target model"):
        train_step(model, None, opt, batch, cfg, acc)
    with pytest.raises(ValueError, match="method='cql' needs a target model"):
        train_step(model, None, opt, batch, cfg, acc, method="cql")
    with pytest.raises(ValueError, match="method must be"):
        train_step(model, None, opt, batch, cfg, acc, method="iql")  # type: ignore[arg-type]


def test_gradient_accumulation_steps_only_on_sync():
    cfg, acc, model, target, opt, sched = _learner(
        OptimConfig(grad_accum_steps=2, warmup_steps=0, lr_schedule="constant")
    )
    acc.gradient_accumulation_steps = 2
    batch = random_batch(cfg.model, B=4)
    w0 = next(model.parameters()).clone()
    _, s1 = train_step(model, target, opt, batch, cfg, acc, sched, 0)
    assert not s1 and torch.equal(w0, next(model.parameters()))
    _, s2 = train_step(model, target, opt, batch, cfg, acc, sched, 0)
    assert s2 and not torch.equal(w0, next(model.parameters()))


def test_polyak_update_moves_the_target_by_tau_and_copies_buffers():
    a, b = QTransformer(tiny_config()), QTransformer(tiny_config())
    a.set_state_stats(torch.arange(5.0), torch.full((5,), 2.0))
    pa, pb = next(a.parameters()), next(b.parameters())
    expected = pb.detach() + 0.25 * (pa.detach() - pb.detach())
    update_target(a, b, OptimConfig(tau=0.25))
    torch.testing.assert_close(pb, expected)
    assert torch.equal(b.state_mean, a.state_mean) and torch.equal(b.state_std, a.state_std)
    update_target(a, b, OptimConfig(tau=1.0))
    assert torch.equal(pa, pb)


def test_schedule_warms_up_then_decays():
    model = QTransformer(tiny_config())
    cfg = OptimConfig(lr=1.0, warmup_steps=10, total_steps=110, lr_schedule="cosine")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(110):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < lrs[9] <= 1.0
    assert abs(lrs[10] - 1.0) < 1e-6 and abs(opt.param_groups[0]["lr"] - 0.1) < 1e-6


def test_weight_decay_skips_norms_and_embeddings():
    model = QTransformer(tiny_config())
    opt = build_optimizer(model, OptimConfig(weight_decay=0.1))
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(model.bin_emb.weight) not in decayed and id(model.ln_f.weight) not in decayed
    assert id(model.blocks[0].qkv.weight) in decayed
