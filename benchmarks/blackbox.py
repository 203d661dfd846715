"""Black-box optimisation: lrne and evosax side by side on 100-D Rastrigin.

Four arms on the same budget (population 64, 500 generations: 32,000
evaluations), in one process: lrne ES and GA on a raw array genome through
``lrne.tasks.Function``, evosax ``Open_ES`` and ``SimpleGA``. Every arm starts
from x = 2.5 in every coordinate (a constant array: lrne's GA σ is then
absolute, like SimpleGA's) and gets its best σ from the same sweep
(0.003 to 1.0); ES arms use Adam(0.05). Quality is the Rastrigin value
(lower is better) of each arm's answer (ES: the mean; GA: the best member),
mean over 3 seeds; time is the warm wall-clock of one jitted, scanned run.

    python benchmarks/blackbox.py [--quick]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import timed
from evosax.algorithms import Open_ES, SimpleGA
from harness import script

import lrne

DIM = 100
SIGMAS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
FULL = {"population": 64, "generations": 500, "seeds": 3}
QUICK = {"population": 16, "generations": 20, "seeds": 2}


def rastrigin(x: jax.Array) -> jax.Array:
    return 10.0 * x.size + jnp.sum(x**2 - 10.0 * jnp.cos(2 * jnp.pi * x))


def lrne_run(name: str, sigma: float, population: int, generations: int):
    task = lrne.tasks.Function(lambda x: -rastrigin(x), jnp.full(DIM, 2.5))
    if name == "es":
        strategy = lrne.es(population, sigma, optax.adam(0.05))
    else:
        strategy = lrne.ga(population, max(1, population // 16), sigma)
    step = lrne.generation_step(strategy, task)

    def run(key):
        state = strategy.init(key, task.init_params(key))
        keys = jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(generations))
        state, _ = jax.lax.scan(lambda s, k: step(s, k), state, keys)
        return rastrigin(state.best_params)

    return jax.jit(run)


def evosax_run(name: str, sigma: float, population: int, generations: int):
    solution = jnp.full(DIM, 2.5)
    schedule = optax.constant_schedule(sigma)
    if name == "es":
        algo = Open_ES(population, solution, optimizer=optax.adam(0.05), std_schedule=schedule)
    else:
        algo = SimpleGA(population, solution, std_schedule=schedule)
    params = algo.default_params

    def run(key):
        if name == "es":
            state = algo.init(key, solution, params)
        else:
            initial = jnp.broadcast_to(solution, (population, DIM))
            state = algo.init(key, initial, jax.vmap(rastrigin)(initial), params)

        def gen(state, k):
            k_ask, k_tell = jax.random.split(k)
            x, state = algo.ask(k_ask, state, params)
            state, _ = algo.tell(k_tell, x, jax.vmap(rastrigin)(x), state, params)
            return state, None

        keys = jax.random.split(key, generations)
        state, _ = jax.lax.scan(gen, state, keys)
        answer = state.mean if name == "es" else state.best_solution
        return rastrigin(answer)

    return jax.jit(run)


LABELS = {
    "lrne_es": "lrne ES (`lrne.es`)",
    "lrne_ga": "lrne GA (`lrne.ga`)",
    "evosax_open_es": "evosax `Open_ES`",
    "evosax_simple_ga": "evosax `SimpleGA`",
}


def table(result: dict) -> str:
    """Markdown: each arm's best σ, its Rastrigin value and warm seconds per run."""
    setup = result["setup"]
    rows = [
        f"{setup['dim']}-D Rastrigin from x = {setup['start']} (value "
        f"{setup['start_value']:.0f}), population {setup['population']}, "
        f"{setup['generations']} generations, {setup['seeds']} seeds; {result['machine']}.",
        "",
        "| arm | best σ | Rastrigin (mean) | warm seconds per run |",
        "| --- | ---: | ---: | ---: |",
    ]
    for arm, r in result["arms"].items():
        rows.append(
            f"| {LABELS[arm]} | {r['best_sigma']:g} | {r['rastrigin']:.1f} | {r['seconds']:.3f} |"
        )
    return "\n".join(rows)


def run(args) -> dict:
    population, generations = args.population, args.generations
    arms = {
        "lrne_es": lambda s: lrne_run("es", s, population, generations),
        "lrne_ga": lambda s: lrne_run("ga", s, population, generations),
        "evosax_open_es": lambda s: evosax_run("es", s, population, generations),
        "evosax_simple_ga": lambda s: evosax_run("ga", s, population, generations),
    }
    result: dict = {"arms": {}}
    for arm, build in arms.items():
        sweep = {}
        for sigma in SIGMAS:
            run_one = build(sigma)
            keys = [jax.random.key(seed) for seed in range(args.seeds)]
            jax.block_until_ready(run_one(keys[0]))  # compile
            values, seconds = zip(*(timed(run_one, k) for k in keys), strict=True)
            sweep[str(sigma)] = {
                "rastrigin": float(np.mean([float(v) for v in values])),
                "seconds": min(seconds),
            }
        best = min(sweep, key=lambda s: sweep[s]["rastrigin"])
        result["arms"][arm] = {"sweep": sweep, "best_sigma": float(best), **sweep[best]}
    result["setup"] = {
        "dim": DIM,
        "sigmas": list(SIGMAS),
        "start": 2.5,
        "start_value": float(rastrigin(jnp.full(DIM, 2.5))),
    }
    return result


if __name__ == "__main__":
    script(__file__)
