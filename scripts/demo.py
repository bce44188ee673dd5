"""``qt demo``: the whole system in one command, small enough for 2 CPU cores (about 7 minutes).

1. generate a mixed-quality multi-task dataset with the scripted experts (``qt datagen``);
2. pretrain a Q-Transformer offline on it (``qt pretrain``);
3. evaluate the greedy policy on the training tasks, with training and held-out paraphrases;
4. fine-tune online on a held-out task with the prior data in the replay (``qt finetune``);
5. evaluate again, and write a report folder: results.json, curve.png, rollout GIFs before and after
   fine-tuning, report.md.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from scripts.plots import plot_success_curves


@dataclass
class DemoArgs:
    """The end-to-end demo on the env's recipe (``scripts/recipes.py``) at a small budget. The Navigate
    defaults finish in a few minutes on 2 CPU cores."""

    env: Literal["garbage_sort", "navigate"] = "navigate"
    """Env of the demo (its recipe supplies every setting not listed here)."""
    out: str = "runs/demo"
    """Report folder (and the run's data, checkpoints and logs below it)."""
    episodes: int | None = None
    """Episodes of prior data to generate; None = the recipe's (Navigate 1,500; GarbageSort 20,000)."""
    pretrain_steps: int | None = None
    """Offline gradient steps; None = the recipe's (Navigate 2,000; GarbageSort 48,000)."""
    finetune_env_steps: int = 3000
    """Online environment steps on the held-out task (Navigate: about 3.5 minutes on 2 CPU cores)."""
    eval_episodes: int = 5
    """Evaluation episodes per training task (two phrasing sets)."""
    heldout_episodes: int = 50
    """Evaluation episodes of the held-out task: before and after fine-tuning (each reported with its
    95% interval), and at every point of the fine-tuning curve."""
    workers: int = 2
    """Data-generation processes."""
    seed: int = 0
    """Seed of the whole run."""
    tiny: bool = False
    """A one-layer, 32-wide network (smoke tests of the whole pipeline)."""


def _stage(name: str) -> float:
    print(f"\n=== {name} ===", flush=True)
    return time.perf_counter()


def record_gif(policy: Any, env_name: str, task: str, path: Path, seed: int) -> bool:
    from scripts.render_rollout import policy_rollout, save_gif

    r, fps = policy_rollout(policy, env_name, task, seed)
    save_gif(path, r.frames, fps)
    return r.success


def run_demo(args: DemoArgs) -> dict[str, Any]:
    from envs import tasks as env_tasks
    from finetune.train import EVAL_SEED, run_finetune
    from pretrain.datagen import run_datagen
    from pretrain.evaluate import evaluate_policy, task_ids
    from pretrain.train import run_pretrain
    from qtransformer.policy import QTransformerPolicy
    from scripts.recipes import datagen_args, finetune_args, pretrain_args

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = _stage("1/5 generate prior data with the scripted experts")
    sizes = {} if args.episodes is None else {"episodes": args.episodes}
    data = run_datagen(
        datagen_args(args.env, out=out / "data", workers=args.workers, seed=args.seed, **sizes)
    )
    timings["datagen_s"] = time.perf_counter() - t

    t = _stage("2/5 pretrain offline (conservative Q-learning)")
    pre_args = pretrain_args(args.env, str(data), out=str(out / "pretrain"), save_every=500, seed=args.seed)
    if args.pretrain_steps is not None:
        pre_args = dataclasses.replace(pre_args, steps=args.pretrain_steps)
    if args.tiny:
        pre_args.model = dataclasses.replace(pre_args.model, d_model=32, n_layers=1, n_heads=2)
    run_pretrain(pre_args)
    timings["pretrain_s"] = time.perf_counter() - t

    t = _stage("3/5 evaluate the pretrained policy")
    policy = QTransformerPolicy.from_checkpoint(out / "pretrain" / "policy")
    train_tasks = task_ids(args.env, "train")
    pre = evaluate_policy(policy, args.env, train_tasks, args.eval_episodes, ("train", "heldout"))
    heldout_task = env_tasks.heldout_task_ids(args.env)[0]
    # The held-out task is evaluated on fine-tuning's own start states, so that the zero-shot figure, the
    # curve and the figure after fine-tuning are the same episodes played by different weights.
    zero = evaluate_policy(policy, args.env, [heldout_task], args.heldout_episodes, ("train",), EVAL_SEED)
    record_gif(policy, args.env, heldout_task, out / "rollout_before.gif", seed=args.seed + 7)
    timings["evaluate_s"] = time.perf_counter() - t

    t = _stage(f"4/5 fine-tune online on the held-out task {heldout_task!r}")
    ft = run_finetune(
        finetune_args(
            args.env,
            task=heldout_task,
            pretrained=str(out / "pretrain" / "policy"),
            prior_data=str(data),
            out=str(out / "finetune"),
            env_steps=args.finetune_env_steps,
            eval_every=max(1, args.finetune_env_steps // 5),
            eval_episodes=args.heldout_episodes,
            seed=args.seed,
        )
    )
    timings["finetune_s"] = time.perf_counter() - t

    t = _stage("5/5 evaluate after fine-tuning and write the report")
    tuned = QTransformerPolicy.from_checkpoint(out / "finetune" / "policy", encoder=policy.encoder)
    after = evaluate_policy(
        tuned, args.env, [heldout_task], args.heldout_episodes, ("train", "heldout"), EVAL_SEED
    )
    record_gif(tuned, args.env, heldout_task, out / "rollout_after.gif", seed=args.seed + 7)
    plot_success_curves(
        {"pretrained + prior data": [(p["env_steps"], p["success_rate"]) for p in ft["curve"]]},
        out / "curve.png",
        "environment steps of fine-tuning",
        f"{args.env}: fine-tuning on {heldout_task}",
        hline=(zero["success_rate"], "zero-shot pretrained"),
    )
    timings["report_s"] = time.perf_counter() - t
    results = {
        "env": args.env,
        "control_hz": policy.meta["env_kwargs"].get("control_hz", 10.0),
        "pretrained_success_train_tasks": pre["train"]["success_rate"],
        "pretrained_success_heldout_paraphrases": pre["heldout"]["success_rate"],
        "heldout_task": heldout_task,
        "zero_shot_success_heldout_task": zero["success_rate"],
        "zero_shot_ci95_heldout_task": _interval(zero["train"]["successes"][heldout_task]),
        "finetuned_ci95_heldout_task": _interval(after["train"]["successes"][heldout_task]),
        "finetuned_success_heldout_task": after["train"]["success_rate"],
        "finetuned_success_heldout_task_heldout_paraphrases": after["heldout"]["success_rate"],
        "finetune_curve": ft["curve"],
        "finetune_safety_violations": ft["safety_violations"],
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "args": dataclasses.asdict(args),
        "per_task_pretrained": pre["train"]["per_task"],
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(_report(results))
    print("\n" + _report(results), flush=True)
    return results


def _interval(successes: list[bool]) -> list[float]:
    """The Wilson 95% interval of the episodes' success rate."""
    from pretrain.evaluate import wilson_interval

    return list(wilson_interval(sum(successes), len(successes)))


def _report(r: dict[str, Any]) -> str:
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    ci = lambda c: f"[{100 * c[0]:.0f}, {100 * c[1]:.0f}]"  # noqa: E731
    n_train, n_held = (
        r["args"]["eval_episodes"] * len(r["per_task_pretrained"]),
        r["args"]["heldout_episodes"],
    )
    total = sum(r["timings_s"].values())
    return "\n".join(
        [
            f"# qtransformer demo: {r['env']}",
            "",
            f"Control rate {r['control_hz']:g} Hz.",
            "",
            "| stage | episodes | success | 95% interval |",
            "|---|---|---|---|",
            f"| pretrained, training tasks, training phrasings | {n_train} | {pct(r['pretrained_success_train_tasks'])} | |",
            f"| pretrained, training tasks, held-out phrasings | {n_train} | {pct(r['pretrained_success_heldout_paraphrases'])} | |",
            f"| held-out task `{r['heldout_task']}`, zero-shot | {n_held} | {pct(r['zero_shot_success_heldout_task'])} | {ci(r['zero_shot_ci95_heldout_task'])} |",
            f"| held-out task after fine-tuning | {n_held} | {pct(r['finetuned_success_heldout_task'])} | {ci(r['finetuned_ci95_heldout_task'])} |",
            f"| held-out task after fine-tuning, held-out phrasings | {n_held} | {pct(r['finetuned_success_heldout_task_heldout_paraphrases'])} | |",
            "",
            f"Fine-tuning safety violations: {r['finetune_safety_violations']}. Total time {total / 60:.1f} min "
            f"({', '.join(f'{k[:-2]} {v:.0f}s' for k, v in r['timings_s'].items())}).",
            "",
            "Files: `curve.png` (success vs fine-tuning steps), `rollout_before.gif`, `rollout_after.gif`, `results.json`.",
            "This is the recipe at a small budget (minutes on 2 cores). What the recipe reaches at its full "
            "budget, with the commands that measure it, is in docs/results.md.",
            "",
        ]
    )
