"""Bad input never corrupts a run; invalid settings fail at construction; steady state."""

import math
import resource

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrne
from lrne.integrations.evosax import FactorizedGA, LowRankES, LowRankNRES
from lrne.nn import MLP, Dense

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
    (lambda: lrne.ga(8, 8, 0.1), "num_elites"),
    (lambda: lrne.ga(8, 0, 0.1), "num_elites"),
    (lambda: lrne.ga(1, 1, 0.1), "population_size"),
    (lambda: lrne.ga(8, 2, 0.1, density=0.0), "density"),
    (lambda: lrne.ga(8, 2, 0.1, density=0.5, mask="often"), "mask"),
    (lambda: lrne.nres(4, 0.1, SGD, 16, 8), "truncation_length must be <= horizon"),
    (lambda: lrne.nres(4, 0.1, SGD, 3, 8), "truncation_length must divide horizon"),
    (lambda: lrne.nres(0, 0.1, SGD, 2, 8), "num_particles"),
    (lambda: lrne.online_es("bptt", 4, 0.1, SGD, 2, 8), "method"),
    (lambda: lrne.metropolis(4, 0.1, -1.0), "beta"),
    (lambda: lrne.tasks.Gymnax("NoSuchEnv-v0", MLP((4,), 2)), "unknown gymnax environment"),
    (lambda: lrne.tasks.Gymnax("CartPole-v1", MLP((4,), 2), num_episodes=0), "num_episodes"),
    (lambda: lrne.tasks.Gymnax("CartPole-v1", MLP((4,), 5)), "policy"),
    (lambda: lrne.tasks.Lorenz(horizon=0), "horizon"),
    (lambda: Dense(4, rank=-1).init(jax.random.key(0), jnp.zeros(3)), "rank"),
    (lambda: Dense(4, rank=5).init(jax.random.key(0), jnp.zeros(3)), "rank"),
    (lambda: lrne.es(8, 0.1, SGD).init(jax.random.key(0), PARAMS), "'params' collection"),
    (lambda: LowRankNRES(7, PARAMS), "population_size must be even"),
    (lambda: lrne.tasks.Classification(MLP((4,), 2), jnp.zeros((3, 2)), jnp.zeros(2)), "length"),
]


@pytest.mark.parametrize(("build", "message"), INVALID)
def test_invalid_settings_fail_at_construction_naming_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


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


def quadratic_fitness(params):
    return -jnp.sum((params["params"]["w"] - 1.0) ** 2)


@pytest.mark.parametrize(
    "strategy",
    [
        lrne.ga(16, 4, 0.3),
        lrne.ga(16, 4, 0.3, density=0.5, mask="static"),
        lrne.es(16, 0.1, optax.adam(0.05)),
        lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1),
        lrne.metropolis(16, 0.1, 10.0),
        lrne.metropolis(16, 0.1, math.inf),
    ],
    ids=["ga", "ga-static", "es", "es-lowrank", "metropolis", "metropolis-inf"],
)
def test_nonfinite_fitness_never_reaches_the_state(strategy):
    variables = {"params": {"w": jnp.zeros((3, 2))}}
    state = strategy.init(jax.random.key(0), variables)

    @jax.jit
    def step(state, key):
        population, state = strategy.ask(key, state)
        if isinstance(population, lrne.Population):
            shared, members = population
            score = jax.vmap(
                lambda m: quadratic_fitness(
                    {"params": lrne.perturb.apply(shared["params"], m["perturb"])}
                )
            )(members)
        else:
            score = jax.vmap(quadratic_fitness)(population)
        return strategy.tell(key, state, population, poison(score))

    for k in jax.random.split(jax.random.key(1), 10):
        state, metrics = step(state, k)
        if isinstance(state, lrne.MetropolisState):
            # A chain whose every proposal is poisoned keeps U = +inf (fitness -inf),
            # ranked last; its params never take a poisoned proposal.
            checked = (state.params, state.best_params, state.best_fitness)
        else:
            checked = state
        assert all_finite(checked), type(state).__name__
    if "num_nonfinite" in metrics:
        assert int(metrics["num_nonfinite"]) == 3
    assert bool(jnp.isfinite(state.best_fitness))


class PoisonedDrift:
    """A drift task whose first particles diverge: NaN and inf per-step fitness."""

    horizon = 4

    def reset(self, keys):
        return jnp.zeros((keys.shape[0], 2))

    def unroll(self, keys, population, inner, t, num_steps):
        theta = population.shared["params"]["w"] + population.members["perturb"]["w"]
        fitness = -jnp.sum((theta - 1.0) ** 2, axis=(1, 2))
        fitness = poison(fitness[::-1])[::-1]  # the last members: minus copies
        return inner, jnp.tile(fitness[:, None], (1, num_steps))


@pytest.mark.parametrize("method", ["nres", "pes", "tes", "full"])
def test_online_es_masks_out_nonfinite_windows(method):
    window = 4 if method == "full" else 2
    strategy = lrne.online_es(method, 8, 0.1, optax.adam(0.05), window, 4)
    task = PoisonedDrift()
    state = strategy.init(jax.random.key(0), {"params": {"w": jnp.zeros((3, 2))}}, task)
    step = jax.jit(lambda s, k: strategy.step(task, s, k))
    for k in jax.random.split(jax.random.key(1), 6):
        state, metrics = step(state, k)
        assert all_finite(state.mean) and all_finite(state.opt_state)
    assert int(metrics["num_nonfinite"]) >= 1


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
    assert all_finite(mean) and all_finite(getattr(state, "opt_state", ()))


def test_steady_state_over_100_generations():
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((16,), 2, rank=2), max_steps=50)
    strategy = lrne.ga(32, num_elites=4, sigma=0.3)
    traces = []

    def counted(state, key):
        traces.append(1)
        return lrne.generation_step(strategy, task)(state, key)

    step = jax.jit(counted)

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
    assert len(traces) == 1
    # ru_maxrss is in KiB on Linux: at most 20 MiB of growth over 80 generations.
    assert rss[1] - rss[0] < 20 * 1024, rss
    jax.tree.map(np.testing.assert_array_equal, first, second)
