"""OpenAI-ES with dense and low-rank noise against explicit references."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrne
from lrne import perturb
from lrne.genome import LowRank
from lrne.nn import MLP, Conv, Embed


def test_lowrank_noise_has_mean_zero_and_variance_sigma_squared():
    # Entry = (σ/√r) Σ_k U_kj V_kl: Var = σ², E[δ⁴] = σ⁴(3 + 6/r). With n = 20000
    # draws the SE of the mean is σ/√n and of the variance σ²·sqrt((2 + 6/r)/n);
    # tolerances are 5 SE per entry.
    sigma, rank, n = 0.3, 2, 20_000
    params = {"kernel": jnp.zeros((3, 4))}
    draws = jax.vmap(lambda k: perturb.sample(k, params, sigma, rank))(
        jax.random.split(jax.random.key(0), n)
    )["kernel"]
    assert isinstance(draws, LowRank)
    assert draws.U.shape == (n, rank, 3) and draws.V.shape == (n, rank, 4)
    dense = jnp.einsum("prm,prn->pmn", draws.U, draws.V)
    assert float(jnp.max(jnp.abs(dense.mean(0)))) < 5 * sigma / np.sqrt(n)
    rel = np.abs(np.asarray(dense.var(0)) / sigma**2 - 1.0)
    assert rel.max() < 5 * np.sqrt((2 + 6 / rank) / n)


def test_sample_draws_each_leaf_as_jax_random_normal_would():
    """perturb.sample against its per-leaf recipe, bit for bit (its keys are derived in
    one vectorized hash; runs and lineage records keep their noise): leaf i's key is
    split(key, L)[i]; a low-rank leaf draws U, V from split(that key); a dense leaf is
    gaussian_noise of its key."""
    params = {"b": jnp.zeros(5), "k": jnp.zeros((3, 4)), "w": jnp.zeros((2, 3, 6))}
    sigma, rank = 0.3, 2

    def reference(key):
        keys = jax.random.split(key, 3)
        out = {"b": perturb.gaussian_noise(keys[0], (5,), jnp.float32, sigma)}
        for name, k in (("k", keys[1]), ("w", keys[2])):
            key_u, key_v = jax.random.split(k)
            m, n = perturb.matrix_shape(params[name].shape)
            out[name] = LowRank(
                (sigma / np.sqrt(rank)) * jax.random.normal(key_u, (rank, m)),
                jax.random.normal(key_v, (rank, n)),
            )
        return out

    keys = jax.random.split(jax.random.key(3), 4)
    for draw in (jax.vmap, lambda f: jax.jit(jax.vmap(f))):
        got = draw(lambda k: perturb.sample(k, params, sigma, rank))(keys)
        want = jax.vmap(reference)(keys)
        np.testing.assert_array_equal(got["b"], want["b"])
        for name in ("k", "w"):
            np.testing.assert_array_equal(got[name].V, want[name].V)
            # XLA may fold the constant σ/√r into the draw's own √2 in one program
            # and not in the other: U agrees to its last bit.
            np.testing.assert_allclose(got[name].U, want[name].U, rtol=2.5e-7, atol=0)


@pytest.mark.parametrize("noise_rank", [0, 2])
@pytest.mark.parametrize("model_rank", [0, 3])
def test_perturbed_forward_equals_dense_forward_of_w_plus_delta(noise_rank, model_rank):
    model = MLP((8, 6), 3, rank=model_rank)
    x = jax.random.normal(jax.random.key(1), (5,))
    variables = model.init(jax.random.key(0), x)
    delta = perturb.sample(jax.random.key(2), variables["params"], 0.1, noise_rank)
    got = lrne.nn.apply(model, {**variables, "perturb": delta}, x)
    expected = model.apply({"params": perturb.apply(variables["params"], delta)}, x)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, model.apply(variables, x), atol=1e-3)


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
        got = lrne.nn.apply(layer, {**variables, "perturb": delta}, x)
        np.testing.assert_allclose(got, layer.apply(moved, x), rtol=1e-5, atol=1e-5)
        if isinstance(layer, Embed):
            q = jax.random.normal(key, (2, 6))
            got = lrne.nn.apply(layer, {**variables, "perturb": delta}, q, method=Embed.attend)
            ref = layer.apply(moved, q, method=Embed.attend)
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_rank", [0, 3])
@pytest.mark.parametrize("antithetic", [True, False])
def test_lowrank_update_equals_explicit_dense_computation(antithetic, model_rank):
    # ĝ = Σ_i w_i·δ_i / (P·σ²) with every δ_i = U_iᵀV_i formed densely, in float64.
    model = MLP((6,), 4, rank=model_rank)
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

    is_lowrank = lambda x: isinstance(x, LowRank)
    deltas = jax.tree.leaves(population.members["perturb"], is_leaf=is_lowrank)
    params = jax.tree.leaves(variables["params"])
    assert sum(map(is_lowrank, deltas)) == (2 if model_rank == 0 else 4)  # kernels or A, B
    for leaf, delta, got in zip(params, deltas, jax.tree.leaves(new.mean["params"]), strict=True):
        if is_lowrank(delta):
            u, v = np.asarray(delta.U, np.float64), np.asarray(delta.V, np.float64)
            dense = np.einsum("prm,prn->pmn", u, v)
        else:
            dense = np.asarray(delta, np.float64)
        grad = np.tensordot(np.asarray(fitness, np.float64), dense, axes=1)
        grad /= population_size * sigma**2
        expected = np.asarray(leaf, np.float64) + lr * grad
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_antithetic_pairs_cancel_exactly_on_constant_fitness(key):
    variables = MLP((6,), 2).init(key, jnp.ones(3))
    for noise_rank in (0, 1):
        strategy = lrne.es(10, 0.2, optax.sgd(1.0), noise_rank=noise_rank)
        state = strategy.init(key, variables)
        population, state = jax.jit(strategy.ask)(jax.random.key(5), state)
        new, metrics = jax.jit(strategy.tell)(key, state, population, jnp.full(10, 3.0))
        assert float(metrics["update_norm"]) == 0.0
        for a, b in zip(jax.tree.leaves(new.mean), jax.tree.leaves(variables), strict=True):
            np.testing.assert_array_equal(a, b)


def test_nonfinite_fitness_never_reaches_the_update(key):
    variables = MLP((6,), 2).init(key, jnp.ones(3))
    strategy = lrne.es(8, 0.1, optax.adam(0.1), noise_rank=1)
    state = strategy.init(key, variables)
    population, state = jax.jit(strategy.ask)(key, state)
    fitness = jnp.array([1.0, jnp.nan, 2.0, jnp.inf, -jnp.inf, 0.5, 3.0, jnp.nan])
    new, metrics = jax.jit(strategy.tell)(key, state, population, fitness)
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
