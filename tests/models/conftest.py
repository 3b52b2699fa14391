"""Fixtures for generator tests: a small schema, a simulated cohort, trained tiny models."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.decode import SampledPatients
from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import VALUE, build_vocabulary
from medsynth.models.artifact import build_network, save_artifact
from medsynth.models.conditions import resolve_conditions
from medsynth.models.fit import GrammarTables, fit_nonprivate, make_batch
from medsynth.models.network import NetworkConfig
from medsynth.models.plan import TrainConfig
from medsynth.models.sampler import sample_batch
from medsynth.pipeline.train import train
from medsynth.schema import load_schema, parse_schema
from medsynth.simulate import simulate
from tests.helpers import new_ledger

MARKER_ID = "zz-marker-patient-q7"
MARKER_VALUE = 577.0  # glucose, planted once; 577.0 and "zz-marker" must not reach the artifact

LARGE_EPSILON = 200.0  # "large": the smoke test checks learning, not a recommended setting
TINY_NET = NetworkConfig(d_model=32, n_layers=2, n_heads=4, d_ff=64)


def small_schema(max_events_per_channel: int = 3):
    """general-adult cut down to sex, age, two conditions and three channels.

    ``max_events_per_channel=1`` makes it cross-sectional (one visit per record)."""
    doc = copy.deepcopy(load_schema("general-adult").raw)
    doc["name"] = "small-test"
    doc["attributes"] = [a for a in doc["attributes"] if a["name"] in ("sex", "age")]
    keep = ("38341003", "44054006")
    doc["conditions"]["codes"] = [c for c in doc["conditions"]["codes"] if c["code"] in keep]
    doc["channels"] = [
        c for c in doc["channels"] if c["name"] in ("systolic_bp", "glucose", "hba1c")
    ]
    doc["panels"] = []
    doc["limits"] = {
        "max_events_per_channel": max_events_per_channel,
        "max_events_total": 2 * max_events_per_channel,
        "max_conditions": 2,
    }
    return parse_schema(doc)


def one_visit_cohort(schema, sbp: np.ndarray, glucose: np.ndarray) -> Cohort:
    """One visit per patient holding systolic pressure and glucose (``small_schema(1)``)."""
    ids = [f"p{i}" for i in range(len(sbp))]
    events = pd.concat(
        [
            pd.DataFrame({"patient_id": ids, "time": 0.0, "channel": "systolic_bp", "value": sbp}),
            pd.DataFrame({"patient_id": ids, "time": 0.0, "channel": "glucose", "value": glucose}),
        ]
    )
    patients = pd.DataFrame({"patient_id": ids, "sex": "female", "age": 50.0})
    no_conditions = pd.DataFrame(columns=["patient_id", "code", "onset"])
    return Cohort.conform(schema, patients, events, no_conditions)[0]


def fast_config(**changes) -> TrainConfig:
    """A tiny network, RDP accounting (fast), no pretraining: what the tests train."""
    base = TrainConfig(
        network=TINY_NET,
        accountant="rdp",
        learning_rate=1e-2,
        pretrain_patients=0,
        batch_size=200,
        epochs=40,
    )
    return dataclasses.replace(base, **changes)


def with_marker(cohort: Cohort) -> Cohort:
    """The cohort plus one patient holding a unique id and a unique glucose value."""
    patients = pd.concat(
        [
            cohort.patients,
            pd.DataFrame({"patient_id": [MARKER_ID], "sex": ["female"], "age": [44.0]}),
        ],
        ignore_index=True,
    )
    events = pd.concat(
        [
            cohort.events,
            pd.DataFrame(
                {
                    "patient_id": [MARKER_ID],
                    "time": [0.0],
                    "channel": ["glucose"],
                    "value": [MARKER_VALUE],
                }
            ),
        ],
        ignore_index=True,
    )
    return Cohort.conform(cohort.schema, patients, events, cohort.conditions)[0]


def cohort_stats(cohort: Cohort) -> dict[str, float]:
    """Marginals and the age <-> systolic correlation the utility test compares."""
    ev, pat = cohort.events, cohort.patients.set_index("patient_id")
    sbp = ev[ev["channel"] == "systolic_bp"].groupby("patient_id")["value"].mean()
    n = cohort.n_patients
    ages = pat["age"].dropna()
    age_bins = np.histogram(ages, bins=[18, 30, 40, 50, 60, 70, 91])[0] / max(len(ages), 1)
    return {
        "female": float((pat["sex"] == "female").mean()),
        "hypertension": float((cohort.conditions["code"] == "38341003").sum() / n),
        "mean_sbp": float(ev.loc[ev["channel"] == "systolic_bp", "value"].mean()),
        "events_per_patient": len(ev) / n,
        "corr_age_sbp": float(pat.loc[sbp.index, "age"].astype(float).corr(sbp)),
        "age_bins": age_bins,
    }


@pytest.fixture(scope="session")
def small():
    return small_schema()


@pytest.fixture(scope="session")
def small_cohort(small):
    return with_marker(simulate(small, 800, random_state=1))


def train_large_epsilon(cohort: Cohort, root, epochs: int):
    """``(artifact, ledger)``: ``fast_config`` trained at a large epsilon for ``epochs`` epochs."""
    ledger = new_ledger(root / "ledger.jsonl")
    path = train(
        cohort,
        epsilon=LARGE_EPSILON,
        delta=1e-5,
        out=root / "model",
        ledger=ledger,
        config=fast_config(epochs=epochs),
        progress=False,
        random_state=0,
    )
    return path, ledger


@pytest.fixture(scope="session")
def trained(small_cohort, tmp_path_factory):
    """A model at a large epsilon after 4 epochs (16 DP-SGD steps, no pretraining), shared by
    several test files: for what training records and how sampling behaves, not for how well
    the model learned (that is :func:`trained_well`)."""
    return train_large_epsilon(small_cohort, tmp_path_factory.mktemp("trained"), epochs=4)


@pytest.fixture(scope="session")
def trained_well(small_cohort, tmp_path_factory):
    """The same after 40 epochs (160 steps): for the slow test of what the model learned."""
    return train_large_epsilon(small_cohort, tmp_path_factory.mktemp("trained-well"), epochs=40)


@pytest.fixture(scope="session")
def fitted(small_cohort, tmp_path_factory):
    """A model fitted WITHOUT privacy (30 epochs of plain Adam): for tests of the sampling
    mechanism only, where DP noise would blur what is checked. Never a product path."""
    vocab, net = fit_quickly(small_cohort, TINY_NET, epochs=30, batch_size=64, shuffle=0.5)
    path = tmp_path_factory.mktemp("fitted") / "model"
    save_artifact(
        path,
        vocab=vocab,
        net=net,
        training={"note": "non-private test fixture"},
        privacy=None,  # trained without privacy: not releasable
    )
    return path


def fit_quickly(
    cohort: Cohort,
    config: NetworkConfig,
    *,
    epochs: int = 15,
    batch_size: int = 50,
    shuffle: float = 0.0,
):
    """``(vocab, net)``: a network fitted WITHOUT privacy (Adam at 1e-2, seed 0), for tests of
    what a part of the network can learn or of the sampling mechanism. Never a product path."""
    vocab = build_vocabulary(cohort.schema)
    torch.manual_seed(0)
    net = build_network(vocab, config)
    fit_nonprivate(
        net,
        GrammarTables.build(vocab),
        encode_cohort(vocab, cohort),
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-2,
        shuffle=shuffle,
        random_state=0,
    )
    return vocab, net


class Recorder(torch.nn.Module):
    """Passes every sampling step to a network and records what the sampler fed it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.tokens: list[torch.Tensor] = []
        self.latest: list[torch.Tensor | None] = []
        self.prefix: list[torch.Tensor | None] = []
        self.drawn: list[torch.Tensor | None] = []

    def step(self, tokens, slots, times, position, cache, latest=None, prefix=None, drawn=None):
        self.tokens.append(tokens.clone())
        for seen, value in ((self.latest, latest), (self.prefix, prefix), (self.drawn, drawn)):
            seen.append(None if value is None else value.clone())
        return self.net.step(tokens, slots, times, position, cache, latest, prefix, drawn)


def sample_unconditioned(net: torch.nn.Module, vocab, n: int, seed: int = 0):
    """Draw ``n`` patients from ``net`` on the CPU, unconditioned, seeded by ``seed``."""
    return sample_batch(
        net,
        vocab,
        n,
        plan=resolve_conditions(vocab, None),
        generator=torch.Generator().manual_seed(seed),
        rng=np.random.default_rng(seed),
        device=torch.device("cpu"),
    )


def record_sampling(net: torch.nn.Module, vocab, n: int) -> Recorder:
    """Draw ``n`` patients from ``net`` (seeded, unconditioned) through a :class:`Recorder`."""
    rec = Recorder(net)
    sample_unconditioned(rec, vocab, n)
    return rec


def forward_with_and_without(net, batch, off: NetworkConfig) -> torch.Tensor:
    """``net``'s logits on ``batch``, after checking that they change when ``net`` runs with the
    ``off`` config (the part under test switched off), so a test of that part is not vacuous."""
    on = net.config
    with torch.no_grad():
        full = net(batch.inputs, batch.slots, batch.times)
        net.config = off
        plain = net(batch.inputs, batch.slots, batch.times)
        net.config = on
    assert not torch.allclose(full, plain)  # the part is live
    return full


def step_through(net, batch, *, per_position: dict | None = None, **fixed) -> torch.Tensor:
    """``net``'s logits ``[b, t, vocab]`` on ``batch``, decoded one cached step at a time.

    ``per_position``: step arguments given for every position (``[b, t, ...]``), each step
    reading its own slice; ``fixed``: step arguments that are the same at every step.
    """
    cache: list = []
    per_position = per_position or {}
    steps = [
        net.step(
            batch.inputs[:, i],
            batch.slots[:, i],
            batch.times[:, i],
            i,
            cache,
            **{name: value[:, i] for name, value in per_position.items()},
            **fixed,
        )
        for i in range(batch.inputs.shape[1])
    ]
    return torch.stack(steps, dim=1)


def simulated_batch(vocab, n: int = 5):
    """``n`` patients simulated from ``vocab.schema`` (seed 0), encoded and batched."""
    enc = encode_cohort(vocab, simulate(vocab.schema, n, random_state=0))
    tokens, times = torch.from_numpy(enc.tokens), torch.from_numpy(enc.times)
    return make_batch(GrammarTables.build(vocab), tokens, times)


def as_sampled(vocab, enc) -> SampledPatients:
    """Encoded patients in the sampler's output form (prefix tokens and value events), so that
    ``decode_patients`` can be checked against the encoder."""
    rows, times, chans, bins = [], [], [], []
    for r, (seq, ts, length) in enumerate(zip(enc.tokens, enc.times, enc.lengths, strict=True)):
        for tok, t in zip(seq[:length], ts[:length], strict=True):
            if vocab.token_kind[tok] == VALUE:
                rows.append(r)
                times.append(float(t))
                chans.append(vocab.token_channel[tok])
                bins.append(vocab.token_bin[tok])
    return SampledPatients(
        prefix=enc.tokens[:, 1 : 1 + vocab.n_prefix].astype(np.int64),
        event_row=np.array(rows),
        event_time=np.array(times),
        event_channel=np.array(chans),
        event_bin=np.array(bins),
    )
