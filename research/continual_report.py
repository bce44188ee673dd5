"""The figures of a continual-learning experiment (``research/navigate_continual.sh``): for each variant,
the forgetting matrix averaged over the training seeds (JSON and PNG) and the summary entries.

    python -m research.continual_report --runs runs/protocol/navigate --env-steps 6000 --variants practice off

Reads ``<runs>/continual_<env-steps>/<variant>_s<seed>/continual.json`` (``qt finetune --tasks``) of
every finished seed. Entries, from the report starts each run scored its rows on:
- ``continual-<env>-<variant>-own-stage``: each new task right after its own stage (what was learned);
- ``continual-<env>-<variant>-final-new``: the new tasks after the last stage (what was kept);
- ``continual-<env>-<variant>-final-pretraining``: the pretraining tasks after the last stage;
- ``continual-<env>-pretrained-pretraining``: the pretrained policies on the pretraining tasks (the
  reference of the line above; the same for every variant).
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from finetune.continual import forgetting_matrix, plot_matrix
from pretrain.evaluate import (
    SUMMARY_PATH,
    env_labels,
    git_commit,
    protocol_gaps,
    record_entry,
    success_stats,
)
from qtransformer.dataset import write_json

LABELS = {
    "practice": "continual, earlier practice replayed",
    "off": "continual, naive (no replay of earlier practice)",
    "practice+support": "continual, earlier practice replayed as data (support regulariser)",
}


@dataclass
class ReportArgs:
    runs: str
    """Directory holding ``continual_<env-steps>/``."""
    env_steps: int
    """Practice per stage (environment steps)."""
    variants: tuple[str, ...] = ("practice", "off")
    """``--continual.replay`` values run."""
    command: str = "bash research/navigate_continual.sh"
    """The command that made the runs (stored with each entry)."""
    summary: str = SUMMARY_PATH
    img_dir: str = "docs/img"
    json_dir: str = "docs/results"


def finished_runs(root: Path, variant: str) -> list[dict[str, Any]]:
    """The bookkeeping of every seed of ``variant`` that finished all its stages, in seed order."""
    states = []
    name = re.compile(rf"{re.escape(variant.replace('+', '_'))}_s\d+")
    for path in sorted(root.glob("*/continual.json")):
        state = json.loads(path.read_text())
        if not name.fullmatch(path.parent.name) or state["continual"]["replay"] != variant:
            continue  # another variant ("practice_support_s0" is not a seed of "practice")
        if state["stages_done"] == len(state["tasks"]) and len(state["rows"]) == len(state["tasks"]) + 1:
            states.append(state)
    return sorted(states, key=lambda s: s["seed"])


def pretraining_tasks(state: dict[str, Any]) -> list[str]:
    return [t for t in state["rows"][0]["successes"] if t not in state["tasks"]]


def mean_matrix(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' matrices cell by cell: the mean, and each seed's."""
    per_seed = [forgetting_matrix(s, pretraining_tasks(s)) for s in states]
    first = per_seed[0]
    cells = [
        [statistics.fmean(m["success"][i][j] for m in per_seed) for j in range(len(row))]
        for i, row in enumerate(first["success"])
    ]
    keys = {k for m in per_seed for k in m["retained"]}
    # A seed whose task failed every episode right after its own stage has no ratio for it.
    retained = {k: statistics.fmean(m["retained"][k] for m in per_seed if k in m["retained"]) for k in keys}
    return {
        **{k: first[k] for k in ("tasks", "rows", "columns", "episodes")},
        "success": cells,
        "retained": retained,
        "seeds": [s["seed"] for s in states],
        "per_seed": [
            {"seed": s["seed"], "success": m["success"], "retained": m["retained"]}
            for s, m in zip(states, per_seed)
        ],
    }


def _entry(
    name: str,
    env: str,
    tasks: list[str],
    split: str,
    method: str,
    env_steps: int,
    outcomes: dict[str, list[tuple[list[bool], list[int]]]],
    args: ReportArgs,
    note: str,
) -> dict[str, Any]:
    """An entry of the summary file from ``outcomes[task][seed] = (successes, lengths)``."""
    n_seeds = len(next(iter(outcomes.values())))
    overall = success_stats(
        [[x for t in tasks for x in outcomes[t][s][0]] for s in range(n_seeds)],
        [[x for t in tasks for x in outcomes[t][s][1]] for s in range(n_seeds)],
    )
    gaps = protocol_gaps(overall["episodes"] // n_seeds, n_seeds)
    return {
        "name": name,
        **env_labels(env),
        "tasks": tasks,
        "split": split,
        "method": method,
        "observation": "state",
        "env_steps": env_steps,
        "seeds": n_seeds,
        **overall,
        "protocol": not gaps,
        "protocol_gaps": gaps,
        "oracle": True,
        "note": note,
        "per_task": {
            t: success_stats([o[0] for o in outcomes[t]], [o[1] for o in outcomes[t]]) for t in tasks
        },
        "command": args.command,
        "commit": git_commit(),
    }


def _outcomes(
    states: list[dict[str, Any]], tasks: list[str], stage: int | None
) -> dict[str, list[tuple[list[bool], list[int]]]]:
    """Every seed's episodes of each task in the row after ``stage`` (None: after the task's own stage)."""

    def row(s: dict[str, Any], t: str) -> dict[str, Any]:
        return s["rows"][s["tasks"].index(t) + 1 if stage is None else stage]

    return {t: [(row(s, t)["successes"][t], row(s, t)["lengths"][t]) for s in states] for t in tasks}


def report(args: ReportArgs) -> dict[str, Any]:
    root = Path(args.runs) / f"continual_{args.env_steps}"
    out: dict[str, Any] = {}
    reference: list[dict[str, Any]] = []
    for variant in args.variants:
        states = finished_runs(root, variant)
        if not states:
            print(f"{variant}: no finished run under {root}")
            continue
        env, tasks = states[0]["env"], list(states[0]["tasks"])
        if any(s["tasks"] != tasks or s["env"] != env for s in states):
            raise ValueError(f"the runs of {variant} under {root} learned different sequences")
        for s in states:
            s["rows"] = sorted(s["rows"], key=lambda r: r["stage"])
        pre = pretraining_tasks(states[0])
        m = mean_matrix(states)
        slug = variant.replace("+", "_")
        stem = f"{env}_continual_{slug}"
        write_json(Path(args.json_dir) / f"{stem}.json", m)
        plot_matrix(
            m,
            Path(args.img_dir) / f"{stem}.png",
            f"{env}, {LABELS.get(variant, variant)}: success (%), mean of {len(states)} seed(s)",
        )
        sequence = " -> ".join(tasks)
        base = (
            f"{sequence}, {args.env_steps} env steps of the recipe's practice each, from the pretrained seeds "
            f"({LABELS.get(variant, variant)}). Oracle input: the state holds every landmark's exact position."
        )
        last = len(tasks)
        method = f"continual ({variant})"
        entries = [
            _entry(
                f"continual-{env}-{slug}-own-stage",
                env,
                tasks,
                "test",
                method,
                args.env_steps,
                _outcomes(states, tasks, None),
                args,
                "Each new task scored right after its own stage. " + base,
            ),
            _entry(
                f"continual-{env}-{slug}-final-new",
                env,
                tasks,
                "test",
                method,
                args.env_steps * last,
                _outcomes(states, tasks, last),
                args,
                "The new tasks scored after the last stage. " + base,
            ),
        ]
        if pre:
            entries.append(
                _entry(
                    f"continual-{env}-{slug}-final-pretraining",
                    env,
                    pre,
                    "train",
                    method,
                    args.env_steps * last,
                    _outcomes(states, pre, last),
                    args,
                    "The pretraining tasks scored after the last stage. " + base,
                )
            )
            # The pretrained policies' row is the same in every variant of a seed: taken from the
            # variant with the most finished seeds.
            if len(states) > len(reference):
                reference = states
        for e in entries:
            record_entry(args.summary, e)
        out[variant] = {"matrix": m, "entries": [e["name"] for e in entries]}
        print(
            json.dumps(
                {
                    "variant": variant,
                    "seeds": m["seeds"],
                    "rows": m["rows"],
                    "columns": m["columns"],
                    "success": [[round(v, 3) for v in r] for r in m["success"]],
                    "retained": m["retained"],
                }
            )
        )
    if reference:
        env, pre = reference[0]["env"], pretraining_tasks(reference[0])
        entry = _entry(
            f"continual-{env}-pretrained-pretraining",
            env,
            pre,
            "train",
            "pretrained",
            0,
            _outcomes(reference, pre, 0),
            args,
            "The pretrained seeds the continual runs start from, on the pretraining tasks from the same "
            "starts as their continual rows. Oracle input: the state holds every landmark's exact position.",
        )
        record_entry(args.summary, entry)
        out["pretrained"] = entry["name"]
    return out


def main() -> None:
    report(tyro.cli(ReportArgs))


if __name__ == "__main__":
    main()
