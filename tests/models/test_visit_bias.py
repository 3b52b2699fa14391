"""The visit bias: one learned weight per (what came last, what comes next) in the event stream."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import ATTRIBUTE, CONDITION, GAP, VALUE, build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network
from medsynth.models.fit import GrammarTables, make_batch, token_log_probs
from medsynth.models.network import NetworkConfig
from tests.models.conftest import TINY_NET, small_schema


def test_old_configs_load_without_it_and_new_ones_have_it() -> None:
    assert NetworkConfig().visit_bias is True and NetworkConfig().visit_scale == 10.0
    old = NetworkConfig.from_dict({"d_model": 32})
    assert old.visit_bias is False and old.visit_scale == 1.0
    with pytest.raises(DataError, match="visit_bias"):
        NetworkConfig.from_dict({"visit_bias": "yes"})


def test_it_biases_only_what_may_come_next_in_the_event_stream() -> None:
    vocab = build_vocabulary(small_schema())
    net = build_network(vocab, TINY_NET)
    assert not net.visit.weight.weight.any()  # zero at start: a new network is unchanged
    with torch.no_grad():
        net.visit.weight.weight.normal_()
    bias = net.visit(torch.arange(vocab.size))  # [V states, V candidates]
    kind = torch.as_tensor(vocab.token_kind)
    event = (kind == VALUE) | (kind == GAP)  # not the end of the record
    assert bias[:, event].abs().min() > 0 and not bias[:, ~event].any()
    # all bins of one channel share the weight of (state, channel)
    first = vocab.value_first["glucose"]
    n = len(vocab.value_edges["glucose"]) - 1
    assert torch.equal(bias[:, first : first + n], bias[:, first : first + 1].expand(-1, n))


def test_alone_it_learns_which_channel_follows_which(small_cohort) -> None:
    """Every other weight frozen, plain Adam on the visit bias alone: after a visit's
    systolic pressure, the model learns how often glucose comes next in the data."""
    small_cohort = small_cohort.subset(small_cohort.patient_ids[:200])
    vocab = build_vocabulary(small_cohort.schema)
    torch.manual_seed(0)
    net = build_network(vocab, dataclasses.replace(TINY_NET, visit_scale=1.0))
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("visit."))
    tables = GrammarTables.build(vocab)
    encoded = encode_cohort(vocab, small_cohort)
    batch = make_batch(tables, torch.as_tensor(encoded.tokens), torch.as_tensor(encoded.times))
    opt = torch.optim.Adam([net.visit.weight.weight], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        loss = -token_log_probs(net, tables, batch).sum() / batch.size
        loss.backward()
        opt.step()
    channel = vocab.token_channel
    sbp = vocab.schema.channel_names.index("systolic_bp")
    glu = vocab.schema.channel_names.index("glucose")
    tokens = encoded.tokens
    after = channel[tokens[:, :-1]] == sbp
    real = float((channel[tokens[:, 1:]][after] == glu).mean())
    w = net.visit.weight.weight.detach()
    # after a systolic value the grammar allows later channels, a gap or the end; the model's
    # share for glucose (summed over its bins) matches the data's
    with torch.no_grad():
        logits = net(batch.inputs, batch.slots, batch.times)
    valid = (batch.targets != 0) & (torch.as_tensor(channel)[batch.inputs] == sbp)
    probs = torch.softmax(
        logits[valid].masked_fill(~tables.follow[batch.inputs[valid]], float("-inf")), dim=-1
    )
    glucose_share = float(probs[:, torch.as_tensor(channel) == glu].sum(dim=-1).mean())
    assert 0.05 < real < 0.95 and abs(glucose_share - real) < 0.05, (glucose_share, real)
    assert np.isfinite(w.numpy()).all() and w.abs().max() > 0.5


def test_marginals_are_off_in_old_configs_and_touch_only_prefix_and_gap_tokens() -> None:
    assert NetworkConfig().prefix_marginal is True and NetworkConfig().gap_marginal is True
    assert NetworkConfig().marginal_scale == 10.0
    old = NetworkConfig.from_dict({"d_model": 32})
    assert not old.prefix_marginal and not old.gap_marginal and old.marginal_scale == 1.0
    vocab = build_vocabulary(small_schema())
    net = build_network(vocab, TINY_NET)
    assert not net.marginal.weight.any()
    with torch.no_grad():
        net.marginal.weight.normal_()
    bias = net._marginal(3)
    kind = torch.as_tensor(vocab.token_kind)
    marked = (kind == ATTRIBUTE) | (kind == CONDITION) | (kind == GAP)
    assert bias[:, marked].abs().min() > 0 and not bias[:, ~marked].any()
    gaps_only = build_network(vocab, dataclasses.replace(TINY_NET, prefix_marginal=False))
    with torch.no_grad():
        gaps_only.marginal.weight.normal_()
    assert not gaps_only._marginal(2)[:, ~(kind == GAP)].any()


def test_prefix_marginal_alone_learns_a_missing_rate_of_zero(small_cohort) -> None:
    """Every other weight frozen, a few plain Adam steps on the marginal alone take the share
    of a missing age from the uniform start (one token in 17) to nearly none, as in the data."""
    small_cohort = small_cohort.subset(small_cohort.patient_ids[:200])
    vocab = build_vocabulary(small_cohort.schema)
    assert not small_cohort.patients["age"].isna().any()
    torch.manual_seed(0)
    net = build_network(vocab, TINY_NET)
    for name, p in net.named_parameters():
        p.requires_grad_(name.startswith("marginal."))
    tables = GrammarTables.build(vocab)
    encoded = encode_cohort(vocab, small_cohort)
    batch = make_batch(tables, torch.as_tensor(encoded.tokens), torch.as_tensor(encoded.times))
    age = next(s for s in vocab.slots if s.name == "age")
    number = vocab.slots.index(age) + 1

    def missing_share() -> float:
        with torch.no_grad():
            logits = net(batch.inputs, batch.slots, batch.times)
        at = batch.slots == number
        allowed = tables.slot_masks[number]
        probs = torch.softmax(logits[at].masked_fill(~allowed, float("-inf")), dim=-1)
        return float(probs[:, age.first].mean())

    start = missing_share()
    opt = torch.optim.Adam([net.marginal.weight], lr=0.01)  # the DP learning rate
    for _ in range(80):  # the DP step count of the rule for a small cohort
        opt.zero_grad()
        (-token_log_probs(net, tables, batch).sum() / batch.size).backward()
        opt.step()
    assert start > 0.03 and missing_share() < 0.005, (start, missing_share())
