"""One DP-SGD step in every Opacus grad-sample mode equals per-patient clipping done by hand."""

from __future__ import annotations

import copy
import dataclasses
import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.models.artifact import build_network
from medsynth.models.fit import Batch, GrammarTables, make_batch, patient_losses
from medsynth.models.plan import GRAD_SAMPLE_MODES
from medsynth.privacy.dpsgd import dp_step
from medsynth.simulate import simulate
from tests.models.conftest import TINY_NET, small_schema

N = 6  # patients in the batch; the data loader below has N items and 1 step: expected batch N


# The plain network, one with the transition bias (an nn.Embedding fed [b, t, values]), one
# with the prefix bias (an nn.Embedding fed [b, n_prefix]) and one with the smooth bias (an
# nn.Linear fed [b, t, sources]) and one with the prefix-pair bias (an nn.Linear fed
# [b, n_prefix - 1, features]).
NETWORKS = {
    "plain": dataclasses.replace(
        TINY_NET, transition_steps=0, prefix_bias=False, smooth_bias=False
    ),
    "transition": dataclasses.replace(
        TINY_NET, transition_steps=2, prefix_bias=False, smooth_bias=False
    ),
    "prefix": dataclasses.replace(
        TINY_NET, prefix_bias=True, transition_steps=0, smooth_bias=False
    ),
    "smooth": dataclasses.replace(
        TINY_NET, smooth_bias=True, prefix_bias=False, transition_steps=0
    ),
    "pairs": dataclasses.replace(
        TINY_NET, prefix_pairs=True, smooth_bias=False, prefix_bias=False, transition_steps=0
    ),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def setup(request):
    schema = small_schema()
    vocab = build_vocabulary(schema)
    encoded = encode_cohort(vocab, simulate(schema, N, random_state=4))
    tables = GrammarTables.build(vocab)
    torch.manual_seed(0)
    net = build_network(vocab, NETWORKS[request.param])
    if request.param == "transition":  # start away from 0 so every weight has a gradient
        torch.nn.init.normal_(net.transition.weight.weight, std=0.5)
    if request.param == "prefix":
        torch.nn.init.normal_(net.prefix_weights.weight, std=0.5)
    if request.param == "smooth":
        torch.nn.init.normal_(net.smooth.linear.weight, std=0.5)
    if request.param == "pairs":
        torch.nn.init.normal_(net.pairs.weight, std=0.5)
    tokens, times = torch.from_numpy(encoded.tokens), torch.from_numpy(encoded.times)
    return net, tables, tokens, times


def clipped_mean_by_hand(
    net, tables, tokens, times, clip: float
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Sum over patients of their gradient clipped to ``clip``, divided by the batch size."""
    batch = make_batch(tables, tokens, times)
    total = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    norms = []
    for i in range(batch.size):
        one = Batch(
            *(t[i : i + 1] for t in (batch.inputs, batch.slots, batch.times, batch.targets))
        )
        net.zero_grad()
        patient_losses(net, tables, one).sum().backward()
        norm = torch.sqrt(sum((p.grad**2).sum() for p in net.parameters()))
        norms.append(float(norm))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for n, p in net.named_parameters():
            total[n] += factor * p.grad
    net.zero_grad()
    return {n: g / batch.size for n, g in total.items()}, norms


@pytest.mark.parametrize("mode", GRAD_SAMPLE_MODES)
def test_step_equals_per_patient_clipping(setup, mode):
    from opacus import PrivacyEngine

    net, tables, tokens, times = setup
    _, norms = clipped_mean_by_hand(copy.deepcopy(net), tables, tokens, times, 1e9)
    clip = sorted(norms)[N // 2]  # about half the patients are clipped
    expected, _ = clipped_mean_by_hand(copy.deepcopy(net), tables, tokens, times, clip)
    model = copy.deepcopy(net)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = PrivacyEngine(accountant="rdp").make_private(
            module=model,
            optimizer=optimizer,
            data_loader=DataLoader(list(range(N)), batch_size=N),
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


@pytest.mark.parametrize("mode", GRAD_SAMPLE_MODES)
def test_empty_batch_step_is_noise_only(setup, mode):
    from opacus import PrivacyEngine

    net, tables, tokens, times = setup
    model = copy.deepcopy(net)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        made = PrivacyEngine(accountant="rdp").make_private(
            module=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
            data_loader=DataLoader(list(range(N)), batch_size=N),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            poisson_sampling=False,
            grad_sample_mode=mode,
        )
        dp_step(made[0], made[1], tables, tokens[:0], times[:0], shuffle=0.0, generator=None)
        made[0].zero_grad()
        moved = [float((before[n] - p.detach()).abs().max()) for n, p in model.named_parameters()]
    assert all(m > 0 for m in moved)  # every parameter received noise
