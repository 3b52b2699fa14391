#!/usr/bin/env bash
# CI: build medsynth's sdist and wheel, install the wheel into a clean virtual environment and run
# a small job end to end from a folder outside the source tree: simulate, ingest, train,
# generate, sign an audit, verify it, and the demo. An editable install reads schemas/ and
# audits/ from the checkout and imports whatever the development environment has; this catches
# a wheel that leaves out a data file or a dependency.
#
# Usage: .ci/wheel-smoke.sh
#   PYTHON=python3.11   the interpreter to build and install with (default: python3)
#   KEEP=1              keep the work folder (printed at the start) to look at afterwards
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/medsynth-wheel-smoke.XXXXXX")"
if [[ -z "${KEEP:-}" ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi
# Nothing from the checkout or the caller's settings may leak into the installed job.
unset PYTHONPATH MEDSYNTH_LEDGER
export XDG_DATA_HOME="$WORK/xdg-data"

start=$SECONDS
step() { printf '\n== %s [%ss]\n' "$*" "$((SECONDS - start))"; }

# expect "CODES" COMMAND...: run COMMAND and fail unless its exit code is one of CODES.
expect() {
    local codes="$1" rc=0
    shift
    "$@" || rc=$?
    if [[ " $codes " != *" $rc "* ]]; then
        echo "wheel smoke: FAILED: '$*' exited $rc, expected one of: $codes" >&2
        exit 1
    fi
}

echo "wheel smoke: work folder $WORK"

step "build the sdist, then the wheel from it"
# From a copy of the files git knows (tracked, or new and not ignored), so that nothing left by
# an earlier build (build/, *.egg-info) reaches the wheel and nothing is written to the checkout.
BUILD_SRC="$SRC"
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    BUILD_SRC="$WORK/src"
    mkdir "$BUILD_SRC"
    (cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do if [[ -f $f ]]; then printf '%s\0' "$f"; fi; done |
        tar --null -T - -cf -) | tar -xf - -C "$BUILD_SRC"
fi
"$PYTHON" -m venv "$WORK/build-env"
"$WORK/build-env/bin/python" -m pip install --quiet build
"$WORK/build-env/bin/python" -m build --outdir "$WORK/dist" "$BUILD_SRC" >"$WORK/build.log" 2>&1 ||
    { tail -n 40 "$WORK/build.log"; exit 1; }
ls "$WORK/dist"

step "a clean virtual environment: torch==2.13.0 first (the CPU build), then the wheel"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
MS="$WORK/venv/bin/medsynth"
"$VPY" -m pip install --quiet torch==2.13.0
"$VPY" -m pip install --quiet "$WORK"/dist/medsynth-*.whl
"$VPY" -m pip check

JOB="$WORK/job"
mkdir "$JOB"
cd "$JOB"

step "the installed package carries its data files and reads them from itself"
"$VPY" - <<'EOF'
from pathlib import Path

import medsynth
from medsynth.audit.policy import load_policy, policies_dir
from medsynth.schema import load_json_schema, schemas_dir, shipped_schemas

package = Path(medsynth.__file__).resolve().parent
assert "site-packages" in package.parts, package
for folder in (policies_dir(), schemas_dir()):
    assert folder.parent == package / "_data", folder
assert {"general-adult", "liver-panel"} <= set(shipped_schemas())
for name in ("default", "strict"):
    load_policy(name)
for name in ("dataset", "audit-policy", "audit-report", "fhir-bindings"):
    load_json_schema(f"{name}.schema.json")
assert (package / "py.typed").is_file()
assert sorted(p.name for p in (package / "report" / "templates").iterdir()) == [
    "report.html.j2",
    "result.html.j2",
]
print(f"medsynth {medsynth.__version__} from {package}")
EOF

step "simulate a training and a holdout cohort as FHIR; ingest both"
expect 0 "$MS" --version
expect 0 "$MS" schema validate general-adult
expect 0 "$MS" simulate --schema general-adult --patients 60 --seed 1 --out fhir-train --no-progress
expect 0 "$MS" simulate --schema general-adult --patients 60 --seed 2 --out fhir-holdout \
    --no-progress
expect 0 "$MS" ingest fhir-train --schema general-adult --out train --no-progress
expect 0 "$MS" ingest fhir-holdout --schema general-adult --out holdout --no-progress

step "train under DP-SGD (charged to a ledger in the job folder); generate"
expect 0 "$MS" budget init --ledger ledger.jsonl
expect 0 "$MS" train train --epsilon 3 --epochs 2 --pretrain-patients 0 --device cpu \
    --ledger ledger.jsonl --out model --no-progress
expect 0 "$MS" budget verify --ledger ledger.jsonl
expect 0 "$MS" generate model --patients 60 --device cpu --out synthetic --no-progress

step "sign an audit with the default policy (verdict FAIL, exit 4, is fine here); verify it"
expect 0 "$MS" keys generate --out keys
expect "0 4" "$MS" audit --train train --holdout holdout --synthetic synthetic --model model \
    --ledger ledger.jsonl --key keys/medsynth-signing.key --out report --no-progress
test -s report/report.json && test -s report/report.html
expect 0 "$MS" report verify report --key keys/medsynth-signing.pub
# The report, the model's privacy record, the ledger and the export name one model hash.
expect 0 "$MS" report verify report --key keys/medsynth-signing.pub --model model \
    --ledger ledger.jsonl --export synthetic
# A changed byte must fail verification (exit 5), or the check above proves nothing.
cp -R report tampered
printf ' ' >>tampered/report.html
expect 5 "$MS" report verify tampered --key keys/medsynth-signing.pub

step "the demo, small"
expect 0 "$MS" demo --patients 40 --epochs 1 --pretrain-patients 0 --device cpu --no-progress \
    --out demo

step "wheel smoke passed in $((SECONDS - start))s"
