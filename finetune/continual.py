"""Continual learning: ``qt finetune --tasks A B C`` learns new instructions one after another.

Each stage is a whole ``qt finetune`` run on one task (``<out>/stage<k>_<task>/``), started from the
previous stage's weights, with the pretraining data as prior data and, by default, the earlier stages'
practice kept in the replay within a budget (``ContinualConfig``). After the pretrained policy and after
each stage, the policy is scored from the report starts on every task of the sequence and on the
pretraining tasks: the rows of the forgetting matrix (task x stage), written as ``matrix.json`` and
``matrix.png``.

``<out>/continual.json`` is the bookkeeping, rewritten atomically after every finished stage and every
evaluation row. A run stopped anywhere (SIGKILL included) continues with ``--resume``: a finished stage
is not run again, a stage stopped half-way resumes from its own snapshot and stored episodes.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from qtransformer.dataset import write_json

if TYPE_CHECKING:
    from finetune.train import FinetuneArgs

PRETRAINING = "pretraining"
"""The matrix's row for the mean over the env's pretraining (train split) tasks."""


@dataclass
class ContinualConfig:
    """What a sequence of new instructions (``--tasks``) keeps from one stage to the next."""

    replay: Literal["off", "practice", "practice+support"] = "practice"
    """What each stage keeps of the earlier stages' practice: nothing (naive sequential fine-tuning);
    their episodes beside the prior data, trained as practice is (the default); or beside the prior data
    as data, so that the support head also learns their successes and the conservative term covers them
    (the behaviour/support regulariser on earlier data)."""
    budget: int = 100_000
    """Transitions of earlier practice kept, shared equally among the earlier stages (each keeps its
    latest episodes)."""
    eval_episodes: int = 100
    """Report-start episodes per task of the sequence, after the pretrained policy and each stage."""
    pretrain_eval_episodes: int = 5
    """Report-start episodes per pretraining task at the same points (Navigate's 20 tasks: 100)."""

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"continual.budget must be >= 1 transition, got {self.budget}")
        if self.eval_episodes < 1 or self.pretrain_eval_episodes < 0:
            raise ValueError("continual.eval_episodes must be >= 1 and pretrain_eval_episodes >= 0")


def stage_dir(out: Path, k: int, task: str) -> Path:
    """Run directory of stage ``k`` (1-based) practising ``task``."""
    return out / f"stage{k}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', task)}"


UNCHECKED = (
    "out",
    "resume",
    "progress",
    "tasks",
    "continual",
    "env",
    "pretrained",
    "prior_data",
    "env_steps",
    "seed",
)
"""Arguments left out of the ``practice`` record: where the run is stored and how it is watched, and
those the bookkeeping holds under their own names."""


def _state(args: FinetuneArgs) -> dict[str, Any]:
    return {
        "env": args.env,
        "tasks": list(args.tasks),
        "pretrained": args.pretrained,
        "prior_data": args.prior_data,
        "env_steps_per_stage": args.env_steps,
        "seed": args.seed,
        "continual": dataclasses.asdict(args.continual),
        # Every other setting of the stages' practice (loss, optimiser, exploration, ...), as JSON holds it.
        "practice": json.loads(
            json.dumps({k: v for k, v in dataclasses.asdict(args).items() if k not in UNCHECKED})
        ),
        "stages_done": 0,
        "rows": [],
    }


def load_state(args: FinetuneArgs) -> dict[str, Any]:
    """The run's bookkeeping: a new one, or (``--resume``) the stored one, which must describe the same
    sequence."""
    path = Path(args.out) / "continual.json"
    fresh = _state(args)
    if not path.exists():
        return fresh
    if not args.resume:
        raise ValueError(f"{path} exists: pass --resume to continue that run, or choose another --out")
    stored = json.loads(path.read_text())
    for key in ("env", "tasks", "pretrained", "prior_data", "env_steps_per_stage", "seed", "continual"):
        if stored.get(key) != fresh[key]:
            raise ValueError(
                f"--resume: {path} was made with {key}={stored.get(key)!r}, not {fresh[key]!r}; "
                "resume with the same settings, or choose another --out"
            )
    changed = sorted(
        k for k in fresh["practice"] if stored.get("practice", {}).get(k) != fresh["practice"][k]
    )
    if "practice" in stored and changed:
        raise ValueError(
            f"--resume: {path} was made with other practice settings ({', '.join(changed)}); "
            "resume with the same settings, or choose another --out"
        )
    return stored


def report_first_seed(task_lists: Any, env: str, task: str) -> int:
    """First report start of ``task``: ``qt evaluate``'s block for it (its index in its split), so that a
    cell of the matrix is played from the same starts as that task's entries in the summary file."""
    from pretrain.evaluate import REPORT_SEED, TASK_SEED_STRIDE

    for split in ("train", "tuning", "test"):
        ids = list(task_lists.split_task_ids(env, split))
        if task in ids:
            return REPORT_SEED + TASK_SEED_STRIDE * ids.index(task)
    raise ValueError(f"task {task!r} is in no split of {env}")


def pretraining_tasks(task_lists: Any, args: FinetuneArgs) -> list[str]:
    """The env's pretraining tasks the matrix averages: its train split, less any task of the sequence
    (which has its own row)."""
    return [t for t in task_lists.split_task_ids(args.env, "train") if t not in args.tasks]


def evaluate_row(policy_dir: str, args: FinetuneArgs, stage: int, env_module: str = "envs") -> dict[str, Any]:
    """One row of the matrix: the policy in ``policy_dir`` on every task of the sequence and on the
    pretraining tasks, each from its own block of report starts; every episode's outcome and length is
    kept."""
    from pretrain.evaluate import evaluate_policy
    from qtransformer.policy import QTransformerPolicy

    task_lists = importlib.import_module(env_module).tasks
    policy = QTransformerPolicy.from_checkpoint(policy_dir)
    plan = [(t, args.continual.eval_episodes) for t in args.tasks]
    if args.continual.pretrain_eval_episodes:
        plan += [(t, args.continual.pretrain_eval_episodes) for t in pretraining_tasks(task_lists, args)]
    successes: dict[str, list[bool]] = {}
    lengths: dict[str, list[int]] = {}
    for task, episodes in plan:
        first = report_first_seed(task_lists, args.env, task)
        res = evaluate_policy(policy, args.env, [task], episodes, seed=first, env_module=env_module)["train"]
        successes[task], lengths[task] = res["successes"][task], res["lengths"][task]
    return {
        "stage": stage,
        "after": "pretrained" if stage == 0 else args.tasks[stage - 1],
        "policy": policy_dir,
        "successes": successes,
        "lengths": lengths,
    }


def forgetting_matrix(state: Mapping[str, Any], pretraining: Sequence[str]) -> dict[str, Any]:
    """Success of every task (rows: the sequence's tasks, then ``PRETRAINING``, the mean over the
    pretraining tasks) after every stage (columns: the pretrained policy, then each stage), from the
    rows stored so far; ``retained[t]``: the final column over the column right after ``t``'s own stage
    (the share of its success a task keeps to the end)."""
    tasks = list(state["tasks"])
    rows = sorted(state["rows"], key=lambda r: r["stage"])
    columns = ["pretrained"] + [f"after {t}" for t in tasks[: len(rows) - 1]]

    def rate(row: Mapping[str, Any], names: Sequence[str]) -> float | None:
        outcomes = [x for t in names for x in row["successes"].get(t, [])]
        return float(np.mean(outcomes)) if outcomes else None

    success = {t: [rate(r, [t]) for r in rows] for t in tasks}
    if pretraining:
        success[PRETRAINING] = [rate(r, pretraining) for r in rows]
    retained: dict[str, float | None] = {}
    for k, t in enumerate(tasks, start=1):
        if k < len(rows) and success[t][k]:
            retained[t] = success[t][-1] / success[t][k]  # type: ignore[operator]
    if pretraining and len(rows) > 1 and success[PRETRAINING][0]:
        retained[PRETRAINING] = success[PRETRAINING][-1] / success[PRETRAINING][0]  # type: ignore[operator]
    return {
        "tasks": tasks,
        "rows": list(success),
        "columns": columns,
        "success": [success[name] for name in success],
        "retained": retained,
        "episodes": {
            "per_task": state["continual"]["eval_episodes"],
            "per_pretraining_task": state["continual"]["pretrain_eval_episodes"],
        },
    }


def plot_matrix(matrix: Mapping[str, Any], path: str | Path, title: str) -> None:
    """The forgetting matrix as a heat map with each cell's success in percent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.array(
        [[np.nan if v is None else 100 * v for v in row] for row in matrix["success"]], dtype=float
    )
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * values.shape[1], 1.2 + 0.55 * values.shape[0]))
    ax.imshow(values, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=10)
    ax.set_xticks(range(values.shape[1]), matrix["columns"], rotation=20, ha="right", fontsize=8)
    ax.set_yticks(range(values.shape[0]), matrix["rows"], fontsize=8)
    ax.set_xlabel("policy after")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def run_continual(args: FinetuneArgs, env_module: str = "envs") -> dict[str, Any]:
    """Learn ``args.tasks`` one after another; returns the bookkeeping with the forgetting matrix."""
    from finetune.builder import refuse_behaviour_cloning
    from finetune.train import run_finetune

    if len(set(args.tasks)) != len(args.tasks):
        raise ValueError(f"--tasks lists a task twice: {list(args.tasks)}")
    if args.pretrained is None or args.init != "pretrained":
        raise ValueError(
            "--tasks (continual learning) chains each stage to the last one's weights from a pretrained "
            "policy: give --pretrained, without --init scratch"
        )
    config = Path(args.pretrained, "config.json")
    if config.is_file():  # before anything is scored (stage 1 would refuse it only after row 0)
        refuse_behaviour_cloning(json.loads(config.read_text()).get("meta", {}), args.pretrained)
    envs = importlib.import_module(env_module)
    known = set(envs.tasks.split_task_ids(args.env, "tuning")) | set(
        envs.tasks.split_task_ids(args.env, "test")
    )
    known |= set(envs.tasks.split_task_ids(args.env, "train"))
    unknown = [t for t in args.tasks if t not in known]
    if unknown:
        raise ValueError(f"--tasks: {unknown} are not tasks of {args.env}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = load_state(args)
    pretraining = pretraining_tasks(envs.tasks, args)

    def save() -> None:
        state["matrix"] = forgetting_matrix(
            state, pretraining if args.continual.pretrain_eval_episodes else []
        )
        write_json(out / "continual.json", state)
        write_json(out / "matrix.json", state["matrix"])
        plot_matrix(
            state["matrix"],
            out / "matrix.png",
            f"{args.env}: success (%) after each stage (replay: {args.continual.replay})",
        )

    def row_done(stage: int) -> bool:
        return any(r["stage"] == stage for r in state["rows"])

    if not row_done(0):
        state["rows"].append(evaluate_row(args.pretrained, args, 0, env_module))
        save()
    previous = args.pretrained
    for k, task in enumerate(args.tasks, start=1):
        run_dir = stage_dir(out, k, task)
        if state["stages_done"] < k:
            earlier = [str(stage_dir(out, j, t)) for j, t in enumerate(args.tasks[: k - 1], start=1)]
            stage_args = dataclasses.replace(
                args,
                task=task,
                tasks=(),
                pretrained=previous,
                out=str(run_dir),
                resume=run_dir.exists(),  # a stage stopped half-way continues from its snapshot
                earlier_practice=tuple(earlier) if args.continual.replay != "off" else (),
            )
            run_finetune(stage_args, env_module=env_module)
            state["stages_done"] = k
            save()
        previous = str(run_dir / "policy")
        if not row_done(k):
            state["rows"].append(evaluate_row(previous, args, k, env_module))
            save()
    if "matrix" not in state:
        save()
    return state
