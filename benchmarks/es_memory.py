"""Memory of the ES population: low-rank perturbations vs a dense population × D array.

Also NRES, whose state holds each particle's noise for a whole episode.

A 1M-parameter MLP (1000→1000→10, 1,011,010 params) at population 4096. Sizes
are read from XLA's memory analysis of compiled functions (compiled, never run,
so the dense case needs no 16 GB): the per-member part of the population that
``ask`` returns (rank-1 noise vs dense noise, which is the population × D array
evosax's ``ask`` holds), and the temporaries of a whole compiled generation step
that scores members on one input. Writes benchmarks/results/es_memory.json.

    python benchmarks/es_memory.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from common import machine, write

import lrne


class ProbeTask(lrne.tasks.Task):
    """Fitness = -mean(output²) of each member on one fixed input."""

    def __init__(self, model, width: int):
        self.model, self.x = model, jax.random.normal(jax.random.key(1), (width,))

    def init_params(self, key):
        return self.model.init(key, self.x)

    def evaluate_members(self, keys, population):
        out = lrne.nn.population_apply(self.model, population, self.x)
        return -jnp.mean(out**2, axis=-1), {}


class ProbeUnroll(ProbeTask):
    """The probe as an unrollable task: every step scores the same input."""

    horizon = 2

    def reset(self, keys):
        return jnp.zeros(keys.shape[0])

    def unroll(self, keys, population, inner, t, num_steps):
        fitness, _ = self.evaluate_members(keys, population)
        return inner, jnp.tile(fitness[:, None], (1, num_steps))


def members_bytes(strategy, state) -> int:
    """Output bytes of the compiled ask, per-member part only."""
    ask = jax.jit(lambda s, k: strategy.ask(k, s)[0].members)
    return ask.lower(state, jax.random.key(0)).compile().memory_analysis().output_size_in_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    args = parser.parse_args()
    width, population = (100, 64) if args.quick else (1000, 4096)
    model = lrne.nn.MLP((width,), 10)
    task = ProbeTask(model, width)
    variables = model.init(jax.random.key(0), jnp.zeros(width))

    lowrank = lrne.es(population, 0.01, optax.sgd(0.01), noise_rank=1)
    dense = lrne.es(population, 0.01, optax.sgd(0.01), noise_rank=0)
    state = lowrank.init(jax.random.key(0), variables)
    step = jax.jit(lrne.generation_step(lowrank, task)).lower(state, jax.random.key(0))
    step_stats = step.compile().memory_analysis()
    num_params = lrne.count_params(variables)
    # NRES at the same population: population/2 antithetic particles, each
    # holding its rank-1 noise for a whole episode in the state.
    probe = ProbeUnroll(model, width)
    nres = lrne.nres(population // 2, 0.01, optax.sgd(0.01), 1, probe.horizon, noise_rank=1)
    noise = jax.jit(lambda k: nres.init(k, variables, probe).noise).lower(jax.random.key(0))
    nres_state = jax.jit(lambda k: nres.init(k, variables, probe))(jax.random.key(0))
    nres_step = jax.jit(lrne.generation_step(nres, probe)).lower(nres_state, jax.random.key(0))
    result = {
        "lrne_es_bytes": members_bytes(lowrank, state),
        "dense_bytes": members_bytes(dense, dense.init(jax.random.key(0), variables)),
        "lrne_nres_bytes": noise.compile().memory_analysis().output_size_in_bytes,
        "lrne_es_generation_step_temp_bytes": step_stats.temp_size_in_bytes,
        "lrne_nres_generation_step_temp_bytes": (
            nres_step.compile().memory_analysis().temp_size_in_bytes
        ),
        "num_params": num_params,
        "dense_bytes_formula": population * num_params * 4,
        "machine": machine(),
        "setup": {
            "mlp": [width, width, 10],
            "population_size": population,
            "noise_rank": 1,
            "quick": args.quick,
            "note": "lrne_es_bytes / dense_bytes: per-member output of the compiled ask; "
            "lrne_nres_bytes: the noise NRES keeps in its state (compiled init output), "
            "population/2 particles; "
            "the generation-step temporaries also hold activations of the probe task",
        },
    }
    write("es_memory_quick" if args.quick else "es_memory", result)


if __name__ == "__main__":
    main()
