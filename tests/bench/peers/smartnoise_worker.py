"""SmartNoise Synth peer: DP-CTGAN, PATE-CTGAN, MST and AIM on the benchmark's flat table.

Run by the benchmark with the Python of ``.venv-peers-smartnoise`` (see ``setup.sh``):
``python smartnoise_worker.py JOB.json``. Reads ``train.csv`` and the public domain from the
job, fits at the job's epsilon (and delta where the synthesizer takes one), samples
``n_sample`` rows to ``synthetic.csv`` and writes ``timing.json``. Every transformer is given
the public bounds, so no preprocessing epsilon is spent; what the library still reads from the
data outside its epsilon (the set of category values seen by ``LabelTransformer``) is noted in
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd

CUBE_BINS = 16  # continuous columns of MST and AIM: equal-width bins over the public bounds


def transformer(domain: dict, style: str):
    from snsynth.transform import (
        BinTransformer,
        ChainTransformer,
        LabelTransformer,
        MinMaxTransformer,
        OneHotEncoder,
        TableTransformer,
    )

    parts = []
    for c in domain["columns"]:
        if c["kind"] == "numeric":
            lo, hi = float(c["low"]), float(c["high"])
            if style == "cube":
                parts.append(BinTransformer(bins=CUBE_BINS, lower=lo, upper=hi))
            else:
                parts.append(MinMaxTransformer(lower=lo, upper=hi, negative=False))
        elif style == "cube":
            parts.append(LabelTransformer(nullable=False))
        else:
            parts.append(ChainTransformer([LabelTransformer(nullable=False), OneHotEncoder()]))
    return TableTransformer(parts)


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    out = Path(job["out"])
    domain = job["domain"]
    names = [c["name"] for c in domain["columns"]]
    df = pd.read_csv(job["train_csv"], dtype=str)[names]
    for c in domain["columns"]:
        if c["kind"] == "numeric":
            df[c["name"]] = pd.to_numeric(df[c["name"]]).clip(c["low"], c["high"])
    import torch

    torch.manual_seed(int(job["seed"]))
    torch.set_num_threads(int(job.get("threads", 1)))
    from snsynth import Synthesizer

    method, eps, delta = job["method"], float(job["epsilon"]), float(job["delta"])
    style = "cube" if method in ("mst", "aim") else "gan"
    kwargs = dict(job.get("peer_options", {}).get(method, {}))
    if method in ("mst", "aim"):
        kwargs["delta"] = delta
    elif method == "dpctgan":
        kwargs.setdefault("delta", delta)
    synth = Synthesizer.create(method, epsilon=eps, verbose=False, **kwargs)
    start = time.perf_counter()
    synth.fit(df, transformer=transformer(domain, style), preprocessor_eps=0.0)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    syn = synth.sample(int(job["n_sample"]))
    sample_s = time.perf_counter() - start
    syn = pd.DataFrame(syn, columns=names)
    syn.to_csv(out / "synthetic.csv", index=False)
    info = {"fit_s": fit_s, "sample_s": sample_s, "method": method, "options": kwargs}
    (out / "timing.json").write_text(json.dumps(info, indent=2, default=str))


if __name__ == "__main__":
    main()
