#!/usr/bin/env bash
# Smoke run of scripts/retrain_labels_v4.sh: every step of the chain, with budgets of seconds, before its real
# run of ~18 h spends them.  The chain installs weights into weights/ and writes bench/results/, so it runs in a
# throwaway clone of this repository (committed state: commit first), with its own .venv, on grids linked from
# this checkout: the complete test and calib grids of grids/apogee_like_f0, the calib grid standing in for the
# unfinished train grid.  The three benches run on the first held-out spectra only (BENCH_N, default 60, of
# which FIT_N, default 12, go through the slow least-squares fitter; the PySME check of bench/crlb.py is skipped:
# ~130 syntheses; crlb.json goes to the clone's bench/results/, where the other two benches look for it, as in
# the chain).  Nothing here is a result: the weights are minutes old and stay in the clone.
#
# Usage: scripts/smoke_retrain_v4.sh [WORK_DIR]   (default: a new folder under /tmp; ~20 min on 2 busy cores)
#   environment: THREADS (default 1, beside a grid build), BENCH_N, FIT_N
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$(mktemp -d /tmp/retrain_smoke.XXXXXX)}
THREADS=${THREADS:-1}
BENCH_N=${BENCH_N:-60}
FIT_N=${FIT_N:-12}
GRIDS=$ROOT/grids/apogee_like_f0
for g in test calib; do
    [[ -f $GRIDS/$g/spec.json ]] || { echo "smoke_retrain_v4: $GRIDS/$g is missing" >&2; exit 1; }
done
echo "== smoke of retrain_labels_v4.sh in $WORK ($(date -u +%FT%TZ))"
git clone -q "$ROOT" "$WORK/repo"
mkdir -p "$WORK/grids" "$WORK/state"
ln -s "$GRIDS/test" "$WORK/grids/test"
ln -s "$GRIDS/calib" "$WORK/grids/calib"
ln -s "$GRIDS/calib" "$WORK/grids/train"
touch "$WORK/state/bench_crlb.done" "$WORK/state/bench_emulator.done" "$WORK/state/bench_labels.done" \
    "$WORK/state/bench_noise_population.done"  # (that bench has no subset option; it ran on the shipped weights)
cd "$WORK/repo"
make venv > "$WORK/venv.log"
RETRAIN_GRIDS=$WORK/grids RETRAIN_STATE=$WORK/state THREADS=$THREADS SLICE_SECONDS=60 MIN_LAST_SLICE=0 EMU_SECONDS=90 \
    NET_SECONDS=90 APOGEENET_SECONDS=120 EMULATED=300 bash scripts/retrain_labels_v4.sh
# the chain's benches, on the first BENCH_N held-out spectra
.venv/bin/python bench/crlb.py --emulator weights/emulator/payne_apogee.pt --label-grid "$WORK/grids/test" \
    --error-grid "$WORK/grids/test" --skip-pysme --threads "$THREADS"
.venv/bin/python bench/emulator.py --weights weights/emulator/payne_apogee.pt --test-grid "$WORK/grids/test" \
    --n-fit "$FIT_N" --repeats 1 --threads "$THREADS" --out "$WORK/emulator.json"
# the fitter's scatter must be set against the bounds of the same held-out labels, not the old box grid's
ref=$(.venv/bin/python -c "import json, sys; print(json.load(open(sys.argv[1]))['fitter']['crlb_reference'])" \
      "$WORK/emulator.json")
[[ $ref == *"-> by_population" ]] || { echo "smoke_retrain_v4: emulator.json compares with '$ref'" >&2; exit 1; }
.venv/bin/python bench/labels.py --threads "$THREADS" --astronn-weights weights/astronn/astronn.pt \
    --apogeenet-weights weights/apogeenet/apogeenet.pt --emulator-weights weights/emulator/payne_apogee.pt \
    --test-grid "$WORK/grids/test" --cannon-train-grid "$WORK/grids/calib" --n-test "$BENCH_N" \
    --fitter-n "$FIT_N" --repeats 1 --n-spectra 8 --ood-per-kind 2 --out "$WORK/labels.json"
echo "== smoke passed ($(date -u +%FT%TZ)): every step of the chain ran; results (not figures) in $WORK and $WORK/repo/bench/results"
