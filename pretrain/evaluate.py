"""``qt evaluate``: a checkpoint's greedy success per task, and the evaluation protocol's reported figures.

The protocol (issue #30) in one command: several checkpoints (one per training seed of one
configuration), a task split (``envs.tasks.split_task_ids``: train, tuning or test) or one task, and a
number of episodes per task per checkpoint, all played from the *report starts* (``REPORT_SEED``),
which no training curve ever sees. The result gives, per task and overall, the mean success over
training seeds, their spread, a 95% Wilson interval on the pooled episodes and the mean length of the
successful episodes. Fine-tuned checkpoints, one per held-out task and seed, are each scored on the task
they practised (``own_task_checkpoints``). ``--record NAME`` appends it to ``docs/results/summary.json``, from which
``python -m scripts.results_table`` writes the tables of docs/results.md.

A figure with fewer than ``PROTOCOL_EPISODES`` episodes behind each seed's rate (episodes per task x
tasks: the 20 pretraining tasks of Navigate need 5 each, one held-out task 100) or fewer than
``PROTOCOL_SEEDS`` training seeds is still computed, but marked ``"protocol": false`` with the gaps
named.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shlex
import statistics
import subprocess
import tempfile
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any, Literal

from envs import tasks as task_lists
from envs.common import EnvName
from qtransformer.policy import QTransformerPolicy
from qtransformer.rollout import evaluate

TASK_SEED_STRIDE = 1000
"""``rollout.evaluate`` starts episode ``e`` of its ``i``-th task from ``seed + 1000 * i + e``."""
MAX_EPISODES = TASK_SEED_STRIDE
"""More episodes per task than the stride would replay the next task's starts."""
REPORT_SEED = 200_000
"""First seed of the starts every reported rate is measured on. Task ``i`` of a split plays seeds
``REPORT_SEED + 1000 * i + e`` (``e < episodes <= MAX_EPISODES``), so even GarbageSort's 34 tasks stay
in [200,000, 234,000): below fine-tuning's curve, whose starts are ``finetune.train.EVAL_SEED + e``
(500,000 upward, for any number of curve episodes), and above pretraining's evaluation blocks
(``evaluate_policy``'s 100,000 + 1000 * i + e). Settings chosen on a curve are therefore never scored on
the starts they were chosen on."""
PROTOCOL_EPISODES = 100
"""Episodes behind each training seed's rate (episodes per task x tasks of the split) that a reported
figure needs."""
PROTOCOL_SEEDS = 3
"""Training seeds (checkpoints) that a reported figure needs."""
SUMMARY_PATH = "docs/results/summary.json"
ENTRY_KEYS: tuple[str, ...] = (
    "name",
    "env",
    "tasks",
    "split",
    "method",
    "observation",
    "env_steps",
    "seeds",
    "episodes",
    "success_mean",
    "ci95",
    "mean_steps_to_success",
    "command",
    "commit",
)
"""Keys every entry of the summary file has (docs/results.md explains them)."""


@dataclass
class EvalArgs:
    """Evaluate checkpoints (``<run>/policy``, one per training seed) on a task split from the report starts."""

    checkpoint: tuple[str, ...]
    """Inference checkpoint directories (model.safetensors + config.json), one per training seed of the
    same configuration; the figure is their mean, with the spread over them. Checkpoints fine-tuned on
    the tasks of a split (one per task and seed) are each scored on their own task."""
    env: EnvName | None = None
    """Env to evaluate in; defaults to the one recorded in the checkpoints."""
    split: Literal["train", "tuning", "test"] | None = None
    """Task split (default train): the pretraining tasks, the held-out task settings are chosen on, or
    the other held-out tasks, run only for what is reported."""
    task: str | None = None
    """One task id to evaluate instead of a split."""
    paraphrases: Literal["train", "heldout"] = "train"
    """Which phrasings of the instructions to give."""
    episodes: int = PROTOCOL_EPISODES
    """Episodes per task per checkpoint (at most 1000). Below 100 behind each seed's rate (episodes x
    the split's tasks) the result is marked as not protocol."""
    out: str | None = None
    """Write the result JSON here as well."""
    record: str | None = None
    """Record the result under this name in ``summary`` (an entry of that name is replaced)."""
    summary: str = SUMMARY_PATH
    """Summary file that ``record`` writes to."""
    method: str | None = None
    """Method label of the entry; default: ``meta["method"]``, else "finetuned" for a checkpoint that
    records online env steps and "pretrained" otherwise."""
    observation: Literal["state", "pixels"] | None = None
    """Observation label; default: "pixels" when the model reads images and its env gave no poses
    (``observation="pixels"``, recorded with the checkpoint), else "state"."""
    env_steps: int | None = None
    """Online environment steps behind the checkpoints; default: their fine-tuning budget
    (``meta["env_steps_budget"]``, else ``meta["env_steps"]``), else 0."""
    oracle: bool = False
    """Mark the entry as reading privileged state (values a robot would not measure, e.g. exactly the
    ones the scripted expert acts on)."""
    note: str | None = None
    """Free text stored with the entry (what the figure is, what it is not)."""
    command: str | None = None
    """Command line that reproduces the figure; default: this ``qt evaluate`` line."""

    def __post_init__(self) -> None:
        if isinstance(self.checkpoint, (str, os.PathLike)):
            raise ValueError(
                f"checkpoint must be a tuple of directories, got the single path {self.checkpoint!r}"
            )
        if not self.checkpoint:
            raise ValueError("give at least one --checkpoint")
        if len(set(self.checkpoint)) != len(self.checkpoint):
            raise ValueError(f"--checkpoint lists a directory twice: {list(self.checkpoint)}")
        if not 1 <= self.episodes <= MAX_EPISODES:
            raise ValueError(
                f"episodes must be in [1, {MAX_EPISODES}] (the starts of one task are {TASK_SEED_STRIDE} "
                f"seeds apart), got {self.episodes}"
            )
        if self.record is not None and not self.record.strip():
            raise ValueError("--record needs a non-empty name")


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a success probability from ``successes`` of ``n`` trials.

    Unlike the normal approximation it stays inside [0, 1] and is not of zero width at 0 or n successes.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def report_seeds(n_tasks: int, episodes: int) -> range:
    """Every seed an evaluation of ``n_tasks`` tasks x ``episodes`` on the report starts may play."""
    if n_tasks < 1:
        raise ValueError(f"n_tasks must be >= 1, got {n_tasks}")
    if not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(f"episodes must be in [1, {MAX_EPISODES}], got {episodes}")
    return range(REPORT_SEED, REPORT_SEED + TASK_SEED_STRIDE * (n_tasks - 1) + episodes)


def task_ids(env_name: str, split: str) -> list[str]:
    """Task ids of a split ("train" | "tuning" | "test") of ``env_name``."""
    from envs import tasks

    return list(tasks.split_task_ids(env_name, split))


def split_of(env_name: str, task: str) -> str:
    """The split ``task`` belongs to; a ValueError naming the known tasks for an unknown one."""
    from envs import tasks

    for split in tasks.SPLITS:
        if task in tasks.split_task_ids(env_name, split):
            return split
    raise ValueError(
        f"unknown {env_name} task {task!r}; choose from {list(tasks.select_tasks(env_name, 'all'))}"
    )


def evaluate_policy(
    policy: QTransformerPolicy,
    env_name: str,
    tasks: list[str],
    episodes: int,
    paraphrases: tuple[str, ...] = ("train",),
    seed: int = 100_000,
    env_module: str = "envs",
) -> dict[str, Any]:
    """Success per task for each paraphrase split; ``success_rate`` is the first split's figure.

    The env is built with the settings the policy was trained at (``policy.meta["env_kwargs"]``, e.g.
    Navigate's control rate), by ``env_module``'s ``make_env`` (tests pass a fake).
    """
    envs = importlib.import_module(env_module)
    image_size = policy.model.cfg.image_size
    env_kwargs = dict(policy.meta.get("env_kwargs") or {}) if policy.meta.get("env") == env_name else {}
    results: dict[str, Any] = {}
    for split in paraphrases:
        results[split] = evaluate(
            policy,
            partial(
                envs.make_env, env_name, image_size=image_size, paraphrases=split, tasks="all", **env_kwargs
            ),
            tasks,
            episodes,
            seed=seed,
        )
    results["success_rate"] = results[paraphrases[0]]["success_rate"]
    return results


def success_stats(successes: list[list[bool]], lengths: list[list[int]]) -> dict[str, Any]:
    """Statistics of one figure from each training seed's episodes (``successes[s][e]``, ``lengths[s][e]``).

    ``success_mean`` is the mean of the seeds' rates, ``success_spread`` their min, max and sample std
    (None for one seed), ``ci95`` the Wilson interval on all episodes pooled, ``mean_steps_to_success``
    the mean length of the successful episodes (None if none succeeded).
    """
    rates = [sum(s) / len(s) for s in successes]
    k, n = sum(sum(s) for s in successes), sum(len(s) for s in successes)
    steps = [ln for s, ls in zip(successes, lengths, strict=True) for ok, ln in zip(s, ls, strict=True) if ok]
    lo, hi = wilson_interval(k, n)
    return {
        "success_mean": round(statistics.fmean(rates), 4),
        "success_per_seed": [round(r, 4) for r in rates],
        "success_spread": {
            "min": round(min(rates), 4),
            "max": round(max(rates), 4),
            "std": round(statistics.stdev(rates), 4) if len(rates) > 1 else None,
        },
        "successes": k,
        "episodes": n,
        "ci95": [round(lo, 4), round(hi, 4)],
        "mean_steps_to_success": round(statistics.fmean(steps), 2) if steps else None,
    }


def protocol_gaps(episodes_per_seed: int, n_seeds: int, detail: str = "") -> list[str]:
    """What keeps a figure from the protocol (too few episodes behind each seed's rate, too few seeds);
    [] for a protocol figure. ``detail`` goes in front of the episode count's explanation."""
    gaps = []
    if episodes_per_seed < PROTOCOL_EPISODES:
        gaps.append(
            f"{episodes_per_seed} episodes per seed ({detail}the protocol asks for >= {PROTOCOL_EPISODES} "
            "behind each rate)"
        )
    if n_seeds < PROTOCOL_SEEDS:
        gaps.append(f"{n_seeds} training seed(s) (the protocol asks for >= {PROTOCOL_SEEDS})")
    return gaps


def env_labels(env_name: str) -> dict[str, str]:
    """An entry's ``env`` (a benchmark's family, e.g. "metaworld"), and ``benchmark`` where they differ."""
    family = task_lists.suite(env_name)
    return {"env": family} if family == env_name else {"env": family, "benchmark": env_name}


def group_stats(
    env_name: str, successes: dict[str, list[list[bool]]], lengths: dict[str, list[list[int]]]
) -> dict[str, Any]:
    """``success_stats`` per task group of ``env_name`` (Meta-World's difficulty, as its users report
    it) from each task's per-seed episodes; {} for an env without groups."""
    tasks = list(successes)
    n_seeds = len(successes[tasks[0]]) if tasks else 0
    return {
        g: success_stats(
            [[x for t in members for x in successes[t][s]] for s in range(n_seeds)],
            [[x for t in members for x in lengths[t][s]] for s in range(n_seeds)],
        )
        for g, members in task_lists.task_groups(env_name, tasks).items()
    }


def _labels(args: EvalArgs, metas: list[dict[str, Any]], image_sizes: list[int]) -> dict[str, Any]:
    """method / observation / env_steps: the command line's, else what the checkpoints record."""
    found: dict[str, list[str] | list[int]] = {
        "method": [m.get("method") or ("finetuned" if "env_steps" in m else "pretrained") for m in metas],
        # "pixels" only where the state held no poses: a full state beside an image is still "state".
        "observation": [
            "pixels" if s > 0 and (m.get("env_kwargs") or {}).get("observation") == "pixels" else "state"
            for s, m in zip(image_sizes, metas)
        ],
        # A fine-tuning budget where recorded: seeds of one configuration stop a few steps apart.
        "env_steps": [int(m.get("env_steps_budget", m.get("env_steps", 0))) for m in metas],
    }
    out: dict[str, Any] = {}
    for key, values in found.items():
        given = getattr(args, key)
        if given is not None:
            out[key] = given
        elif len(set(values)) > 1:
            raise ValueError(
                f"the checkpoints differ in {key} ({values}): pass seeds of one configuration, or --{key.replace('_', '-')}"
            )
        else:
            out[key] = values[0]
    return out


def command_line(args: EvalArgs) -> str:
    """The ``qt evaluate`` line that reproduces ``args``' figure (fields at their defaults left out)."""
    parts = ["qt", "evaluate", "--checkpoint", *args.checkpoint]
    for f in fields(args):
        value = getattr(args, f.name)
        if f.name in ("checkpoint", "out", "command") or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the tree this module is in, or None outside a git checkout."""
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if res.returncode != 0:
        return None
    return res.stdout.strip() or None


def load_summary(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of a summary file ([] if it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"summary file {path} is not valid JSON: {e}") from e
    if not isinstance(entries, list):
        raise ValueError(
            f"summary file {path} must hold a JSON list of entries, found {type(entries).__name__}"
        )
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"summary file {path}: entry {i} is not an object with a name")
    return entries


def record_entry(path: str | os.PathLike, entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Add ``entry`` to the summary file, replacing the entry of the same name in place; atomic."""
    missing = [k for k in ENTRY_KEYS if k not in entry]
    if missing:
        raise ValueError(f"summary entry lacks {missing}")
    path = Path(path)
    entries = load_summary(path)
    names = [e["name"] for e in entries]
    if entry["name"] in names:
        entries[names.index(entry["name"])] = entry
    else:
        entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temporary file in the same directory and a rename: a reader (or a crash) never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(entries, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return entries


def own_task_checkpoints(practised: list[str | None], tasks: list[str], split: str) -> list[str] | None:
    """The task each checkpoint is scored on when the checkpoints were fine-tuned on the split's tasks.

    ``practised`` is what each checkpoint's metadata records as its fine-tuning task (None: not
    fine-tuned). When every checkpoint practised a task of a split of several tasks, each plays only
    its own task (a policy fine-tuned on one held-out task is not a policy for the others), and every
    task needs the same number of checkpoints, one per training seed: the returned list. When none
    practised a task of the split (pretrained checkpoints; or fine-tuned ones scored on the training
    tasks, to see what practice cost them), every checkpoint plays every task: None.
    """
    inside = [t is not None and t in tasks for t in practised]
    if any(inside) and not all(inside):
        outside = sorted({str(t) for t, ok in zip(practised, inside, strict=True) if not ok})
        raise ValueError(
            f"some checkpoints were fine-tuned on the {split} tasks and others not (practised: {outside}): "
            "score seeds of one configuration, one checkpoint per task and seed"
        )
    if len(tasks) < 2 or not any(inside):
        return None
    counts = {t: practised.count(t) for t in tasks}
    if len(set(counts.values())) > 1:
        raise ValueError(
            f"each {split} task needs the same number of fine-tuned checkpoints (one per training seed), "
            f"got {counts}"
        )
    return [str(t) for t in practised]


def check_seed_order(own: list[str], seeds: list[Any]) -> None:
    """Checkpoints scored on their own tasks form seeds by listing order: the k-th checkpoint of every
    task is training seed k. Where the checkpoints record their seed (``meta["seed"]``), the k-th of
    every task must record the same one, so that a seed's overall figure pools one training seed."""
    by_task: dict[str, list[Any]] = {}
    for task, seed in zip(own, seeds, strict=True):
        by_task.setdefault(task, []).append(seed)
    orders = {tuple(v) for v in by_task.values()}
    if len(orders) > 1 and all(s is not None for s in seeds):
        raise ValueError(
            "list the fine-tuned checkpoints in the same training-seed order for every task, got "
            + ", ".join(f"{t}: {v}" for t, v in by_task.items())
        )


def run_evaluate(args: EvalArgs) -> dict[str, Any]:
    """Play every checkpoint on the report starts; print (and with ``--record``, store) the figure."""
    for ckpt in args.checkpoint:
        if not Path(ckpt, "config.json").is_file():
            raise ValueError(f"checkpoint {ckpt!r} not found: expected a directory with config.json")
    if args.record is not None:
        load_summary(args.summary)  # a malformed summary fails before the rollouts, not after
    policies = [QTransformerPolicy.from_checkpoint(c) for c in args.checkpoint]
    envs_found = {p.meta.get("env") for p in policies}
    env_name = args.env or (envs_found.pop() if len(envs_found) == 1 else None)
    if env_name is None:
        raise ValueError(f"the checkpoints record no single env ({sorted(map(str, envs_found))}): pass --env")
    if args.task is not None:
        split = split_of(env_name, args.task)
        if args.split is not None and args.split != split:
            raise ValueError(f"task {args.task!r} is in the {split} split, not {args.split}")
        tasks = [args.task]
    else:
        split = args.split or "train"
        tasks = task_ids(env_name, split)
    kwargs = [p.meta.get("env_kwargs") or {} for p in policies]
    if any(k != kwargs[0] for k in kwargs):
        raise ValueError(f"the checkpoints were trained at different env settings: {kwargs}")
    labels = _labels(args, [p.meta for p in policies], [p.model.cfg.image_size for p in policies])

    own = own_task_checkpoints([p.meta.get("task") for p in policies], tasks, split)
    if own is not None:
        check_seed_order(own, [p.meta.get("seed") for p in policies])
    successes: dict[str, list[list[bool]]] = {t: [] for t in tasks}
    lengths: dict[str, list[list[int]]] = {t: [] for t in tasks}
    for i, policy in enumerate(policies):
        played = [own[i]] if own is not None else tasks
        # Task i of the split keeps its block of report starts (seed + 1000 * i), whoever plays it.
        first = REPORT_SEED + TASK_SEED_STRIDE * tasks.index(played[0])
        res = evaluate_policy(policy, env_name, played, args.episodes, (args.paraphrases,), first)
        for t in played:
            successes[t].append(res[args.paraphrases]["successes"][t])
            lengths[t].append(res[args.paraphrases]["lengths"][t])
    n_seeds = len(successes[tasks[0]])
    # Overall: each seed's episodes of every task together (equal counts, so its rate is the task mean).
    overall = success_stats(
        [[x for t in tasks for x in successes[t][s]] for s in range(n_seeds)],
        [[x for t in tasks for x in lengths[t][s]] for s in range(n_seeds)],
    )
    gaps = protocol_gaps(args.episodes * len(tasks), n_seeds, f"{args.episodes} per task; ")
    result: dict[str, Any] = {
        **env_labels(env_name),
        "tasks": tasks,
        "split": split,
        **labels,
        "seeds": n_seeds,
        "episodes_per_task": args.episodes,
        **overall,
        "protocol": not gaps,
        "protocol_gaps": gaps,
        "oracle": args.oracle,
        "note": args.note,
        "paraphrases": args.paraphrases,
        "first_seed": REPORT_SEED,
        "checkpoints": list(args.checkpoint),
        "each_checkpoint_on_its_own_task": own is not None,
        "per_task": {t: success_stats(successes[t], lengths[t]) for t in tasks},
    }
    groups = group_stats(env_name, successes, lengths)
    if groups:
        result["per_group"] = groups
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    if args.record is not None:
        entry = {
            "name": args.record,
            **result,
            "command": args.command or command_line(args),
            "commit": git_commit(),
        }
        record_entry(args.summary, entry)
        result = entry
    return result
