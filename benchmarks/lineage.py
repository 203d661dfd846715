"""Seed-lineage records: bytes of a run's answer as a record against its params, and replay.

Each strategy runs ``generations`` generations of a regression by an MLP
(``width``→``width``→10, 1,011,010 params at width 1000; fitness = −MSE on a
fixed batch, so the best member improves often and chains are long). The
answer's record (:mod:`lrne.lineage`: a chain of (generation, mutation) genes
for the GA and Metropolis, the fitness of every generation for ES and NRES) is
written to bytes, read back and replayed; ``replay_identical`` compares the
replayed params with the run's ``best_params`` bit for bit. ``genome_bytes`` is
what lrne checkpoints (factors for a factorized genome), ``dense_bytes`` the
float32 bytes of the dense network. Writes benchmarks/results/lineage.json.

    python -m benchmarks lineage [--quick]
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from harness import script

import lrne
from lrne.lineage import Record, replay

FULL = {"width": 1000, "generations": 100, "population_size": 32}
QUICK = {"width": 50, "generations": 10, "population_size": 16}
TARGETS = {
    "runs/ga_dense/compact_bytes": ("<=", 8192),
    "runs/*/replay_identical": ("==", True),
}

# name -> (registry name, overrides, MLP rank). σ small enough that the best member
# improves in most generations (the registry's GA σ = 0.5 of the init std on
# every entry of a 1M-param genome rarely improves it: a short, flattering chain).
CASES = {
    "ga_dense": ("ga", {"sigma": 0.05}, 0),
    "ga_factorized_rank4": ("ga", {"sigma": 0.05}, 4),
    "metropolis": ("metropolis", {"sigma": 0.002}, 0),
    "es_dense": ("es", {"sigma": 0.01, "learning_rate": 0.003}, 0),
    "es_rank1": ("es_lowrank", {"sigma": 0.01, "learning_rate": 0.003}, 0),
    "nres_rank1": ("nres", {"sigma": 0.01, "learning_rate": 0.003, "noise_rank": 1}, 0),
}


def regression(width: int, rank: int) -> lrne.tasks.Function:
    """−MSE of an MLP on 16 fixed inputs against a fixed random linear map's outputs."""
    x = jax.random.normal(jax.random.key(7), (16, width))
    y = jnp.tanh(x @ jax.random.normal(jax.random.key(8), (width, 10)) / jnp.sqrt(width))
    model = lrne.nn.MLP((width,), 10, rank=rank)
    f = lambda v: -jnp.mean((model.apply(v, x) - y) ** 2)
    return lrne.tasks.Function(f, lambda key: model.init(key, x[:1]), horizon=4)


def identical(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def measure(name: str, overrides: dict, rank: int, args) -> dict:
    task = regression(args.width, rank)
    extra = {"horizon": task.horizon} if name == "nres" else {}
    strategy = lrne.strategies.make(name, args.population_size, **overrides, **extra)
    key = jax.random.key(0)
    tick = time.perf_counter()
    result = lrne.run(strategy, task, key, args.generations)
    run_seconds = time.perf_counter() - tick
    data = result.lineage.record(key).to_bytes()
    record = Record.from_bytes(data)
    tick = time.perf_counter()
    params = jax.block_until_ready(replay(record, strategy, task))
    replay_seconds = time.perf_counter() - tick
    best = result.state.best_params
    return {
        "num_params": lrne.count_params(best),
        "dense_params": lrne.count_params(lrne.genome.materialize(best)),
        "genome_bytes": lrne.genome_bytes(best),
        "dense_bytes": 4 * lrne.count_params(lrne.genome.materialize(best)),
        "compact_bytes": len(data),
        "record": "chain" if record.chain is not None else "fitness",
        "chain_genes": None if record.chain is None else len(record.chain),
        "replay_identical": identical(params, best),
        "replay_seconds": replay_seconds,
        "run_seconds": run_seconds,
        "best_fitness": result.history[-1]["best_fitness"],
    }


def run(args) -> dict:
    runs = {}
    for case, (name, overrides, rank) in CASES.items():
        runs[case] = measure(name, overrides, rank, args)
        print(case, runs[case])
    return {
        "runs": runs,
        "setup": {
            "task": f"-MSE of MLP {args.width}->{args.width}->10 on 16 fixed inputs",
            "note": "replay_seconds include compiling the replay (mutate or ask/tell); "
            "compact_bytes: the record as bytes (JSON header + zlib body)",
        },
    }


def table(result: dict) -> str:
    """Markdown: bytes of each answer's record against its params, and its replay."""
    setup = result["setup"]
    lines = [
        f"**Seed lineage** (`benchmarks/lineage.py`): {setup['task']}, "
        f"population {setup['population_size']}, {setup['generations']} generations.",
        "",
        "| strategy | genome params (dense) | checkpointed | record | record bytes | genes | "
        "replay identical | replay s |",
        "| --- | ---: | ---: | --- | ---: | ---: | :---: | ---: |",
    ]
    for case, r in result["runs"].items():
        genes = "" if r["chain_genes"] is None else f"{r['chain_genes']}"
        lines.append(
            f"| {case} | {r['num_params']:,} ({r['dense_params']:,}) | "
            f"{r['genome_bytes'] / 1e6:,.2f} MB | "
            f"{r['record']} | {r['compact_bytes']:,} | {genes} | "
            f"{'yes' if r['replay_identical'] else 'NO'} | {r['replay_seconds']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
