"""The public Python API: names, the estimator's explicit ledger, pandas in, refusals."""

from __future__ import annotations

import pytest

import medsynth
from medsynth.errors import DataError, MedsynthError, NotFittedError
from medsynth.pipeline.api import Synthesizer, as_cohort
from medsynth.simulate import simulate


def test_public_names_are_curated_and_lazy():
    import subprocess
    import sys

    assert {"Synthesizer", "Cohort", "Ledger", "read_fhir", "run_audit"} <= set(medsynth.__all__)
    assert medsynth.Synthesizer is Synthesizer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        medsynth.nope  # noqa: B018
    code = "import sys, medsynth; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # importing the package stays cheap


def test_fit_refuses_without_an_explicit_ledger(tiny_schema, tmp_path):
    cohort = simulate(tiny_schema, 30, random_state=0)
    with pytest.raises(MedsynthError, match="no privacy ledger given"):
        Synthesizer(epsilon=1.0, ledger=None).fit(cohort, out=tmp_path / "m")
    assert not (tmp_path / "m").exists()
    with pytest.raises(NotFittedError):
        Synthesizer(epsilon=1.0, ledger=tmp_path / "l.jsonl").sample(2)


def test_a_loaded_synthesizer_saves_a_copy_but_never_over_a_folder(released, tmp_path):
    synth = Synthesizer.load(released / "model", device="cpu")
    copied = synth.save(tmp_path / "copy")
    assert sorted(p.name for p in copied.iterdir()) == sorted(
        p.name for p in (released / "model").iterdir()
    )
    with pytest.raises(DataError, match="exists; choose a new folder"):
        synth.save(tmp_path / "copy")
    with pytest.raises(MedsynthError, match="no privacy ledger given"):
        synth.fit(synth.sample(5), out=tmp_path / "again")  # a loaded model is never retrained


def test_pandas_tables_in_need_a_schema(tiny_schema):
    cohort = simulate(tiny_schema, 12, random_state=0)
    again = as_cohort(
        cohort.patients, tiny_schema, events=cohort.events, conditions=cohort.conditions
    )
    assert again.patient_ids == cohort.patient_ids and len(again.events) == len(cohort.events)
    with pytest.raises(DataError, match="need schema="):
        as_cohort(cohort.patients, None)


def test_a_model_trained_without_privacy_is_not_released(tiny_schema, tmp_path):
    torch = pytest.importorskip("torch")
    from medsynth.encoding.vocabulary import build_vocabulary
    from medsynth.models.artifact import build_network, load_model, save_artifact
    from medsynth.models.network import NetworkConfig
    from medsynth.pipeline.generate import generate_cohort

    vocab = build_vocabulary(tiny_schema)
    torch.manual_seed(0)
    net = build_network(vocab, NetworkConfig(d_model=16, n_layers=1, n_heads=2, d_ff=32))
    path = save_artifact(tmp_path / "m", vocab=vocab, net=net, training={}, privacy=None)
    model = load_model(path)
    assert not model.releasable and model.epsilon == float("inf")
    with pytest.raises(DataError, match="not releasable"):
        generate_cohort(path, 3)


def test_a_release_record_is_recomputed_once_per_process(released, monkeypatch):
    from medsynth.pipeline import provenance
    from medsynth.pipeline.generate import generate_cohort, load_release
    from medsynth.privacy.accounting import PrivacyRecord

    calls = []
    real = PrivacyRecord.verify
    monkeypatch.setattr(PrivacyRecord, "verify", lambda self: calls.append(1) or real(self))
    provenance._verify_once.cache_clear()
    model = load_release(released / "model", device="cpu")
    generate_cohort(model, 3)  # checks the same record again
    assert len(calls) == 1
