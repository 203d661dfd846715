"""Online ES (NRES, PES, TES, FullES) against explicit references and statistical bounds."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrne
from lrne.nn import MLP
from lrne.nn.perturbed import member_variables
from lrne.strategies.online import record_estimate

HORIZON, WINDOW = 8, 2
ESTIMATORS = {"nres": lrne.nres, "pes": lrne.pes, "tes": lrne.tes}


class Drift:
    """s_{t+1} = s_t + θ from s_0 = 0; fitness f_t = −‖s_{t+1} − c‖².

    θ acts through the state, so an estimator that ignores the history (TES)
    is biased. L(θ) = (1/T) Σ_t f_t is quadratic, so Gaussian smoothing
    leaves its gradient unchanged: ∇L = −(2/T) Σ_t (t+1)·((t+1)θ − c).
    """

    horizon = HORIZON

    def __init__(self, target):
        self.target = jnp.asarray(target, jnp.float32)

    def reset(self, keys):
        return jnp.zeros((keys.shape[0], self.target.shape[0]))

    def unroll(self, keys, population, inner, t, num_steps):
        shared, members = population  # in evaluation form
        theta = jax.vmap(lambda m: member_variables(shared, m)["params"]["theta"])(members)

        def body(state, _):
            state = state + theta
            return state, -jnp.sum((state - self.target) ** 2, axis=-1)

        inner, fitness = jax.lax.scan(body, inner, None, length=num_steps)
        return inner, fitness.T

    def gradient(self, theta):
        steps = np.arange(1, self.horizon + 1)[:, None]
        return -2 / self.horizon * np.sum(steps * (steps * theta - np.asarray(self.target)), 0)

    def tes_expectation(self, theta, window):
        """E[ĝ_TES] averaged over a particle's T/W windows.

        A window from t0 starts at the unperturbed state t0·θ and perturbs only
        its own W steps: ∂/∂δ Σ_k f = −2 Σ_{k=1..W} k((t0 + k)θ − c), over W
        steps per window.
        """
        c, total = np.asarray(self.target), 0.0
        for t0 in range(0, self.horizon, window):
            k = np.arange(1, window + 1)[:, None]
            total = total + np.sum(k * ((t0 + k) * theta - c), 0)
        return -2 / self.horizon * total


THETA = np.array([0.3, -0.2, 0.5], np.float32)
TASK = Drift([1.0, 2.0, -1.0])
VARIABLES = {"params": {"theta": jnp.asarray(THETA)}}


@functools.cache
def mean_estimate(name, runs=200, particles=64):
    """Per independent run: the mean of ĝ over the T/W windows after burn-in, and counts.

    Each run goes through the burn-in (T/W − 1 windows) and T/W more windows, in
    which every particle sees each step of its episode once. θ stays fixed:
    the optimizer only records ĝ.
    """
    if name == "full_es":
        strategy, burn_in, kept = lrne.full_es(particles, 0.1, record_estimate(), HORIZON), 0, 1
    else:
        strategy = ESTIMATORS[name](particles, 0.1, record_estimate(), WINDOW, HORIZON)
        burn_in, kept = HORIZON // WINDOW - 1, HORIZON // WINDOW
    step = lrne.generation_step(strategy, TASK)

    def run(key):
        def body(state, k):
            state, metrics = step(state, k)
            return state, (state.opt_state.ascent["theta"], metrics["num_masked_in"])

        state = strategy.init(key, VARIABLES, TASK)
        keys = jax.random.split(jax.random.fold_in(key, 1), burn_in + kept)
        _, (gradients, counts) = jax.lax.scan(body, state, keys)
        return gradients[burn_in:].mean(0), counts

    gradients, counts = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), runs))
    return np.asarray(gradients, np.float64), np.asarray(counts)


def standard_error(estimates):
    """Runs are independent: the standard error of their mean is std/√runs."""
    return estimates.std(0, ddof=1) / np.sqrt(len(estimates))


@pytest.mark.parametrize("name", ["nres", "pes"])
def test_online_estimates_average_to_full_es_and_the_analytic_gradient(name):
    # Tolerance: 5 combined standard errors.
    particles = 64
    got, counts = mean_estimate(name)
    ref, _ = mean_estimate("full_es")
    burn_in = HORIZON // WINDOW - 1
    assert np.all(counts[:, :burn_in] == 0)  # burn-in discarded
    assert np.all(counts[:, burn_in:] == particles * WINDOW)
    analytic = TASK.gradient(THETA)
    se_got, se_ref = standard_error(got), standard_error(ref)
    assert np.all(np.abs(got.mean(0) - analytic) < 5 * se_got)
    assert np.all(np.abs(ref.mean(0) - analytic) < 5 * se_ref)
    assert np.all(np.abs(got.mean(0) - ref.mean(0)) < 5 * np.sqrt(se_got**2 + se_ref**2))
    # The bound is informative: far tighter than the gradient itself.
    assert np.all(5 * se_got < 0.1 * np.linalg.norm(analytic))


def test_tes_is_biased_where_the_state_carries_theta():
    analytic = TASK.gradient(THETA)
    expected_tes = TASK.tes_expectation(THETA, WINDOW)
    bias = expected_tes - analytic  # closed form: (5.1, -19.4, 24.5) here
    got, _ = mean_estimate("tes")
    se = standard_error(got)
    # TES averages to its own closed-form expectation (5 standard errors) ...
    assert np.all(np.abs(got.mean(0) - expected_tes) < 5 * se)
    # ... which misses ∇L by more than 20 standard errors in every coordinate:
    # the measured bias could not come from noise (p < 1e-80 per coordinate).
    assert np.all(np.abs(got.mean(0) - analytic) > 20 * se)
    assert np.all(np.abs(bias) > 25 * se)
    # On the same problem, at the same cost, NRES and PES are unbiased within 5 SE
    # and more than 10 of their SE away from TES's expectation (measured: > 15).
    for name in ("nres", "pes"):
        unbiased, _ = mean_estimate(name)
        se_unbiased = standard_error(unbiased)
        assert np.all(np.abs(unbiased.mean(0) - analytic) < 5 * se_unbiased), name
        assert np.all(np.abs(unbiased.mean(0) - expected_tes) > 10 * se_unbiased), name


@pytest.mark.parametrize("name", ["nres", "pes", "tes"])
def test_windows_equal_an_explicit_numpy_reference(name):
    """Each window's fitness, inner states, noise renewal, ĝ and update against NumPy.

    The reference keeps its own step counters (from the initial offsets),
    restarts, inner states (NRES, PES: one per sign; TES: one shared state
    carried by an unperturbed copy), PES's ξ, the burn-in mask and the SGD step.
    """
    particles, sigma, lr = 5, 0.1, 0.01
    strategy = ESTIMATORS[name](particles, sigma, optax.sgd(lr), WINDOW, HORIZON)
    ask, evaluate, tell = (
        jax.jit(f, static_argnums=s)
        for f, s in [(strategy.ask, ()), (strategy.evaluate, (3,)), (strategy.tell, ())]
    )
    state = strategy.init(jax.random.key(0), VARIABLES, TASK)
    c = np.asarray(TASK.target, np.float64)
    t = np.asarray(state.t)
    assert np.all(t % WINDOW == 0) and np.any(t > 0)  # step-unlocked
    paired = name != "tes"
    s_plus = np.zeros((particles, 3))
    s_minus = np.zeros((particles, 3))  # TES: unused, s_plus is the shared state
    xi = np.zeros((particles, 3))
    previous = None
    steps, masked_in_seen = 0, 0
    for g, key in enumerate(jax.random.split(jax.random.key(1), 14)):
        theta = np.asarray(state.mean["params"]["theta"], np.float64)
        population, state = ask(jax.random.fold_in(key, 0), state)
        assert population.size == 2 * particles
        delta = np.asarray(population.members["perturb"]["theta"], np.float64)
        np.testing.assert_array_equal(delta[particles:], -delta[:particles])
        delta = delta[:particles]

        restart = t >= HORIZON
        np.testing.assert_array_equal(np.asarray(state.restart), restart)
        t = np.where(restart, 0, t)
        s_plus[restart] = 0.0
        s_minus[restart] = 0.0
        if previous is not None:
            renewed = np.any(delta != previous, axis=1)
            np.testing.assert_array_equal(renewed, restart if name == "nres" else True)
        previous = delta
        xi = np.where(restart[:, None], 0.0, xi) + delta

        k = np.arange(1, WINDOW + 1)[None, :, None]
        start_minus = s_minus if paired else s_plus
        path_plus = s_plus[:, None] + k * (theta + delta)[:, None]
        path_minus = start_minus[:, None] + k * (theta - delta)[:, None]
        f_plus = -np.sum((path_plus - c) ** 2, axis=(1, 2))
        f_minus = -np.sum((path_minus - c) ** 2, axis=(1, 2))
        if paired:
            s_plus, s_minus = path_plus[:, -1], path_minus[:, -1]
        else:
            s_plus = s_plus + WINDOW * theta

        fitness, _, state = evaluate(jax.random.fold_in(key, 1), state, population, TASK)
        np.testing.assert_allclose(fitness, np.concatenate([f_plus, f_minus]), rtol=1e-5)
        inner = np.concatenate([s_plus, s_minus]) if paired else s_plus
        np.testing.assert_allclose(state.inner.value, inner, rtol=1e-5, atol=1e-5)

        state, metrics = tell(jax.random.fold_in(key, 2), state, population, fitness)
        multiplier = xi if name == "pes" else delta
        count = particles * WINDOW if steps >= HORIZON - WINDOW else 0
        assert int(metrics["num_masked_in"]) == count, g
        assert int(metrics["episodes_started"]) == restart.sum()
        new_theta = np.asarray(state.mean["params"]["theta"], np.float64)
        if count:
            masked_in_seen += 1
            g_ref = multiplier.T @ (f_plus - f_minus) / (2 * sigma**2 * count)
            np.testing.assert_allclose(new_theta, theta + lr * g_ref, rtol=1e-4, atol=1e-6)
            assert np.all(np.abs(lr * g_ref) > 1e-4)  # the update is visible
        else:
            np.testing.assert_array_equal(new_theta, theta)  # burn-in: θ untouched
        t, steps = t + WINDOW, steps + WINDOW
        np.testing.assert_array_equal(np.asarray(state.t), t)
    assert masked_in_seen >= 8 and np.any(restart)


def test_nres_noise_resets_exactly_when_an_episode_ends():
    strategy = lrne.nres(16, 0.1, optax.sgd(0.01), WINDOW, HORIZON)
    state = strategy.init(jax.random.key(0), VARIABLES, TASK)
    step = jax.jit(lrne.generation_step(strategy, TASK))
    for key in jax.random.split(jax.random.key(1), 12):
        before_t, before_noise = np.asarray(state.t), np.asarray(state.noise["theta"])
        state, metrics = step(state, key)
        ended = before_t >= HORIZON
        changed = np.any(np.asarray(state.noise["theta"]) != before_noise, axis=1)
        np.testing.assert_array_equal(changed, ended)
        assert int(metrics["episodes_started"]) == ended.sum()
        np.testing.assert_array_equal(np.asarray(state.t), np.where(ended, 0, before_t) + WINDOW)


def test_pes_accumulates_lowrank_noise_since_the_episode_began(key):
    # ξ is kept as T/W concatenated rank-r window factors; densified it must
    # equal Σ δ_k since the episode's reset.
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((8,), 2), max_steps=HORIZON)
    strategy = lrne.pes(4, 0.1, optax.sgd(0.0), WINDOW, HORIZON, noise_rank=1)
    state = strategy.init(key, task.init_params(key), task)
    step = jax.jit(lrne.generation_step(strategy, task))
    dense = lambda node: np.einsum("prm,prn->pmn", node.U, node.V)
    total = {"kernel": 0.0, "bias": 0.0}
    for k in jax.random.split(jax.random.key(1), 9):
        restart = np.asarray(state.t) >= HORIZON
        state, _ = step(state, k)
        layer, noise = state.accumulated["Dense_0"], state.noise["Dense_0"]
        for name, drawn in [("kernel", dense(noise["kernel"])), ("bias", noise["bias"])]:
            keep = ~restart.reshape((-1,) + (1,) * (drawn.ndim - 1))
            total[name] = np.where(keep, total[name], 0.0) + np.asarray(drawn)
        np.testing.assert_allclose(dense(layer["kernel"]), total["kernel"], atol=1e-6)
        np.testing.assert_allclose(layer["bias"], total["bias"], atol=1e-6)
    assert layer["kernel"].U.shape == (4, HORIZON // WINDOW, 4)


def test_step_unlocked_offsets_are_spread_over_the_horizon(key):
    task = lrne.tasks.Lorenz()
    strategy = lrne.nres(400, 0.04, optax.sgd(1e-5), 100, 2000)
    offsets = np.asarray(strategy.init(key, task.init_params(), task).t)
    assert np.all(offsets % 100 == 0) and offsets.min() >= 0 and offsets.max() < 2000
    counts = np.bincount(offsets // 100, minlength=20)
    # 400 draws over 20 bins: expected 20 per bin; a bin with 0 or > 45 would
    # have probability < 1e-6 under uniform sampling.
    assert counts.min() > 0 and counts.max() <= 45


def test_lowrank_update_equals_explicit_dense_sum(key):
    # ĝ = Σ_i δ_i (F⁺_i − F⁻_i) / (2σ² n) with δ_i = U_iᵀV_i formed densely.
    sigma, particles = 0.1, 6
    task = lrne.tasks.Gymnax("Pendulum-v1", MLP((8,), 1), max_steps=HORIZON)
    strategy = lrne.full_es(particles, sigma, record_estimate(), HORIZON, noise_rank=2)
    state = strategy.init(key, task.init_params(key), task)

    @jax.jit
    def window(state):
        population, state = strategy.ask(jax.random.key(5), state)
        fitness, _, state = strategy.evaluate(jax.random.key(6), state, population, task)
        state, metrics = strategy.tell(jax.random.key(7), state, population, fitness)
        return population, fitness, state, metrics

    population, fitness, state, metrics = window(state)
    fitness = np.asarray(fitness)
    diff = fitness[:particles] - fitness[particles:]
    count = particles * HORIZON
    assert int(metrics["num_masked_in"]) == count
    assert np.all(diff != 0)  # the check below is not vacuous
    kernel = population.members["perturb"]["Dense_0"]["kernel"]
    deltas = np.einsum("prm,prn->pmn", kernel.U, kernel.V)[:particles]
    expected = np.einsum("p,pmn->mn", diff, deltas) / (2 * sigma**2 * count)
    np.testing.assert_allclose(
        state.opt_state.ascent["Dense_0"]["kernel"], expected, rtol=1e-4, atol=1e-6
    )


def test_online_es_learns_lorenz_parameters(key):
    task = lrne.tasks.Lorenz(horizon=400)
    strategy = lrne.nres(64, 0.04, optax.adam(0.01), 40, 400)
    state = strategy.init(key, task.init_params(), task)
    step = jax.jit(lrne.generation_step(strategy, task))
    start = float(task.loss(state.mean))
    for k in jax.random.split(jax.random.key(1), 150):
        state, _ = step(state, k)
    assert float(task.loss(state.best_params)) < 0.2 * start


class StockPolicy(nn.Module):
    """A policy from stock flax.linen layers only: its δ is applied by interception."""

    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(jnp.tanh(nn.Dense(16)(x)))


def test_nres_improves_cartpole_return_with_a_stock_flax_policy():
    task = lrne.tasks.Gymnax("CartPole-v1", StockPolicy(), max_steps=200)
    strategy = lrne.nres(64, 0.1, optax.adam(0.05), 20, 200, noise_rank=1)
    key = jax.random.key(0)  # a start that balances about 10 of 200 steps
    state = strategy.init(key, task.init_params(key), task)
    step = jax.jit(lrne.generation_step(strategy, task))
    test = lrne.tasks.Gymnax("CartPole-v1", task.policy, num_episodes=32, max_steps=200)
    score = jax.jit(lambda v: test.evaluate(jax.random.key(4), lrne.Population({}, v)))
    as_member = lambda v: jax.tree.map(lambda x: x[None], v)
    before = float(score(as_member(state.mean))[0][0])
    for k in jax.random.split(jax.random.key(5), 120):
        state, _ = step(state, k)
    after = float(score(as_member(state.best_params))[0][0])
    # From about 10 of 200 steps to the cap (measured 9.7 -> 200).
    assert after >= before + 150, (before, after)


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: lrne.nres(4, 0.1, optax.sgd(0.1), 3, 8), "truncation_length must divide"),
        (lambda: lrne.pes(4, 0.1, optax.sgd(0.1), 16, 8), "truncation_length must be <="),
        (lambda: lrne.tes(0, 0.1, optax.sgd(0.1), 2, 8), "num_particles"),
        (lambda: lrne.pes(4, 0.0, optax.sgd(0.1), 2, 8), "sigma"),
        (lambda: lrne.nres(4, 0.1, "adam", 2, 8), "optimizer"),
        (lambda: lrne.full_es(4, 0.1, optax.sgd(0.1), 8, noise_rank=-1), "noise_rank"),
        (lambda: lrne.full_es(4, 0.1, optax.sgd(0.1), 0), "horizon"),
        (lambda: lrne.strategies.make("nres", 8), "horizon is required"),
        (lambda: lrne.strategies.make("pes", 7, horizon=8), "population_size must be an even"),
    ],
)
def test_construction_errors_name_the_argument(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


def test_init_rejects_a_task_of_another_horizon():
    strategy = lrne.nres(4, 0.1, optax.sgd(0.1), 2, 16)
    with pytest.raises(ValueError, match=r"task\.horizon"):
        strategy.init(jax.random.key(0), VARIABLES, TASK)


def test_registry_entries_unroll_two_members_per_particle():
    for name in ("nres", "pes", "tes", "full_es"):
        strategy = lrne.strategies.make(name, 6, horizon=HORIZON)
        state = strategy.init(jax.random.key(0), VARIABLES, TASK)
        population, state = strategy.ask(jax.random.key(1), state)
        assert population.size == 6, name
        assert state.t.shape == (3,), name
        fitness, _, _ = strategy.evaluate(jax.random.key(2), state, population, TASK)
        assert fitness.shape == (6,), name
