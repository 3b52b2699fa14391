"""The prefix-pair bias: each prefix token's logit leans on the prefix tokens drawn before it;
sampling sees what training computes, it learns an attribute-condition association, and old
configs load without it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from medsynth.cohort import Cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network
from medsynth.models.network import NetworkConfig
from tests.models.conftest import TINY_NET, fit_quickly, record_sampling, simulated_batch

NET = dataclasses.replace(
    TINY_NET, prefix_pairs=True, prefix_bias=False, transition_steps=0, smooth_bias=False
)


def _drawn(batch, vocab, i: int):
    """The prefix tokens before position ``i`` (what the sampler hands ``step``)."""
    k = min(i, vocab.n_prefix)
    return batch.inputs[:, 1 : 1 + k] if k else None


def test_cached_steps_equal_the_full_forward_pass_in_the_prefix(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(0)
    net = build_network(vocab, NET).eval()
    torch.nn.init.normal_(net.pairs.weight, std=1.0)
    batch = simulated_batch(vocab)
    with torch.no_grad():
        full = net(batch.inputs, batch.slots, batch.times)
    cache: list = []
    steps = torch.stack(
        [
            net.step(
                batch.inputs[:, i],
                batch.slots[:, i],
                batch.times[:, i],
                i,
                cache,
                drawn=_drawn(batch, vocab, i) if i < vocab.n_prefix else None,
            )
            for i in range(vocab.n_prefix)
        ],
        dim=1,
    )
    torch.testing.assert_close(steps, full[:, : vocab.n_prefix])
    # and the bias is really there: without it the prefix logits differ
    off = dataclasses.replace(NET, prefix_pairs=False)
    plain = build_network(vocab, off).eval()
    plain.load_state_dict(
        {k: v for k, v in net.state_dict().items() if not k.startswith("pairs.")}
    )
    with torch.no_grad():
        without = plain(batch.inputs, batch.slots, batch.times)
    assert not torch.allclose(without[:, 1 : vocab.n_prefix], full[:, 1 : vocab.n_prefix])
    torch.testing.assert_close(without[:, 0], full[:, 0])  # nothing drawn before slot 1
    torch.testing.assert_close(without[:, vocab.n_prefix :], full[:, vocab.n_prefix :])


def test_bias_is_the_scaled_map_of_the_summed_features_of_the_earlier_tokens(small):
    vocab = build_vocabulary(small)
    net = build_network(vocab, dataclasses.replace(NET, prefix_scale=3.0))
    torch.nn.init.normal_(net.pairs.weight, std=1.0)
    w = net.pairs.weight.detach()  # [gap_first, F]
    feats = torch.as_tensor(vocab.prefix_features)
    slots = [s for s in vocab.slots if s.kind != "event"]
    drawn = torch.tensor([[s.first + s.size - 1 for s in slots[:3]]])
    got = net._pair_bias(drawn)[0]
    torch.testing.assert_close(got[0], 3.0 * w @ feats[drawn[0, 0]])
    torch.testing.assert_close(got[2], 3.0 * w @ feats[drawn[0]].sum(dim=0))
    assert got.shape[-1] == vocab.gap_first  # the bias reaches the prefix tokens only


def test_prefix_features_order_a_numeric_attribute_and_one_hot_the_rest(small):
    vocab = build_vocabulary(small)
    feats = vocab.prefix_features
    age = next(s for s in vocab.slots if s.name == "age")
    block = feats[age.first : age.first + age.size]
    cols = np.flatnonzero(np.abs(block).sum(axis=0))
    assert len(cols) == 3  # missing flag, slope, curvature
    missing, x = block[0, cols], block[1:, cols[1]]
    assert missing.tolist() == [1.0, 0.0, 0.0]
    assert np.all(np.diff(x) > 0) and -1 < x[0] < 0 < x[-1] < 1
    sex = next(s for s in vocab.slots if s.name == "sex")
    one_hot = feats[sex.first : sex.first + sex.size]
    assert (one_hot.sum(axis=1) == 1).all() and (one_hot.sum(axis=0) <= 1).all()
    cond = next(s for s in vocab.slots if s.kind == "condition")
    rows = feats[cond.first : cond.first + cond.size]
    assert not rows[0].any() and (rows[1:].sum(axis=1) == 1).all()  # "absent" adds nothing
    assert feats.shape[0] == vocab.gap_first and not feats[:3].any()  # PAD, BOS, EOS: none


def _cohort_where_sex_decides_a_condition(schema, n: int) -> Cohort:
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(n)]
    female = rng.random(n) < 0.5
    patients = pd.DataFrame(
        {"patient_id": ids, "sex": np.where(female, "female", "male"), "age": 50.0}
    )
    events = pd.DataFrame({"patient_id": ids, "time": 0.0, "channel": "glucose", "value": 90.0})
    has = np.array(ids)[female]  # the condition exactly in women
    cond = pd.DataFrame({"patient_id": has, "code": "44054006", "onset": 0.0})
    return Cohort.conform(schema, patients, events, cond)[0]


def test_learns_how_an_attribute_shifts_a_condition(small):
    cohort = _cohort_where_sex_decides_a_condition(small, 300)
    vocab, net = fit_quickly(cohort, NET)
    sex = next(s for s in vocab.slots if s.name == "sex")
    cond = next(s for s in vocab.slots if s.kind == "condition" and s.name.endswith("44054006"))
    female = vocab.tokens.index("sex=female")
    male = vocab.tokens.index("sex=male")
    assert sex.first < female < sex.first + sex.size
    absent = cond.first
    # the bias of the condition slot after each sex token, in logit units
    bias = net._pair_bias(torch.tensor([[female], [male]])).detach()[:, 0]
    # "female" favours the condition's presence over its absence, "male" the reverse
    present_minus_absent = bias[:, cond.first + 1] - bias[:, absent]
    assert float(present_minus_absent[0] - present_minus_absent[1]) > 0.3


def test_config_field_is_optional_and_checked():
    assert NetworkConfig.from_dict({"d_model": 32}).prefix_pairs is False
    assert NetworkConfig.from_dict({"prefix_pairs": True}).prefix_pairs is True
    with pytest.raises(DataError, match="prefix_pairs"):
        NetworkConfig.from_dict({"prefix_pairs": 1})


def test_sampler_passes_the_prefix_drawn_so_far_at_every_prefix_step(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(1)
    rec = record_sampling(build_network(vocab, NET), vocab, 8)
    tokens = torch.stack(rec.tokens, dim=1)  # BOS, then the tokens drawn, one per step
    assert rec.drawn[0] is None  # nothing drawn before the first slot
    for i in range(1, vocab.n_prefix):
        torch.testing.assert_close(rec.drawn[i], tokens[:, 1 : 1 + i])
    assert all(d is None for d in rec.drawn[vocab.n_prefix :])  # events: the pair bias is off
