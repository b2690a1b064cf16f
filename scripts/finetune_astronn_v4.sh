#!/usr/bin/env bash
# Fine-tune AstroNN v4c with population-balanced emulated stars (issue "APOGEENet and AstroNN at the information
# bound").  AstroNN v4c misses metal_poor_giants' log g and [Fe/H], warm_giants' and m_dwarfs' [Fe/H] and, in giants,
# O, Al, Ca and Mn (bench/results/label_emulator_gap_v4c.json), while APOGEENet trained on the same spectra reaches
# those [Fe/H] targets (label_emulator_gap_apogeenet_slice2.json): the misses are the network's, not the data's.
# The three populations hold 4-6 % of the training stars each; --emulated-balance ALPHA draws the emulated stars with
# population shares flattened by ALPHA (0: the prior's shares, 1: equal shares).  Resumable, in slices
# (scripts/train_slices.sh), run in the background once the CPU is free of the retrain chain:
#   1. astronn_ft: from v4c (FIRST_INIT) at 0.3x the chain's learning rate, FT_SECONDS of training in all;
#   2. calibrate_astronn_ft: its noise model, as the chain calibrates (S/N term and factor, 3000 emulated stars);
#   3. bench_astronn_ft: bench/label_emulator_gap.py, v4c and the fine-tuned network on the same held-out spectra
#      (bench/results/label_emulator_gap_astronn_ft.json).  Ship it only if it gains where v4c misses and the
#      giants do not lose (per population, never pooled).
# Usage: STOP_AT="<session end - 13 min> UTC" nohup scripts/finetune_astronn_v4.sh >> logs/finetune_astronn.log 2>&1 &
#   environment: FINETUNE_STATE (retrain/v4ft), BASE_WEIGHTS (retrain/v4/weights/astronn/astronn.pt), EMULATOR,
#   BALANCE (0.5), FT_SECONDS (5400), EMULATED (60000), THREADS (2), SLICE_SECONDS, CONTINUE_LR_FACTOR,
#   MIN_LAST_SLICE (1800), STOP_AT, BRANCH_DROPOUT (unset: v4c's 0.3; train astronn --branch-dropout),
#   GAP_OUT (bench/results/label_emulator_gap_astronn_ft.json), FREEZE_TRUNK (1: train astronn --freeze-trunk, the
#   abundance branches alone)
# Branch dropout (retrain/v4bd/README.md): v4c's abundance branches shrink [X/Fe] towards [Fe/H] (noise-free slopes
# 0.44-0.57 for Al, Ca, Mn, Ni in held-out giants, 0.32-0.74 in training giants: bench/label_shrinkage.py);
# BALANCE=0 BRANCH_DROPOUT=0.1
# FINETUNE_STATE=retrain/v4bd GAP_OUT=bench/results/label_emulator_gap_astronn_bd.json tests a lower branch rate.
set -euo pipefail
cd "$(dirname "$0")/.."
S=.venv/bin/stellarnn
PY=.venv/bin/python
GRIDS=${RETRAIN_GRIDS:-grids/apogee_like_f0}
TRAIN=$GRIDS/train
TEST=$GRIDS/test
CALIB=$GRIDS/calib
STATE=${FINETUNE_STATE:-retrain/v4ft}
BASE=${BASE_WEIGHTS:-retrain/v4/weights/astronn/astronn.pt}
EMU=${EMULATOR:-retrain/v4/weights/emulator/payne_apogee.pt}
BALANCE=${BALANCE:-0.5}
GAP_OUT=${GAP_OUT:-bench/results/label_emulator_gap_astronn_ft.json}
BRANCH=()
if [[ -n "${BRANCH_DROPOUT:-}" ]]; then BRANCH=(--branch-dropout "$BRANCH_DROPOUT"); fi
if [[ "${FREEZE_TRUNK:-0}" = 1 ]]; then BRANCH+=(--freeze-trunk); fi
FT_SECONDS=${FT_SECONDS:-5400}
EMULATED=${EMULATED:-60000}
THREADS=${THREADS:-2}
SLICE_SECONDS=${SLICE_SECONDS:-8400}
CONTINUE_LR_FACTOR=${CONTINUE_LR_FACTOR:-0.3}
export MIN_LAST_SLICE=${MIN_LAST_SLICE:-1800}
for f in "$BASE" "$EMU"; do
    if [[ ! -f "$f" ]]; then echo "finetune_astronn_v4: $f does not exist" >&2; exit 1; fi
done
W=$STATE/weights/astronn
mkdir -p logs "$W"

# shellcheck source=scripts/train_slices.sh
source scripts/train_slices.sh

# the chain's AstroNN recipe (scripts/retrain_labels_v4.sh) and learning rate x CONTINUE_LR_FACTOR, from v4c
LR=$($PY -c "import sys; print(5e-4 * float(sys.argv[1]))" "$CONTINUE_LR_FACTOR")
FIRST_INIT=$BASE train_step astronn_ft "$FT_SECONDS" "$W/astronn.pt" "$LR" $S train astronn --grid $TRAIN \
    --fresh-noise --snr-range 30 500 --brackett-mask --emulated "$EMULATED" --emulated-balance "$BALANCE" \
    --emulator "$EMU" --gate-grid $TEST --gate-sigma 0.3 --early-stop 8 --plateau-patience 3 --threads "$THREADS" \
    --manifest -q --epochs 100 --batch-size 64 --loss-beta 0.5 --select robust --grad-clip 1 ${BRANCH[@]+"${BRANCH[@]}"}
step calibrate_astronn_ft $S train calibrate-noise astronn --weights "$W/astronn.pt" --emulated 400 \
    --emulator "$EMU" --accuracy-grid $CALIB --accuracy-snr 50 100 200 --accuracy-emulated 3000 --raise-scale \
    --threads "$THREADS"
step bench_astronn_ft $PY bench/label_emulator_gap.py --weights "v4c=$BASE" "ft=$W/astronn.pt" --threads "$THREADS" \
    --emulator "$EMU" --test-grid $TEST --out "$GAP_OUT"
echo "== all done ($(date -u +%FT%TZ)); compare per population, commit $STATE and the bench JSON"
