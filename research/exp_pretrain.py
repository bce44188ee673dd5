"""Offline comparison at equal data and compute: the Q-Transformer against behaviour cloning and ablations.

    python -m research.exp_pretrain --dataset runs/data/navigate --steps 3000 --eval-episodes 2 \\
        --final-episodes 100 --out runs/exp_pretrain/navigate

Every ``qt pretrain`` option is accepted under the same name with the same default (``PretrainArgs``):
together they make the base run, which each variant changes only in what defines it. So the data, the
network, the steps, the schedule and the seed are the same for every variant, and a diagnostic such as
a conservative weight of 5 is ``--loss.alpha 5 --variants qt``. ``--out`` is the experiment's directory
(one run directory per variant under it); ``--eval-episodes`` is the episodes per task at each of the
``--curve-points`` evaluations during training.

Variants:
  qt                 the Q-Transformer: conservative term, Monte-Carlo bound, n-step returns, no support head
  bc_all             behaviour cloning (cross-entropy over the bins) on all episodes
  bc_success         behaviour cloning on the successful episodes only
  bc_success_smooth  bc_success with the recipe's bin smoothing (the recipe's imitation counterpart)
  qt_no_cons         qt without the conservative term (alpha 0)
  qt_no_mc           qt without the Monte-Carlo lower bound
  qt_n1              qt with one-step returns
  qt_support         qt with the support head (discrete BCQ: every max over the bins the head finds likely)
  recipe             qt_support on the successful episodes, with the bins smoothed over their neighbours

The environment is the dataset's. The final evaluation plays ``--final-episodes`` greedy episodes per
training task, with the training and the held-out phrasings. Writes results.json (per variant: the
rates, the curve and the arguments it ran with) and curves.png; prints one JSON object last.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from pretrain.evaluate import evaluate_policy, task_ids
from pretrain.train import PretrainArgs, run_pretrain
from qtransformer.policy import QTransformerPolicy
from qtransformer.text import TextEncoder
from research.results_file import ResultsFile, recorded_args
from scripts.plots import plot_success_curves

Variant = Callable[[PretrainArgs], PretrainArgs]

# The recipe's settings (docs/results.md: the support head at tau 0.3 weighted 10; bins smoothed, std 3).
SUPPORT_TAU, SUPPORT_WEIGHT, BIN_SMOOTHING = 0.3, 10.0, 3.0


def _bc(a: PretrainArgs) -> PretrainArgs:
    """Train by cross-entropy on the data's bins instead of the Q loss."""
    return dataclasses.replace(a, method="bc")


def _n_step(a: PretrainArgs, n: int) -> PretrainArgs:
    return dataclasses.replace(a, returns=dataclasses.replace(a.returns, n_step=n))


def _support(a: PretrainArgs) -> PretrainArgs:
    return dataclasses.replace(
        a,
        model=dataclasses.replace(a.model, support_tau=SUPPORT_TAU),
        loss=dataclasses.replace(a.loss, behavior_weight=SUPPORT_WEIGHT),
    )


def _smooth(a: PretrainArgs) -> PretrainArgs:
    return dataclasses.replace(a, loss=dataclasses.replace(a.loss, bin_smoothing=BIN_SMOOTHING))


def qt(a: PretrainArgs) -> PretrainArgs:
    """The plain Q-Transformer on all episodes (no support head, whatever the base has)."""
    return dataclasses.replace(a, model=dataclasses.replace(a.model, support_tau=0.0), success_only=False)


def bc_all(a: PretrainArgs) -> PretrainArgs:
    return _bc(qt(a))


def bc_success(a: PretrainArgs) -> PretrainArgs:
    return dataclasses.replace(bc_all(a), success_only=True)


def bc_success_smooth(a: PretrainArgs) -> PretrainArgs:
    return _smooth(bc_success(a))


def qt_no_cons(a: PretrainArgs) -> PretrainArgs:
    q = qt(a)
    return dataclasses.replace(q, loss=dataclasses.replace(q.loss, alpha=0.0))


def qt_no_mc(a: PretrainArgs) -> PretrainArgs:
    q = qt(a)
    return dataclasses.replace(q, loss=dataclasses.replace(q.loss, use_mc_bound=False))


def qt_n1(a: PretrainArgs) -> PretrainArgs:
    return _n_step(qt(a), 1)


def qt_support(a: PretrainArgs) -> PretrainArgs:
    return _support(qt(a))


def recipe(a: PretrainArgs) -> PretrainArgs:
    return dataclasses.replace(_smooth(_support(a)), success_only=True)


VARIANTS: dict[str, Variant] = {
    f.__name__: f
    for f in (qt, bc_all, bc_success, bc_success_smooth, qt_no_cons, qt_no_mc, qt_n1, qt_support, recipe)
}
DEFAULT_VARIANTS = ("qt", "bc_all", "bc_success", "qt_no_cons", "qt_no_mc", "qt_n1", "recipe")


@dataclass
class ExpPretrainArgs:
    """Offline pretraining variants at equal data and compute, each evaluated greedily at the end."""

    base: Annotated[PretrainArgs, tyro.conf.arg(name="")]
    """The run every variant starts from (``qt pretrain``'s options); ``out`` is the experiment's directory."""
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    """Variants to run, in order (see the module docstring); one already in results.json is not rerun."""
    final_episodes: int = 100
    """Greedy episodes per training task in the final evaluation, per phrasing split."""
    curve_points: int = 4
    """Evaluations during training (every ``steps // curve_points`` steps), of ``eval_episodes`` each."""

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
        if not self.variants:
            raise ValueError("variants is empty: name at least one")
        if self.final_episodes < 1 or self.curve_points < 1:
            raise ValueError(
                f"final_episodes and curve_points must be >= 1, got {self.final_episodes}, {self.curve_points}"
            )
        if self.base.eval_episodes < 1:
            raise ValueError(
                "eval_episodes (episodes per task at each curve point) must be >= 1 for the curve"
            )


def variant_args(exp: ExpPretrainArgs, name: str) -> PretrainArgs:
    """The pretraining arguments variant ``name`` runs with: the base, changed by the variant, in its own
    run directory, evaluated ``curve_points`` times."""
    a = VARIANTS[name](exp.base)
    return dataclasses.replace(
        a, out=str(Path(exp.base.out, name)), eval_every=max(1, a.steps // exp.curve_points)
    )


# Fields that change how a run is watched or stored, not what it learns.
_NOT_RESULTS = ("progress", "resume", "log_every", "save_every", "keep_last")


def run_experiment(exp: ExpPretrainArgs) -> dict[str, dict[str, Any]]:
    out = Path(exp.base.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsFile(out, _NOT_RESULTS)
    results = store.results
    encoder = TextEncoder(exp.base.encoder)
    for name in exp.variants:
        pa = variant_args(exp, name)
        recorded = recorded_args(pa)
        if store.done(name, recorded):
            continue
        run_pretrain(pa)
        summary = json.loads(Path(pa.out, "summary_rank0.json").read_text())
        policy = QTransformerPolicy.from_checkpoint(Path(pa.out, "policy"), encoder=encoder)
        env = policy.meta.get("env")
        if env is None:
            raise ValueError(f"{pa.dataset} holds episodes of several envs; the evaluation needs one")
        final = evaluate_policy(policy, env, task_ids(env, "train"), exp.final_episodes, ("train", "heldout"))
        store.add(
            name,
            {
                "env": env,
                "success_train_phrasings": final["train"]["success_rate"],
                "success_heldout_phrasings": final["heldout"]["success_rate"],
                "per_task": final["train"]["per_task"],
                "curve": [{"step": e["step"], "success_rate": e["success_rate"]} for e in summary["evals"]],
                "args": recorded,
            },
        )
        print(name, results[name]["success_train_phrasings"], flush=True)
    plot(results, out / "curves.png")
    return results


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    series = {k: [(p["step"], p["success_rate"]) for p in r["curve"]] for k, r in results.items()}
    env = next(iter(results.values()))["env"] if results else ""
    plot_success_curves(
        series, path, "offline gradient steps", f"{env}: offline pretraining on mixed-quality data"
    )


def main() -> None:
    exp = tyro.cli(ExpPretrainArgs, description=__doc__)
    results = run_experiment(exp)
    print(
        json.dumps(
            {
                k: {"train": v["success_train_phrasings"], "heldout": v["success_heldout_phrasings"]}
                for k, v in results.items()
            }
        )
    )


if __name__ == "__main__":
    main()
