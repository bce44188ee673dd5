"""Online fine-tuning comparison on a held-out task (success vs environment steps).

    python scripts/exp_finetune.py --env navigate --pretrained runs/exp_pretrain/navigate/qt/policy \\
        --prior-data runs/data/navigate --env-steps 5000 --out runs/exp_finetune/navigate

Variants (same task, budget, update ratio and seed):
  full               pretrained + prior data, APRL on (the full method)
  full_no_aprl       the same with plain exploration (safety comparison)
  pretrained_only    pretrained, no prior data
  scratch_prior      from scratch, with prior data
  scratch            from scratch, no prior data
  full_unprimed      the full method with APRL's dynamics model learnt online only (not run by default)
The zero-shot pretrained success is the first point of every pretrained curve.
Writes results.json and curves.png; prints one JSON object last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from finetune.actor import ExplorationConfig
from finetune.aprl import AprlConfig
from finetune.train import FinetuneArgs, run_finetune
from qtransformer.checkpoint import load_policy_checkpoint
from qtransformer.dataset import dataset_meta
from scripts.plots import plot_success_curves

VARIANTS = ("full", "full_no_aprl", "pretrained_only", "scratch_prior", "scratch", "full_unprimed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, choices=["garbage_sort", "navigate"])
    ap.add_argument("--task", default=None, help="held-out task id (default: the env's first)")
    ap.add_argument("--pretrained", required=True)
    ap.add_argument("--prior-data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--env-steps", type=int, default=5000)
    ap.add_argument(
        "--utd",
        type=float,
        default=FinetuneArgs.utd,
        help="gradient steps per environment step (FinetuneArgs.utd)",
    )
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-episodes", type=int, default=20)
    ap.add_argument(
        "--variants",
        nargs="*",
        default=[v for v in VARIANTS if v != "full_unprimed"],
        choices=VARIANTS,
    )
    ap.add_argument(
        "--timeout-is-failure", action="store_true", help="LossConfig.timeout_is_failure for every variant"
    )
    ap.add_argument("--lr", type=float, default=1e-4, help="learning rate (constant after the warm-up)")
    ap.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up, in gradient steps")
    ap.add_argument(
        "--offline-fraction", type=float, default=0.5, help="share of each batch drawn from the prior data"
    )
    ap.add_argument(
        "--epsilon", type=float, default=0.2, help="epsilon-greedy per dimension at the start (decays)"
    )
    ap.add_argument(
        "--online-alpha",
        type=float,
        default=None,
        help="conservative weight on online samples (LossConfig.online_alpha; default: the fine-tuning default, "
        "0 with a support head)",
    )
    ap.add_argument(
        "--instruction-prob",
        type=float,
        default=0.0,
        help="share of practice episodes acted out on another instruction of the prior data "
        "(ExplorationConfig.instruction_prob; variants without prior data have none to draw from)",
    )
    ap.add_argument("--double-q", action="store_true", help="double Q-learning targets (LossConfig.double_q)")
    ap.add_argument(
        "--online-support",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train the support head on practice samples too (LossConfig.behavior_online; "
        "default: the fine-tuning default, off)",
    )
    ap.add_argument(
        "--bin-smoothing", type=float, default=0.0, help="LossConfig.bin_smoothing (as the pretraining's)"
    )
    ap.add_argument(
        "--reset-free",
        action="store_true",
        help="practise without resets (FinetuneArgs.reset_free): undo tasks in between, people counted",
    )
    ap.add_argument(
        "--prior-success-only",
        action="store_true",
        help="preload only the prior data's successful episodes (FinetuneArgs.prior_success_only), "
        "as for a policy pretrained on them",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    # Every variant practises at the prior data's control rate, including those that do not load it.
    control_hz = dataset_meta(args.prior_data)["env_kwargs"].get("control_hz")
    # From scratch means the pretrained network's architecture (support head included) with new weights.
    scratch_model = load_policy_checkpoint(args.pretrained).model_config
    for name in args.variants:
        if name in results:
            continue
        pretrained = args.pretrained if name.startswith(("full", "pretrained")) else None
        prior = args.prior_data if name.startswith(("full", "scratch_prior")) else None
        s = run_finetune(
            FinetuneArgs(
                env=args.env,
                task=args.task,
                pretrained=pretrained,
                prior_data=prior,
                prior_success_only=args.prior_success_only,
                control_hz=control_hz,
                out=str(out / name),
                # Without prior data there are no statistics to standardise the state or instruction by.
                model=scratch_model
                if prior
                else dataclasses.replace(scratch_model, normalize_state=False, normalize_instruction=False),
                env_steps=args.env_steps,
                utd=args.utd,
                eval_every=args.eval_every,
                eval_episodes=args.eval_episodes,
                aprl=AprlConfig(enabled=name != "full_no_aprl", prime_with_prior=name != "full_unprimed"),
                loss=dataclasses.replace(
                    FinetuneArgs().loss,
                    timeout_is_failure=args.timeout_is_failure,
                    double_q=args.double_q,
                    bin_smoothing=args.bin_smoothing,
                    **({} if args.online_alpha is None else {"online_alpha": args.online_alpha}),
                    **({} if args.online_support is None else {"behavior_online": args.online_support}),
                ),
                optim=dataclasses.replace(FinetuneArgs().optim, lr=args.lr, warmup_steps=args.warmup),
                exploration=ExplorationConfig(
                    epsilon_start=args.epsilon, instruction_prob=args.instruction_prob if prior else 0.0
                ),
                offline_fraction=args.offline_fraction,
                reset_free=args.reset_free,
                seed=args.seed,
                progress=False,
            )
        )
        results[name] = {
            k: s[k]
            for k in (
                "task",
                "curve",
                "final_success_rate",
                "safety_violations",
                "human_resets",
                "env_steps",
                "updates",
                "episodes",
                "successes",
                "other_instruction_episodes",
                "other_instruction_successes",
                "undo_episodes",
                "undo_successes",
                "seconds",
            )
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(name, s["final_success_rate"], s["safety_violations"], flush=True)
    plot(results, out / "curves.png", args.env)
    summary = {
        k: {
            "final": v["final_success_rate"],
            "safety_violations": v["safety_violations"],
            "steps_to_50": steps_to(v["curve"], 0.5),
        }
        for k, v in results.items()
    }
    print(json.dumps(summary))


def steps_to(curve: list[dict], level: float) -> int | None:
    return next((p["env_steps"] for p in curve if p["success_rate"] >= level), None)


def plot(results: dict[str, dict], path: Path, env: str) -> None:
    series = {k: [(p["env_steps"], p["success_rate"]) for p in r["curve"]] for k, r in results.items()}
    task = next(iter(results.values()))["task"] if results else ""
    plot_success_curves(
        series,
        path,
        "environment steps of online fine-tuning",
        f"{env}: held-out task {task}",
        legend_below=len(series) > 3,  # the legend inside the axes would cover a curve
    )


if __name__ == "__main__":
    main()
