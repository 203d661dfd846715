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

import jax
import jax.numpy as jnp
import optax
from harness import script

import lrne

FULL = {"width": 1000, "population_size": 4096, "noise_rank": 1}
QUICK = {**FULL, "width": 100, "population_size": 64}
TARGETS = {"lrne_es_bytes": ("<=", 100e6), "lrne_nres_bytes": ("<=", 100e6)}


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


def run(args) -> dict:
    width, population, rank = args.width, args.population_size, args.noise_rank
    model = lrne.nn.MLP((width,), 10)
    task = ProbeTask(model, width)
    variables = model.init(jax.random.key(0), jnp.zeros(width))

    lowrank = lrne.es(population, 0.01, optax.sgd(0.01), noise_rank=rank)
    dense = lrne.es(population, 0.01, optax.sgd(0.01), noise_rank=0)
    state = lowrank.init(jax.random.key(0), variables)
    step = jax.jit(lrne.generation_step(lowrank, task)).lower(state, jax.random.key(0))
    num_params = lrne.count_params(variables)
    # NRES at the same population: population/2 antithetic particles, each
    # holding its rank-1 noise for a whole episode in the state.
    probe = ProbeUnroll(model, width)
    nres = lrne.nres(population // 2, 0.01, optax.sgd(0.01), 1, probe.horizon, noise_rank=rank)
    noise = jax.jit(lambda k: nres.init(k, variables, probe).noise).lower(jax.random.key(0))
    nres_state = jax.jit(lambda k: nres.init(k, variables, probe))(jax.random.key(0))
    nres_step = jax.jit(lrne.generation_step(nres, probe)).lower(nres_state, jax.random.key(0))
    analysis = lambda lowered: lowered.compile().memory_analysis()
    return {
        "lrne_es_bytes": members_bytes(lowrank, state),
        "dense_bytes": members_bytes(dense, dense.init(jax.random.key(0), variables)),
        "lrne_nres_bytes": analysis(noise).output_size_in_bytes,
        "lrne_es_generation_step_temp_bytes": analysis(step).temp_size_in_bytes,
        "lrne_nres_generation_step_temp_bytes": analysis(nres_step).temp_size_in_bytes,
        "num_params": num_params,
        "dense_bytes_formula": population * num_params * 4,
        "setup": {
            "mlp": [width, width, 10],
            "note": "lrne_es_bytes / dense_bytes: per-member output of the compiled ask; "
            "lrne_nres_bytes: the noise NRES keeps in its state (compiled init output), "
            "population/2 particles; "
            "the generation-step temporaries also hold activations of the probe task",
        },
    }


def table(mem: dict) -> str:
    """Markdown: bytes of the population's per-member part, low-rank against dense."""
    op, bound = TARGETS["lrne_es_bytes"]
    target = f"{op} {bound / 1e6:g} MB"
    return "\n".join(
        [
            f"**ES memory** (`benchmarks/es_memory.py`): MLP "
            f"{'→'.join(map(str, mem['setup']['mlp']))} ({mem['num_params']:,} params) at "
            f"population {mem['setup']['population_size']}, per-member part of the population "
            "from the compiled `ask`:",
            "",
            "| perturbation | bytes | target |",
            "| --- | ---: | ---: |",
            f"| lrne `es(noise_rank=1)` | {mem['lrne_es_bytes'] / 1e6:,.1f} MB | {target} |",
            f"| lrne `nres(noise_rank=1)`, noise held in the state | "
            f"{mem['lrne_nres_bytes'] / 1e6:,.1f} MB | {target} |",
            f"| dense population × D (evosax `ask`) | {mem['dense_bytes'] / 1e9:,.2f} GB | |",
            "",
            f"A whole compiled low-rank generation step needs "
            f"{mem['lrne_es_generation_step_temp_bytes'] / 1e6:,.0f} MB of temporaries "
            "(including the probe forward's activations).",
        ]
    )


if __name__ == "__main__":
    script(__file__)
