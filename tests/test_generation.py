"""generation_step on a real gymnax task: early exit and compaction under scan.

That the rank-4 GA solves CartPole (its best member on 64 fresh episodes) is
checked on the README's API example, in ``test_readme.py``.

Jit, loop == scan, compiling once, the metric keys and best-so-far tracking for
every strategy are in ``test_contract.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrne
from lrne.nn import MLP
from lrne.tasks import Gymnax


def test_compacted_early_exit_under_scan_tracks_the_best_and_reproduces():
    # 16 members × 2 episodes: two chunks of 16 slots (lrne.tasks.gymnax.chunk_size).
    task = Gymnax("CartPole-v1", MLP((8,), 2), num_episodes=2, max_steps=60, compaction=0.5)
    strategy = lrne.ga(population_size=16, num_elites=2, sigma=0.3)
    state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
    keys = jax.random.split(jax.random.key(2), 5)
    run = jax.jit(lambda s, k: jax.lax.scan(lrne.generation_step(strategy, task), s, k))
    final, history = run(state, keys)
    again, history2 = run(state, keys)
    assert history["best_fitness"].shape == (5,)
    jax.tree.map(np.testing.assert_array_equal, (final, history), (again, history2))
    fitness_max = np.asarray(history["fitness_max"])
    assert len(np.unique(history["fitness_mean"])) > 1, "the fitness never changed"
    # best_fitness (the state's bookkeeping) against the per-generation maxima
    # (fitness_stats of the evaluated fitness), and the elites against the last
    # generation's ranking: the top elite scored its generation's max.
    np.testing.assert_array_equal(history["best_fitness"], np.maximum.accumulate(fitness_max))
    assert float(final.elite_fitness[0]) == fitness_max[-1]
    # Early exit and compaction skipped steps of finished episodes (the first,
    # random generation's fall early); every lived step was computed.
    assert history["env_steps_computed"][0] < 32 * 60
    assert np.all(history["env_steps"] <= history["env_steps_computed"])


def test_a_step_mapped_over_seeds_is_each_seeds_step():
    """vmap over seeds (states and keys, or keys of one shared state) gives each seed's
    own step: ``isolated`` maps ask and tell as they are (no cond run on both branches)."""
    task = lrne.tasks.Function(lambda x: -jnp.sum((x["w"] - 1.0) ** 2), {"w": jnp.zeros((3, 2))})
    for strategy in (lrne.ga(8, 2, 0.3), lrne.es(8, 0.1, optax.adam(0.1), noise_rank=1)):
        step = lrne.generation_step(strategy, task)
        seeds = jax.random.split(jax.random.key(0), 3)
        states = jax.vmap(lambda k, s=strategy: s.init(k, task.init_params(k)))(seeds)
        keys = jax.random.split(jax.random.key(1), 3)
        for in_axes, mapped_states in (
            (0, states),
            ((None, 0), jax.tree.map(lambda x: x[0], states)),
        ):
            mapped = jax.jit(jax.vmap(step, in_axes=in_axes))(mapped_states, keys)
            for i in range(3):
                state_i = (
                    jax.tree.map(lambda x, i=i: x[i], states) if in_axes == 0 else mapped_states
                )
                one = jax.jit(step)(state_i, keys[i])
                jax.tree.map(
                    lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7),
                    mapped,
                    one,
                )


def test_isolated_is_differentiable_and_maps():
    """jax.grad and jax.jvp go through lrne.generation.isolated (its JVP is the cond's),
    also mapped over a batch."""
    from typing import NamedTuple

    from lrne.generation import isolated

    class State(NamedTuple):
        generation: jax.Array
        x: jax.Array

    def f(key, state):
        return state.x**2 + jax.random.normal(key, state.x.shape), state

    def loss(x):
        return isolated(f, jax.random.key(0), State(jnp.array(0), x))[0].sum()

    x = jnp.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(jax.grad(loss)(x), 2 * x)
    np.testing.assert_allclose(jax.jvp(loss, (x,), (jnp.ones(3),))[1], jnp.sum(2 * x))
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jax.grad(loss)))(jnp.stack([x, -x])), [2 * x, -2 * x]
    )
