"""The recipes are the commands' defaults: given only paths, ``qt datagen``, ``qt pretrain`` and
``qt finetune`` run the measured best settings of the env, and every flag still applies on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from envs.garbage_sort import EXPERT_IGNORES
from pretrain.datagen import DatagenArgs, run_datagen
from scripts.cli import parse_args
from scripts.recipes import RECIPES, finetune_args, pretrain_args


@pytest.fixture(scope="module")
def navigate_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipes")
    return run_datagen(DatagenArgs(env="navigate", out=root / "d", preset="tiny", workers=1, control_hz=4.0))


def test_pretrain_takes_the_recipe_of_the_datasets_env(navigate_data: Path) -> None:
    args = parse_args("pretrain", ["--dataset", str(navigate_data)])
    assert args.recipe == "navigate"
    assert args.model.support_tau == 0.3 and args.loss.behavior_weight == 10.0
    assert args.steps == 2000 and args.batch_size == 128 and args.optim.lr == 1e-3
    # A flag on the command line still wins over the recipe, the rest of the recipe stays.
    args = parse_args(
        "pretrain", ["--dataset", str(navigate_data), "--steps", "7", "--model.support-tau", "0"]
    )
    assert args.steps == 7 and args.model.support_tau == 0.0 and args.batch_size == 128


def test_finetune_and_datagen_take_the_recipe_of_their_env() -> None:
    ft = parse_args("finetune", ["--env", "garbage_sort"])
    assert ft.recipe == "garbage_sort" and ft.optim.lr == 1e-5 and ft.utd == 2.0 and ft.prior_success_only
    nav = parse_args("finetune", ["--env", "navigate", "--utd", "4"])
    assert nav.recipe == "navigate" and nav.optim.lr == 3e-4 and nav.utd == 4.0
    data = parse_args("datagen", ["--env", "navigate"])
    assert data.recipe == "navigate" and data.episodes == 1500 and data.control_hz == 4.0
    # A size on the command line replaces the recipe's size, not its env settings.
    tiny = parse_args("datagen", ["--env", "navigate", "--preset", "tiny"])
    assert tiny.episodes is None and tiny.plan()["episodes"] == 6 and tiny.control_hz == 4.0


def test_asking_for_pixels_takes_the_envs_camera_recipe() -> None:
    for env in ("navigate", "garbage_sort"):
        data = parse_args("datagen", ["--env", env, "--observation", "pixels"])
        assert data.recipe == f"{env}_pixels" and data.observation == "pixels" and data.image_size == 48
        r = RECIPES[f"{env}_pixels"]
        # What a robot has: no recipe-level oracle, and the network masks nothing of the 16 or 7 values.
        assert r.oracle is None and r.observation == "pixels"
        assert r.pretrain()["model"].state_ignore == ()
    nav = parse_args("datagen", ["--env", "navigate", "--observation", "pixels"])
    assert nav.camera == "onboard" and nav.episodes == 6000 and nav.control_hz == 4.0
    assert RECIPES["navigate_pixels"].pretrain()["model"].image_coords
    # Without --observation the env's state recipe stays the default.
    assert parse_args("datagen", ["--env", "navigate"]).recipe == "navigate"


def test_an_unknown_or_mismatched_recipe_is_an_error(navigate_data: Path) -> None:
    with pytest.raises(ValueError, match="unknown recipe 'nope'.*garbage_sort"):
        parse_args("finetune", ["--recipe", "nope"])
    with pytest.raises(
        ValueError, match="recipe 'garbage_sort' is for the garbage_sort env, but --env is navigate"
    ):
        parse_args("finetune", ["--env", "navigate", "--recipe", "garbage_sort"])
    with pytest.raises(
        ValueError, match="recipe 'garbage_sort' is for the garbage_sort env, but the dataset"
    ):
        parse_args("pretrain", ["--dataset", str(navigate_data), "--recipe", "garbage_sort"])


def test_the_garbage_sort_recipe_is_the_headline_runs_settings() -> None:
    """docs/results.md: 20,000 jittered episodes; 48,000 steps of the Q-Transformer with the support
    head on the successful episodes, bins smoothed (std 3), state and instruction standardised, reading
    the values the expert acts on; fine-tuned at lr 1e-5, update ratio 2, timeouts as failures."""
    r = RECIPES["garbage_sort"]
    assert r.datagen == {"episodes": 20_000, "start_jitter": 0.1} and r.oracle
    pre = pretrain_args("garbage_sort", "d")
    assert (pre.steps, pre.batch_size, pre.success_only) == (48_000, 128, True)
    m = pre.model
    assert (m.d_model, m.n_layers, m.n_heads, m.support_tau) == (128, 2, 4, 0.3)
    assert m.normalize_state and m.normalize_instruction and m.state_ignore == tuple(sorted(EXPERT_IGNORES))
    assert pre.loss.bin_smoothing == 3.0 and pre.loss.behavior_weight == 10.0
    assert (pre.optim.lr, pre.optim.warmup_steps, pre.optim.lr_schedule) == (1e-3, 100, "cosine")
    ft = finetune_args("garbage_sort")
    assert (ft.optim.lr, ft.utd, ft.eval_every, ft.eval_episodes) == (1e-5, 2.0, 2000, 20)
    assert ft.returns.timeout_is_failure and ft.loss.bin_smoothing == 3.0 and not ft.loss.behavior_online


def test_the_navigate_recipe_is_the_headline_runs_settings() -> None:
    """docs/results.md: 1,500 episodes at 4 Hz; 2,000 steps with the support head weighted 10;
    fine-tuned at lr 3e-4, update ratio 1, timeouts as failures, 40 evaluation episodes per point."""
    assert RECIPES["navigate"].datagen == {"episodes": 1500, "control_hz": 4.0}
    pre = pretrain_args("navigate", "d")
    assert (pre.steps, pre.batch_size, pre.model.support_tau, pre.success_only) == (2000, 128, 0.3, False)
    ft = finetune_args("navigate")
    assert (ft.optim.lr, ft.utd, ft.eval_episodes) == (3e-4, 1.0, 40) and ft.returns.timeout_is_failure


def _options(command: str) -> set[str]:
    """The option names ``qt <command> --help`` lists."""
    import argparse
    import importlib

    import tyro

    from scripts.cli import COMMANDS

    module, cls, _, _ = COMMANDS[command]
    parser = tyro.extras.get_parser(getattr(importlib.import_module(module), cls))
    names: set[str] = set()

    def walk(p: argparse.ArgumentParser) -> None:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    walk(sub)
            elif a.option_strings and a.dest != "help":
                names.add(a.dest)

    walk(parser)
    return names


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_commands_list_what_a_run_changes_not_every_internal() -> None:
    # Before the recipes: 73 options for qt pretrain, 99 for qt finetune.
    pretrain, finetune = _options("pretrain"), _options("finetune")
    assert len(pretrain) <= 39, sorted(pretrain)  # 37 + the pixel knobs (image shift, image coords)
    assert len(finetune) <= 49, sorted(finetune)
    # Shapes the dataset or the checkpoint decides are not options.
    assert not {"model.state_dim", "model.action_dim", "model.num_images"} & pretrain
    assert not any(o.startswith("model.") for o in finetune)


def test_meta_world_pretrains_its_measured_best_and_ml10_a_critic_to_fine_tune() -> None:
    # MT10: filtered BC measured 97.3% against the Q-Transformer's 93.8% (docs/results.md).
    for name in ("metaworld_mt10", "metaworld_mt50"):
        p = RECIPES[name].pretrain()
        assert p["method"] == "bc" and p["success_only"] and p["model"].support_tau == 0.0
        assert p["steps"] == 12_000
    ml10 = RECIPES["metaworld_ml10"].pretrain()
    assert ml10.get("method", "qtransformer") == "qtransformer" and ml10["model"].support_tau == 0.3
