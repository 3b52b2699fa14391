"""The network and the sampler: cached decoding equals the full pass; limits always hold."""

from __future__ import annotations

import numpy as np
import torch

from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.models.artifact import build_network
from medsynth.models.fit import GrammarTables, make_batch, sequence_log_likelihood
from medsynth.models.network import NetworkConfig, latest_values
from medsynth.simulate import simulate
from tests.models.conftest import TINY_NET, sample_unconditioned, step_through


def test_cached_steps_equal_the_full_forward_pass(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(0)
    net = build_network(vocab, NetworkConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32)).eval()
    enc = encode_cohort(vocab, simulate(small, 5, random_state=0))
    tables = GrammarTables.build(vocab)
    batch = make_batch(tables, torch.from_numpy(enc.tokens), torch.from_numpy(enc.times))
    with torch.no_grad():
        full = net(batch.inputs, batch.slots, batch.times)
    latest = latest_values(batch.inputs, tables.token_channel, tables.n_channels)
    steps = step_through(net, batch, per_position={"latest": latest})
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_log_likelihood_is_a_sum_of_normalised_token_probabilities(small):
    vocab = build_vocabulary(small)
    net = build_network(vocab, TINY_NET)
    with torch.no_grad():  # a network that ignores its input: uniform over allowed tokens
        for p in net.parameters():
            p.zero_()
    enc = encode_cohort(vocab, simulate(small, 3, random_state=1))
    ll = sequence_log_likelihood(net, GrammarTables.build(vocab), enc)
    expected = []
    for row, length in zip(enc.tokens, enc.lengths, strict=True):
        seq = row[:length]
        total = 0.0
        for a, b in zip(seq[:-1], seq[1:], strict=True):
            allowed = vocab.slot_masks[vocab.token_slot[b]] & vocab.follow_mask[a]
            total -= np.log(allowed.sum())
        expected.append(total)
    np.testing.assert_allclose(ll, expected, rtol=1e-5)


def test_sampler_respects_limits_and_horizon(small):
    vocab = build_vocabulary(small)
    torch.manual_seed(3)
    net = build_network(vocab, TINY_NET)  # untrained: any sequence the grammar allows
    out = sample_unconditioned(net, vocab, 200, seed=0)
    limits = small.limits
    per_channel = np.zeros((200, len(small.channels)), dtype=int)
    np.add.at(per_channel, (out.event_row, out.event_channel), 1)
    assert per_channel.max() <= limits.max_events_per_channel
    assert np.bincount(out.event_row, minlength=200).max() <= limits.max_events_total
    assert ((out.event_time >= 0) & (out.event_time <= small.time.horizon_days)).all()
    assert len(out.event_row) > 0
