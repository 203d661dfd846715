"""Chunked evaluation scores every member exactly as the unchunked task does."""

import jax
import numpy as np
import optax
import pytest

import lrne
from lrne.tasks import Chunked, Unrollable


def _classification():
    inputs = jax.random.normal(jax.random.key(0), (24, 8))
    labels = jax.random.randint(jax.random.key(1), (24,), 0, 3)
    model = lrne.nn.MLP((16,), 3)
    return lrne.tasks.Classification(model, inputs, labels, objective="log_likelihood")


@pytest.mark.parametrize("kind", ["es_lowrank", "ga_gymnax"])
def test_chunked_generation_equals_the_unchunked_one(kind):
    if kind == "es_lowrank":
        task = _classification()
        strategy = lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1)
    else:  # episodes of different lengths: env_steps is summed over chunks
        task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=40)
        strategy = lrne.ga(16, num_elites=4, sigma=0.3)
    start = strategy.init(jax.random.key(2), task.init_params(jax.random.key(3)))
    out = []
    for t in (task, Chunked(task, 4)):
        step = jax.jit(lrne.generation_step(strategy, t))
        state, metrics = step(start, jax.random.key(4))
        state, metrics = step(state, jax.random.key(5))
        out.append((state, metrics))
    (plain, plain_metrics), (chunked, chunked_metrics) = out
    assert set(plain_metrics) == set(chunked_metrics)
    # Slot-steps executed: each chunk stops when its own episodes have ended.
    computed = "env_steps_computed"
    if computed in plain_metrics:
        assert chunked_metrics.pop(computed) <= plain_metrics.pop(computed)
        assert int(plain_metrics["env_steps"]) > 0
    for name, value in plain_metrics.items():
        np.testing.assert_allclose(chunked_metrics[name], value, rtol=1e-6, err_msg=name)
    assert float(plain_metrics["fitness_max"]) > float(plain_metrics["fitness_mean"])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        chunked.best_params,
        plain.best_params,
    )


def test_chunk_size_is_checked_and_the_task_shows_through():
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2), max_steps=20)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        Chunked(task, 0)
    chunked = Chunked(task, 3)
    assert chunked.horizon == 20 and isinstance(chunked, Unrollable)
    assert not isinstance(Chunked(_classification(), 2), Unrollable)
    population = lrne.Population(
        {}, jax.vmap(task.init_params)(jax.random.split(jax.random.key(0), 4))
    )
    with pytest.raises(
        ValueError, match=r"population \(4 members\) must be a multiple of chunk_size \(3\)"
    ):
        chunked.evaluate(jax.random.key(1), population)


def test_noise_drawn_per_chunk_is_the_stored_noise_and_gives_its_run():
    """lrne.es(store_noise=False): members carry keys and signs; the draws are the same,
    bit for bit, and so is the run, up to the rounding of the chunked evaluation (the
    loss of a chunk of 4 members sums in another order than that of all 16)."""
    task = _classification()
    params = task.init_params(jax.random.key(3))
    keys = jax.random.split(jax.random.key(4), 3)
    runs, draws = {}, {}
    for store in (True, False):
        strategy = lrne.es(16, 0.1, optax.adam(0.05), noise_rank=1, store_noise=store)
        start = strategy.init(jax.random.key(2), params)
        members = strategy.ask(keys[0], start)[0].members["perturb"]
        assert isinstance(members, lrne.genome.Drawn) == (not store)
        draws[store] = lrne.perturb.draw(members, params["params"])
        step = lrne.generation_step(strategy, task if store else Chunked(task, 4))
        if store:  # a Python loop over the jitted step
            jitted, state, history = jax.jit(step), start, []
            for k in keys:
                state, metrics = jitted(state, k)
                history.append(metrics)
            history = jax.tree.map(lambda *x: np.stack(x), *history)
            assert jitted._cache_size() == 1
        else:  # lax.scan (the contract checks that a loop and scan agree, bit for bit)
            state, history = jax.jit(lambda s, k, step=step: jax.lax.scan(step, s, k))(start, keys)
        runs[store] = (state, history)
    jax.tree.map(np.testing.assert_array_equal, draws[False], draws[True])
    (stored, stored_history), (drawn, drawn_history) = runs[True], runs[False]
    for name in ("fitness_mean", "fitness_max", "best_fitness"):
        np.testing.assert_allclose(drawn_history[name], stored_history[name], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        (drawn.mean, drawn.best_params),
        (stored.mean, stored.best_params),
    )
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), stored.mean, params)
    assert max(jax.tree.leaves(moved)) > 0


def test_store_noise_false_needs_full_density():
    with pytest.raises(ValueError, match="store_noise=False needs density=1"):
        lrne.es(8, 0.1, optax.sgd(0.1), density=0.5, store_noise=False)
