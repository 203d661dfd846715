"""Truncation GA semantics on toy fitness functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrne
from lrne.nn import MLP
from lrne.perturb import gaussian_noise


def sphere(population):
    return -jnp.sum(population.members["x"] ** 2, axis=-1)


def test_elites_survive_bit_identical_and_children_differ(key):
    strategy = lrne.ga(population_size=16, num_elites=4, sigma=0.1)
    params = {"x": jax.random.normal(key, (5,))}
    state = strategy.init(key, params)
    population, state = strategy.ask(jax.random.key(1), state)
    fitness = sphere(population)
    state, _ = strategy.tell(jax.random.key(2), state, population, fitness)

    top = np.argsort(-np.asarray(fitness), kind="stable")[:4]
    np.testing.assert_array_equal(state.elites["x"], np.asarray(population.members["x"])[top])
    np.testing.assert_array_equal(state.elite_fitness, np.asarray(fitness)[top])

    children, _ = strategy.ask(jax.random.key(3), state)
    assert children.shared == {}
    np.testing.assert_array_equal(children.members["x"][:4], state.elites["x"])
    kids = np.asarray(children.members["x"][4:])
    elites = np.asarray(state.elites["x"])
    # Every child differs from every elite, and is nearest to one of them.
    distance = np.linalg.norm(kids[:, None] - elites[None], axis=-1)
    assert np.all(distance > 0)
    assert np.all(distance.min(axis=1) < 0.1 * 5 * np.sqrt(5))


def test_nonfinite_fitness_ranks_last(key):
    strategy = lrne.ga(population_size=8, num_elites=3, sigma=0.1)
    state = strategy.init(key, {"x": jnp.zeros(2)})
    population, state = strategy.ask(key, state)
    fitness = jnp.array([jnp.nan, 5.0, jnp.inf, 1.0, -jnp.inf, 3.0, 2.0, jnp.nan])
    state, metrics = strategy.tell(key, state, population, fitness)
    np.testing.assert_array_equal(state.elite_fitness, [5.0, 3.0, 2.0])
    members = population.members
    np.testing.assert_array_equal(state.elites["x"], members["x"][jnp.array([1, 5, 6])])
    assert float(state.best_fitness) == 5.0
    np.testing.assert_array_equal(state.best_params["x"], members["x"][1])
    assert int(metrics["num_nonfinite"]) == 4
    # All non-finite: nothing reaches best_fitness.
    state2, _ = strategy.tell(
        key, strategy.init(key, {"x": jnp.zeros(2)}), population, jnp.full(8, jnp.nan)
    )
    assert float(state2.best_fitness) == -np.inf


def test_mutation_std_follows_init_std_and_factors_get_sqrt_sigma(key):
    model = MLP((64,), 32, rank=4)
    params = model.init(key, jnp.ones(48))
    sigma, num_children = 0.04, 2000
    strategy = lrne.ga(population_size=num_children + 1, num_elites=1, sigma=sigma)
    state = strategy.init(key, params)
    population, _ = jax.jit(strategy.ask)(jax.random.key(5), state)
    delta = jax.tree.map(lambda p, e: p[1:] - e[0], population.members, state.elites)
    # Both factors of both layers: noise std = sqrt(sigma) x the factor's init std.
    # >= 2000 x 128 samples per leaf: relative standard error of a std < 0.2%.
    for layer in ("Dense_0", "Dense_1"):
        factors, noise = params["params"][layer]["kernel"], delta["params"][layer]["kernel"]
        for name in ("A", "B"):
            expected = np.sqrt(sigma) * float(jnp.std(getattr(factors, name)))
            got = float(jnp.std(getattr(noise, name)))
            np.testing.assert_allclose(got, expected, rtol=0.02, err_msg=f"{layer}.{name}")
    dense_params = MLP((64,), 3, rank=4).init(key, jnp.ones(48))
    strategy = lrne.ga(population_size=num_children + 1, num_elites=1, sigma=sigma)
    state = strategy.init(key, dense_params)
    population, _ = jax.jit(strategy.ask)(jax.random.key(6), state)
    head = population.members["params"]["Dense_1"]
    kernel_std = float(jnp.std(dense_params["params"]["Dense_1"]["kernel"]))
    np.testing.assert_allclose(
        float(jnp.std(head["kernel"][1:] - head["kernel"][0])), sigma * kernel_std, rtol=0.02
    )
    # The bias starts at zero and mutates on the scale of its layer's kernel.
    np.testing.assert_allclose(float(jnp.std(head["bias"][1:])), sigma * kernel_std, rtol=0.05)


def test_mutation_noise_is_an_exact_product(key):
    """Each draw is scale × N(0, 1), both rounded to 12 significant bits, so the product
    is exact in float32 and ``x + noise`` rounds once whether XLA fuses it into an FMA or
    not (what keeps a GA split over devices bit-identical to one device)."""
    scale = 0.0123457

    def twelve_bits(v):  # round to nearest even at 12 significant bits, in float64
        mantissa, exponent = np.frexp(v)
        return np.ldexp(np.round(mantissa * 2.0**12) / 2.0**12, exponent)

    draw = np.asarray(jax.random.normal(key, (4096,)), np.float64)
    noise = np.asarray(gaussian_noise(key, (4096,), jnp.float32, scale), np.float64)
    exact = twelve_bits(np.float64(np.float32(scale))) * twelve_bits(draw)
    np.testing.assert_array_equal(noise, exact)
    # Fused (one rounding of x + a·b) equals unfused (a·b rounded, then the sum).
    x = np.asarray(jax.random.normal(jax.random.key(1), (4096,)), np.float32)
    fused = (x.astype(np.float64) + exact).astype(np.float32)
    np.testing.assert_array_equal(fused, x + noise.astype(np.float32))
    # Without the rounding, many unfused sums differ from the fused ones.
    raw = np.float32(scale) * draw.astype(np.float32)
    fused_raw = (x.astype(np.float64) + np.float64(np.float32(scale)) * draw).astype(np.float32)
    assert np.sum(fused_raw != x + raw) > 10


def test_freeze_by_path(key):
    params = {
        "body": {"kernel": jax.random.normal(key, (3, 3))},
        "LayerNorm_0": {"scale": jnp.ones(3)},
    }
    strategy = lrne.ga(population_size=6, num_elites=2, sigma=0.5, freeze=["LayerNorm"])
    population, _ = strategy.ask(key, strategy.init(key, params))
    members = population.members
    np.testing.assert_array_equal(members["LayerNorm_0"]["scale"], jnp.ones((6, 3)))
    assert np.all(members["body"]["kernel"][2:] != members["body"]["kernel"][0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population_size": 4, "num_elites": 4, "sigma": 0.1}, "num_elites must be <"),
        ({"population_size": 4, "num_elites": 0, "sigma": 0.1}, "num_elites must be an int >= 1"),
        ({"population_size": 4, "num_elites": 1, "sigma": 0.0}, "sigma must be"),
        ({"population_size": 4, "num_elites": 1, "sigma": float("nan")}, "sigma must be"),
        ({"population_size": 1.5, "num_elites": 1, "sigma": 0.1}, "population_size must be"),
    ],
)
def test_invalid_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lrne.ga(**kwargs)


class SphereTask:
    def evaluate(self, key, population):
        return sphere(population), {}


def test_ga_descends_the_sphere(key):
    # From x = (3, 3, 3, 3), fitness -36; 40 generations of 28 children at
    # sigma 0.3 (relative to the init std 1.0 a constant leaf gets) reach -0.5.
    strategy = lrne.ga(population_size=32, num_elites=4, sigma=0.3)
    state = strategy.init(key, {"x": jnp.full(4, 3.0)})
    step = lrne.generation_step(strategy, SphereTask())
    keys = jax.random.split(jax.random.key(7), 40)
    state, history = jax.jit(lambda s, k: jax.lax.scan(step, s, k))(state, keys)
    assert float(history["fitness_max"][0]) < -20
    assert float(state.best_fitness) > -0.5
    np.testing.assert_allclose(
        float(sphere(lrne.Population({}, jax.tree.map(lambda x: x[None], state.best_params)))[0]),
        float(state.best_fitness),
        rtol=1e-6,
    )
