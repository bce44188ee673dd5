#!/usr/bin/env bash
# Continual learning on Navigate (issue #27): the first three test landmarks learned one after another by
# `qt finetune --tasks`, from each of the three pretrained seeds, with the earlier stages' practice
# replayed (the default) and without it (naive sequential fine-tuning). Each stage is the recipe's
# practice for ENV_STEPS; after the pretrained policy and after each stage, every landmark of the
# sequence (100 report starts) and the 20 pretraining landmarks (5 each) are scored. Two runs at a time,
# one core each. research/continual_report.py then writes the mean forgetting matrix and the entries.
#
#   bash research/navigate_continual.sh [RUNS_DIR] [ENV_STEPS] ["VARIANT ..."]
#
# RUNS_DIR holds data/ and qt_s{0,1,2}/ (bash research/navigate_zero_shot.sh RUNS_DIR makes them); the
# fresh per-landmark runs of research/navigate_finetune.sh RUNS_DIR ENV_STEPS are the upper bound.
set -euo pipefail
runs="${1:-runs/protocol/navigate}"
steps="${2:-6000}"
read -r -a variants <<< "${3:-practice off}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 MUJOCO_GL="${MUJOCO_GL:-egl}"
sequence=$(python -c "from envs.tasks import split_task_ids; print(' '.join(split_task_ids('navigate', 'test')[:3]))")
jobs=()
for variant in "${variants[@]}"; do
  for seed in 0 1 2; do jobs+=("$variant $seed"); done
done
sequence_one() {
  local variant=$1 seed=$2
  local out="$runs/continual_$steps/${variant//+/_}_s$seed"
  mkdir -p "$(dirname "$out")"
  # shellcheck disable=SC2086  # the sequence is several task ids
  qt finetune --env navigate --tasks $sequence --pretrained "$runs/qt_s$seed/policy" --prior-data "$runs/data" \
    --out "$out" --seed "$seed" --env-steps "$steps" --continual.replay "$variant" \
    $([ -f "$out/continual.json" ] && echo --resume) >> "$out.log" 2>&1  # --resume: skips what is done
}
export -f sequence_one
export runs steps sequence
printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'sequence_one $0 $1' ||
  { echo "a continual run failed: see its log beside its directory in $runs/continual_$steps/" >&2; exit 1; }
python -m research.continual_report --runs "$runs" --env-steps "$steps" --variants "${variants[@]}" \
  --command "bash research/navigate_continual.sh $runs $steps '${variants[*]}'"
python -m scripts.results_table
