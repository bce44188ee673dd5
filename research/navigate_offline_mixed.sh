#!/usr/bin/env bash
# Offline RL against imitation on a robot team's data (issue #24), Navigate: the navigate_mixed recipe's
# dataset (10% demonstrations, the rest autonomous attempts; 28% of all episodes succeed), every method
# on the same network, data and budget (the recipe's steps), three training seeds each, scored on the
# pretraining tasks (10 report starts per task per seed: 200) and zero-shot on the held-out landmarks
# (100 per landmark per seed). Two runs at a time, one core each (two at once on both cores each run
# five times slower).
#
#   bash research/navigate_offline_mixed.sh [RUNS_DIR] [METHOD ...]
#
# SEEDS="0" in the environment trains and scores one seed only (a figure marked as not the protocol).
set -euo pipefail
runs="${1:-runs/protocol/navigate_mixed}"
shift || true
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# Each method: the flags on top of the recipe's `qt pretrain --dataset D` (which is the first).
declare -A FLAGS=(
  [qt]=""                                                           # the recipe
  [qt_paper]="--model.support-tau 0"                                # the paper's loss, no support head
  [cql]="--method cql --model.support-tau 0 --loss.alpha 0.1"       # CQL(H) over the same bins
  [bc_all]="--method bc --model.support-tau 0"                      # behaviour cloning on every episode
  # ... on the successful ones only, at its best budget on the tuning landmark and the pretraining
  # tasks (1,000 steps of 500, 1,000, 2,000 and 6,000: more over-fits its 423 episodes)
  [bc_filtered]="--method bc --success-only --model.support-tau 0 --steps 1000"
  [qt_no_conservative]="--loss.alpha 0"
  [qt_no_mc_bound]="--loss.no-use-mc-bound"
  [qt_n1]="--returns.n-step 1"
)
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(qt bc_filtered bc_all qt_paper cql qt_n1)
for method in "${methods[@]}"; do
  [ -n "${FLAGS[$method]+x}" ] || { echo "unknown method $method; choose from ${!FLAGS[*]}" >&2; exit 2; }
done
here="bash research/navigate_offline_mixed.sh $runs"
qt datagen --env navigate --recipe navigate_mixed --out "$runs/data"

pretrain_one() {
  local method=$1 seed=$2 out="$runs/$1/s$2"
  [ -f "$out/summary_rank0.json" ] && return 0  # finished in an earlier invocation (written last)
  mkdir -p "$runs/$method"
  # shellcheck disable=SC2086
  qt pretrain --dataset "$runs/data" --out "$out" --seed "$seed" --resume ${FLAGS[$method]} > "$out.log" 2>&1
}
evaluate_one() {
  local method=$1 split=$2 episodes=100
  local ckpts=() seed
  for seed in $SEEDS; do ckpts+=("$runs/$method/s$seed/policy"); done
  [ "$split" = train ] && episodes=10
  [ -f "$runs/$method/eval_$split.json" ] && return 0
  local note="Pretrained on the navigate_mixed recipe's data (1,500 episodes: 10% demonstrations, 40% weak attempts, 20% stalls, 30% wrong goals; 28% successful), $method (qt pretrain flags on top of the recipe: '${FLAGS[$method]:-none}'). Oracle input: the state holds every landmark's exact position, which a robot would have to perceive."
  local record=()
  local command="$here $method"
  [ "$SEEDS" != "0 1 2" ] && command="SEEDS=\"$SEEDS\" $command"
  [ "$split" != tuning ] && record=(--record "navigate_mixed-$method-$split" --command "$command" --oracle --note "$note")
  qt evaluate --checkpoint "${ckpts[@]}" --split "$split" --episodes "$episodes" --method "$method" \
    "${record[@]}" --out "$runs/$method/eval_$split.json.tmp" > "$runs/$method/eval_$split.log" 2>&1 ||
    { echo "evaluating $method on $split failed: see $runs/$method/eval_$split.log" >&2; exit 1; }
  mv "$runs/$method/eval_$split.json.tmp" "$runs/$method/eval_$split.json"
}
export -f pretrain_one evaluate_one
SEEDS="${SEEDS:-0 1 2}"
export runs here SEEDS
export FLAGS_DUMP; FLAGS_DUMP=$(declare -p FLAGS)
jobs=()
for method in "${methods[@]}"; do for seed in $SEEDS; do jobs+=("$method $seed"); done; done
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'eval "$FLAGS_DUMP"; pretrain_one $0 $1' ||
  { echo "a pretraining run failed: see its log beside its directory in $runs/" >&2; exit 1; }
# Entries are written one at a time (the summary file is rewritten whole by each).
for method in "${methods[@]}"; do
  for split in train test tuning; do
    evaluate_one "$method" "$split"
  done
done
python -m scripts.results_table
