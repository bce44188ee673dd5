"""research/exp_pretrain.py: variants over ``qt pretrain``'s own arguments, and a tiny run that trains."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import tyro

from pretrain.datagen import DatagenArgs, run_datagen
from pretrain.train import PretrainArgs
from research import exp_pretrain as X
from tests.finetune import fake_env

TINY = ["--model.d-model", "32", "--model.n-layers", "1", "--model.n-heads", "2"]


def _parse(*argv: str) -> X.ExpPretrainArgs:
    return tyro.cli(X.ExpPretrainArgs, args=list(argv))


def test_the_base_run_is_qt_pretrains_defaults_under_its_own_flags() -> None:
    exp = _parse("--dataset", "d", "--eval-episodes", "1", "--optim.lr", "3e-4")
    cli = PretrainArgs(dataset="d", eval_episodes=1)
    assert exp.base == dataclasses.replace(cli, optim=dataclasses.replace(cli.optim, lr=3e-4))
    assert exp.variants == X.DEFAULT_VARIANTS and exp.final_episodes == 100


def test_each_variant_changes_only_what_defines_it() -> None:
    exp = _parse(
        "--dataset", "d", "--eval-episodes", "1", "--steps", "40", "--out", "runs/x", "--curve-points", "4"
    )
    base = exp.base
    got = {name: X.variant_args(exp, name) for name in X.VARIANTS}
    for name, a in got.items():
        assert a.out == str(Path("runs/x", name)) and a.eval_every == 10
        assert (a.dataset, a.steps, a.seed, a.optim, a.batch_size) == (
            base.dataset,
            base.steps,
            base.seed,
            base.optim,
            base.batch_size,
        )
    assert got["qt"].loss == base.loss and got["qt"].model == base.model and not got["qt"].success_only
    assert got["bc_all"].method == "bc" and not got["bc_all"].success_only
    assert got["bc_success"].method == "bc" and got["bc_success"].success_only
    assert got["bc_success_smooth"].loss.bin_smoothing == X.BIN_SMOOTHING
    assert got["qt_no_cons"].loss.alpha == 0.0 and got["qt_no_cons"].method == "qtransformer"
    assert not got["qt_no_mc"].loss.use_mc_bound
    assert got["qt_n1"].returns.n_step == 1 and base.returns.n_step != 1
    assert got["qt_support"].model.support_tau == X.SUPPORT_TAU and not got["qt_support"].success_only
    r = got["recipe"]
    assert (r.model.support_tau, r.loss.behavior_weight, r.loss.bin_smoothing) == (
        X.SUPPORT_TAU,
        X.SUPPORT_WEIGHT,
        X.BIN_SMOOTHING,
    )
    assert r.success_only and r.method == "qtransformer"


def test_a_support_head_in_the_base_is_taken_off_the_plain_variants() -> None:
    exp = _parse("--dataset", "d", "--eval-episodes", "1", "--model.support-tau", "0.5", "--success-only")
    for name in ("qt", "bc_all", "qt_no_cons", "qt_no_mc", "qt_n1"):
        a = X.variant_args(exp, name)
        assert a.model.support_tau == 0.0 and not a.success_only, name


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"variants": ("qt", "qt_double_bc")}, "unknown variants \\['qt_double_bc'\\]"),
        ({"base": PretrainArgs(dataset="d")}, "eval_episodes"),
        ({"final_episodes": 0}, "final_episodes and curve_points"),
    ],
)
def test_bad_experiment_arguments_are_named(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        X.ExpPretrainArgs(**{"base": PretrainArgs(dataset="d", eval_episodes=1), **kw})


@pytest.fixture
def fake_world(monkeypatch: pytest.MonkeyPatch, text_encoder: object) -> None:
    """The fake reaching world stands in for ``envs`` wherever it is imported (the evaluations during and
    after pretraining import it when they run), and every run shares the session's text encoder instead
    of loading its own."""
    monkeypatch.setitem(sys.modules, "envs", fake_env)
    for module in ("pretrain.builder", "research.exp_pretrain"):
        monkeypatch.setattr(f"{module}.TextEncoder", lambda name=None: text_encoder)


def test_a_tiny_experiment_trains_each_variant_and_records_it(
    tmp_path: Path, fake_world: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_datagen(
        DatagenArgs(env="navigate", out=tmp_path / "data", episodes=24, workers=1, seed=0),
        env_module="tests.finetune.fake_env",
    )
    out = tmp_path / "exp"
    argv = ["--dataset", str(data), "--out", str(out), "--steps", "4", "--batch-size", "16", *TINY]
    argv += ["--eval-episodes", "1", "--curve-points", "2", "--final-episodes", "1"]
    monkeypatch.setattr(sys, "argv", ["exp_pretrain", *argv, "--variants", "bc_success", "recipe"])
    X.main()
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((out / "results.json").read_text())
    assert list(results) == list(printed) == ["bc_success", "recipe"]
    for name, r in results.items():
        summary = json.loads((out / name / "summary_rank0.json").read_text())
        assert summary["step"] == 4 and summary["final_terms"]["grad_norm"] > 0  # real optimiser steps
        assert [p["step"] for p in r["curve"]] == [2, 4]
        assert sorted(r["per_task"]) == ["go_left", "go_right"] and r["env"] == "navigate"
        assert 0.0 <= r["success_train_phrasings"] <= 1.0
        assert printed[name] == {
            "train": r["success_train_phrasings"],
            "heldout": r["success_heldout_phrasings"],
        }
        assert r["args"]["steps"] == 4 and r["args"]["out"] == str(out / name)
    bc, rec = results["bc_success"]["args"], results["recipe"]["args"]
    assert bc["method"] == "bc" and bc["success_only"] and bc["model"]["support_tau"] == 0.0
    assert rec["method"] == "qtransformer" and rec["model"]["support_tau"] == X.SUPPORT_TAU
    assert rec["loss"]["bin_smoothing"] == X.BIN_SMOOTHING and rec["success_only"]
    assert (out / "curves.png").stat().st_size > 0

    # A variant already recorded is not rerun; one recorded under other arguments is refused.
    policy = out / "recipe" / "policy" / "model.safetensors"
    before = policy.stat().st_mtime_ns
    assert X.run_experiment(_parse(*argv, "--variants", "recipe"))["recipe"] == results["recipe"]
    assert policy.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="'recipe' run with other arguments"):
        X.run_experiment(_parse(*argv, "--loss.alpha", "5", "--variants", "recipe"))
