"""Online fine-tuning comparison on a held-out task: success against environment steps.

    python -m research.exp_finetune --env navigate --pretrained runs/exp_pretrain/navigate/recipe/policy \\
        --prior-data runs/data/navigate --env-steps 5000 --out runs/exp_finetune/navigate

Every ``qt finetune`` option is accepted under the same name with the same default (``FinetuneArgs``):
together they make the full method's run, which needs ``--pretrained`` and ``--prior-data``. Each
variant takes something away from it; task, budget, update ratio, evaluation and seed stay the same.
``--out`` is the experiment's directory (one run directory per variant under it).

Variants:
  full             pretrained + prior data, APRL on (the full method)
  full_no_aprl     the same with plain exploration (the safety comparison)
  pretrained_only  pretrained, no prior data
  scratch_prior    from scratch, with prior data
  scratch          from scratch, no prior data

From scratch means the pretrained network's architecture (support head included) with new weights.
Every variant practises at the pretrained policy's control rate, those without it included. The
zero-shot success is the first point of every pretrained curve. Writes results.json (per variant: the
run's summary and the arguments it ran with) and curves.png; prints one JSON object last.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from finetune.train import FinetuneArgs, run_finetune
from research.results_file import ResultsFile, recorded_args
from scripts.plots import plot_success_curves

Variant = Callable[[FinetuneArgs], FinetuneArgs]


def _no_prior(a: FinetuneArgs) -> FinetuneArgs:
    return dataclasses.replace(a, prior_data=None)


def full(a: FinetuneArgs) -> FinetuneArgs:
    return a


def full_no_aprl(a: FinetuneArgs) -> FinetuneArgs:
    return dataclasses.replace(a, aprl=dataclasses.replace(a.aprl, enabled=False))


def pretrained_only(a: FinetuneArgs) -> FinetuneArgs:
    return _no_prior(a)


def scratch_prior(a: FinetuneArgs) -> FinetuneArgs:
    """New weights in the pretrained network's shape (its bins, encoder and input statistics too)."""
    return dataclasses.replace(a, init="scratch")


def scratch(a: FinetuneArgs) -> FinetuneArgs:
    return _no_prior(scratch_prior(a))


VARIANTS: dict[str, Variant] = {
    f.__name__: f for f in (full, full_no_aprl, pretrained_only, scratch_prior, scratch)
}

# What results.json keeps of each run's summary.
SUMMARY_KEYS = (
    "task",
    "curve",
    "final_success_rate",
    "safety_violations",
    "human_resets",
    "env_steps",
    "updates",
    "episodes",
    "successes",
    "undo_episodes",
    "undo_successes",
    "seconds",
)


@dataclass
class ExpFinetuneArgs:
    """Online fine-tuning variants on one held-out task, each with the same budget and evaluation."""

    base: Annotated[FinetuneArgs, tyro.conf.arg(name="")]
    """The full method's run (``qt finetune``'s options); ``out`` is the experiment's directory."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """Variants to run, in order (see the module docstring); one already in results.json is not rerun."""

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
        if not self.variants:
            raise ValueError("variants is empty: name at least one")


def variant_args(exp: ExpFinetuneArgs, name: str, base: FinetuneArgs | None = None) -> FinetuneArgs:
    """The fine-tuning arguments variant ``name`` runs with, in its own run directory."""
    a = VARIANTS[name](base if base is not None else exp.base)
    return dataclasses.replace(a, out=str(Path(exp.base.out, name)))


# Fields that change how a run is watched or stored, not what it learns.
_NOT_RESULTS = ("progress", "resume", "publish_every")


def run_experiment(exp: ExpFinetuneArgs, *, env_module: str = "envs") -> dict[str, dict[str, Any]]:
    """Run the variants; ``env_module`` names the module providing ``make_env`` and ``tasks`` (tests
    pass a fake, as to ``run_finetune``)."""
    if exp.base.pretrained is None or exp.base.prior_data is None:
        raise ValueError("the full method needs both --pretrained and --prior-data")
    out = Path(exp.base.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsFile(out, _NOT_RESULTS)
    results = store.results
    base = exp.base
    for name in exp.variants:
        a = variant_args(exp, name, base)
        recorded = recorded_args(a)
        if store.done(name, recorded):
            continue
        s = run_finetune(a, env_module=env_module)
        store.add(name, {**{k: s[k] for k in SUMMARY_KEYS}, "env": a.env, "args": recorded})
        print(name, s["final_success_rate"], s["safety_violations"], flush=True)
    plot(results, out / "curves.png")
    return results


def steps_to(curve: list[dict[str, Any]], level: float) -> int | None:
    """Environment steps of the first curve point at or above ``level`` (None if none is)."""
    return next((p["env_steps"] for p in curve if p["success_rate"] >= level), None)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    series = {k: [(p["env_steps"], p["success_rate"]) for p in r["curve"]] for k, r in results.items()}
    first = next(iter(results.values()), {})
    plot_success_curves(
        series,
        path,
        "environment steps of online fine-tuning",
        f"{first.get('env', '')}: held-out task {first.get('task', '')}",
        legend_below=len(series) > 3,  # the legend inside the axes would cover a curve
    )


def parse_args(argv: list[str]) -> ExpFinetuneArgs:
    """The experiment's arguments; the base run is parsed against the env's recipe (``--env``, or
    ``--recipe``), as ``qt finetune``'s command line is."""
    from scripts.recipes import cli_defaults

    base = cli_defaults("finetune", argv)
    default = None if base is None else ExpFinetuneArgs(base=base)
    return tyro.cli(ExpFinetuneArgs, args=argv, description=__doc__, default=default)


def main() -> None:
    import sys

    exp = parse_args(sys.argv[1:])
    results = run_experiment(exp)
    summary = {
        k: {
            "final": v["final_success_rate"],
            "safety_violations": v["safety_violations"],
            "steps_to_50": steps_to(v["curve"], 0.5),
        }
        for k, v in results.items()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
