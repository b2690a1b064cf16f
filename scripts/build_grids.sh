#!/usr/bin/env bash
# Background grid synthesis (resumable): train then test. A rerun skips finished spectra.
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
.venv/bin/stellarnn grid build apogee --n 2000 --seed 1 --out grids/apogee/train --processes 2 -q
.venv/bin/stellarnn grid build apogee --n 300 --seed 2 --out grids/apogee/test --processes 2 -q
.venv/bin/stellarnn grid build apogee --n 200 --seed 3 --out grids/apogee/calib --processes 1 -q   # noise-model accuracy calibration (never trained on)
.venv/bin/stellarnn grid build apogee --n 2000 --seed 4 --out grids/apogee/train2 --processes 1 -q   # second training grid (emulator/network retraining)
.venv/bin/stellarnn grid build apogee --n 2000 --seed 5 --out grids/apogee/train3 --processes 1 -q   # third training grid
