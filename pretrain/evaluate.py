"""``qt evaluate``: success rate per task of a checkpoint's greedy policy in the MuJoCo envs.

Evaluation seeds are disjoint from data-generation seeds. Training paraphrases and held-out paraphrases
are reported separately, so that generalisation to unseen phrasings is visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qtransformer.policy import QTransformerPolicy
from qtransformer.rollout import evaluate


@dataclass
class EvalArgs:
    """Evaluate a checkpoint directory (``<run>/policy``) in an env."""

    checkpoint: str
    """Inference checkpoint directory (model.safetensors + config.json)."""
    env: Literal["garbage_sort", "navigate"] | None = None
    """Env to evaluate in; defaults to the one recorded in the checkpoint."""
    tasks: Literal["train", "heldout", "all"] = "train"
    """Which task set to evaluate."""
    task: str | None = None
    """One task id to evaluate instead of a task set (a held-out task after fine-tuning on it)."""
    paraphrases: tuple[Literal["train", "heldout"], ...] = ("train", "heldout")
    """Paraphrase splits to report separately."""
    episodes: int = 10
    """Episodes per task and paraphrase split."""
    seed: int = 100_000
    """First evaluation seed (disjoint from data generation)."""
    out: str | None = None
    """Write the results JSON here as well."""


def task_ids(env_name: str, which: str) -> list[str]:
    from envs import tasks

    if which == "train":
        return list(tasks.train_task_ids(env_name))
    if which == "heldout":
        return list(tasks.heldout_task_ids(env_name))
    return list(tasks.train_task_ids(env_name)) + list(tasks.heldout_task_ids(env_name))


def evaluate_policy(
    policy: QTransformerPolicy,
    env_name: str,
    tasks: list[str],
    episodes: int,
    paraphrases: tuple[str, ...] = ("train",),
    seed: int = 100_000,
) -> dict[str, Any]:
    """Success per task for each paraphrase split; ``success_rate`` is the training-paraphrase figure.

    The env is built with the settings the policy was trained at (``policy.meta["env_kwargs"]``, e.g.
    Navigate's control rate).
    """
    import envs

    image_size = policy.model.cfg.image_size
    env_kwargs = dict(policy.meta.get("env_kwargs") or {}) if policy.meta.get("env") == env_name else {}
    results: dict[str, Any] = {}
    for split in paraphrases:
        results[split] = evaluate(
            policy,
            lambda split=split: envs.make_env(
                env_name, image_size=image_size, paraphrases=split, tasks="all", **env_kwargs
            ),
            tasks,
            episodes,
            seed=seed,
        )
    results["success_rate"] = results[paraphrases[0]]["success_rate"]
    return results


def run_evaluate(args: EvalArgs) -> dict[str, Any]:
    policy = QTransformerPolicy.from_checkpoint(args.checkpoint)
    env_name = args.env or policy.meta.get("env")
    if env_name is None:
        raise ValueError("the checkpoint records no env: pass --env garbage_sort|navigate")
    if args.task is None:
        tasks = task_ids(env_name, args.tasks)
    elif args.task in (known := task_ids(env_name, "all")):
        tasks = [args.task]
    else:
        raise ValueError(f"unknown {env_name} task {args.task!r}; choose from {known}")
    results = evaluate_policy(policy, env_name, tasks, args.episodes, args.paraphrases, args.seed)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return results
