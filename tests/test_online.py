"""Online ES (NRES, PES, TES, FullES) against closed forms and statistical bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lrne
from lrne.nn import MLP

HORIZON, WINDOW = 8, 2


class Drift:
    """s_{t+1} = s_t + θ from s_0 = 0; fitness f_t = −‖s_{t+1} − c‖².

    θ acts through the state, so an estimator that ignored the history (TES)
    would be biased. L(θ) = (1/T) Σ_t f_t is quadratic, so Gaussian smoothing
    leaves its gradient unchanged: ∇L = −(2/T) Σ_t (t+1)·((t+1)θ − c).
    """

    horizon = HORIZON

    def __init__(self, target):
        self.target = jnp.asarray(target, jnp.float32)

    def reset(self, keys):
        return jnp.zeros((keys.shape[0], self.target.shape[0]))

    def unroll(self, keys, population, inner, t, num_steps):
        theta = population.shared["params"]["theta"] + population.members["perturb"]["theta"]

        def body(state, _):
            state = state + theta
            return state, -jnp.sum((state - self.target) ** 2, axis=-1)

        inner, fitness = jax.lax.scan(body, inner, None, length=num_steps)
        return inner, fitness.T

    def gradient(self, theta):
        steps = np.arange(1, self.horizon + 1)[:, None]
        return -2 / self.horizon * np.sum(steps * (steps * theta - np.asarray(self.target)), 0)


THETA = np.array([0.3, -0.2, 0.5], np.float32)
TASK = Drift([1.0, 2.0, -1.0])
VARIABLES = {"params": {"theta": jnp.asarray(THETA)}}


def mean_estimate(strategy, runs, windows):
    """Per independent run: the mean of ĝ over ``windows`` windows after burn-in."""
    burn_in = HORIZON // WINDOW - 1 if windows > 1 else 0

    def run(key):
        state = strategy.init(key, VARIABLES, TASK)

        def body(state, k):
            state, gradient, metrics = strategy.estimate(TASK, state, k)
            return state, (gradient["theta"], metrics["num_masked_in"])

        keys = jax.random.split(jax.random.fold_in(key, 1), burn_in + windows)
        _, (gradients, counts) = jax.lax.scan(body, state, keys)
        return gradients[burn_in:].mean(0), counts

    gradients, counts = jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), runs))
    return np.asarray(gradients), np.asarray(counts)


@pytest.mark.parametrize("method", ["nres", "pes"])
def test_online_estimates_average_to_full_es_and_the_analytic_gradient(method):
    # Runs are independent, so the standard error of their mean is std/√runs; a
    # run averages the T/W windows after burn-in, in which every particle sees
    # each step of its episode once. Tolerance: 5 combined standard errors.
    runs, particles = 200, 64
    online = lrne.online_es(method, particles, 0.1, optax.sgd(0.0), WINDOW, HORIZON)
    full = lrne.full_es(particles, 0.1, optax.sgd(0.0), HORIZON)
    got, counts = mean_estimate(online, runs, HORIZON // WINDOW)
    ref, _ = mean_estimate(full, runs, 1)
    assert np.all(counts[:, : HORIZON // WINDOW - 1] == 0)  # burn-in discarded
    assert np.all(counts[:, HORIZON // WINDOW - 1 :] == particles * WINDOW)
    analytic = TASK.gradient(THETA)
    se_got = got.std(0) / np.sqrt(runs)
    se_ref = ref.std(0) / np.sqrt(runs)
    assert np.all(np.abs(got.mean(0) - analytic) < 5 * se_got)
    assert np.all(np.abs(ref.mean(0) - analytic) < 5 * se_ref)
    assert np.all(np.abs(got.mean(0) - ref.mean(0)) < 5 * np.sqrt(se_got**2 + se_ref**2))
    # The bound is informative: far tighter than the gradient itself.
    assert np.all(5 * se_got < 0.1 * np.linalg.norm(analytic))


def test_tes_is_biased_where_the_state_carries_theta():
    runs, particles = 200, 64
    strategy = lrne.tes(particles, 0.1, optax.sgd(0.0), WINDOW, HORIZON)
    got, _ = mean_estimate(strategy, runs, HORIZON // WINDOW)
    analytic = TASK.gradient(THETA)
    se = got.std(0) / np.sqrt(runs)
    assert np.any(np.abs(got.mean(0) - analytic) > 10 * se)


def test_nres_noise_resets_exactly_when_an_episode_ends():
    strategy = lrne.nres(16, 0.1, optax.sgd(0.01), WINDOW, HORIZON)
    state = strategy.init(jax.random.key(0), VARIABLES, TASK)
    step = jax.jit(lambda s, k: strategy.step(TASK, s, k))
    for key in jax.random.split(jax.random.key(1), 12):
        before_t, before_noise = np.asarray(state.t), np.asarray(state.noise["theta"])
        state, metrics = step(state, key)
        ended = before_t >= HORIZON
        changed = np.any(np.asarray(state.noise["theta"]) != before_noise, axis=1)
        np.testing.assert_array_equal(changed, ended)
        assert int(metrics["episodes_started"]) == ended.sum()
        np.testing.assert_array_equal(np.asarray(state.t), np.where(ended, 0, before_t) + WINDOW)


def test_pes_accumulates_lowrank_noise_since_the_episode_began(key):
    # ξ is kept as T/W rank-r slots; densified it must equal Σ δ_k since reset.
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((8,), 2), max_steps=HORIZON)
    strategy = lrne.pes(4, 0.1, optax.sgd(0.0), WINDOW, HORIZON, noise_rank=1)
    state = strategy.init(key, task.init_params(key), task)
    estimate = jax.jit(lambda s, k: strategy.estimate(task, s, k))
    dense = lambda node: np.einsum("prm,prn->pmn", node["U"], node["V"])
    total = {"kernel": 0.0, "bias": 0.0}
    for k in jax.random.split(jax.random.key(1), 9):
        restart = np.asarray(state.t) >= HORIZON
        state, _, _ = estimate(state, k)
        layer, noise = state.accumulated["Dense_0"], state.noise["Dense_0"]
        for name, drawn in [("kernel", dense(noise["kernel"])), ("bias", noise["bias"])]:
            keep = ~restart.reshape((-1,) + (1,) * (drawn.ndim - 1))
            total[name] = np.where(keep, total[name], 0.0) + np.asarray(drawn)
        np.testing.assert_allclose(dense(layer["kernel"]), total["kernel"], atol=1e-6)
        np.testing.assert_allclose(layer["bias"], total["bias"], atol=1e-6)
    assert layer["kernel"]["U"].shape == (4, HORIZON // WINDOW, 4)


def test_step_unlocked_offsets_are_spread_over_the_horizon(key):
    task = lrne.tasks.Lorenz()
    strategy = lrne.nres(400, 0.04, optax.sgd(1e-5), 100, 2000)
    offsets = np.asarray(strategy.init(key, task.init_params(), task).t)
    assert np.all(offsets % 100 == 0) and offsets.min() >= 0 and offsets.max() < 2000
    counts = np.bincount(offsets // 100, minlength=20)
    # 400 draws over 20 bins: expected 20 per bin; a bin with 0 or > 45 would
    # have probability < 1e-6 under uniform sampling.
    assert counts.min() > 0 and counts.max() <= 45


@pytest.mark.parametrize("method", ["nres", "pes", "tes", "full"])
def test_loop_and_scan_agree_and_compile_once(method):
    window = HORIZON if method == "full" else WINDOW
    strategy = lrne.online_es(method, 32, 0.1, optax.adam(0.05), window, HORIZON)
    traces = []

    def counted(state, k):
        traces.append(1)
        return lrne.generation_step(strategy, TASK)(state, k)

    step = jax.jit(counted)
    state0 = strategy.init(jax.random.key(0), VARIABLES, TASK)
    keys = jax.random.split(jax.random.key(1), 60)
    state = state0
    for k in keys:
        state, _ = step(state, k)
    assert len(traces) == 1
    scanned, history = jax.lax.scan(counted, state0, keys)
    np.testing.assert_allclose(
        scanned.mean["params"]["theta"], state.mean["params"]["theta"], rtol=1e-5, atol=1e-6
    )
    assert np.all(np.asarray(history["num_nonfinite"]) == 0)


def test_online_es_learns_lorenz_parameters(key):
    task = lrne.tasks.Lorenz(horizon=400)
    strategy = lrne.nres(64, 0.04, optax.adam(0.01), 40, 400)
    state = strategy.init(key, task.init_params(), task)
    step = jax.jit(lrne.generation_step(strategy, task))
    start = float(task.loss(state.mean))
    for k in jax.random.split(jax.random.key(1), 150):
        state, _ = step(state, k)
    assert float(task.loss(state.mean)) < 0.2 * start


def test_nres_improves_cartpole_return():
    task = lrne.tasks.Gymnax("CartPole-v1", MLP((16,), 2), max_steps=200)
    strategy = lrne.nres(64, 0.1, optax.adam(0.05), 20, 200, noise_rank=1)
    key = jax.random.key(3)
    state = strategy.init(key, task.init_params(key), task)
    step = jax.jit(lrne.generation_step(strategy, task))
    test = lrne.tasks.Gymnax("CartPole-v1", task.policy, num_episodes=32, max_steps=200)
    score = jax.jit(lambda v: test.evaluate(jax.random.key(4), jax.tree.map(lambda x: x[None], v)))
    before = float(score(state.mean)[0][0])
    for k in jax.random.split(jax.random.key(5), 120):
        state, _ = step(state, k)
    after = float(score(state.mean)[0][0])
    # From about 27 of 200 steps to the cap (measured 200).
    assert after >= before + 100, (before, after)


def test_construction_errors():
    with pytest.raises(ValueError, match="truncation_length must divide horizon"):
        lrne.nres(4, 0.1, optax.sgd(0.1), 3, 8)
    with pytest.raises(ValueError, match="method"):
        lrne.online_es("bptt", 4, 0.1, optax.sgd(0.1), 2, 8)
    with pytest.raises(ValueError, match="sigma"):
        lrne.pes(4, 0.0, optax.sgd(0.1), 2, 8)
    strategy = lrne.nres(4, 0.1, optax.sgd(0.1), 2, 16)
    with pytest.raises(ValueError, match=r"task\.horizon"):
        strategy.init(jax.random.key(0), VARIABLES, TASK)


class Recording:
    """Wraps a task and keeps the fitness of each (eager) unroll."""

    def __init__(self, task):
        self.task, self.horizon, self.fitness = task, task.horizon, []

    def reset(self, keys):
        return self.task.reset(keys)

    def unroll(self, *args):
        inner, fitness = self.task.unroll(*args)
        self.fitness.append(np.asarray(fitness))
        return inner, fitness


def test_lowrank_update_equals_explicit_dense_sum(key):
    # ĝ = Σ_i δ_i (F⁺_i − F⁻_i) / (2σ² n) with δ_i = U_iᵀV_i formed densely.
    sigma, particles = 0.1, 6
    task = Recording(lrne.tasks.Gymnax("Pendulum-v1", MLP((8,), 1), max_steps=HORIZON))
    strategy = lrne.full_es(particles, sigma, optax.sgd(0.0), HORIZON, noise_rank=2)
    state = strategy.init(key, task.task.init_params(key), task)
    state, gradient, metrics = strategy.estimate(task, state, jax.random.key(7))
    fitness = task.fitness[-1]
    diff = (fitness[:particles] - fitness[particles:]).sum(1)
    count = particles * HORIZON
    assert int(metrics["num_masked_in"]) == count
    assert np.any(diff != 0)  # the check below is not vacuous
    kernel = state.noise["Dense_0"]["kernel"]
    deltas = np.einsum("prm,prn->pmn", kernel["U"], kernel["V"])
    expected = np.einsum("p,pmn->mn", diff, deltas) / (2 * sigma**2 * count)
    np.testing.assert_allclose(gradient["Dense_0"]["kernel"], expected, rtol=1e-4, atol=1e-6)
