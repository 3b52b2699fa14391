"""medsynth's benchmark harness: utility per epsilon and speed, beside DP peers, in one run.

Run from the repository root (pytest does not collect ``tests/bench``)::

    python -m tests.bench.harness                      # small default: minutes on 2 cores
    python -m tests.bench.harness --full               # every dataset, system, epsilon, 3 seeds
    python -m tests.bench.harness --datasets breast-cancer --epsilons 1 3 8 --seeds 0 1 \\
        --systems medsynth real mst aim

See ``docs/benchmarks.md`` for the datasets, the systems, the metrics and measured results.
"""
