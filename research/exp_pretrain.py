"""Offline comparison at equal data and compute (issue: Q-Transformer vs behaviour cloning and ablations).

    python -m research.exp_pretrain --dataset runs/data/navigate --env navigate --steps 3000 \\
        --eval-episodes 100 --out runs/exp_pretrain/navigate

Variants (same network, data order, steps, batch size and seed):
  qt            Q-Transformer: conservative regulariser + MC lower bound + n-step returns
  bc_all        behaviour cloning (cross-entropy over bins) on all episodes
  bc_success    behaviour cloning on successful episodes only
  qt_no_cons    Q-Transformer without the conservative term
  qt_no_mc      Q-Transformer without the Monte-Carlo bound
Diagnostic variants (why Q-Transformer does not beat BC here; docs/results.md section 2):
  qt_alpha5, qt_alpha0.2   conservative weight 5 / 0.2 instead of 1
  qt_gamma0.9              discount 0.9 instead of 0.98 (a larger gap between acting and waiting)
  qt_bins32                32 bins per dimension instead of 256
  qt_timeout_fail          episodes that stopped without success end in a terminal failure
  qt_double_q              double Q-learning targets (the online network picks, the target values)
  qt_support, qt_support0.1  support constraint (discrete BCQ): every max over bins, acting and in the
                           target, only over bins a second head (trained on successful episodes) gives
                           at least 0.3 / 0.1 of its top probability; the head's cross-entropy weighted 1
  qt_support_bw3, qt_support_bw10  the same weighted 3 / 10 (10 is LossConfig's default)
  bc_success_norm, qt_support_norm  bc_success / qt_support_bw10 with the state standardised by the
                           dataset's statistics (ModelConfig.normalize_state)
  bc_success_objects, qt_support_objects  the same with GarbageSort's object slots read as one token each
                           by shared weights (ModelConfig.state_entities)
  bc_success_norm_wide     bc_success_norm at twice the width (d_model 256)
  bc_success_deep, qt_support_deep  bc_success_norm / qt_support_norm with a state MLP of two hidden
                           layers of 512 before the transformer (the width of research/probe_garbage.py's MLP)
  bc_success_novel, qt_support_novel  bc_success_norm / qt_support_norm not reading GarbageSort's grip
                           velocity (ModelConfig.state_ignore), the previous action in disguise
  bc_success_minimal, qt_support_minimal  the same reading only what GarbageSort's expert acts on (grip
                           position, closure, grasp flag, bins, objects' masks and positions)
  bc_success_minimal_bins32  bc_success_minimal over 32 bins per dimension
  bc_success_minimal_lang, qt_support_minimal_lang  the same with the instruction embedding standardised
                           by the dataset's instructions (ModelConfig.normalize_instruction)
  bc_success_minimal_lang32, qt_support_minimal_lang32  the same over 32 bins per dimension
  qt_support_minimal_lang_bw100  qt_support_minimal_lang with the support head's cross-entropy weighted 100
  qt_support_minimal_lang_succ  qt_support_minimal_lang on the successful episodes only
  bc_success_minimal_lang_s3, qt_support_minimal_lang_succ_s3  the same with each data bin spread over
                           its neighbours, std 3 bins (LossConfig.bin_smoothing)
  qt_support_minimal_lang_succ_s3_rel  qt_support_minimal_lang_succ_s3 reading the objects' and bins'
                           positions relative to the grip point too (ModelConfig.state_relative)
  qt_support_objects_lang_succ_s3  qt_support_minimal_lang_succ_s3 reading the objects one token each
                           (ModelConfig.state_entities)
  bc_success_minimal_lang_s8  the same at std 8 bins
  bc_success_minimal_lang_val, bc_success_minimal_lang_val_s3  bc_success_minimal_lang(_s3) reading each
                           chosen bin by its value (ModelConfig.bin_embedding)
Writes results.json and curves.png; prints one JSON object last.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from envs.garbage_sort import EXPERT_IGNORES, OBJ_SLOT, RELATIVE_POSITIONS, STATE_HEAD
from pretrain.evaluate import evaluate_policy, task_ids
from pretrain.train import PretrainArgs, run_pretrain
from qtransformer.config import MODEL_PRESETS, LossConfig, ModelConfig, OptimConfig
from qtransformer.policy import QTransformerPolicy
from qtransformer.text import TextEncoder
from scripts.plots import plot_success_curves

# name -> (loss, success-only data, model overrides on top of the "small" preset)
VARIANTS: dict[str, tuple[LossConfig, bool, dict]] = {
    "qt": (LossConfig(), False, {}),
    "bc_all": (LossConfig(behavior_cloning=True), False, {}),
    "bc_success": (LossConfig(behavior_cloning=True), True, {}),
    "qt_no_cons": (LossConfig(use_conservative=False), False, {}),
    "qt_no_mc": (LossConfig(use_mc_bound=False), False, {}),
    "qt_alpha5": (LossConfig(alpha=5.0), False, {}),
    "qt_alpha0.2": (LossConfig(alpha=0.2), False, {}),
    "qt_gamma0.9": (LossConfig(gamma=0.9), False, {}),
    "qt_bins32": (LossConfig(), False, {"num_bins": 32}),
    "qt_timeout_fail": (LossConfig(timeout_is_failure=True), False, {}),
    "qt_double_q": (LossConfig(double_q=True), False, {}),
    "qt_support": (LossConfig(behavior_weight=1.0), False, {"support_tau": 0.3}),
    "qt_support0.1": (LossConfig(behavior_weight=1.0), False, {"support_tau": 0.1}),
    "qt_support_bw3": (LossConfig(behavior_weight=3.0), False, {"support_tau": 0.3}),
    "qt_support_bw10": (LossConfig(behavior_weight=10.0), False, {"support_tau": 0.3}),
    "bc_success_norm": (LossConfig(behavior_cloning=True), True, {"normalize_state": True}),
    "qt_support_norm": (
        LossConfig(behavior_weight=10.0),
        False,
        {"support_tau": 0.3, "normalize_state": True},
    ),
}


def _bc(model_kw: dict, smoothing: float = 0.0) -> tuple[LossConfig, bool, dict]:
    """Cloning of the successful episodes with these model overrides."""
    return (LossConfig(behavior_cloning=True, bin_smoothing=smoothing), True, model_kw)


def _qt_support(
    model_kw: dict, weight: float = 10.0, success_only: bool = False, smoothing: float = 0.0
) -> tuple[LossConfig, bool, dict]:
    """The Q-Transformer with the support constraint (tau 0.3, head weighted ``weight``)."""
    loss = LossConfig(behavior_weight=weight, bin_smoothing=smoothing)
    return (loss, success_only, {"support_tau": 0.3, **model_kw})


# GarbageSort's state: the head, then one slot per object kind (envs/garbage_sort.py).
GARBAGE_ENTITIES = {"normalize_state": True, "state_entities": (STATE_HEAD, OBJ_SLOT)}
VARIANTS["bc_success_objects"] = _bc(GARBAGE_ENTITIES)
VARIANTS["bc_success_norm_wide"] = _bc({"normalize_state": True, "d_model": 256})
VARIANTS["qt_support_objects"] = _qt_support(GARBAGE_ENTITIES)
DEEP_STATE = {"normalize_state": True, "state_layers": 2, "state_hidden": 512}
VARIANTS["bc_success_deep"] = _bc(DEEP_STATE)
VARIANTS["qt_support_deep"] = _qt_support(DEEP_STATE)
# GarbageSort's grip velocity [7:10] is the previous action in disguise (ModelConfig.state_ignore).
NO_VELOCITY = {"normalize_state": True, "state_ignore": (7, 8, 9)}
VARIANTS["bc_success_novel"] = _bc(NO_VELOCITY)
VARIANTS["qt_support_novel"] = _qt_support(NO_VELOCITY)
MINIMAL = {"normalize_state": True, "state_ignore": EXPERT_IGNORES}
VARIANTS["bc_success_minimal"] = _bc(MINIMAL)
VARIANTS["bc_success_minimal_bins32"] = _bc({**MINIMAL, "num_bins": 32})
MINIMAL_LANG = {**MINIMAL, "normalize_instruction": True}
VARIANTS["bc_success_minimal_lang"] = _bc(MINIMAL_LANG)
VARIANTS["qt_support_minimal_lang"] = _qt_support(MINIMAL_LANG)
VARIANTS["bc_success_minimal_lang32"] = _bc({**MINIMAL_LANG, "num_bins": 32})
VARIANTS["qt_support_minimal_lang32"] = _qt_support({**MINIMAL_LANG, "num_bins": 32})
VARIANTS["qt_support_minimal_lang_bw100"] = _qt_support(MINIMAL_LANG, weight=100.0)
VARIANTS["qt_support_minimal_lang_succ"] = _qt_support(MINIMAL_LANG, success_only=True)
VARIANTS["qt_support_minimal"] = _qt_support(MINIMAL)
VARIANTS["bc_success_minimal_lang_s3"] = _bc(MINIMAL_LANG, smoothing=3.0)
VARIANTS["qt_support_minimal_lang_succ_s3"] = _qt_support(MINIMAL_LANG, success_only=True, smoothing=3.0)
RELATIVE = {**MINIMAL_LANG, "state_relative": RELATIVE_POSITIONS}
VARIANTS["qt_support_minimal_lang_succ_s3_rel"] = _qt_support(RELATIVE, success_only=True, smoothing=3.0)
OBJECTS_LANG = {**MINIMAL_LANG, "state_entities": (STATE_HEAD, OBJ_SLOT)}
VARIANTS["qt_support_objects_lang_succ_s3"] = _qt_support(OBJECTS_LANG, success_only=True, smoothing=3.0)
VALUE = {**MINIMAL_LANG, "bin_embedding": "value"}
VARIANTS["bc_success_minimal_lang_val"] = _bc(VALUE)
VARIANTS["bc_success_minimal_lang_val_s3"] = _bc(VALUE, smoothing=3.0)
VARIANTS["bc_success_minimal_lang_s8"] = _bc(MINIMAL_LANG, smoothing=8.0)
DEFAULT_VARIANTS = ["qt", "bc_all", "bc_success", "qt_no_cons", "qt_no_mc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--env", required=True, choices=["garbage_sort", "navigate"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval-episodes", type=int, default=100, help="per task, final evaluation")
    ap.add_argument("--curve-points", type=int, default=4)
    ap.add_argument("--curve-episodes", type=int, default=10)
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument(
        "--lr", type=float, default=1e-3, help="peak learning rate (cosine decay, 100 warm-up steps)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    encoder = TextEncoder()
    tasks = task_ids(args.env, "train")
    results: dict[str, dict] = {}
    if (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
    for name in args.variants:
        if name in results:
            continue
        loss, success_only, model_kw = VARIANTS[name]
        run = out / name
        pa = PretrainArgs(
            dataset=args.dataset,
            out=str(run),
            model=ModelConfig(**{**MODEL_PRESETS["small"], **model_kw}),
            loss=loss,
            optim=OptimConfig(lr=args.lr, warmup_steps=100),
            steps=args.steps,
            batch_size=args.batch_size,
            success_only=success_only,
            save_every=args.steps,
            eval_every=max(1, args.steps // args.curve_points),
            eval_episodes=args.curve_episodes,
            seed=args.seed,
            progress=False,
        )
        run_pretrain(pa)
        summary = json.loads((run / "summary_rank0.json").read_text())
        policy = QTransformerPolicy.from_checkpoint(run / "policy", encoder=encoder)
        final = evaluate_policy(policy, args.env, tasks, args.eval_episodes, ("train", "heldout"))
        results[name] = {
            "success_train_phrasings": final["train"]["success_rate"],
            "success_heldout_phrasings": final["heldout"]["success_rate"],
            "per_task": final["train"]["per_task"],
            "curve": [{"step": e["step"], "success_rate": e["success_rate"]} for e in summary["evals"]],
            "loss": dataclasses.asdict(loss),
            "success_only": success_only,
        }
        (out / "results.json").write_text(json.dumps(results, indent=2))
        print(name, results[name]["success_train_phrasings"], flush=True)
    plot(results, out / "curves.png", args.env)
    print(
        json.dumps(
            {
                k: {"train": v["success_train_phrasings"], "heldout": v["success_heldout_phrasings"]}
                for k, v in results.items()
            }
        )
    )


def plot(results: dict[str, dict], path: Path, env: str) -> None:
    series = {k: [(p["step"], p["success_rate"]) for p in r["curve"]] for k, r in results.items()}
    plot_success_curves(
        series, path, "offline gradient steps", f"{env}: offline pretraining on mixed-quality data"
    )


if __name__ == "__main__":
    main()
