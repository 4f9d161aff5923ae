#!/usr/bin/env bash
# Measure every documented claim, then judge it: runs each claim's preset (analysis/claims_registry.py,
# planned by analysis/claims_plan.py) with the methods its claims compare, and writes the verdict table.
#
#   scripts/claims.sh [RESULTS_DIR]                 # default results/claims-$SCALE
#   SCALE=debug scripts/claims.sh                   # every preset, seconds per run (a smoke pass)
#   SEEDS=0,1,2,3,4 scripts/claims.sh               # more seeds (a verdict needs >= 3)
#   PRESETS='quickstart spice/*' scripts/claims.sh  # only these presets (space-separated shell patterns)
#   JOBS=4 scripts/claims.sh                        # parallel runs (joblib launcher, 1 torch thread each)
#   EXTRA='dataset.root=/data' scripts/claims.sh    # the CIFAR / full-MNIST presets need a dataset root
#
# Every multirun of the pass writes into one results dir, so the artifact cache (results/_cache: proxy
# models, gradient features, TRAK datamodels) is shared across presets and with a relaunch, which
# skips finished runs.  A preset that needs a dataset root it was not given is skipped and named; a
# preset that fails is reported and the others still run.  Progress for the whole pass (runs done of
# the planned total, elapsed, time left) is printed every PROGRESS_S seconds, and each preset's wall
# time is appended to RESULTS_DIR/claims/times.tsv.  The table: RESULTS_DIR/claims/claims.{md,csv},
# also printed.  Exit status: 0 when every preset that could run ran (skips are named), 1 when some
# runs failed, 2 when nothing ran (no preset matched, or the registry cannot be read).
set -u
cd "$(dirname "$0")/.."
SCALE=${SCALE:-small}
RESULTS=${1:-results/claims-$SCALE}
SEEDS=${SEEDS:-0,1,2}
PRESETS=${PRESETS:-*}
JOBS=${JOBS:-2}
EXTRA=${EXTRA:-}
PROGRESS_S=${PROGRESS_S:-30}
# the project's venv when there is one (make claims), else whatever is on PATH
if [ -x "${VENV:-.venv}/bin/selbench" ]; then PATH="$(cd "${VENV:-.venv}/bin" && pwd):$PATH"; fi

PLAN=$(python -m selbench.analysis.claims_plan --seeds "$SEEDS" --presets "$PRESETS" --extra "$EXTRA") \
    || { echo "claims.sh: cannot read the claims registry" >&2; exit 2; }
if [ -z "$PLAN" ]; then
    echo "claims.sh: no preset matches PRESETS='$PRESETS' (see conf/experiment/)" >&2
    exit 2
fi
total=0
while IFS=$'\t' read -r _ _ _ n _; do total=$((total + n)); done <<< "$PLAN"
n_plan=$(wc -l <<< "$PLAN")
mkdir -p "$RESULTS/claims"
TIMES="$RESULTS/claims/times.tsv"
[ -f "$TIMES" ] || printf 'preset\toverrides\tscale\tseeds\tjobs\twall_s\tstatus\n' > "$TIMES"

count_records() { find "$RESULTS" -name record.json -not -path '*/_cache/*' 2>/dev/null | wc -l; }
fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
before=$(count_records)
t0=$(date +%s)
echo "claims.sh: $n_plan multiruns, $total runs (scale=$SCALE, seeds=$SEEDS, $JOBS parallel jobs) -> $RESULTS" >&2

progress() {  # one line for the whole pass: new records of the planned total, elapsed, time left
    local now done el left
    now=$(date +%s); el=$((now - t0))
    done=$(( $(count_records) - before )); [ "$done" -gt "$total" ] && done=$total
    if [ "$done" -gt 0 ]; then left=$(( el * (total - done) / done )); left="$(fmt $left) left"; else left="time left: —"; fi
    echo "claims.sh: progress $done/$total runs ($((100 * done / (total > 0 ? total : 1)))%), $(fmt $el) elapsed, $left" >&2
}
( while sleep "$PROGRESS_S"; do progress; done ) &
MONITOR=$!
trap 'kill "$MONITOR" 2>/dev/null' EXIT

ran=0; failed=0; skipped=0; i=0
while IFS=$'\t' read -r preset overrides methods n skip; do
    i=$((i + 1))
    [ "$overrides" = "-" ] && overrides=""
    if [ "$skip" != "-" ]; then
        echo "claims.sh: [$i/$n_plan] skip experiment=$preset $overrides: $skip" >&2
        printf '%s\t%s\t%s\t%s\t%s\t\tskipped: %s\n' "$preset" "$overrides" "$SCALE" "$SEEDS" "$n" "$skip" >> "$TIMES"
        skipped=$((skipped + 1)); continue
    fi
    echo "claims.sh: [$i/$n_plan] experiment=$preset $overrides method=$methods seed=$SEEDS scale=$SCALE ($n runs)" >&2
    ts=$(date +%s)
    # shellcheck disable=SC2086  # $overrides and $EXTRA are lists of overrides, split on purpose
    selbench -m "experiment=$preset" $overrides "method=$methods" "seed=$SEEDS" "scale=$SCALE" \
        launcher=joblib "hydra.launcher.n_jobs=$JOBS" "results_dir=$RESULTS" progress=false $EXTRA < /dev/null
    rc=$?
    status=ok
    if [ $rc = 2 ]; then  # refused before launch, e.g. a text-only method on images: one method at a time
        echo "claims.sh: experiment=$preset refused as a whole; running its methods one by one" >&2
        status="refused as a whole; methods one by one"
        for m in ${methods//,/ }; do
            # shellcheck disable=SC2086
            selbench -m "experiment=$preset" $overrides "method=$m" "seed=$SEEDS" "scale=$SCALE" \
                launcher=joblib "hydra.launcher.n_jobs=$JOBS" "results_dir=$RESULTS" progress=false $EXTRA \
                < /dev/null || { failed=$((failed + 1)); status="some runs failed"; }
        done
    elif [ $rc != 0 ]; then
        echo "claims.sh: experiment=$preset $overrides: some runs failed (see above); continuing" >&2
        failed=$((failed + 1)); status="some runs failed (rc=$rc)"
    fi
    ran=$((ran + 1))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$preset" "$overrides" "$SCALE" "$SEEDS" "$n" "$(( $(date +%s) - ts ))" \
        "$status" >> "$TIMES"
    progress
done <<< "$PLAN"
kill "$MONITOR" 2>/dev/null
echo "claims.sh: pass took $(fmt $(( $(date +%s) - t0 ))) ($ran multiruns ran, $failed with failures, $skipped skipped)" >&2
if [ $ran = 0 ]; then
    echo "claims.sh: no preset ran" >&2
    exit 2
fi
selbench-report --claims "$RESULTS" --out "$RESULTS/claims"
rc=$?
[ $failed = 0 ] || echo "claims.sh: $failed multirun(s) had failures; their claims read 'not measured'" >&2
[ $skipped = 0 ] || echo "claims.sh: $skipped multirun(s) skipped (see above); their claims read 'not measured'" >&2
[ $rc = 0 ] || exit $rc
[ $failed = 0 ] || exit 1
exit 0
