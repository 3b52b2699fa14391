#!/usr/bin/env bash
# A longitudinal FHIR export through medsynth end to end, measured as the shared pbcseq
# export's README defines its figures (medsynth.audit.visits):
#
#   bash tests/bench/export_check.sh EXPORT_DIR SCHEMA EPSILON SEED WORK [extra train options]
#
# EXPORT_DIR holds the README's split (split.py: train/ and holdout/); WORK receives the
# ingested cohorts, the model, the synthetic FHIR export read back, and figures.json.
# PYTHONPATH=OTHER_CHECKOUT runs another commit's medsynth (the figures use this one's).
# EPSILON "none" trains the non-private ceiling (sampled directly: it is not releasable).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
# `python -m` puts the working directory on sys.path ahead of PYTHONPATH, so run from a
# checkout's root it would import that checkout whatever PYTHONPATH says; PYTHONSAFEPATH stops
# that (Python >= 3.11), and PYTHONPATH decides.
export PYTHONSAFEPATH=1
export_dir=$1 schema=$2 eps=$3 seed=$4 work=$5
shift 5
mkdir -p "$work"
[ -d "$work/train" ] || python -m medsynth ingest "$export_dir/train" --schema "$schema" --out "$work/train" \
    --dataset export-check --no-progress >/dev/null
ledger="$work/ledger-$seed.jsonl"
rm -rf "$work/model-$eps-$seed" "$work/syn-$eps-$seed" "$work/syn-cohort-$eps-$seed" "$ledger"*
if [ "$eps" = none ]; then
    python -m medsynth train "$work/train" --non-private --seed "$seed" --out "$work/model-$eps-$seed" \
        --no-progress "$@" >/dev/null
    python - "$work" "$eps" "$seed" <<'PY'
import sys
from pathlib import Path
from medsynth.fhir.write import write_fhir
from medsynth.models.artifact import load_model
work, eps, seed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
n = __import__("medsynth.cohort", fromlist=["Cohort"]).Cohort.load(work / "train").n_patients
(syn,) = load_model(work / f"model-{eps}-{seed}").sample(n, random_state=seed + 1, batch_size=n)
write_fhir(syn, work / f"syn-{eps}-{seed}", format="ndjson", random_state=seed + 1)
PY
else
    python -m medsynth budget init --ledger "$ledger" >/dev/null
    python -m medsynth train "$work/train" --epsilon "$eps" --delta 1e-5 --seed "$seed" --ledger "$ledger" \
        --out "$work/model-$eps-$seed" --no-progress "$@" >/dev/null
    n=$(python -c "from medsynth.cohort import Cohort; print(Cohort.load('$work/train').n_patients)")
    python -m medsynth generate "$work/model-$eps-$seed" --patients "$n" --seed $((seed + 1)) \
        --format ndjson --out "$work/syn-$eps-$seed" --no-progress >/dev/null
fi
python -m medsynth ingest "$work/syn-$eps-$seed" --schema "$schema" --out "$work/syn-cohort-$eps-$seed" \
    --no-progress >/dev/null
# Measured with this checkout's code even when PYTHONPATH points the run at another one.
PYTHONPATH="$here" python - "$work" "$eps" "$seed" <<'PY'
import json, sys
from pathlib import Path
from medsynth.audit.visits import visit_figures
from medsynth.cohort import Cohort
work, eps, seed = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
real, syn = Cohort.load(work / "train"), Cohort.load(work / f"syn-cohort-{eps}-{seed}")
fig = visit_figures(real, syn).to_dict()
defining = syn.schema.conditions[0].code if syn.schema.conditions else None
have = set(syn.conditions.loc[syn.conditions["code"] == defining, "patient_id"])
fig["share_without_first_condition"] = 1 - len(have) / max(syn.n_patients, 1)
fig["visits_per_patient_max"] = int(
    syn.events.assign(d=syn.events["time"].floordiv(1)).groupby("patient_id")["d"].nunique().max()
)
row = {"epsilon": eps, "seed": int(seed), **fig}
print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                  if not isinstance(v, dict)}))
with open(work / "figures.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
PY
