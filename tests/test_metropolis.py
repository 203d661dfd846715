"""Metropolis neuroevolution against the gradient-descent correspondence (Whitelam et al. 2021).

One step from θ₀ with ε ~ N(0, σ²I), accepted with probability min(1, e^{−βΔU}).
For U linear along the step, with a = βσ|∇U| and z ~ N(0, 1):
E[Δθ] = σ·ĝ·E[z·min(1, e^{−az})] = −(βσ²/2)·∇U·(1 − c·a), c ≈ 0.8 for a <= 0.2,
so the relative bias is below a; at β = ∞, E[Δθ] = −(σ/√(2π))·ĝ exactly and
E[Δθᵢ²] = σ²/2 exactly, so Var(Δθᵢ) = σ²/2 − (σ ĝᵢ)²/(2π). Curvature adds
O(σ·|H|/|∇U|) relative terms. With n samples the standard error of a mean
coordinate is <= σ/√n. Each check allows 5 standard errors plus the bias bound.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrne

SAMPLES = 1_000_000


def one_step(sigma, beta, params, loss_fn, samples=SAMPLES, key=0):
    """Steps Δθ of ``samples`` independent chains from the same θ₀."""
    strategy = lrne.metropolis(samples, sigma, beta)
    state = strategy.init(jax.random.key(key), params)
    fitness = lambda population: jax.vmap(lambda p: -loss_fn(p))(population.members)

    @jax.jit
    def run(state, key):
        for k in jax.random.split(key, 2):  # score θ₀, then one Metropolis step
            key_ask, key_tell = jax.random.split(k)
            population, state = strategy.ask(key_ask, state)
            state, metrics = strategy.tell(key_tell, state, population, fitness(population))
        return state, metrics

    state, metrics = run(state, jax.random.key(key + 1))
    step = jax.tree.map(lambda x, x0: x - x0, state.params, params)
    flat = jnp.concatenate([x.reshape(samples, -1) for x in jax.tree.leaves(step)], axis=1)
    return np.asarray(flat, np.float64), float(metrics["acceptance_rate"])


def quadratic():
    curvature = jnp.array([1.0, 0.5, 2.0])
    theta0 = {"w": jnp.array([1.0, -2.0, 0.5])}
    loss = lambda p: 0.5 * jnp.sum(curvature * p["w"] ** 2)
    return theta0, loss


def flat_grad(loss, params):
    g = jax.grad(loss)(params)
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]).astype(np.float64)


@pytest.mark.parametrize("sigma", [0.02, 0.01])
def test_finite_beta_mean_step_is_gradient_descent_at_rate_beta_sigma2_over_2(sigma):
    params, loss = quadratic()
    grad = flat_grad(loss, params)
    beta = 0.1 / (0.02 * np.linalg.norm(grad))  # a = βσ|∇U| = 0.1 at σ = 0.02
    a = beta * sigma * np.linalg.norm(grad)
    steps, _ = one_step(sigma, beta, params, loss)
    predicted = -(beta * sigma**2 / 2) * grad
    # Curvature term: O(σ²·max|H|) per coordinate next to the mean's size.
    tolerance = a * np.abs(predicted) + 5 * sigma / math.sqrt(SAMPLES) + sigma**2 * 2.0
    assert np.all(np.abs(steps.mean(0) - predicted) < tolerance)
    # Nearly every proposal is accepted: per-coordinate variance ≈ σ²(1 − O(a)).
    var = steps.var(0) / sigma**2
    assert np.all(np.abs(var - 1) < a + 5 * math.sqrt(2 / SAMPLES))


@pytest.mark.parametrize("sigma", [0.02, 0.005])
def test_infinite_beta_is_normalized_gradient_descent(sigma):
    params, loss = quadratic()
    grad = flat_grad(loss, params)
    unit = grad / np.linalg.norm(grad)
    steps, rate = one_step(sigma, math.inf, params, loss)
    predicted = -(sigma / math.sqrt(2 * math.pi)) * unit
    curvature = sigma * 2.0 / np.linalg.norm(grad)  # relative O(σ|H|/|∇U|)
    tolerance = curvature * sigma + 5 * sigma / math.sqrt(SAMPLES)
    assert np.all(np.abs(steps.mean(0) - predicted) < tolerance)
    assert abs(rate - 0.5) < curvature + 5 * 0.5 / math.sqrt(SAMPLES)
    second = (steps**2).mean(0) / sigma**2
    assert np.all(np.abs(second - 0.5) < curvature + 5 * math.sqrt(2 / SAMPLES))
    expected_var = 0.5 - unit**2 / (2 * math.pi)
    assert np.all(np.abs(steps.var(0) / sigma**2 - expected_var) < curvature + 0.01)


def test_small_mlp_one_step_statistics_at_infinite_beta():
    model = lrne.nn.MLP((4,), 1)
    x = jnp.linspace(0, 1, 8)[:, None]
    y = jnp.sin(2 * jnp.pi * x)
    params = model.init(jax.random.key(0), x[0])
    loss = lambda p: jnp.mean((jax.vmap(lambda xi: model.apply(p, xi))(x) - y) ** 2)
    grad = flat_grad(loss, params)
    sigma, samples = 1e-3, SAMPLES // 4  # a forward pass per chain: fewer chains
    steps, _ = one_step(sigma, math.inf, params, loss, samples=samples)
    predicted = -(sigma / math.sqrt(2 * math.pi)) * grad / np.linalg.norm(grad)
    error = np.abs(steps.mean(0) - predicted)
    assert np.all(error < 5 * sigma / math.sqrt(samples) + 0.02 * sigma)
    cosine = steps.mean(0) @ predicted / (np.linalg.norm(steps.mean(0)) * np.linalg.norm(predicted))
    assert cosine > 0.99


class QuadraticTask:
    def evaluate(self, key, population):
        _, loss = quadratic()
        return jax.vmap(lambda p: -loss(p))(population.members), {}


def test_infinite_beta_chains_never_accept_a_worse_proposal():
    params, loss = quadratic()
    strategy = lrne.metropolis(64, 0.1, math.inf)
    step = jax.jit(lrne.generation_step(strategy, QuadraticTask()))
    state = strategy.init(jax.random.key(0), params)
    current, rates = [], []
    for k in jax.random.split(jax.random.key(1), 30):
        state, metrics = step(state, k)
        current.append(np.asarray(state.fitness))
        rates.append(float(metrics["acceptance_rate"]))
        # The state's fitness is its params' fitness: accepted proposals carry theirs.
        np.testing.assert_allclose(
            state.fitness, -jax.vmap(loss)(state.params), rtol=1e-6, atol=1e-7
        )
    current = np.stack(current)
    # β = ∞ never accepts an increase of the loss: every chain's fitness is non-decreasing,
    # and chains do move (about half the proposals are downhill at first).
    assert np.all(np.diff(current, axis=0) >= 0)
    assert rates[0] == 1.0 and 0.2 < rates[1] < 0.8
    # From loss 1.75, every chain descends, on average to below 0.75.
    assert np.all(current[-1] > current[0]) and current[-1].mean() > -0.75
    assert float(state.best_fitness) == float(current.max())


def test_construction_errors():
    with pytest.raises(ValueError, match="beta"):
        lrne.metropolis(4, 0.1, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        lrne.metropolis(4, -0.1, 1.0)
    strategy = lrne.metropolis(4, 0.1, 1.0)
    with pytest.raises(ValueError, match="num_chains"):
        strategy.init(jax.random.key(0), {"w": jnp.zeros((3, 2))}, stacked=True)
