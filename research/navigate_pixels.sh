#!/usr/bin/env bash
# Pixels against state on Navigate (issue #25). The navigate_pixels recipe (a 48 px onboard camera and
# odometry: no landmark positions, no range readings) and the navigate recipe's settings (oracle: every
# landmark's position in the state) learn from the same 6,000 episodes: the two datasets come from the
# same seeds, so only what was recorded differs. Three training seeds each, scored on the pretraining
# tasks (10 starts per task per seed: 200) and zero-shot on the held-out landmarks (100 per landmark per
# seed). About 25 minutes on 2 cores for the pixel runs, 5 for the state runs, 10 for the evaluations.
#
#   bash research/navigate_pixels.sh [RUNS_DIR]
set -euo pipefail
runs="${1:-runs/protocol/navigate_pixels}"
here="bash research/navigate_pixels.sh $runs"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
qt datagen --env navigate --recipe navigate_pixels --out "$runs/pixels_data"
qt datagen --env navigate --recipe navigate --episodes 6000 --out "$runs/state_data"
for seed in 0 1 2; do
  for obs in pixels state; do
    out="$runs/$obs/s$seed"
    [ -f "$out/summary_rank0.json" ] && continue  # finished in an earlier invocation (written last)
    mkdir -p "$runs/$obs"
    qt pretrain --dataset "$runs/${obs}_data" --out "$out" --seed "$seed" --resume > "$out.log" 2>&1 ||
      { echo "pretraining $out failed: see $out.log" >&2; exit 1; }
  done
done
declare -A NOTE=(
  [pixels]="Pretrained on the navigate_pixels recipe's data (6,000 episodes at 4 Hz, recorded as a 48x48 onboard camera image and 7 odometry values); no landmark or obstacle position and no range reading reaches the network."
  [state]="Pretrained with the navigate recipe on the same 6,000 episodes recorded as the 48-value state. Oracle input: the state holds every landmark's exact position, which a robot would have to perceive."
)
for obs in pixels state; do
  oracle=()
  [ "$obs" = state ] && oracle=(--oracle)
  for split in train tuning test; do
    result="$runs/$obs/eval_$split.json"
    [ -f "$result" ] && continue
    episodes=100
    [ "$split" = train ] && episodes=10
    qt evaluate --checkpoint "$runs/$obs/s0/policy" "$runs/$obs/s1/policy" "$runs/$obs/s2/policy" \
      --split "$split" --episodes "$episodes" --method qtransformer --record "navigate-$obs-qt-$split" \
      --command "$here" "${oracle[@]}" --note "${NOTE[$obs]}" --out "$result.tmp" > "$runs/$obs/eval_$split.log" 2>&1 ||
      { echo "evaluating $obs on $split failed: see $runs/$obs/eval_$split.log" >&2; exit 1; }
    mv "$result.tmp" "$result"
  done
done
python -m scripts.results_table
