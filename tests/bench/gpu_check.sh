#!/usr/bin/env bash
# GPU check of training and generation, in one short run (about 5 minutes on one GPU machine).
#
# Run from the repository root:   bash tests/bench/gpu_check.sh
# It installs the wheels in .whl/ (if any) into /tmp/site, then
#   1. prints torch / CUDA information;
#   2. runs the generator tests (tests/models: on a GPU the shared fixtures train there, and
#      tests/models/test_cuda.py runs);
#   3. simulates a general-adult cohort and trains `medsynth train` on it with --device cuda,
#      then the same on --device cpu, printing wall times, phase times and epsilon;
#   4. runs the DP-SGD vs non-private step benchmark (tests/bench/train_speed.py);
#   5. times sampling of GEN patients, writes them as FHIR ndjson and validates the output;
#   6. compares the synthetic patients' marginals with the real cohort (tests/bench/quality.py).
# Every phase has its own time limit, so one slow phase cannot eat the others' time.
#
# Settings (environment): DEVICE (cuda; cpu for a dry run), PATIENTS (2000), GEN (10000),
# CPU_THREADS (16), PYTHON (python3), OUT ($OUT or /tmp/gpu-check), SKIP_INSTALL (unset),
# SKIP_CPU_TRAIN (unset), PYTEST_ARGS (tests/models -x -q), SPEED_ARGS (bench sizes),
# TRAIN_ARGS (extra `medsynth train` options, e.g. "--epochs 1 --pretrain-patients 0").
# Output: $OUT/summary.md (the figures) and $OUT/log.txt (everything).
set -u
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
PATIENTS=${PATIENTS:-2000}
GEN=${GEN:-10000}
CPU_THREADS=${CPU_THREADS:-16}
OUT=${OUT:-/tmp/gpu-check}
WORK=$(mktemp -d /tmp/gpu-check-work.XXXXXX)
PYTEST_ARGS=${PYTEST_ARGS:-tests/models -x -q -p no:cacheprovider}
SPEED_ARGS=${SPEED_ARGS:---patients 2048 --batch 512 --steps 10 --rounds 3}
TRAIN_ARGS=${TRAIN_ARGS:-}
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md
LOG=$OUT/log.txt
: >"$SUMMARY"
: >"$LOG"
T0=$(date +%s)

say() { echo "$*" | tee -a "$SUMMARY"; }

# phase NAME LIMIT_S COMMAND...: run with a time limit, log everything, record wall and status
phase() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*" >>"$LOG"
    local start end rc
    start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    end=$(date +%s.%N)
    LAST_WALL=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')
    local status=ok
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && status="TIMED OUT after ${limit}s"
    [ $rc -ne 0 ] && [ "$status" = ok ] && status="FAILED (exit $rc)"
    say "- $name: ${LAST_WALL}s, $status"
    return $rc
}

if [ -z "${SKIP_INSTALL:-}" ] && compgen -G ".whl/*.whl" >/dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        >>"$LOG" 2>&1 || say "- wheel install FAILED (see log)"
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONWARNINGS=ignore

say "# medsynth GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ), DEVICE=$DEVICE, PATIENTS=$PATIENTS, GEN=$GEN)"
say ""
say "## Machine"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null ||
    echo "no nvidia-smi"; } | tee -a "$SUMMARY"
$PYTHON - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import os, torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"cuda available {torch.cuda.is_available()}, CPU cores {os.cpu_count()}")
if torch.cuda.is_available():
    print(f"device 0: {torch.cuda.get_device_name(0)}")
import opacus, medsynth
print(f"opacus {opacus.__version__}, medsynth from {os.path.dirname(medsynth.__file__)}")
EOF
say ""
say "## Phases"

# shellcheck disable=SC2086
phase "pytest $PYTEST_ARGS" 120 $PYTHON -m pytest $PYTEST_ARGS
grep -E "passed|failed|error" "$LOG" | tail -1 | sed 's/^/  /' | tee -a "$SUMMARY"

phase "simulate $PATIENTS general-adult patients" 30 \
    $PYTHON -m medsynth simulate --schema general-adult --patients "$PATIENTS" --seed 11 \
    --format cohort --out "$WORK/cohort" --no-progress

# train DEVICE NAME LIMIT: default configuration (PRV accountant, pretraining on), epsilon 3
train() {
    local dev=$1 name=$2 limit=$3 before
    before=$(($(wc -c <"$LOG") + 1))
    $PYTHON -m medsynth budget init --ledger "$WORK/ledger-$name.jsonl" >/dev/null
    # shellcheck disable=SC2086
    phase "train on $dev ($PATIENTS patients, epsilon 3, defaults $TRAIN_ARGS)" "$limit" \
        $PYTHON -m medsynth train "$WORK/cohort" --epsilon 3 --out "$WORK/$name" \
        --ledger "$WORK/ledger-$name.jsonl" --device "$dev" --seed 0 $TRAIN_ARGS
    # The progress bars' last states give the phase times.
    local bars
    bars=$(tail -c +"$before" "$LOG" | tr '\r' '\n' | grep -E "^(pretrain|DP-SGD)")
    for bar in pretrain DP-SGD; do # the last state of each bar (complete or not)
        echo "$bars" | grep "^$bar" | tail -1 | sed 's/^/  /' | tee -a "$SUMMARY"
    done
    [ -f "$WORK/$name/privacy.json" ] && $PYTHON - "$WORK/$name/privacy.json" <<'EOF' | tee -a "$SUMMARY"
import json, sys
d = json.load(open(sys.argv[1]))
print(f"  epsilon {d['epsilon']:.4f} (target {d['target_epsilon']}) at delta {d['delta']:.3g}, "
      f"{d['accountant']}, noise {d['noise_multiplier']:.4f}, q {d['sample_rate']:.4g}, "
      f"{d['steps']} steps")
EOF
}

train "$DEVICE" model-main 120
MODEL=$WORK/model-main
if [ -z "${SKIP_CPU_TRAIN:-}" ] && [ "$DEVICE" != cpu ]; then
    OMP_NUM_THREADS=$CPU_THREADS train cpu model-cpu 120
fi

# shellcheck disable=SC2086
phase "train_speed on $DEVICE ($SPEED_ARGS)" 75 \
    $PYTHON tests/bench/train_speed.py --device "$DEVICE" $SPEED_ARGS
grep -E "^\||^schema" "$LOG" | tail -8 | tee -a "$SUMMARY"

if [ -f "$MODEL/weights.pt" ]; then
    phase "sample $GEN patients on $DEVICE (no writing)" 45 $PYTHON - "$MODEL" "$GEN" "$DEVICE" <<'EOF'
import sys, time, torch
from medsynth.pipeline.generate import generate_cohort
from medsynth.models.artifact import load_model
model = load_model(sys.argv[1], device=sys.argv[3])
n = int(sys.argv[2])
for batch in (512, 2048, 8192):
    if sys.argv[3] == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    c = generate_cohort(model, n, seed=1, batch_size=batch, device=sys.argv[3])
    if sys.argv[3] == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    print(f"SAMPLE batch {batch}: {n} patients, {len(c.events)} events in {dt:.2f}s "
          f"({n / dt:.0f} patients/s)")
EOF
    grep "^SAMPLE" "$LOG" | tail -3 | sed 's/^/  /' | tee -a "$SUMMARY"
    phase "generate $GEN patients as FHIR ndjson on $DEVICE" 60 \
        $PYTHON -m medsynth generate "$MODEL" --patients "$GEN" --out "$WORK/fhir" \
        --device "$DEVICE" --batch-size 2048 --seed 1 --no-progress
    # Validation checks every resource with the R4B models (about 1,000 resources/s), so it
    # runs on smaller outputs: 300 patients as ndjson and 100 as transaction Bundles.
    phase "validate FHIR of 300 (ndjson) + 100 (bundle) patients" 75 bash -c \
        "$PYTHON -m medsynth generate '$MODEL' --patients 300 --out '$WORK/v-ndjson' \
        --device $DEVICE --seed 3 --no-progress && \
        $PYTHON -m medsynth generate '$MODEL' --patients 100 --out '$WORK/v-bundle' \
        --format bundle --device $DEVICE --seed 4 --no-progress && \
        $PYTHON tests/bench/gpu_validate.py '$WORK/v-ndjson' '$WORK/v-bundle'"
    grep "^VALID" "$LOG" | tail -2 | sed 's/^/  /' | tee -a "$SUMMARY"
    phase "quality: real vs $PATIENTS synthetic" 60 bash -c \
        "$PYTHON -m medsynth generate '$MODEL' --patients $PATIENTS --format parquet \
        --out '$WORK/syn' --device $DEVICE --seed 2 && \
        $PYTHON tests/bench/quality.py '$WORK/cohort' '$WORK/syn' > '$WORK/quality.md'"
    cat "$WORK/quality.md" 2>/dev/null | tee -a "$SUMMARY" >/dev/null
else
    say "- no model was trained on $DEVICE: sampling skipped"
fi

say ""
say "total wall time: $(($(date +%s) - T0))s"
rm -rf "$WORK"
