#!/usr/bin/env bash
# Meta-World from offline pretraining (issue #26): the Q-Transformer against behaviour cloning on the same
# data, three training seeds each, on a benchmark's training tasks with fresh goals. Meta-World's own
# convention: 50 episodes per task with randomised goals, reported per task and per difficulty group
# (the entry's per_task and per_group). The data is the recipe's (``qt datagen --env ENV``); filtered BC
# (the successful episodes only; the recipe's default, the measured best) gets the same network, data and
# steps as the Q-Transformer, without the conservative term or the support head.
#
#   bash research/metaworld.sh [ENV] [RUNS_DIR]     # ENV: metaworld_mt10 (default) or metaworld_mt50
#
# metaworld_mt10 takes about 75 minutes on 2 CPU cores: 2 for the data, 11 per training run, a few per
# evaluation.
set -euo pipefail
env="${1:-metaworld_mt10}"
runs="${2:-runs/protocol/$env}"
here="bash research/metaworld.sh $env $runs"
short="${env#metaworld_}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
qt datagen --env "$env" --out "$runs/data"
declare -A ARGS=(
  [qtransformer]="--method qtransformer --no-success-only --model.support-tau 0.3"
  [bc_filtered]=""
)
for seed in 0 1 2; do
  for method in qtransformer bc_filtered; do
    out="$runs/$method/s$seed"
    [ -f "$out/summary_rank0.json" ] && continue  # finished in an earlier invocation (written last)
    mkdir -p "$runs/$method"
    # shellcheck disable=SC2086  # ARGS holds several flags
    qt pretrain --dataset "$runs/data" --out "$out" --seed "$seed" --resume ${ARGS[$method]} > "$out.log" 2>&1 ||
      { echo "pretraining $out failed: see $out.log" >&2; exit 1; }
  done
done
declare -A NOTE=(
  [qtransformer]="The Q-Transformer pretrained on the $env recipe's data (Meta-World's scripted policies: 50% clean, 30% noisy, 20% aimed at a shifted target)."
  [bc_filtered]="The $env recipe: behaviour cloning on the successful episodes of the same data, same network and steps as the Q-Transformer."
)
for method in qtransformer bc_filtered; do
  result="$runs/$method/eval_train.json"
  [ -f "$result" ] && continue
  qt evaluate --checkpoint "$runs/$method/s0/policy" "$runs/$method/s1/policy" "$runs/$method/s2/policy" \
    --split train --episodes 50 --method "$method" --record "metaworld-$short-$method-train" --oracle \
    --note "${NOTE[$method]} Meta-World's standard state (object and goal positions: oracle for a real robot). 50 episodes per task per seed with fresh goals, Meta-World's 500-step limit." \
    --command "$here" --out "$result.tmp" > "$runs/$method/eval_train.log" 2>&1 ||
    { echo "evaluating $method failed: see $runs/$method/eval_train.log" >&2; exit 1; }
  mv "$result.tmp" "$result"
done
python -m scripts.results_table
