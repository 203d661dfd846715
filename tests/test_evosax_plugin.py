"""lrne strategies behind evosax 0.3's ask/tell API, checked as evosax checks its own."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from evosax.problems import BBOBProblem, GymnaxProblem
from flax import linen as nn

import lrne
from lrne.integrations.evosax import FactorizedGA, LowRankES, LowRankNRES, register

CLASSES = [LowRankES, FactorizedGA, LowRankNRES]
POPULATION, GENERATIONS = 8, 16


def sphere():
    problem = BBOBProblem("sphere", num_dims=2, seed=0)
    return problem, problem.init(jax.random.key(0))


def init_state(algo, key, problem, problem_state):
    """evosax's two init signatures: a mean, or an evaluated initial population."""
    params = algo.default_params
    solution = problem.sample(key)
    if isinstance(algo, FactorizedGA):
        population = jax.vmap(problem.sample)(jax.random.split(key, algo.population_size))
        fitness, _, _ = problem.eval(key, population, problem_state)
        return algo.init(key, population, fitness, params)
    return algo.init(key, solution, params)


def make_step(algo, problem, problem_state, sign=1.0):
    """One evosax generation; ``sign=-1`` for problems that return rewards (GymnaxProblem)."""

    def step(state, key):
        key_ask, key_eval, key_tell = jax.random.split(key, 3)
        population, state = algo.ask(key_ask, state, algo.default_params)
        fitness, _, _ = problem.eval(key_eval, population, problem_state)
        fitness = sign * fitness
        state, metrics = algo.tell(key_tell, population, fitness, state, algo.default_params)
        return state, metrics

    return step


@pytest.mark.parametrize("cls", CLASSES)
def test_sphere_in_a_loop_and_in_scan(cls):
    problem, problem_state = sphere()
    kwargs = {"truncation_length": 2, "horizon": 4} if cls is LowRankNRES else {}
    algo = cls(population_size=POPULATION, solution=problem.sample(jax.random.key(0)), **kwargs)
    step = jax.jit(make_step(algo, problem, problem_state))
    key = jax.random.key(1)
    state0 = init_state(algo, key, problem, problem_state)
    keys = jax.random.split(jax.random.key(2), GENERATIONS)
    state = state0
    for k in keys:
        state, metrics = step(state, k)
    scanned, history = jax.lax.scan(step, state0, keys)
    np.testing.assert_allclose(scanned.best_fitness, state.best_fitness, rtol=1e-5)
    assert history["best_fitness"].shape == (GENERATIONS,)
    assert {"best_fitness", "best_solution", "generation_counter"} <= set(metrics)
    assert int(state.generation_counter) == GENERATIONS
    best = algo.get_best_solution(state)
    assert best.shape == (2,) and np.all(np.isfinite(best))
    if hasattr(algo, "get_mean"):
        assert algo.get_mean(state).shape == (2,)
    # The archive improved on the sphere: the best fitness fell below the first generation's.
    assert float(state.best_fitness) <= float(history["best_fitness"][0])


@pytest.mark.parametrize("cls", CLASSES)
def test_jit_and_vmap_over_seeds(cls):
    problem, problem_state = sphere()
    kwargs = {"truncation_length": 2, "horizon": 4} if cls is LowRankNRES else {}
    algo = cls(population_size=POPULATION, solution=problem.sample(jax.random.key(0)), **kwargs)
    step = make_step(algo, problem, problem_state)

    def run(seed):
        state = init_state(algo, seed, problem, problem_state)
        state, _ = jax.lax.scan(step, state, jax.random.split(seed, 4))
        return state.best_fitness

    best = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(3), 5))
    assert best.shape == (5,) and np.all(np.isfinite(best))
    assert len(np.unique(np.asarray(best))) > 1  # seeds differ


class Policy(nn.Module):
    """evosax's policy signature: apply(params, obs, key) -> action."""

    @nn.compact
    def __call__(self, obs, key):
        x = nn.tanh(nn.Dense(32)(obs))
        x = nn.tanh(nn.Dense(32)(x))
        return jnp.argmax(nn.Dense(2)(x))


def test_lowrank_es_solves_cartpole_through_gymnax_problem():
    problem = GymnaxProblem("CartPole-v1", Policy(), episode_length=500, use_normalize_obs=False)
    key = jax.random.key(0)
    problem_state = problem.init(key)
    solution = problem.sample(key)
    algo = LowRankES(population_size=128, solution=solution, sigma=0.05, optimizer=optax.adam(0.03))
    state = algo.init(key, solution, algo.default_params)
    step = jax.jit(make_step(algo, problem, problem_state, sign=-1.0))  # returns -> loss
    for k in jax.random.split(jax.random.key(1), 30):
        state, _ = step(state, k)
    # evosax's GymnaxProblem returns the mean return; the mean solution on 16 episodes.
    scorer = GymnaxProblem(
        "CartPole-v1", Policy(), episode_length=500, num_rollouts=16, use_normalize_obs=False
    )
    mean = jax.tree.map(lambda x: x[None], algo.get_mean(state))
    returns, _, _ = jax.jit(scorer.eval)(jax.random.key(2), mean, scorer.init(key))
    assert float(returns[0]) >= 475.0


def quadratic_fitness(params):
    """lrne fitness (maximized) of a pytree with a 2-D leaf."""
    return -jnp.sum((params["w"] - 1.0) ** 2) - jnp.sum((params["b"] + 0.5) ** 2)


def test_lowrank_es_follows_the_native_trajectory():
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
    native = lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1)
    native = native._replace(ask=jax.jit(native.ask), tell=jax.jit(native.tell))
    algo = LowRankES(16, params, sigma=0.1, optimizer=optax.adam(0.05), noise_rank=1)
    state = native.init(jax.random.key(0), {"params": params})
    evo_state = algo.init(jax.random.key(0), params, algo.default_params)
    for k in jax.random.split(jax.random.key(1), 10):
        key_ask, key_tell = jax.random.split(k)
        population, state = native.ask(key_ask, state)
        base = population.shared["params"]
        members = jax.vmap(lambda d, base=base: lrne.perturb.apply(base, d))(
            population.members["perturb"]
        )
        state, _ = native.tell(key_tell, state, population, jax.vmap(quadratic_fitness)(members))
        members, evo_state = algo.ask(key_ask, evo_state, algo.default_params)
        loss = -jax.vmap(quadratic_fitness)(members)  # evosax minimizes
        evo_state, _ = algo.tell(key_tell, members, loss, evo_state, algo.default_params)
    got = algo.get_mean(evo_state)
    np.testing.assert_allclose(got["w"], state.mean["params"]["w"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["b"], state.mean["params"]["b"], rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(got["w"]).sum()) > 0  # it moved


def test_factorized_ga_follows_the_native_trajectory():
    model = lrne.nn.MLP((6,), 2, rank=2)
    x = jax.random.normal(jax.random.key(5), (5,))
    variables = model.init(jax.random.key(0), x)

    def fitness(v):
        return -jnp.sum((model.apply(v, x) - 1.0) ** 2)

    native = lrne.ga(16, num_elites=3, sigma=0.2)
    native = native._replace(ask=jax.jit(native.ask), tell=jax.jit(native.tell))
    algo = FactorizedGA(16, variables, num_elites=3, sigma=0.2)
    state = native.init(jax.random.key(0), variables)
    population, state = native.ask(jax.random.key(1), state)
    scores = jax.vmap(fitness)(population)
    state, _ = native.tell(jax.random.key(2), state, population, scores)
    evo_state = algo.init(jax.random.key(0), population, -scores, algo.default_params)
    for k in jax.random.split(jax.random.key(3), 8):
        key_ask, key_tell = jax.random.split(k)
        population, state = native.ask(key_ask, state)
        state, _ = native.tell(key_tell, state, population, jax.vmap(fitness)(population))
        members, evo_state = algo.ask(key_ask, evo_state, algo.default_params)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            members,
            population,
        )
        loss = -jax.vmap(fitness)(members)
        evo_state, _ = algo.tell(key_tell, members, loss, evo_state, algo.default_params)
    assert float(-evo_state.best_fitness) == pytest.approx(float(state.best_fitness), rel=1e-6)
    factors = algo.get_best_solution(evo_state)["params"]["Dense_0"]["kernel"]
    assert set(factors) == {"A", "B"}


class Drift:
    """s_{t+1} = s_t + x·Θ; fitness −‖s − c‖² (the native side of the NRES check)."""

    horizon = 4

    def __init__(self):
        self.x = jnp.array([1.0, -0.5, 0.25])
        self.c = jnp.array([1.0, 2.0])

    def reset(self, keys):
        return jnp.zeros((keys.shape[0], 2))

    def dynamics(self, theta, state):
        state = state + self.x @ theta["w"] + theta["b"]
        return state, -jnp.sum((state - self.c) ** 2, axis=-1)

    def unroll(self, keys, population, inner, t, num_steps):
        base = population.shared["params"]
        theta = jax.vmap(lambda d: lrne.perturb.apply(base, d))(population.members["perturb"])

        def body(state, _):
            return jax.vmap(self.dynamics)(theta, state)

        inner, fitness = jax.lax.scan(body, inner, None, length=num_steps)
        return inner, fitness.T


def test_lowrank_nres_follows_the_native_trajectory():
    task, window, particles = Drift(), 2, 6
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    native = lrne.nres(particles, 0.1, optax.sgd(0.01), window, task.horizon, noise_rank=1)
    algo = LowRankNRES(
        2 * particles,
        params,
        sigma=0.1,
        optimizer=optax.sgd(0.01),
        truncation_length=window,
        horizon=task.horizon,
        noise_rank=1,
    )
    state = native.init(jax.random.key(0), {"params": params}, task)
    evo_state = algo.init(jax.random.key(0), params, algo.default_params)
    np.testing.assert_array_equal(evo_state.t, state.t)
    inner = jnp.zeros((2 * particles, 2))
    step = jax.jit(lrne.generation_step(native, task))
    for k in jax.random.split(jax.random.key(1), 12):
        state, _ = step(state, k)
        members, evo_state = algo.ask(k, evo_state, algo.default_params)
        inner = jnp.where(algo.get_reset_mask(evo_state)[:, None], 0.0, inner)
        theta = members  # evosax's ask returns the population unravelled
        losses = jnp.zeros(2 * particles)
        for _ in range(window):
            inner, fitness = jax.vmap(task.dynamics)(theta, inner)
            losses = losses - fitness  # the window's loss, summed
        evo_state, _ = algo.tell(k, members, losses, evo_state, algo.default_params)
    got = algo.get_mean(evo_state)
    np.testing.assert_allclose(got["w"], state.mean["params"]["w"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["b"], state.mean["params"]["b"], rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(got["b"]).sum()) > 0  # it moved after burn-in


def test_state_holds_no_population_by_parameters_array():
    params = {"w": jnp.zeros((40, 30)), "b": jnp.zeros(30)}
    population = 64
    dims = 40 * 30 + 30
    for algo in (
        LowRankES(population, params),
        LowRankNRES(population, params, truncation_length=2, horizon=4),
    ):
        state = algo.init(jax.random.key(0), params, algo.default_params)
        _, state = algo.ask(jax.random.key(1), state, algo.default_params)
        largest = max(np.size(x) for x in jax.tree.leaves(state))
        assert largest < population * dims / 10, (type(algo).__name__, largest)


def test_register_adds_names_and_keeps_existing_entries():
    from evosax import algorithms
    from evosax.algorithms import distribution_based, population_based

    before = dict(algorithms.algorithms)
    added = register()
    register()  # idempotent
    assert set(added) == {"lrne_LowRankES", "lrne_LowRankNRES", "lrne_FactorizedGA"}
    assert algorithms.algorithms["lrne_LowRankES"] is LowRankES
    assert distribution_based.distribution_based_algorithms["lrne_LowRankNRES"] is LowRankNRES
    assert population_based.population_based_algorithms["lrne_FactorizedGA"] is FactorizedGA
    for name, cls in before.items():
        assert algorithms.algorithms[name] is cls


def test_importing_lrne_leaves_evosax_alone():
    code = (
        "import lrne, lrne.integrations.evosax; from evosax import algorithms; "
        "assert not any(n.startswith('lrne_') for n in algorithms.algorithms)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_construction_errors():
    params = {"w": jnp.zeros((3, 2))}
    with pytest.raises(ValueError, match="population_size must be even"):
        LowRankNRES(7, params)
    with pytest.raises(ValueError, match="truncation_length must divide horizon"):
        LowRankNRES(8, params, truncation_length=3, horizon=10)
    with pytest.raises(ValueError, match="num_elites"):
        FactorizedGA(8, params, num_elites=8)
    with pytest.raises(ValueError, match="sigma"):
        LowRankES(8, params, sigma=-1.0)
