"""Task lists, paraphrase splits and registration."""

from __future__ import annotations

import gymnasium as gym
import pytest

import envs
from envs import tasks as T


@pytest.mark.parametrize("name", ["garbage_sort", "navigate"])
def test_heldout_tasks_are_disjoint_from_training(name: str) -> None:
    train, heldout = set(T.train_task_ids(name)), set(T.heldout_task_ids(name))
    assert heldout and train and not (train & heldout)
    assert set(T.select_tasks(name, "all")) == train | heldout


def test_paraphrase_splits_are_disjoint_for_every_family() -> None:
    for templates in (T.GARBAGE_TEMPLATES, T.NAVIGATE_TEMPLATES):
        for split in templates.values():
            assert split["train"] and split["heldout"]
            assert not set(split["train"]) & set(split["heldout"])


def test_registration_and_make_env() -> None:
    assert envs.ENV_IDS == {
        "garbage_sort": "qtransformer/GarbageSort-v0",
        "navigate": "qtransformer/Navigate-v0",
        "metaworld_mt10": "qtransformer/MetaWorld-MT10-v0",
        "metaworld_mt50": "qtransformer/MetaWorld-MT50-v0",
        "metaworld_ml10": "qtransformer/MetaWorld-ML10-v0",
    }
    for env_id in envs.ENV_IDS.values():
        assert env_id in gym.registry
    with pytest.raises(ValueError, match="unknown env"):
        envs.make_env("kitchen")


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="tasks must be"):
        envs.make_env("garbage_sort", tasks="some")
    with pytest.raises(ValueError, match="paraphrases must be"):
        envs.make_env("navigate", paraphrases="new")
    with pytest.raises(ValueError, match="image_size"):
        envs.make_env("navigate", image_size=-1)
    env = envs.make_env("garbage_sort")
    with pytest.raises(ValueError, match="unknown task"):
        env.reset(seed=0, options={"task": "place:can:kitchen"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step([float("nan"), 0, 0, 0])
    with pytest.raises(ValueError, match="shape"):
        env.step([0, 0, 0])


def test_heldout_paraphrases_are_used() -> None:
    env = envs.make_env("navigate", paraphrases="heldout", tasks="heldout")
    heldout = T.NAVIGATE_TEMPLATES["go_to"]["heldout"]
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        assert info["task"] in T.NAVIGATE_HELDOUT_TASKS
        colour, shape = info["task"].split(":")[1].split("_")
        assert obs["instruction"] in {t.format(landmark=f"{colour} {shape}") for t in heldout}
