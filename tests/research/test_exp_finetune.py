"""research/exp_finetune.py: variants over ``qt finetune``'s own arguments, and a tiny run that learns."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import tyro

from finetune.train import FinetuneArgs
from pretrain.datagen import DatagenArgs, run_datagen
from pretrain.train import PretrainArgs, run_pretrain
from qtransformer.checkpoint import load_policy_checkpoint
from qtransformer.config import ModelConfig
from research import exp_finetune as X
from research.results_file import recorded_args

FAKE = "tests.finetune.fake_env"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, text_encoder: object) -> dict[str, str]:
    """A tiny policy pretrained for a few steps on the fake reaching world's data (with a support head and
    standardised inputs, so that the from-scratch variants have something to take off)."""
    root = tmp_path_factory.mktemp("exp_ft")
    data = run_datagen(
        DatagenArgs(env="navigate", out=root / "data", episodes=24, workers=1, seed=0), env_module=FAKE
    )
    model = ModelConfig(d_model=32, n_layers=1, n_heads=2, support_tau=0.3, normalize_state=True)
    args = PretrainArgs(
        dataset=str(data), out=str(root / "pt"), steps=10, batch_size=16, progress=False, model=model
    )
    with pytest.MonkeyPatch.context() as mp:  # the session's text encoder, not a second load
        mp.setattr("pretrain.builder.TextEncoder", lambda name=None: text_encoder)
        run_pretrain(args)
    return {"data": str(data), "policy": str(root / "pt" / "policy")}


def _parse(*argv: str) -> X.ExpFinetuneArgs:
    return tyro.cli(X.ExpFinetuneArgs, args=list(argv))


def test_the_base_run_is_qt_finetunes_defaults_under_its_own_flags() -> None:
    exp = _parse("--pretrained", "p", "--prior-data", "d", "--utd", "4")
    assert exp.base == FinetuneArgs(pretrained="p", prior_data="d", utd=4.0)
    assert exp.variants == ("full", "full_no_aprl", "pretrained_only", "scratch_prior", "scratch")


def test_bad_experiment_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="needs both --pretrained and --prior-data"):
        X.run_experiment(X.ExpFinetuneArgs(base=FinetuneArgs(pretrained="p")))
    with pytest.raises(ValueError, match="unknown variants \\['full_unprimed'\\]"):
        X.ExpFinetuneArgs(base=FinetuneArgs(pretrained="p", prior_data="d"), variants=("full_unprimed",))


def test_each_variant_takes_away_what_it_names(pretrained: dict[str, str], tmp_path: Path) -> None:
    exp = _parse(
        "--env", "navigate", "--pretrained", pretrained["policy"], "--prior-data", pretrained["data"]
    )
    exp = dataclasses.replace(exp, base=dataclasses.replace(exp.base, out=str(tmp_path)))
    ckpt = load_policy_checkpoint(pretrained["policy"])
    got = {name: X.variant_args(exp, name) for name in X.VARIANTS}
    for name, a in got.items():
        assert a.out == str(tmp_path / name)
        assert (a.env_steps, a.utd, a.seed, a.optim, a.loss) == (
            exp.base.env_steps,
            exp.base.utd,
            exp.base.seed,
            exp.base.optim,
            exp.base.loss,
        )
    has = {n: (a.init == "pretrained", a.prior_data is not None, a.aprl.enabled) for n, a in got.items()}
    assert has == {
        "full": (True, True, True),
        "full_no_aprl": (True, True, False),
        "pretrained_only": (True, False, True),
        "scratch_prior": (False, True, True),
        "scratch": (False, False, True),
    }
    # From scratch: new weights in the pretrained network's shape (fine-tuning reads it from the checkpoint).
    assert (
        all(a.pretrained == exp.base.pretrained for a in got.values())
        and ckpt.model_config.support_tau == 0.3
    )


@pytest.fixture
def one_encoder(monkeypatch: pytest.MonkeyPatch, text_encoder: object) -> None:
    """Every run shares the session's text encoder instead of loading its own."""
    monkeypatch.setattr("finetune.builder.TextEncoder", lambda name=None: text_encoder)


def test_a_tiny_experiment_practises_each_variant_and_records_it(
    pretrained: dict[str, str], tmp_path: Path, one_encoder: None, text_encoder: object
) -> None:
    out = tmp_path / "exp"
    argv = ["--env", "navigate", "--pretrained", pretrained["policy"], "--prior-data", pretrained["data"]]
    argv += ["--out", str(out), "--env-steps", "20", "--utd", "0.5", "--batch-size", "16"]
    argv += ["--eval-every", "10", "--eval-episodes", "1"]
    exp = _parse(*argv, "--variants", "full", "scratch")
    small_aprl = dataclasses.replace(exp.base.aprl, prime_iters=5, ensemble=1, hidden=16)
    base = dataclasses.replace(exp.base, learning_starts=10, progress=False, aprl=small_aprl)
    results = X.run_experiment(dataclasses.replace(exp, base=base), env_module=FAKE)
    assert json.loads((out / "results.json").read_text()) == results
    assert list(results) == ["full", "scratch"]
    for name, r in results.items():
        assert r["task"] == "go_middle" and r["env_steps"] >= 20
        assert r["updates"] > 0, name  # real gradient steps
        assert r["curve"][0]["env_steps"] == 0  # the zero-shot point
        assert 0.0 <= r["final_success_rate"] <= 1.0
        assert r["args"]["out"] == str(out / name) and r["args"]["env_steps"] == 20
    assert results["full"]["args"]["pretrained"] == pretrained["policy"]
    assert (
        results["scratch"]["args"]["init"] == "scratch" and results["scratch"]["args"]["prior_data"] is None
    )
    assert (out / "curves.png").stat().st_size > 0
    # What the practised policy believes of its own practice (research/probe_navigate.py practice-q).
    from research.probe_navigate import practice_q

    seen = practice_q(str(out / "full"), last=1000, encoder=text_encoder)
    groups = {k: v for k, v in seen.items() if k.startswith(("won_", "lost_"))}
    assert groups and seen["episodes"] == len(list((out / "full" / "episodes").glob("ep_*.npz")))
    for key, g in groups.items():
        assert key.endswith(("first3", "last3"))
        assert len(g["q_taken"]) == len(g["q_best_supported"]) == 2  # the fake world's action dims
        assert all(0.0 <= q <= 1.0 for q in g["q_taken"] + g["q_best_supported"])  # sigmoid Q-values
    won = sum(g["episodes"] for k, g in groups.items() if k.startswith("won_") and k.endswith("first3"))
    lost = sum(g["episodes"] for k, g in groups.items() if k.startswith("lost_") and k.endswith("first3"))
    assert won + lost == seen["episodes"]
    with pytest.raises(ValueError, match="'full' run with other arguments"):
        X.run_experiment(_parse(*argv, "--utd", "1", "--variants", "full"), env_module=FAKE)


def test_main_prints_one_json_object_last(
    pretrained: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``main`` reports what results.json holds (here a finished experiment: nothing is rerun)."""
    out = tmp_path / "exp"
    out.mkdir()
    exp = X.parse_args(
        ["--pretrained", pretrained["policy"], "--prior-data", pretrained["data"], "--env", "navigate"]
    )
    exp = dataclasses.replace(exp, base=dataclasses.replace(exp.base, out=str(out)), variants=("full",))
    assert exp.base.utd == 1.0 and exp.base.eval_episodes == 40  # the navigate recipe's
    curve = [{"env_steps": 0, "success_rate": 0.25}, {"env_steps": 500, "success_rate": 0.75}]
    summary = {k: 0 for k in X.SUMMARY_KEYS} | {
        "task": "go_middle",
        "curve": curve,
        "final_success_rate": 0.75,
    }
    args = recorded_args(X.variant_args(exp, "full"))
    (out / "results.json").write_text(json.dumps({"full": {**summary, "env": "navigate", "args": args}}))
    argv = ["--pretrained", pretrained["policy"], "--prior-data", pretrained["data"], "--env", "navigate"]
    monkeypatch.setattr(sys, "argv", ["exp_finetune", *argv, "--out", str(out), "--variants", "full"])
    X.main()
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == {"full": {"final": 0.75, "safety_violations": 0, "steps_to_50": 500}}
