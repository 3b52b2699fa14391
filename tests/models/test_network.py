"""The network and the sampler: cached decoding equals the full pass; limits always hold;
stored configs of earlier versions load or are refused with the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.errors import DataError
from medsynth.models.artifact import build_network, load_model, save_artifact
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


# The fields of the value memory and the pair bias, as every artifact of medsynth 0.1.0 and
# earlier recorded them (both parts off by default).
REMOVED_PARTS_OFF = {"value_memory": False, "pair_bias": False, "pair_scale": 10.0}


def _artifact_with_network_fields(vocab, folder, **fields) -> None:
    """An untrained artifact shaped as medsynth 0.1 wrote it (an indented privacy.json naming no
    model hash) whose stored network config also holds ``fields``."""
    save_artifact(
        folder, vocab=vocab, net=build_network(vocab, TINY_NET), training={}, privacy=None
    )
    config_path = folder / "config.json"
    doc = json.loads(config_path.read_text())
    doc["network"].update(fields)
    config_path.write_text(json.dumps(doc))
    old_record = {"mechanism": "dp-sgd", "epsilon": 1.0, "delta": 1e-5, "accountant": "rdp"}
    (folder / "privacy.json").write_text(json.dumps(old_record, indent=2))


def test_stored_config_with_removed_parts_switched_off_loads(small, tmp_path):
    stored = {**TINY_NET.to_dict(), **REMOVED_PARTS_OFF}
    assert NetworkConfig.from_dict(stored) == TINY_NET
    assert NetworkConfig.from_dict({**TINY_NET.to_dict(), "pair_scale": 1.0}) == TINY_NET
    vocab = build_vocabulary(small)
    _artifact_with_network_fields(vocab, tmp_path / "m", **REMOVED_PARTS_OFF)
    model = load_model(tmp_path / "m")
    assert model.net.config == TINY_NET
    assert next(model.sample(4, random_state=0)).n_patients == 4


@pytest.mark.parametrize("field", ["value_memory", "pair_bias"])
def test_stored_config_with_a_removed_part_switched_on_is_refused(small, tmp_path, field):
    fix = rf"'{field}' is True.*retrain the model with this version.*medsynth <= 0\.1\.0"
    with pytest.raises(DataError, match=fix):
        NetworkConfig.from_dict({**TINY_NET.to_dict(), **REMOVED_PARTS_OFF, field: True})
    vocab = build_vocabulary(small)
    _artifact_with_network_fields(vocab, tmp_path / "m", **{**REMOVED_PARTS_OFF, field: True})
    with pytest.raises(DataError, match=fix):
        load_model(tmp_path / "m")
