"""A hyperscale population: one low-rank ES generation of 262,144 members on this machine.

EGGROLL (*Evolution Strategies at the Hyperscale*, arXiv 2511.16652) evaluates
populations of 2^18 members because a rank-r perturbation of an m×n weight
is r·(m+n) numbers, not m·n. Here: an MLP 1000→1000→10 (1,011,010 params),
rank-1 noise on both weights (dense noise on the biases), antithetic pairs,
scored on a fixed batch of 16 inputs against a random teacher network's
outputs (fitness: minus the mean squared error). The members carry a key and
a sign each (``lrne.es(..., store_noise=False)``) and are scored ``--chunk``
at a time (:class:`lrne.tasks.Chunked`, one ``lax.map``), so their noise is
drawn, and their activations live, one chunk at a time. Reported: the first
generation (compiling included), the warm generation time, the peak resident
memory of the process (``ru_maxrss``), and the bytes a dense population ×
params float32 array would need.
Writes ``benchmarks/results/hyperscale.json``.

    python benchmarks/hyperscale.py [--quick] [--population 262144] [--chunk 8192]
"""

from __future__ import annotations

import resource

import jax
import jax.numpy as jnp
import optax
from common import timed
from flax import linen as nn
from harness import goal, script

import lrne
from lrne.ensemble import member_outputs
from lrne.genome import PyTree

CLASSES, BATCH = 10, 16
FULL = {"width": 1000, "population": 262_144, "chunk": 8192, "generations": 3}
QUICK = {**FULL, "width": 64, "population": 256, "chunk": 64}
TARGETS = {"peak_rss_gib": ("<=", 8)}


class Regression(lrne.tasks.Task):
    """Fitness: minus the mean squared error of a member's outputs on a fixed batch."""

    def __init__(self, model: nn.Module, inputs: jax.Array, targets: jax.Array) -> None:
        self.model, self.inputs, self.targets = model, inputs, targets

    def init_params(self, key: jax.Array) -> PyTree:
        return self.model.init(key, self.inputs[0])

    def evaluate_members(self, keys: jax.Array, population: lrne.Population):
        del keys
        apply = lambda v, xs: jax.vmap(lambda x: lrne.nn.apply(self.model, v, x))(xs)
        outputs = member_outputs(apply, population, self.inputs)
        return -jnp.mean((outputs - self.targets) ** 2, axis=(1, 2)), {}


def build(width: int, population: int, chunk: int):
    key_x, key_teacher, key_init = jax.random.split(jax.random.key(0), 3)
    model = lrne.nn.MLP((width,), CLASSES)
    inputs = jax.random.normal(key_x, (BATCH, width))
    teacher = model.init(key_teacher, inputs[0])
    task = Regression(model, inputs, jax.vmap(lambda x: model.apply(teacher, x))(inputs))
    strategy = lrne.es(population, 0.01, optax.adam(1e-3), noise_rank=1, store_noise=False)
    params = task.init_params(key_init)
    state = strategy.init(jax.random.key(1), params)
    step = jax.jit(lrne.generation_step(strategy, lrne.tasks.Chunked(task, chunk)))
    return step, state, lrne.count_params(params)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run(args) -> dict:
    population = args.population
    step, state, num_params = build(args.width, population, args.chunk)
    seconds, fitness = [], []
    for g in range(args.generations):
        (state, metrics), took = timed(step, state, jax.random.key(10 + g))
        seconds.append(took)
        fitness.append(float(metrics["fitness_mean"]))
        print(f"generation {g}: {took:.1f} s, mean fitness {fitness[-1]:.4f}", flush=True)
    peak = peak_rss_bytes()
    dense = population * num_params * 4
    return {
        "population_size": population,
        "num_params": num_params,
        "chunk_size": args.chunk,
        "first_generation_s": seconds[0],
        "generation_s": min(seconds[1:]) if len(seconds) > 1 else None,
        "all_generation_s": seconds,
        "fitness_mean": fitness,
        "peak_rss_bytes": peak,
        "peak_rss_gib": peak / 2**30,
        "dense_population_bytes": dense,
        "dense_population_tib": dense / 2**40,
        "setup": {
            "mlp": [args.width, args.width, CLASSES],
            "noise_rank": 1,
            "antithetic": True,
            "batch": BATCH,
            "objective": "minus the mean squared error to a random teacher's outputs",
            "store_noise": False,
        },
    }


def table(hs: dict) -> str:
    """Markdown: time and peak memory of one generation of the hyperscale population."""
    setup = hs["setup"]
    return "\n".join(
        [
            f"**A hyperscale population** (`benchmarks/hyperscale.py`): one low-rank ES "
            f"generation of **{hs['population_size']:,} members** on an MLP "
            f"{'→'.join(map(str, setup['mlp']))} ({hs['num_params']:,} params), rank-1 noise, "
            f"antithetic, members scored {hs['chunk_size']:,} at a time (`lrne.tasks.Chunked`) "
            "with their noise drawn per chunk (`lrne.es(..., store_noise=False)`).",
            "",
            "| first generation (compiling) | warm generation | peak RSS | target | "
            "dense population × params |",
            "| ---: | ---: | ---: | ---: | ---: |",
            f"| {hs['first_generation_s']:.1f} s | {hs['generation_s']:.1f} s | "
            f"**{hs['peak_rss_gib']:.2f} GiB** | {goal(TARGETS, 'peak_rss_gib')} GiB | "
            f"{hs['dense_population_tib']:.2f} TiB |",
            "",
            f"Machine: {hs['machine']}.",
        ]
    )


if __name__ == "__main__":
    script(__file__)
