"""SmartNoise Synth peer: DP-CTGAN, PATE-CTGAN, MST and AIM on the benchmark's flat table.

Run by the benchmark with the Python of ``.venv-peers-smartnoise`` (see ``setup.sh``):
``python smartnoise_worker.py JOB.json``. Reads ``train.csv`` and the public domain from the
job, fits at the job's epsilon (and delta where the synthesizer takes one), samples
``n_sample`` rows to ``synthetic.csv`` and writes ``timing.json``. MST and AIM are sampled twice
from the one fitted model (post-processing, no privacy cost): ``synthetic.csv`` with mbi's
default ``synthetic_data(method="round")`` (what ``Synthesizer.sample`` does) and
``synthetic-iid.csv`` with ``method="sample"``, records drawn i.i.d. from the graphical model
(the harness's ``mst-iid`` and ``aim-iid`` systems). Every transformer is given
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
# Outputs of the graphical-model synthesizers: file name -> mbi ``synthetic_data`` method.
MODEL_SAMPLES = {"synthetic.csv": "round", "synthetic-iid.csv": "sample"}


class _Sampling:
    """Stands in for the fitted mbi ``MarkovRandomField`` (``synth.synthesizer``, a frozen
    dataclass) while ``synth.sample`` runs, so that snsynth's own ``sample`` (MST's domain
    decompression, AIM's column order, the inverse transform) calls ``synthetic_data`` with the
    given method instead of its default ``"round"``."""

    def __init__(self, model, method: str):
        self.model, self.method = model, method

    def synthetic_data(self, rows=None):
        return self.model.synthetic_data(rows=rows, method=self.method)


def sample_model(synth, n: int, method: str, seed: int):
    """``n`` rows of a fitted MST or AIM synthesizer, drawn with mbi's ``method``."""
    import numpy as np

    np.random.seed(seed)  # mbi samples with numpy's global generator
    model = synth.synthesizer
    synth.synthesizer = _Sampling(model, method)
    try:
        return synth.sample(n)
    finally:
        synth.synthesizer = model


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
    n, seed = int(job["n_sample"]), int(job["seed"])
    samples = {}
    outputs = MODEL_SAMPLES if style == "cube" else {"synthetic.csv": None}
    for name, how in outputs.items():
        start = time.perf_counter()
        syn = synth.sample(n) if how is None else sample_model(synth, n, how, seed)
        samples[name] = {"method": how, "sample_s": time.perf_counter() - start}
        pd.DataFrame(syn, columns=names).to_csv(out / name, index=False)
    info = {
        "fit_s": fit_s,
        "sample_s": samples["synthetic.csv"]["sample_s"],
        "samples": samples,
        "method": method,
        "options": kwargs,
    }
    (out / "timing.json").write_text(json.dumps(info, indent=2, default=str))


if __name__ == "__main__":
    main()
