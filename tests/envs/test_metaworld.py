"""Meta-World as language-instructed tasks: the benchmark splits, the API, goals, experts, reset-free pairs.

Tests that build an env need the optional extra (``pip install -e '.[metaworld]'``) and are skipped
without it; CI installs it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import envs
from envs import tasks as T
from tests.envs.helpers import run_expert


def test_task_lists_are_plain_data_with_disjoint_phrasings() -> None:
    assert len(T.METAWORLD_TASKS) == 50
    assert set(T.MT10_TASKS) <= set(T.METAWORLD_TASKS)
    assert not set(T.ML10_TRAIN_TASKS) & set(T.ML10_TEST_TASKS)
    for task, split in T.METAWORLD_TEMPLATES.items():
        assert not set(split["train"]) & set(split["heldout"]), task
    assert T.split_task_ids("metaworld_ml10", "tuning") == ("drawer-open-v3",)
    assert T.split_task_ids("metaworld_ml10", "test") == T.ML10_TEST_TASKS[1:]
    assert T.train_task_ids("metaworld_mt50") == T.METAWORLD_TASKS
    for task, inverse in T.METAWORLD_INVERSES.items():
        assert T.METAWORLD_INVERSES[inverse] == task


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "metaworld", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[metaworld\]'"):
        envs.make_env("metaworld_mt10")


needs_metaworld = pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None, reason="the metaworld extra is not installed"
)


@needs_metaworld
def test_splits_are_metaworlds_own() -> None:
    from metaworld import env_dict

    assert tuple(env_dict.ALL_V3_ENVIRONMENTS) == T.METAWORLD_TASKS
    assert tuple(env_dict.MT10_V3) == T.MT10_TASKS
    assert tuple(env_dict.ML10_V3["train"]) == T.ML10_TRAIN_TASKS
    assert tuple(env_dict.ML10_V3["test"]) == T.ML10_TEST_TASKS


@needs_metaworld
def test_check_env_and_observation() -> None:
    from gymnasium.utils.env_checker import check_env

    env = envs.make_env("metaworld_mt10")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs["state"].shape == (39,) and obs["state"].dtype == np.float32
    assert info["task"] in T.MT10_TASKS
    assert obs["instruction"] in T.METAWORLD_TEMPLATES[info["task"]]["train"]
    # The goal is in the state (Meta-World's goal-observable mode), not zeros.
    assert np.linalg.norm(obs["state"][36:39]) > 0.1


@needs_metaworld
def test_seeded_reset_repeats_and_goals_vary() -> None:
    env = envs.make_env("metaworld_mt10")
    goals = []
    for seed in (0, 0, 1, 2):
        obs, _ = env.reset(seed=seed, options={"task": "reach-v3"})
        goals.append(obs["state"][36:39].copy())
    assert np.array_equal(goals[0], goals[1])
    assert len({tuple(g) for g in goals[1:]}) == 3


@needs_metaworld
def test_expert_succeeds_and_success_ends_the_episode() -> None:
    env = envs.make_env("metaworld_mt10")
    for seed, task in enumerate(("reach-v3", "drawer-close-v3", "button-press-topdown-v3")):
        ok, steps, _ = run_expert(env, seed, task)
        assert ok and steps < 200, (task, steps)


@needs_metaworld
def test_failing_expert_misses() -> None:
    env = envs.make_env("metaworld_mt10", max_episode_steps=120)
    # Aimed 8-15 cm off, the puck does not reach its goal (a reach may still pass through it on the way).
    assert not any(run_expert(env, seed, "push-v3", fail_prob=1.0)[0] for seed in range(3))
    assert all(run_expert(env, seed, "push-v3")[0] for seed in range(3))


@needs_metaworld
def test_pixels_keep_only_the_arm() -> None:
    env = envs.make_env("metaworld_mt10", observation="pixels", image_size=32)
    obs, _ = env.reset(seed=0, options={"task": "reach-v3"})
    assert obs["state"].shape == (4,)
    assert obs["image"].shape == (32, 32, 3) and obs["image"].std() > 5


@needs_metaworld
def test_reset_free_inverse_continues_the_world() -> None:
    env = envs.make_env("metaworld_mt10", reset_free=True)
    ok, _, _ = run_expert(env, 0, "drawer-open-v3")
    assert ok
    opened = env.unwrapped.sim.data.qpos.copy()
    obs, info = env.reset(seed=1)  # the graph offers the inverse, in the same world
    assert info["task"] == "drawer-close-v3" and not info["human_reset_needed"]
    assert np.allclose(env.unwrapped.sim.data.qpos, opened)
    expert = envs.make_expert(env, seed=1)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        done = terminated or truncated
    assert info["is_success"] and env.unwrapped.human_resets == 0
    # A task of another scene needs a person.
    env.reset(seed=2, options={"task": "reach-v3"})
    assert env.unwrapped.human_resets == 1


def test_difficulty_groups_partition_the_tasks() -> None:
    members = [t for group in T.METAWORLD_DIFFICULTY.values() for t in group]
    assert sorted(members) == sorted(T.METAWORLD_TASKS)
    groups = T.task_groups("metaworld_mt10", T.MT10_TASKS)
    assert groups["medium"] == ["peg-insert-side-v3"]
    assert "very_hard" not in groups  # no MT10 task in it
    assert T.task_groups("navigate", T.NAVIGATE_TRAIN_TASKS) == {}
    assert T.suite("metaworld_ml10") == "metaworld" and T.suite("navigate") == "navigate"


@needs_metaworld
def test_tiny_datagen_writes_the_benchmark(tmp_path: Path) -> None:
    from pretrain.datagen import DatagenArgs, run_datagen
    from qtransformer.dataset import DatasetMeta

    out = run_datagen(DatagenArgs(env="metaworld_mt10", preset="tiny", workers=1, out=tmp_path / "d"))
    meta = DatasetMeta.load(out)
    assert meta.state_dim == 39 and meta.action_dim == 4 and meta.fps == 80
    assert {e.env for e in meta.episodes} == {"metaworld_mt10"}
    assert {e.task_id for e in meta.episodes} <= set(T.MT10_TASKS)
    phrasings = {p for t in T.MT10_TASKS for p in T.METAWORLD_TEMPLATES[t]["train"]}
    assert set(meta.tasks) <= phrasings


def test_every_env_name_is_a_command_choice() -> None:
    from typing import get_args

    from envs.common import EnvName

    assert get_args(EnvName) == tuple(envs.ENV_IDS)
