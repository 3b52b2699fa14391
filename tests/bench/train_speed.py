"""Step time of DP-SGD against non-private training of the same model, in one run.

Usage: ``python tests/bench/train_speed.py [--patients 1024] [--batch 256] [--steps 10]
[--device cpu|cuda] [--modes hooks,functorch,ew,ghost]``. Prints a Markdown table: seconds per step
for plain Adam (no per-sample gradients, no clipping, no noise) and for each Opacus
grad-sample mode, and the ratio DP / non-private. Modes run interleaved over ``--rounds``
rounds and the median step time is reported, so a busy machine skews no mode alone. All
runs use the same network, simulated patients and batches (Poisson, expected ``--batch``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from opacus import PrivacyEngine
from torch.utils.data import DataLoader

from medsynth.encoding.encode import encode_cohort
from medsynth.encoding.vocabulary import build_vocabulary
from medsynth.models.artifact import build_network
from medsynth.models.fit import GrammarTables, make_batch, patient_losses
from medsynth.models.network import NetworkConfig
from medsynth.privacy.dpsgd import PoissonBatches, _collate_rows, _Rows, dp_step
from medsynth.schema import load_schema
from medsynth.simulate import simulate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batches(encoded, rate: float, steps: int, seed: int):
    dataset = _Rows(encoded)
    sampler = PoissonBatches(encoded.n, rate=rate, steps=steps, seed=seed)
    return list(DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate_rows(dataset)))


def time_nonprivate(vocab, tables, batches, device, warmup: int) -> list[float]:
    torch.manual_seed(0)
    net = build_network(vocab, NetworkConfig()).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    elapsed = []
    for i, (tokens, times) in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        batch = make_batch(tables, tokens, times, shuffle=0.5)
        loss = patient_losses(net, tables, batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i >= warmup:
            elapsed.append(time.perf_counter() - start)
    return elapsed


def time_dp(vocab, tables, batches, device, mode: str, warmup: int) -> list[float]:
    torch.manual_seed(0)
    net = build_network(vocab, NetworkConfig()).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    dummy = DataLoader(list(range(len(batches))), batch_size=1)
    made = PrivacyEngine(accountant="rdp").make_private(
        module=net,
        optimizer=opt,
        data_loader=dummy,
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=False,
        grad_sample_mode=mode,
    )
    model, opt = made[0], made[1]  # ghost mode also returns a loss wrapper
    elapsed = []
    for i, (tokens, times) in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        dp_step(model, opt, tables, tokens, times, shuffle=0.5, generator=None)
        _sync(device)
        if i >= warmup:
            elapsed.append(time.perf_counter() - start)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--schema", default="general-adult")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default="hooks,functorch,ew,ghost")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Rounds over all modes, interleaved; the median step is reported.",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    schema = load_schema(args.schema)
    cohort = simulate(schema, args.patients, random_state=0)
    vocab = build_vocabulary(schema)
    encoded = encode_cohort(vocab, cohort)
    tables = GrammarTables.build(vocab, device)
    batches = _batches(encoded, args.batch / args.patients, args.steps + args.warmup, seed=1)
    modes = args.modes.split(",")
    times: dict[str, list[float]] = {"non-private": [], **{m: [] for m in modes}}
    for _ in range(args.rounds):  # interleaved, so load changes hit every mode alike
        times["non-private"] += time_nonprivate(vocab, tables, batches, device, args.warmup)
        for mode in modes:
            times[mode] += time_dp(vocab, tables, batches, device, mode, args.warmup)
    median = {k: statistics.median(v) for k, v in times.items()}
    base = median["non-private"]
    print(
        f"schema {args.schema}, {args.patients} patients, expected batch {args.batch}, "
        f"{args.rounds} x {args.steps} timed steps per mode, device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print("| mode | median s/step | DP / non-private |")
    print("|---|---|---|")
    print(f"| non-private (Adam) | {base:.4f} | 1.00 |")
    for mode in modes:
        print(f"| DP-SGD, Opacus `{mode}` | {median[mode]:.4f} | {median[mode] / base:.2f} |")


if __name__ == "__main__":
    main()
