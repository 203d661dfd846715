"""Bad input never corrupts a run; invalid settings fail at construction; steady state.

Every registry strategy's handling of NaN/±inf fitness is checked by
``test_contract.py``; here: settings outside the registry, the evosax plugins,
the construction errors and a long steady-state run.
"""

import math
import resource

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import lrne
from lrne.integrations.evosax import FactorizedGA, LowRankES, LowRankNRES
from lrne.nn import MLP, Dense
from lrne.strategies import z_score

SGD = optax.sgd(0.1)
PARAMS = {"w": jnp.zeros((3, 2))}

INVALID = [
    (lambda: lrne.es(7, 0.1, SGD), "population_size must be even"),
    (lambda: lrne.es(8, 0.0, SGD), "sigma"),
    (lambda: lrne.es(8, -1.0, SGD), "sigma"),
    (lambda: lrne.es(8, math.nan, SGD), "sigma"),
    (lambda: lrne.es(8, 0.1, SGD, noise_rank=-1), "noise_rank"),
    (lambda: lrne.es(8, 0.1, "adam"), "optimizer"),
    (lambda: lrne.es(8, 0.1, SGD, density=1.5), "density"),
    (lambda: lrne.es(8, 0.1, SGD, density=0.5, noise_rank=1), "noise_rank"),
    (lambda: lrne.ga(8, 8, 0.1), "num_elites"),
    (lambda: lrne.ga(8, 0, 0.1), "num_elites"),
    (lambda: lrne.ga(1, 1, 0.1), "population_size"),
    (lambda: lrne.ga(8, 2, 0.1, density=0.0), "density"),
    (lambda: lrne.ga(8, 2, 0.1, density=0.5, mask="often"), "mask"),
    (lambda: lrne.nres(4, 0.1, SGD, 16, 8), "truncation_length must be <= horizon"),
    (lambda: lrne.nres(4, 0.1, SGD, 3, 8), "truncation_length must divide horizon"),
    (lambda: lrne.nres(0, 0.1, SGD, 2, 8), "num_particles"),
    (lambda: lrne.pes(4, 0.0, SGD, 2, 8), "sigma"),
    (lambda: lrne.tes(4, 0.1, "sgd", 2, 8), "optimizer"),
    (lambda: lrne.full_es(4, 0.1, SGD, 0), "horizon"),
    (lambda: lrne.nres(4, 0.1, SGD, 2, 8, noise_rank=-1), "noise_rank"),
    (lambda: lrne.metropolis(4, 0.1, -1.0), "beta"),
    (lambda: lrne.metropolis(0, 0.1, 1.0), "num_chains"),
    (lambda: lrne.strategies.make("bptt", 8), "unknown name 'bptt'"),
    (lambda: lrne.strategies.make("nres", 8), "horizon is required"),
    (lambda: lrne.strategies.make("nres", 7, horizon=8), "population_size must be an even"),
    (lambda: lrne.tasks.Gymnax("NoSuchEnv-v0", MLP((4,), 2)), "unknown gymnax environment"),
    (lambda: lrne.tasks.Gymnax("CartPole-v1", MLP((4,), 2), num_episodes=0), "num_episodes"),
    (lambda: lrne.tasks.Gymnax("CartPole-v1", MLP((4,), 5)), "policy"),
    (lambda: lrne.tasks.Gymnax("CartPole-v1", MLP((4,), 2), compaction=1.0), "compaction"),
    (lambda: lrne.tasks.Lorenz(horizon=0), "horizon"),
    (lambda: Dense(4, rank=-1).init(jax.random.key(0), jnp.zeros(3)), "rank"),
    (lambda: Dense(4, rank=5).init(jax.random.key(0), jnp.zeros(3)), "rank"),
    (lambda: lrne.es(8, lambda g: 0.1, SGD, dense_noise="kernel"), "dense_noise"),
    (lambda: lrne.nres(4, "0.1", SGD, 2, 8), "sigma"),
    (lambda: LowRankNRES(7, PARAMS), "population_size must be even"),
    (lambda: lrne.tasks.Classification(MLP((4,), 2), jnp.zeros((3, 2)), jnp.zeros(2)), "length"),
]


@pytest.mark.parametrize(("build", "message"), INVALID)
def test_invalid_settings_fail_at_construction_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_online_strategy_rejects_a_task_of_another_horizon():
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((4,), 2), max_steps=16)
    strategy = lrne.nres(4, 0.1, SGD, 2, 8)
    with pytest.raises(ValueError, match="horizon"):
        strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)), task)


def test_cli_rejects_negative_generations(capsys):
    from lrne.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["train", "--generations", "-3"])
    assert stop.value.code == 2
    assert "--generations" in capsys.readouterr().err


def poison(fitness):
    """Replace a few members' fitness with NaN, +inf and -inf."""
    return fitness.at[0].set(jnp.nan).at[1].set(jnp.inf).at[2].set(-jnp.inf)


def all_finite(tree):
    floats = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return all(bool(jnp.all(jnp.isfinite(x))) for x in floats)


class Target(lrne.tasks.Task):
    """A stock ``nn.Dense(2)`` on a fixed input, fitness −‖out − 1‖², with 3 members poisoned."""

    model = nn.Dense(2)
    x = jnp.ones(3)

    def init_params(self, key):
        return self.model.init(key, self.x)

    def evaluate_members(self, keys, population):
        shared, members = population
        out = jax.vmap(
            lambda m: lrne.nn.apply(self.model, lrne.nn.member_variables(shared, m), self.x)
        )(members)
        return poison(-jnp.sum((out - 1.0) ** 2, axis=1)), {}


# Settings the registry (and so test_contract.py) does not cover.
@pytest.mark.parametrize(
    "strategy",
    [
        lrne.metropolis(16, 0.1, math.inf),
        lrne.es(16, 0.1, optax.adam(0.05), antithetic=False, fitness_shaping=z_score),
        lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1, fitness_shaping=z_score),
        lrne.ga(16, 4, 0.3, density=0.5, mask="dynamic"),
    ],
    ids=["metropolis-inf", "es-z-score-one-sided", "es-lowrank-z-score", "ga-dynamic-subspace"],
)
def test_nonfinite_fitness_never_reaches_the_state(strategy):
    task = Target()
    state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
    step = jax.jit(lrne.generation_step(strategy, task))
    fitness_max = []
    for k in jax.random.split(jax.random.key(1), 10):
        before = state
        state, metrics = step(state, k)
        fitness_max.append(float(metrics["fitness_max"]))
        # Entries that were finite stay finite (a Metropolis chain whose every
        # proposal is poisoned keeps U = +inf, fitness -inf, from its first score).
        for b, a in zip(jax.tree.leaves(before), jax.tree.leaves(state), strict=True):
            if jnp.issubdtype(a.dtype, jnp.floating):
                assert not np.any(np.isfinite(b) & ~np.isfinite(a))
        assert all_finite((state.best_params, state.best_fitness))
    if "num_nonfinite" in metrics:
        assert int(metrics["num_nonfinite"]) == 3
    assert float(state.best_fitness) == max(fitness_max)
    # It learned on the finite members: the best fitness improved on the first generation's.
    assert max(fitness_max) > fitness_max[0]


@pytest.mark.parametrize("cls", [LowRankES, FactorizedGA, LowRankNRES])
def test_evosax_plugins_survive_nonfinite_fitness(cls):
    solution = {"w": jnp.zeros((3, 2))}
    kwargs = {"truncation_length": 2, "horizon": 4} if cls is LowRankNRES else {}
    algo = cls(population_size=16, solution=solution, **kwargs)
    params = algo.default_params
    loss = jax.vmap(lambda p: jnp.sum((p["w"] - 1.0) ** 2))
    if cls is FactorizedGA:
        population = jax.tree.map(lambda x: jnp.broadcast_to(x, (16, *x.shape)), solution)
        state = algo.init(jax.random.key(0), population, loss(population), params)
    else:
        state = algo.init(jax.random.key(0), solution, params)
    for k in jax.random.split(jax.random.key(1), 8):
        population, state = algo.ask(k, state, params)
        state, _ = algo.tell(k, population, poison(loss(population)), state, params)
    mean = algo.get_best_solution(state) if cls is FactorizedGA else algo.get_mean(state)
    assert all_finite(mean) and all_finite(state.native)
    assert np.isfinite(float(state.best_fitness))
    # The poisoned members never entered evosax's archive (a +inf loss would have).
    # (A population algorithm's get_best_solution is the current population's best.)
    archived = algo._unravel_solution(state.best_solution)
    assert float(jnp.sum((archived["w"] - 1.0) ** 2)) == pytest.approx(
        float(state.best_fitness), rel=1e-5
    )


def test_steady_state_over_100_generations():
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((16,), 2, rank=2), max_steps=50)
    strategy = lrne.ga(32, num_elites=4, sigma=0.3)
    chex.clear_trace_counter()
    step = jax.jit(chex.assert_max_traces(lrne.generation_step(strategy, task), n=1))

    def run():
        state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
        rss = []
        for i, k in enumerate(jax.random.split(jax.random.key(2), 100)):
            state, metrics = step(state, k)
            del metrics  # nothing accumulates
            if i in (20, 99):
                jax.block_until_ready(state)
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return state, rss

    first, rss = run()
    second, _ = run()
    # ru_maxrss is in KiB on Linux: at most 20 MiB of growth over 80 generations.
    assert rss[1] - rss[0] < 20 * 1024, rss
    chex.assert_trees_all_equal(first, second)
