"""OpenAI-ES with dense and low-rank noise against explicit references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrne
from lrne import perturb
from lrne.nn import MLP, Conv, Embed


def test_lowrank_noise_has_mean_zero_and_variance_sigma_squared():
    # Entry = (σ/√r) Σ_k U_kj V_kl: Var = σ², E[δ⁴] = σ⁴(3 + 6/r). With n = 20000
    # draws the SE of the mean is σ/√n and of the variance σ²·sqrt((2 + 6/r)/n);
    # tolerances are 5 SE per entry.
    sigma, rank, n = 0.3, 2, 20_000
    params = {"w": jnp.zeros((3, 4))}
    draws = jax.vmap(lambda k: perturb.sample(k, params, sigma, rank))(
        jax.random.split(jax.random.key(0), n)
    )
    dense = jnp.einsum("prm,prn->pmn", draws["w"]["U"], draws["w"]["V"])
    assert draws["w"]["U"].shape == (n, rank, 3) and draws["w"]["V"].shape == (n, rank, 4)
    assert float(jnp.max(jnp.abs(dense.mean(0)))) < 5 * sigma / np.sqrt(n)
    rel = np.abs(np.asarray(dense.var(0)) / sigma**2 - 1.0)
    assert rel.max() < 5 * np.sqrt((2 + 6 / rank) / n)


@pytest.mark.parametrize("noise_rank", [0, 2])
@pytest.mark.parametrize("model_rank", [0, 3])
def test_perturbed_forward_equals_dense_forward_of_w_plus_delta(noise_rank, model_rank):
    model = MLP((8, 6), 3, rank=model_rank)
    x = jax.random.normal(jax.random.key(1), (5,))
    variables = model.init(jax.random.key(0), x)
    delta = perturb.sample(jax.random.key(2), variables["params"], 0.1, noise_rank)
    got = model.apply({**variables, "perturb": delta}, x)
    expected = model.apply({"params": perturb.apply(variables["params"], delta)}, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_perturbed_conv_and_embed(key):
    for layer, x in [
        (Conv(4, (3, 3), rank=2), jax.random.normal(key, (6, 6, 3))),
        (Conv(4, (3, 3)), jax.random.normal(key, (6, 6, 3))),
        (Embed(11, 6, rank=2), jnp.array([1, 4, 9])),
        (Embed(11, 6), jnp.array([1, 4, 9])),
    ]:
        variables = layer.init(key, x)
        delta = perturb.sample(jax.random.key(3), variables["params"], 0.2, 2)
        moved = {"params": perturb.apply(variables["params"], delta)}
        got = layer.apply({**variables, "perturb": delta}, x)
        np.testing.assert_allclose(got, layer.apply(moved, x), rtol=1e-5, atol=1e-5)
        if isinstance(layer, Embed):
            q = jax.random.normal(key, (2, 6))
            got = layer.apply({**variables, "perturb": delta}, q, method=Embed.attend)
            ref = layer.apply(moved, q, method=Embed.attend)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("antithetic", [True, False])
def test_lowrank_update_equals_explicit_dense_computation(antithetic):
    model = MLP((6,), 4, rank=0)
    variables = model.init(jax.random.key(0), jnp.ones(5))
    sigma, lr, population_size = 0.1, 0.5, 8
    strategy = lrne.es(
        population_size,
        sigma,
        optax.sgd(lr),
        noise_rank=2,
        antithetic=antithetic,
        fitness_shaping=lambda f: f,
    )
    state = strategy.init(jax.random.key(1), variables)
    population, state = strategy.ask(jax.random.key(2), state)
    fitness = jax.random.normal(jax.random.key(3), (population_size,))
    new, _ = strategy.tell(jax.random.key(4), state, population, fitness)

    members = population.members["perturb"]
    for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]):
        node = members
        for k in path:
            node = node[k.key]
        if leaf.ndim == 2:
            u, v = np.asarray(node["U"], np.float64), np.asarray(node["V"], np.float64)
            deltas = np.einsum("prm,prn->pmn", u, v)
        else:
            deltas = np.asarray(node, np.float64)
        grad = np.tensordot(np.asarray(fitness, np.float64), deltas, axes=1)
        grad /= population_size * sigma**2
        expected = np.asarray(leaf, np.float64) + lr * grad
        got = new.mean["params"]
        for k in path:
            got = got[k.key]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_antithetic_pairs_cancel_exactly_on_constant_fitness(key):
    variables = MLP((6,), 2).init(key, jnp.ones(3))
    for noise_rank in (0, 1):
        strategy = lrne.es(10, 0.2, optax.sgd(1.0), noise_rank=noise_rank)
        state = strategy.init(key, variables)
        population, state = strategy.ask(jax.random.key(5), state)
        new, metrics = strategy.tell(key, state, population, jnp.full(10, 3.0))
        assert float(metrics["update_norm"]) == 0.0
        for a, b in zip(jax.tree.leaves(new.mean), jax.tree.leaves(variables), strict=True):
            np.testing.assert_array_equal(a, b)


def test_nonfinite_fitness_never_reaches_the_update(key):
    variables = MLP((6,), 2).init(key, jnp.ones(3))
    strategy = lrne.es(8, 0.1, optax.adam(0.1), noise_rank=1)
    state = strategy.init(key, variables)
    population, state = strategy.ask(key, state)
    fitness = jnp.array([1.0, jnp.nan, 2.0, jnp.inf, -jnp.inf, 0.5, 3.0, jnp.nan])
    new, metrics = strategy.tell(key, state, population, fitness)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(new))
    assert float(new.best_fitness) == 3.0 and int(metrics["num_nonfinite"]) == 4
    # A non-finite member weighs the same as the worst finite one would.
    weights = lrne.strategies.centered_rank(fitness)
    assert float(weights[1]) == float(weights[3]) == float(weights[4]) == float(weights.min())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population_size": 7, "sigma": 0.1}, "must be even"),
        ({"population_size": 8, "sigma": 0.0}, "sigma must be"),
        ({"population_size": 8, "sigma": 0.1, "noise_rank": -1}, "noise_rank must be"),
        ({"population_size": 1, "sigma": 0.1, "antithetic": False}, "population_size must be"),
    ],
)
def test_invalid_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lrne.es(optimizer=optax.sgd(0.1), **kwargs)


class Quadratic:
    """Fitness = -|θ_i - 1|² per member, θ_i = mean + δ_i (dense, for the test)."""

    def evaluate(self, key, population):
        def one(member):
            theta = perturb.apply(population.shared["params"], member["perturb"])
            return -sum(jnp.sum((x - 1.0) ** 2) for x in jax.tree.leaves(theta))

        return jax.vmap(one)(population.members), {}


@pytest.mark.parametrize("noise_rank", [0, 2])
def test_loop_and_scan_agree_and_compile_once(noise_rank):
    strategy = lrne.es(32, 0.1, optax.adam(0.05), noise_rank=noise_rank)
    variables = {"params": {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}}
    traces = []

    def counted(state, k):
        traces.append(1)
        return lrne.generation_step(strategy, Quadratic())(state, k)

    step = jax.jit(counted)
    state0 = strategy.init(jax.random.key(0), variables)
    keys = jax.random.split(jax.random.key(1), 150)
    state = state0
    for k in keys:
        state, _ = step(state, k)
    assert len(traces) == 1
    scanned, history = jax.lax.scan(counted, state0, keys)
    np.testing.assert_allclose(
        scanned.mean["params"]["w"], state.mean["params"]["w"], rtol=1e-5, atol=1e-6
    )
    # From -15 at θ = 0 to near the optimum θ = 1.
    assert float(history["fitness_mean"][-1]) > -0.5


def test_es_lowrank_solves_cartpole():
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((32, 32), 2))
    strategy = lrne.es(128, 0.05, optax.adam(0.03), noise_rank=1)
    state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
    step = jax.jit(lrne.generation_step(strategy, task))
    for key in jax.random.split(jax.random.key(2), 30):
        state, _ = step(state, key)
    test = lrne.tasks.Gymnax("CartPole-v1", task.policy, num_episodes=64)
    mean = jax.tree.map(lambda x: x[None], state.mean)
    fitness, _ = jax.jit(test.evaluate)(jax.random.key(3), mean)
    assert float(fitness[0]) >= 475.0
