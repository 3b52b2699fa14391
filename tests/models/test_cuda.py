"""The same training and sampling code on a CUDA device (skipped where there is none)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from medsynth.models.artifact import load_model
from medsynth.pipeline.generate import generate_cohort
from medsynth.pipeline.train import train
from tests.helpers import new_ledger
from tests.models.conftest import LARGE_EPSILON, fast_config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.mark.parametrize("mode", ["hooks", "ew", "ghost"])
def test_train_and_generate_on_cuda(small_cohort, tmp_path, mode):
    path = train(
        small_cohort,
        epsilon=LARGE_EPSILON,
        delta=1e-5,
        out=tmp_path / "model",
        ledger=new_ledger(tmp_path / "ledger.jsonl"),
        config=fast_config(epochs=4, grad_sample_mode=mode),
        device="cuda",
        progress=False,
    )
    config = json.loads((path / "config.json").read_text())
    assert config["training"]["device_type"] == "cuda"
    assert json.loads((path / "privacy.json").read_text())["epsilon"] <= LARGE_EPSILON
    torch.load(path / "weights.pt", weights_only=True)  # saved from CPU tensors, loads anywhere
    model = load_model(path, device="cuda")
    a = generate_cohort(model, 50, random_state=3, batch_size=20, device="cuda")
    b = generate_cohort(model, 50, random_state=3, batch_size=20, device="cuda")
    pd.testing.assert_frame_equal(a.events, b.events)
    assert a.n_patients == 50
