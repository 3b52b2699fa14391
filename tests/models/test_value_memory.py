"""The value memory: exact features, sampling agrees with training, DP steps, old artifacts."""

from __future__ import annotations

import copy
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import BOS, EOS, PAD, build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network, load_model, save_artifact
from medsynth.models.fit import GrammarTables, make_batch, patient_losses
from medsynth.models.network import NetworkConfig
from medsynth.models.plan import GRAD_SAMPLE_MODES
from medsynth.privacy.dpsgd import dp_step
from medsynth.simulate import simulate
from tests.models.conftest import TINY_NET, record_sampling

MEMORY_NET = dataclasses.replace(TINY_NET, value_memory=True)


def test_features_of_a_hand_built_sequence(small):
    vocab = build_vocabulary(small)
    names = list(small.channel_names)
    sbp, glu = names.index("systolic_bp"), names.index("glucose")

    def value(name: str, k: int) -> int:
        return vocab.value_first[name] + k

    prefix = [vocab.slots[i].first for i in range(vocab.n_prefix)]
    gap = vocab.gap_first
    seq = [BOS, *prefix, gap, value("glucose", 4), gap + 3, value("systolic_bp", 2)]
    seq += [value("glucose", 9), EOS, PAD]
    tables = GrammarTables.build(vocab, memory=True)
    got = tables.memory(torch.tensor([seq])).numpy()[0]

    g4, g9 = vocab.token_value[value("glucose", 4)], vocab.token_value[value("glucose", 9)]
    s2 = vocab.token_value[value("systolic_bp", 2)]
    assert (0 < g4).all() and (g4 < g9).all() and (g9 < 1).all() and (0 < s2).all()
    n_ch = len(names)
    n_val = vocab.size - vocab.value_start
    expected = np.zeros((len(seq), 3 * n_ch + n_val), dtype=np.float32)
    p = 1 + vocab.n_prefix  # the first gap; nothing observed up to here
    for j in range(2):  # blocks: scaled centre, rank; then the seen flags
        expected[p + 1 :, j * n_ch + glu] = g4[j]  # glucose:4 and after
        expected[p + 3 :, j * n_ch + sbp] = s2[j]  # systolic_bp:2 and after
        expected[p + 4 :, j * n_ch + glu] = g9[j]  # glucose:9 replaces glucose:4
    expected[p + 1 :, 2 * n_ch + glu] = 1
    expected[p + 3 :, 2 * n_ch + sbp] = 1
    hot = 3 * n_ch - vocab.value_start  # column of value token id ``v`` is ``hot + v``
    expected[p + 1 : p + 4, hot + value("glucose", 4)] = 1
    expected[p + 4 :, hot + value("glucose", 9)] = 1
    expected[p + 3 :, hot + value("systolic_bp", 2)] = 1
    np.testing.assert_allclose(got, expected)


def test_scaled_values_are_bin_centres_and_ranks(small):
    vocab = build_vocabulary(small)
    ch = small.channels[0]
    edges = vocab.value_edges[ch.name]
    first = vocab.value_first[ch.name]
    centre = (edges[1] + edges[2]) / 2
    n = len(edges) - 1
    assert vocab.token_value[first + 1, 0] == pytest.approx((centre - ch.min) / (ch.max - ch.min))
    assert vocab.token_value[first + 1, 1] == pytest.approx(1.5 / n)
    assert (vocab.token_value[: vocab.gap_first + vocab.n_gaps] == 0).all()


def test_sampler_memory_equals_training_features(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(1)
    rec = record_sampling(build_network(vocab, MEMORY_NET), vocab, 16)
    tokens = torch.stack(rec.tokens, dim=1)  # the sequences as fed, BOS first
    fed = torch.stack(rec.memory, dim=1)
    assert (tokens == EOS).any(dim=1).sum() > 0  # some rows ended inside the recorded steps
    assert fed[..., 2 * len(small.channels) :].sum() > 0  # and values were seen
    # Training computes the features from the sequence in one pass; it ignores what follows
    # EOS (padding), so compare up to and including each row's EOS.
    expected = GrammarTables.build(vocab, memory=True).memory(tokens)
    ended = (tokens == EOS).long().cumsum(dim=1)
    live = (ended == 0) | ((ended == 1) & (tokens == EOS))
    torch.testing.assert_close(fed[live], expected[live])


def test_network_with_memory_refuses_a_missing_memory(small):
    vocab = build_vocabulary(small)
    net = build_network(vocab, MEMORY_NET)
    enc = encode_cohort(vocab, simulate(small, 3, random_state=0))
    batch = make_batch(
        GrammarTables.build(vocab, memory=True),
        torch.from_numpy(enc.tokens),
        torch.from_numpy(enc.times),
    )
    with pytest.raises(DataError, match="value memory"):
        net(batch.inputs, batch.slots, batch.times)
    # the memory changes the output: the projection is live
    with torch.no_grad():
        a = net(batch.inputs, batch.slots, batch.times, batch.memory)
        b = net(batch.inputs, batch.slots, batch.times, torch.zeros_like(batch.memory))
    assert not torch.allclose(a, b)


def test_config_round_trip_and_old_configs(small, tmp_path):
    assert NetworkConfig.from_dict(MEMORY_NET.to_dict()) == MEMORY_NET
    assert NetworkConfig.from_dict({"d_model": 32}).value_memory is False
    with pytest.raises(DataError, match="value_memory"):
        NetworkConfig.from_dict({"value_memory": 1})
    vocab = build_vocabulary(small)
    save_artifact(
        tmp_path / "m",
        vocab=vocab,
        net=build_network(vocab, TINY_NET),
        training={},
        privacy={"epsilon": 1.0, "delta": 1e-5},
    )
    config_path = tmp_path / "m" / "config.json"
    doc = json.loads(config_path.read_text())
    assert doc["network"]["value_memory"] is False  # recorded
    del doc["network"]["value_memory"]  # an artifact from before the flag
    config_path.write_text(json.dumps(doc))
    model = load_model(tmp_path / "m")
    assert model.net.config.value_memory is False
    assert next(model.sample(4, random_state=0)).n_patients == 4


def _clipped_by_hand(net, tables, tokens, times, clip):
    total = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    norms = []
    for i in range(len(tokens)):
        one = make_batch(tables, tokens[i : i + 1], times[i : i + 1])
        net.zero_grad()
        patient_losses(net, tables, one).sum().backward()
        norm = float(torch.sqrt(sum((p.grad**2).sum() for p in net.parameters())))
        norms.append(norm)
        for n, p in net.named_parameters():
            total[n] += min(1.0, clip / (norm + 1e-6)) * p.grad
    return {n: g / len(tokens) for n, g in total.items()}, norms


@pytest.mark.parametrize("mode", GRAD_SAMPLE_MODES)
def test_dp_step_with_memory_equals_per_patient_clipping(small, mode):
    from opacus import PrivacyEngine

    vocab = build_vocabulary(small)
    enc = encode_cohort(vocab, simulate(small, 6, random_state=4))
    tokens, times = torch.from_numpy(enc.tokens), torch.from_numpy(enc.times)
    tables = GrammarTables.build(vocab, memory=True)
    torch.manual_seed(0)
    net = build_network(vocab, MEMORY_NET)
    _, norms = _clipped_by_hand(copy.deepcopy(net), tables, tokens, times, 1e9)
    clip = sorted(norms)[3]
    expected, _ = _clipped_by_hand(copy.deepcopy(net), tables, tokens, times, clip)
    assert expected["memory.weight"].abs().max() > 0
    model = copy.deepcopy(net)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = PrivacyEngine(accountant="rdp").make_private(
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
            data_loader=DataLoader(list(range(6)), batch_size=6),
            noise_multiplier=0.0,
            max_grad_norm=clip,
            poisson_sampling=False,
            grad_sample_mode=mode,
        )
        dp_step(made[0], made[1], tables, tokens, times, shuffle=0.0, generator=None)
    for name, p in model.named_parameters():
        torch.testing.assert_close(
            before[name] - p.detach(), expected[name], rtol=1e-3, atol=1e-6, msg=name
        )


def test_tiny_training_with_memory_end_to_end(small, tmp_path):
    from medsynth.pipeline.train import train
    from tests.models.conftest import fast_config

    cohort = simulate(small, 60, random_state=2)
    path = train(
        cohort,
        epsilon=50.0,
        delta=1e-5,
        out=tmp_path / "model",
        ledger=tmp_path / "ledger.jsonl",
        config=fast_config(network=MEMORY_NET, epochs=2, batch_size=30),
        progress=False,
        random_state=0,
    )
    doc = json.loads((path / "config.json").read_text())
    assert doc["network"]["value_memory"] is True
    model = load_model(path)
    assert "memory.weight" in model.net.state_dict()
    syn = next(model.sample(8, random_state=1))
    assert syn.n_patients == 8
    assert np.isfinite(model.log_likelihood(cohort)).all()
