# Trainings in slices that survive the end of a session (sourced by scripts/retrain_labels_v4.sh; tested by
# tests/test_scripts_train_slices.py).  Needs STATE (a committed folder), PY (python), SLICE_SECONDS and
# CONTINUE_LR_FACTOR.  The trainer must take --lr, --init, --max-seconds, --resume and -o, and write a checkpoint
# whose "metrics" hold train_seconds and stopped_by (stellarnn.train.History.stopped_by).  STOP_AT (optional, a time
# `date -d` reads, e.g. "23:50 UTC": when the session ends) shortens a slice to end STOP_MARGIN seconds (default 600)
# before it, and ends the script (status 0, state kept) when less than STOP_MARGIN would be left for a slice.  A
# slice that would leave less than STOP_MIN_TAIL seconds (default 1800) before that end is lengthened to use them:
# a short last slice would restart from the float16 checkpoint at the lower learning rate and gain little.  For the
# same reason no slice shorter than STOP_MIN_TAIL starts when the training has more budget left than that (a step
# that finished late in a session leaves the next one to the next session): a short first slice would make every
# later one run at the lower learning rate.  MIN_LAST_SLICE (default 0: off) ends a training whose remaining budget,
# after at least one slice, is shorter than it: a last slice of a few minutes would restart from the float16
# checkpoint at the lower learning rate for less than an epoch or two.  FIRST_INIT (optional, a checkpoint) starts
# the first slice from it (--init) at LR: a fine-tuning of a finished network.  A later slice whose best validation
# loss (the checkpoint's metrics["best_val_loss"], on the same validation split) is worse than the last slice's gave
# nothing: the last slice's checkpoint (and manifest.json beside it) is put back and the training is done.
#
# step NAME COMMAND...: run COMMAND once (STATE/NAME.done marks it finished; a rerun skips it).
# train_step NAME BUDGET_SECONDS CHECKPOINT LR COMMAND...: a training in slices (COMMAND without --lr, --init,
# --max-seconds, --resume, -o) until it stops by itself or has spent BUDGET_SECONDS; then NAME.done.
step() {
    local name=$1; shift
    if [[ -e "$STATE/$name.done" ]]; then echo "== $name: done already"; return; fi
    echo "== $name: $*  ($(date -u +%FT%TZ))"
    "$@"
    touch "$STATE/$name.done"
}

train_step() {
    local name=$1 budget=$2 ckpt=$3 lr=$4; shift 4
    local spent left slice report start prev verdict old new
    while [[ ! -e "$STATE/$name.done" ]]; do
        spent=$(cat "$STATE/$name.seconds" 2>/dev/null || echo 0)
        left=$($PY -c "import sys; print(max(0, int(float(sys.argv[1]) - float(sys.argv[2]))))" "$budget" "$spent")
        if (( left <= 0 )); then
            echo "== $name: its ${budget} s are spent"; touch "$STATE/$name.done"; break
        fi
        if [[ "$spent" != 0 ]] && (( left < ${MIN_LAST_SLICE:-0} )); then
            echo "== $name: ${left} s of its ${budget} s left, less than MIN_LAST_SLICE (${MIN_LAST_SLICE} s): done"
            touch "$STATE/$name.done"; break
        fi
        slice=$(( left < SLICE_SECONDS ? left : SLICE_SECONDS ))
        if [[ -n "${STOP_AT:-}" ]]; then  # the session's end: a slice cut by it would be lost with the machine
            local margin=${STOP_MARGIN:-600} avail stop_s
            if ! stop_s=$(date -d "$STOP_AT" +%s 2>/dev/null); then  # a typo must not pass for "no time left"
                echo "STOP_AT='$STOP_AT' is not a time that date -d reads (e.g. \"23:50 UTC\")" >&2
                return 2
            fi
            avail=$(( stop_s - $(date +%s) - margin ))
            if (( avail < margin || (avail < ${STOP_MIN_TAIL:-1800} && avail < left) )); then
                echo "== $name: $(( avail + margin )) s left before STOP_AT ($STOP_AT): continue in the next session"
                exit 0
            fi
            slice=$(( avail < slice ? avail : slice ))
            if (( avail - slice < ${STOP_MIN_TAIL:-1800} )); then  # no short slice at the end of the session
                slice=$(( avail < left ? avail : left ))
            fi
        fi
        start=(--lr "$lr")
        prev=""
        if [[ "$spent" == 0 && -n "${FIRST_INIT:-}" ]]; then  # a fine-tuning: its first slice from that checkpoint
            start=(--init "$FIRST_INIT" --lr "$lr")
        elif [[ "$spent" != 0 && -f "$ckpt" ]]; then  # a later slice: from the last one's checkpoint, gentler steps
            start=(--init "$ckpt" --lr "$($PY -c "import sys; print(float(sys.argv[1]) * float(sys.argv[2]))" \
                                           "$lr" "$CONTINUE_LR_FACTOR")")
            prev="$STATE/$name.previous"  # the last slice's checkpoint (and manifest), kept until this one is judged
            mkdir -p "$prev"
            cp "$ckpt" "$prev/checkpoint.pt"
            if [[ -f "$(dirname "$ckpt")/manifest.json" ]]; then cp "$(dirname "$ckpt")/manifest.json" "$prev/"; fi
        fi
        echo "== $name: slice of ${slice} s (${spent} of ${budget} s spent): $* ${start[*]}  ($(date -u +%FT%TZ))"
        "$@" "${start[@]}" --max-seconds "$slice" --resume "$STATE/$name.resume.pt" -o "$ckpt"
        report=$($PY - "$ckpt" "$spent" <<'PYEOF'
import sys, torch
metrics = torch.load(sys.argv[1], map_location="cpu", weights_only=True)["metrics"]
print(float(sys.argv[2]) + float(metrics["train_seconds"]), metrics.get("stopped_by", "") or "unknown")
PYEOF
)
        rm -f "$STATE/$name.resume.pt"  # the slice is over: its resume file must not restart a finished training
        echo "${report% *}" > "$STATE/$name.seconds"
        echo "== $name: slice ended (${report#* }), ${report% *} of ${budget} s spent"
        if [[ "${report#* }" != max_seconds ]]; then touch "$STATE/$name.done"; fi
        if [[ -n "$prev" ]]; then  # a later slice that validates worse than the last one (the same validation split)
            verdict=$($PY - "$prev/checkpoint.pt" "$ckpt" <<'PYEOF'
import math, sys, torch
def best(path):
    value = (torch.load(path, map_location="cpu", weights_only=True).get("metrics") or {}).get("best_val_loss")
    return math.nan if value is None else float(value)
old, new = best(sys.argv[1]), best(sys.argv[2])
print("worse" if new > old else "kept", old, new)
PYEOF
)
            if [[ "${verdict%% *}" == worse ]]; then  # the restart only lost ground: keep the last slice, stop here
                cp "$prev/checkpoint.pt" "$ckpt"
                if [[ -f "$prev/manifest.json" ]]; then cp "$prev/manifest.json" "$(dirname "$ckpt")/"; fi
                read -r _ old new <<< "$verdict"
                echo "== $name: this slice's best validation loss ($new) is worse than the last slice's ($old):" \
                     "the last slice's checkpoint is kept and the training is done"
                touch "$STATE/$name.done"
            fi
            rm -rf "$prev"
        fi
    done
    if [[ -e "$STATE/$name.done" ]]; then echo "== $name: done"; fi
}
