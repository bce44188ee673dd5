"""What the fine-tuning curves of a protocol run say: per task, the mean curve over seeds, the collapse
check and the steps to 50% and 90%.

    python -m research.finetune_curves --runs runs/protocol/navigate/ft_6000 --png docs/img/curves.png

``--runs`` holds one run directory per task and seed, named ``<task with : as _>_s<seed>`` (as
``research/navigate_finetune.sh`` makes them), each with the ``curve.json`` that ``qt finetune``
writes (success on the curve's fixed evaluation starts, the same at every point). Per task it reports
each seed's zero-shot and last point, the lowest point after ``--settle`` steps against zero-shot (the
protocol's "no collapse": never more than 10 points below), and the env steps of the first point at or
above 50% and 90% (None: never). The curve's starts are few (the recipe's 40) and are where settings
are chosen, so the figures to report are ``qt evaluate``'s on the report starts; these are for the
shape of the curve. Prints one JSON object last.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

RUN_NAME = re.compile(r"^(?P<task>.+)_s(?P<seed>\d+)$")


def first_at(curve: list[dict[str, Any]], level: float) -> int | None:
    """Env steps of the first point at or above ``level`` (None if none is)."""
    return next((int(p["env_steps"]) for p in curve if p["success_rate"] >= level - 1e-9), None)


def summarise(curve: list[dict[str, Any]], settle: int) -> dict[str, Any]:
    """One run's curve: zero-shot, last point, the lowest point after ``settle`` steps and its drop below
    zero-shot (positive: below), and the steps to 50% and 90%."""
    if not curve or curve[0]["env_steps"] != 0:
        raise ValueError("a fine-tuning curve starts with its zero-shot point at env step 0")
    zero = float(curve[0]["success_rate"])
    later = [float(p["success_rate"]) for p in curve if p["env_steps"] >= settle]
    lowest = min(later) if later else None
    return {
        "zero_shot": zero,
        "last": float(curve[-1]["success_rate"]),
        "last_env_steps": int(curve[-1]["env_steps"]),
        "lowest_after_settle": lowest,
        "drop_below_zero_shot": None if lowest is None else round(zero - lowest, 4),
        "steps_to_50": first_at(curve, 0.5),
        "steps_to_90": first_at(curve, 0.9),
    }


def task_of(name: str) -> str:
    """The task id whose run-directory spelling (``:`` as ``_``) is ``name``."""
    from envs import ENV_IDS, tasks

    for env in ENV_IDS:
        for t in tasks.select_tasks(env, "all"):
            if t.replace(":", "_") == name:
                return t
    raise ValueError(f"no task of {list(ENV_IDS)} is spelled {name!r} in a run directory's name")


def collect(runs: Path) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """task -> seed -> curve, from the run directories under ``runs``."""
    found: dict[str, dict[int, list[dict[str, Any]]]] = defaultdict(dict)
    for d in sorted(p for p in runs.iterdir() if p.is_dir()):
        m = RUN_NAME.match(d.name)
        if m is None or not (d / "curve.json").is_file():
            continue
        task = task_of(m["task"])
        found[task][int(m["seed"])] = json.loads((d / "curve.json").read_text())
    if not found:
        raise ValueError(f"no <task>_s<seed>/curve.json run directories under {runs}")
    return dict(found)


def plot(curves: dict[str, dict[int, list[dict[str, Any]]]], path: Path, title: str) -> None:
    from scripts.plots import plot_success_curves

    series = {}
    for task, by_seed in curves.items():
        # Points land a few steps past the schedule (an episode ends after it): bin them by 500.
        binned: dict[int, list[float]] = defaultdict(list)
        for c in by_seed.values():
            for p in c:
                binned[int(p["env_steps"]) // 500 * 500].append(float(p["success_rate"]))
        series[f"{task} ({len(by_seed)} seeds)"] = [(s, float(np.mean(v))) for s, v in sorted(binned.items())]
    plot_success_curves(series, path, "environment steps of online fine-tuning", title, legend_below=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", required=True, help="directory of <task>_s<seed> run directories")
    p.add_argument("--settle", type=int, default=2000, help="env steps after which no collapse is allowed")
    p.add_argument("--png", default=None, help="write the mean curve per task here")
    p.add_argument("--title", default="fine-tuning, mean over seeds (curve starts)")
    args = p.parse_args(argv)
    curves = collect(Path(args.runs))
    out: dict[str, Any] = {}
    for task, by_seed in curves.items():
        per_seed = {s: summarise(c, args.settle) for s, c in sorted(by_seed.items())}
        drops = [
            r["drop_below_zero_shot"] for r in per_seed.values() if r["drop_below_zero_shot"] is not None
        ]
        out[task] = {
            "seeds": per_seed,
            "zero_shot_mean": round(float(np.mean([r["zero_shot"] for r in per_seed.values()])), 4),
            "last_mean": round(float(np.mean([r["last"] for r in per_seed.values()])), 4),
            "largest_drop_below_zero_shot": max(drops) if drops else None,
        }
    if args.png:
        plot(curves, Path(args.png), args.title)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
