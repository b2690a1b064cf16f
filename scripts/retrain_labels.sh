#!/usr/bin/env bash
# Retrain the label chain on every finished training grid (resumable; run in the background):
#   1. the spectrum emulator (train + train2 + train3, from scratch; resume file in STATE)
#   2. APOGEENet and 3. AstroNN fine-tuned from the shipped weights on the grids + 20000 spectra of the new emulator
#      (AstroNN at lr 5e-5: at 2e-4 its validation never beat the first epoch, and the test grid got worse)
#   4. both noise models recalibrated (400 emulated repeat pairs, then the accuracy floor on grids/apogee/calib)
#   5. bench/emulator.py and bench/labels.py re-measured
# Wall-time limits are generous: a session that ends mid-step is resumed by the rerun, not cut short.
# Each finished step leaves STATE/STEP.done; a rerun skips those and resumes the one in progress.
# STATE (default $STELLARNN_CACHE/retrain_v3, i.e. ~/.cache/stellarnn/retrain_v3) lies outside the work tree, so a
# later session on the same machine resumes the chain even when its checkout is new (logs/ is not kept).
# New checkpoints (and their manifests) are staged in STATE/weights/ and copied into weights/ only once
# all three are trained and calibrated, so the shipped weights never hold a half-finished chain.
# Usage: nohup scripts/retrain_labels.sh > logs/retrain_v3.log 2>&1 &   (NET_SECONDS: wall-time limit per network)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p logs
STATE=${RETRAIN_STATE:-${STELLARNN_CACHE:-$HOME/.cache/stellarnn}/retrain_v3}
mkdir -p "$STATE"
GRIDS="grids/apogee/train grids/apogee/train2 grids/apogee/train3"
S=.venv/bin/stellarnn
W=$STATE/weights
# Wall-time limit per network fine-tune (seconds); lower it to fit the chain into one session.
NET_SECONDS=${NET_SECONDS:-5400}
mkdir -p $W/emulator $W/apogeenet $W/astronn

step() {  # step NAME COMMAND...
    local name=$1; shift
    if [[ -e "$STATE/$name.done" ]]; then echo "== $name: done already"; return; fi
    echo "== $name: $*  ($(date -u +%FT%TZ))"
    "$@"
    touch "$STATE/$name.done"
}

for g in $GRIDS; do  # every spectrum of every grid must be finished first
    $S grid info "$g" | head -1 | grep -q "2000 spectra (2000 ok" || { echo "$g is not complete: run scripts/build_grids.sh"; exit 1; }
done

step emulator $S emulator train --grid $GRIDS --test-grid grids/apogee/test --epochs 2000 --batch-size 64 \
    --plateau-patience 80 --early-stop 400 --max-seconds 9000 --resume $STATE/emulator.resume.pt --threads 2 -q \
    -o $W/emulator/payne_apogee.pt
step apogeenet $S train apogeenet --grid $GRIDS --copies 2 --snr 100 --emulated 20000 --emulator $W/emulator/payne_apogee.pt --threads 2 --epochs 12 \
    --batch-size 32 --lr 3e-4 --plateau-patience 3 --max-seconds $NET_SECONDS --init weights/apogeenet/apogeenet.pt \
    --resume $STATE/apogeenet.resume.pt --manifest -q -o $W/apogeenet/apogeenet.pt
step astronn $S train astronn --grid $GRIDS --copies 2 --snr 100 --emulated 20000 --emulator $W/emulator/payne_apogee.pt --threads 2 --epochs 20 --lr 5e-5 \
    --plateau-patience 3 --max-seconds $NET_SECONDS --loss-beta 0.5 --select values --init weights/astronn/astronn.pt \
    --resume $STATE/astronn.resume.pt --manifest -q -o $W/astronn/astronn.pt
step calibrate_apogeenet $S train calibrate-noise apogeenet --weights $W/apogeenet/apogeenet.pt --emulated 400 --emulator $W/emulator/payne_apogee.pt \
    --accuracy-grid grids/apogee/calib --accuracy-snr 50 100 200
step calibrate_astronn $S train calibrate-noise astronn --weights $W/astronn/astronn.pt --emulated 400 --emulator $W/emulator/payne_apogee.pt \
    --accuracy-grid grids/apogee/calib --accuracy-snr 50 100 200 --raise-scale
install() {
    for d in emulator apogeenet astronn; do cp $W/$d/*.pt $W/$d/manifest.json weights/$d/; done
}
step install install
step bench_emulator .venv/bin/python bench/emulator.py
step bench_labels .venv/bin/python bench/labels.py --threads 2 --astronn-weights weights/astronn/astronn.pt \
    --apogeenet-weights weights/apogeenet/apogeenet.pt --test-grid grids/apogee/test --fitter-n 60
echo "== all done ($(date -u +%FT%TZ)); commit weights/, bench/results/ and update the README figures"
