#!/usr/bin/env bash
# Navigate fine-tuning under the protocol: the recipe's `qt finetune` (nothing but paths, task and seed)
# on every held-out landmark, from each of the three pretrained seeds of research/navigate_zero_shot.sh,
# then each fine-tuned checkpoint scored on its own landmark from the report starts (100 per seed), beside
# the same pretrained checkpoints zero-shot. Two runs at a time, one core each.
#
#   bash research/navigate_finetune.sh [RUNS_DIR] [ENV_STEPS]
#
# RUNS_DIR holds data/ and qt_s{0,1,2}/ (bash research/navigate_zero_shot.sh RUNS_DIR makes them).
# ENV_STEPS defaults to the recipe's budget (20,000); a smaller one is recorded as such.
set -euo pipefail
runs="${1:-runs/protocol/navigate}"
steps="${2:-}"
here="bash research/navigate_finetune.sh $runs${steps:+ $steps}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
heldout=$(python -c "from envs.tasks import heldout_task_ids; print(' '.join(heldout_task_ids('navigate')))")
jobs=()
for task in $heldout; do
  for seed in 0 1 2; do
    jobs+=("$task $seed")
  done
done
finetune_one() {
  local task=$1 seed=$2
  local out="$runs/ft${steps:+_$steps}/${task//:/_}_s$seed"
  [ -f "$out/policy/config.json" ] && return 0  # done in an earlier invocation
  mkdir -p "$(dirname "$out")"
  # --resume: a run stopped half-way continues from its snapshot (a new run has none).
  qt finetune --env navigate --task "$task" --pretrained "$runs/qt_s$seed/policy" \
    --prior-data "$runs/data" --out "$out" --seed "$seed" ${steps:+--env-steps "$steps"} --resume \
    >> "$out.log" 2>&1
}
export -f finetune_one
export runs steps
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'finetune_one $0 $1' ||
  { echo "a fine-tuning run failed: see its log beside its directory in $runs/ft${steps:+_$steps}/" >&2; exit 1; }

# The same pretrained checkpoints zero-shot, from the same report starts: the paired baseline.
for split in tuning test; do
  qt evaluate --checkpoint "$runs/qt_s0/policy" "$runs/qt_s1/policy" "$runs/qt_s2/policy" --split "$split" \
    --record "navigate-qt-before-finetuning-$split" --command "$here" --oracle \
    --note "The three pretrained seeds fine-tuned by research/navigate_finetune.sh, zero-shot (the paired baseline of its fine-tuned rows). Oracle input: the state holds every landmark's exact position."
done
tag="finetuned${steps:+-$steps}"
note="The navigate recipe's qt finetune${steps:+ for $steps env steps} on each held-out landmark from the three pretrained seeds of research/navigate_zero_shot.sh; each fine-tuned checkpoint scored on its own landmark. Oracle input: the state holds every landmark's exact position."
for split in tuning test; do
  ckpts=()
  split_tasks=$(python -c "from envs.tasks import split_task_ids; print(' '.join(split_task_ids('navigate', '$split')))")
  for seed in 0 1 2; do
    for task in $split_tasks; do
      ckpts+=("$runs/ft${steps:+_$steps}/${task//:/_}_s$seed/policy")
    done
  done
  qt evaluate --checkpoint "${ckpts[@]}" --split "$split" --record "navigate-qt-$tag-$split" \
    --command "$here" --oracle --note "$note"
done
python -m scripts.results_table
