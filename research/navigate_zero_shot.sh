#!/usr/bin/env bash
# Navigate under the protocol: the recipe's Q-Transformer and filtered behaviour cloning (the same
# network, data and budget), three training seeds each, zero-shot on the held-out landmarks (the
# tuning task and the test tasks), 100 fresh starts per task per seed. About 20 minutes on 2 cores.
#
#   bash research/navigate_zero_shot.sh [RUNS_DIR]
set -euo pipefail
runs="${1:-runs/protocol/navigate}"
data="$runs/data"
here="bash research/navigate_zero_shot.sh"
qt datagen --env navigate --out "$data"
for seed in 0 1 2; do
  qt pretrain --dataset "$data" --out "$runs/qt_s$seed" --seed "$seed"
  # Filtered BC: cross-entropy on the successful episodes' bins, no support head.
  qt pretrain --dataset "$data" --out "$runs/bc_s$seed" --seed "$seed" --method bc --success-only \
    --model.support-tau 0
done
for method in qt bc; do
  ckpts=("$runs/${method}_s0/policy" "$runs/${method}_s1/policy" "$runs/${method}_s2/policy")
  for split in tuning test; do
    qt evaluate --checkpoint "${ckpts[@]}" --split "$split" --record "navigate-$method-zero-shot-$split" \
      --command "$here" --oracle --note "Pretrained on the navigate recipe's data (1,500 episodes at 4 Hz), $method; no fine-tuning. Oracle input: the state holds every landmark's exact position, which a robot would have to perceive."
  done
done
python -m scripts.results_table
