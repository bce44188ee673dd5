"""Named recipes: the measured best settings per env and observation mode, as the commands' defaults.

A recipe is what ``qt datagen``, ``qt pretrain`` and ``qt finetune`` run with when given only paths::

    qt datagen  --env garbage_sort --out runs/data/garbage_sort
    qt pretrain --dataset runs/data/garbage_sort --out runs/pretrain/garbage_sort
    qt finetune --env garbage_sort --pretrained runs/pretrain/garbage_sort/policy \\
        --prior-data runs/data/garbage_sort --out runs/finetune/garbage_sort

``qt pretrain`` picks the recipe its dataset was generated with (else that of the dataset's env),
``qt datagen`` and ``qt finetune`` that of ``--env``; ``--recipe NAME`` picks one by name. Every option given on the
command line is applied on top of the recipe, and ``--help`` shows the recipe's values as the defaults.
From Python, :func:`pretrain_args` and :func:`finetune_args` build the same arguments.

Where a recipe reads privileged information, its ``oracle`` field says which, and every figure made
with it is labelled oracle (docs/results.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envs.common import EnvName
from finetune.train import FinetuneArgs
from pretrain.datagen import DatagenArgs
from pretrain.train import PretrainArgs
from qtransformer.config import MODEL_PRESETS, LossConfig, ModelConfig, OptimConfig
from qtransformer.returns import ReturnOverrides


@dataclass(frozen=True)
class Recipe:
    """The settings of one env and observation mode, stage by stage."""

    name: str
    env: EnvName
    observation: str
    """``state`` or ``pixels``."""
    oracle: str | None
    """What privileged information the recipe reads (None: only what a robot has)."""
    datagen: dict[str, Any] = field(default_factory=dict)
    """``DatagenArgs`` fields: the dataset the pretraining figures were measured on."""
    pretrain: Callable[[], dict[str, Any]] = dict
    """``PretrainArgs`` fields (nested configs as instances)."""
    finetune: Callable[[], dict[str, Any]] = dict
    """``FinetuneArgs`` fields."""


def _small_model(**kw: Any) -> ModelConfig:
    return ModelConfig(**{**MODEL_PRESETS["small"], **kw})


def _pixels_model(**kw: Any) -> ModelConfig:
    return ModelConfig(**{**MODEL_PRESETS["pixels_small"], **kw})


def _navigate_pretrain() -> dict[str, Any]:
    return dict(
        model=_small_model(support_tau=0.3),
        loss=LossConfig(behavior_weight=10.0),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, lr_schedule="cosine"),
        steps=2000,
        batch_size=128,
    )


def _navigate_mixed_pretrain() -> dict[str, Any]:
    # Chosen on the tuning landmark and the pretraining tasks (docs/notes/2026-12-05-offline-mixed-data.md):
    # Q-learning from a robot team's data needs more steps than from the demonstration-rich mixture
    # (2,000 -> 6,000 steps: 46% -> 62% on the tuning landmark, 47% -> 59% on the pretraining tasks,
    # seed 0). One-step targets looked better on seed 0 but not over three seeds (n = 1: 60.0% and
    # 59.7%, against 64.7% and 57.5% with n = 3).
    return {**_navigate_pretrain(), "steps": 6000}


def _navigate_pixels_pretrain() -> dict[str, Any]:
    return {**_navigate_pretrain(), "model": _pixels_model(support_tau=0.3, image_coords=True)}


def _navigate_finetune() -> dict[str, Any]:
    base = FinetuneArgs()
    return dict(
        env="navigate",
        utd=1.0,
        returns=ReturnOverrides(timeout_is_failure=True),
        optim=dataclasses.replace(base.optim, lr=3e-4),
        eval_every=2000,
        eval_episodes=40,
    )


def _garbage_pretrain() -> dict[str, Any]:
    from envs.garbage_sort import EXPERT_IGNORES

    return dict(
        model=_small_model(
            support_tau=0.3,
            normalize_state=True,
            normalize_instruction=True,
            state_ignore=EXPERT_IGNORES,  # oracle: the values the scripted expert does not read
        ),
        loss=LossConfig(behavior_weight=10.0, bin_smoothing=3.0),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, lr_schedule="cosine"),
        steps=48_000,
        batch_size=128,
        success_only=True,
    )


def _garbage_finetune() -> dict[str, Any]:
    base = FinetuneArgs()
    return dict(
        env="garbage_sort",
        utd=2.0,
        prior_success_only=True,
        returns=ReturnOverrides(timeout_is_failure=True),
        loss=dataclasses.replace(base.loss, bin_smoothing=3.0),
        optim=dataclasses.replace(base.optim, lr=1e-5),
        eval_every=2000,
        eval_episodes=20,
    )


def _garbage_mixed_pretrain() -> dict[str, Any]:
    # The full observation and every episode: what a team without the expert's feature list has. Not
    # yet measured on this data (docs/results.md): the GarbageSort recipe's settings otherwise.
    base = _garbage_pretrain()
    model = dataclasses.replace(base["model"], state_ignore=())
    return {**base, "model": model, "success_only": False}


def _garbage_pixels_pretrain() -> dict[str, Any]:
    # Not yet measured (docs/results.md): the GarbageSort recipe's settings on the camera's network, with
    # nothing masked (a 16-value state holds only what the arm knows of itself).
    base = _garbage_pretrain()
    return {**base, "model": _pixels_model(support_tau=0.3, normalize_state=True, normalize_instruction=True)}


def _metaworld_qtransformer() -> dict[str, Any]:
    # Chosen on MT10 from pretraining's own evaluation starts (seed 0, 20 episodes per task), never the
    # report starts: 6,000 steps 90.5%, 12,000 steps 95.5% (docs/notes/2026-12-06-metaworld.md).
    return dict(
        model=_small_model(support_tau=0.3, normalize_state=True, normalize_instruction=True),
        loss=LossConfig(behavior_weight=10.0),
        optim=OptimConfig(lr=1e-3, warmup_steps=100, lr_schedule="cosine"),
        steps=12_000,
        batch_size=128,
    )


def _metaworld_filtered_bc() -> dict[str, Any]:
    # The measured best on MT10 (3 seeds, Meta-World's convention; docs/results.md): behaviour cloning
    # on the successful episodes, 97.3% [96.4, 98.0], against 93.8% [92.5, 94.9] for the Q-Transformer
    # (_metaworld_qtransformer) on the same data, network and steps.
    base = _metaworld_qtransformer()
    return {
        **base,
        "method": "bc",
        "success_only": True,
        "model": dataclasses.replace(base["model"], support_tau=0.0),
    }


def _metaworld_finetune(env: str) -> Callable[[], dict[str, Any]]:
    # Not yet measured on Meta-World (docs/results.md): Navigate's fine-tuning settings.
    def settings() -> dict[str, Any]:
        base = FinetuneArgs()
        return dict(
            env=env,
            utd=1.0,
            returns=ReturnOverrides(timeout_is_failure=True),
            optim=dataclasses.replace(base.optim, lr=3e-4),
            eval_every=2000,
            eval_episodes=40,
        )

    return settings


METAWORLD_DATAGEN_STEPS = 200
"""Time limit of recorded Meta-World episodes, so a stalled or misdirected attempt does not log 500 steps
(Meta-World's scripted policies finish every MT10 task in 35-250 steps). Evaluation and practice keep
Meta-World's 500."""


def _metaworld(env: str, episodes: int, pretrain: Callable[[], dict[str, Any]]) -> Recipe:
    return Recipe(
        name=env,
        env=env,  # type: ignore[arg-type]  # one of the Meta-World names of EnvName
        observation="state",
        oracle="Meta-World's standard state: object and goal positions",
        datagen=dict(episodes=episodes, max_episode_steps=METAWORLD_DATAGEN_STEPS),
        pretrain=pretrain,
        finetune=_metaworld_finetune(env),
    )


TEAM_SHARES: dict[str, float] = dict(expert_frac=0.1, noisy_frac=0.4, halted_frac=0.2, failed_frac=0.3)
"""The ``*_mixed`` recipes' sources: 10% demonstrations, 40% weak attempts, 20% stalls, 30% wrong goals."""


def _team_data(
    base: Recipe, pretrain: Callable[[], dict[str, Any]], oracle: str | None = None, **datagen: Any
) -> Recipe:
    """``base`` on a robot team's data (``TEAM_SHARES``; docs/dataset-format.md: the sources and the
    success rate of each): recipe ``<base>_mixed``, with ``datagen`` (the weak attempts' noise) on top
    and ``oracle`` in place of the base's when given."""
    return dataclasses.replace(
        base,
        name=f"{base.name}_mixed",
        oracle=base.oracle if oracle is None else oracle,
        datagen={**base.datagen, **TEAM_SHARES, **datagen},
        pretrain=pretrain,
    )


_NAVIGATE = Recipe(
    name="navigate",
    env="navigate",
    observation="state",
    oracle="landmark positions in the state",
    datagen=dict(episodes=1500, control_hz=4.0),
    pretrain=_navigate_pretrain,
    finetune=_navigate_finetune,
)
_GARBAGE_SORT = Recipe(
    name="garbage_sort",
    env="garbage_sort",
    observation="state",
    oracle="object and bin poses in the state; reads only the values the scripted expert acts on "
    "(envs.garbage_sort.EXPERT_IGNORES masked)",
    datagen=dict(episodes=20_000, start_jitter=0.1),
    pretrain=_garbage_pretrain,
    finetune=_garbage_finetune,
)


def _camera(base: Recipe, pretrain: Callable[[], dict[str, Any]], **datagen: Any) -> Recipe:
    """``base`` recorded as a 48 px camera image and the robot's own state: recipe ``<base>_pixels``,
    which reads nothing a robot does not have; ``datagen`` (the camera, the size) on top of the base's."""
    return dataclasses.replace(
        base,
        name=f"{base.name}_pixels",
        observation="pixels",
        oracle=None,
        datagen={**base.datagen, "observation": "pixels", "image_size": 48, **datagen},
        pretrain=pretrain,
    )


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        _NAVIGATE,
        # Chosen on the tuning landmark (docs/notes/2026-12-05-navigate-pixels.md): the onboard camera
        # (over the overhead one: 77.5% against 47.5% on the pretraining tasks, seed 0) and four times the
        # state recipe's episodes (a network that reads pixels memorises 1,500 worlds: 37% against 47.5%).
        _camera(_NAVIGATE, _navigate_pixels_pretrain, camera="onboard", episodes=6000),
        _team_data(_NAVIGATE, _navigate_mixed_pretrain, noise=1.0, epsilon=0.5),
        _GARBAGE_SORT,
        _camera(_GARBAGE_SORT, _garbage_pixels_pretrain),
        # Pick-and-place fails under Navigate's noise, so the weak attempts are gentler.
        _team_data(
            _GARBAGE_SORT,
            _garbage_mixed_pretrain,
            "object and bin poses in the state",
            noise=0.3,
            epsilon=0.1,
        ),
        _metaworld("metaworld_mt10", 2000, _metaworld_filtered_bc),
        # MT50 is not yet measured: MT10's settings on five times the episodes (200 per task, as MT10).
        _metaworld("metaworld_mt50", 10_000, _metaworld_filtered_bc),
        # ML10 pretrains the Q-Transformer: fine-tuning on its test tasks needs a critic to practise with.
        _metaworld("metaworld_ml10", 2000, _metaworld_qtransformer),
    )
}
"""Every recipe by name. An env's default recipe has the env's name."""


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    return RECIPES[name]


def datagen_args(recipe: str, **overrides: Any) -> DatagenArgs:
    r = get_recipe(recipe)
    return DatagenArgs(**{"env": r.env, "recipe": r.name, **r.datagen, **overrides})


def pretrain_args(recipe: str, dataset: str, **overrides: Any) -> PretrainArgs:
    r = get_recipe(recipe)
    return PretrainArgs(**{"dataset": dataset, "recipe": r.name, **r.pretrain(), **overrides})


def finetune_args(recipe: str, **overrides: Any) -> FinetuneArgs:
    r = get_recipe(recipe)
    return FinetuneArgs(**{"recipe": r.name, **r.finetune(), **overrides})


def dataset_recipe(root: str) -> str | None:
    """The recipe a dataset was generated with (``meta/datagen.json``), None when it records none."""
    import json
    from pathlib import Path

    path = Path(root, "meta", "datagen.json")
    if not path.exists():
        return None
    name = json.loads(path.read_text()).get("recipe")
    return name if name in RECIPES else None


def _flag(argv: list[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv`` (the last one wins), else None."""
    found = None
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif a.startswith(name + "="):
            found = a.split("=", 1)[1]
    return found


def dataset_env(root: str) -> str | None:
    """The env a dataset was generated in (None when it has no readable metadata or several envs)."""
    from pathlib import Path

    if not Path(root, "meta", "info.json").exists():
        return None
    from qtransformer.dataset import dataset_meta

    return dataset_meta(root)["env"]


SIZE_FLAGS = ("--preset", "--episodes", "--transitions")
"""``qt datagen`` flags that set the dataset's size; one given on the command line replaces the recipe's."""


def _matching(name: str, env: str | None, what: str) -> Recipe:
    """The recipe ``name``, which must be one of ``env`` (a recipe of another env would set what that env
    does not have, e.g. GarbageSort's state mask on Navigate's state)."""
    r = get_recipe(name)
    if env is not None and r.env != env:
        raise ValueError(f"recipe {name!r} is for the {r.env} env, but {what} is {env}")
    return r


def cli_defaults(command: str, argv: list[str]) -> Any | None:
    """The recipe's arguments for ``qt <command> argv`` (the defaults tyro shows and parses against), or
    None where no recipe applies (an env without one, a command without recipes, a missing dataset)."""
    name = _flag(argv, "--recipe")
    if command == "pretrain":
        dataset = _flag(argv, "--dataset")
        env = dataset_env(dataset) if dataset is not None else None
        if name is not None:
            _matching(name, env, f"the dataset {dataset}'s env")
        if dataset is None:
            return None
        name = name or dataset_recipe(dataset) or env
        return pretrain_args(name, dataset) if name is not None and name in RECIPES else None
    if command in ("datagen", "finetune"):
        env = _flag(argv, "--env")
        if name is not None:
            _matching(name, env, "--env")  # an unknown name is an error, not a silent fall back
        pixels = f"{env}_pixels"
        if (
            name is None
            and command == "datagen"
            and _flag(argv, "--observation") == "pixels"
            and pixels in RECIPES
        ):
            name = pixels  # the env's camera recipe: its image size and what it was measured with
        name = name or env or "garbage_sort"
        if name not in RECIPES:
            return None
        if command == "finetune":
            return finetune_args(name)
        sized = any(_flag(argv, f) is not None for f in SIZE_FLAGS)
        skip = {f.lstrip("-") for f in SIZE_FLAGS} if sized else set()
        r = get_recipe(name)
        return DatagenArgs(env=r.env, recipe=r.name, **{k: v for k, v in r.datagen.items() if k not in skip})
    return None
