"""The parts the results benchmarks rest on, against explicit references.

The suite's gymnax adapter for rejax and its shared evaluator, paper_a's
measured mutation size and matched σ, lm_train's reference entropies, and the
floor's env-only and forward-only loops (modules of benchmarks/, on pytest's pythonpath).
"""

import math

import floor
import jax
import jax.numpy as jnp
import lm_train
import numpy as np
import paper_a
import pytest
import suite

import lrne


def test_five_tuple_adapter_gives_rejax_five_values():
    env, params = lrne.tasks.gymnax.make_env("Breakout-MinAtar")
    adapted = suite.FiveTuple(env)
    obs, state = adapted.reset(jax.random.key(0), params)
    assert obs.dtype == jnp.float32 and obs.shape == (10, 10, 4)
    out = adapted.step(jax.random.key(1), state, 0, params)
    assert len(out) == 5
    six = env.step(jax.random.key(1), state, 0, params)
    np.testing.assert_array_equal(out[0], six[0].astype(np.float32))
    assert bool(out[3]) == bool(six[3] | six[4])
    assert adapted.action_space(params).n == env.action_space(params).n


def test_shared_evaluator_matches_a_python_loop():
    env, params = lrne.tasks.gymnax.make_env("CartPole-v1")
    act = lambda policy, obs: jnp.where(obs[2] * policy > 0, 1, 0)  # push toward the lean
    got = suite.returns(act, "CartPole-v1", 1.0, jax.random.key(3), 3)
    step = jax.jit(lambda key, state, obs: env.step_env(key, state, act(1.0, obs), params))
    expected = []
    for k in jax.random.split(jax.random.key(3), 3):
        key_reset, key_steps = jax.random.split(k)
        obs, state = env.reset_env(key_reset, params)
        total, t = 0.0, 0
        while True:
            out = step(jax.random.fold_in(key_steps, t), state, obs)
            obs, state, reward, terminated = out[:4]
            total += float(reward)
            t += 1
            if terminated or env.is_truncated(state, params) or t >= 500:
                break
        expected.append(total)
    np.testing.assert_allclose(got, expected)
    assert min(expected) > 30  # the lean-following policy balances for a while


def test_dense_mutation_size_is_sigma_and_the_matched_factorized_sigma_meets_it():
    settings = {"population": 6, "num_elites": 2}
    dense = paper_a.build("breakout", "full", True, "").init_params(jax.random.key(0))
    unit = paper_a.unit_mutations(dense, settings)
    # A dense tensor moves σ × its init std per entry, so std(ΔW)/std(W) ≈ σ.
    assert paper_a.delta_ratio(dense, unit, 0.01) == pytest.approx(0.01, rel=0.05)
    # The rescaled unit draw is the GA's own child at that σ.
    ga = paper_a.lrne.ga(6, 2, 0.01)
    state = jax.jit(ga.init)(jax.random.key(1), dense)
    child = jax.tree.map(lambda x: x[2], jax.jit(ga.ask)(jax.random.key(2), state)[0].members)
    for got, want in zip(
        jax.tree.leaves(paper_a.mutated(jax.device_get(dense), unit[0], 0.01)),
        jax.tree.leaves(child),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    fparams = paper_a.build("breakout", "factorized", True, "").init_params(jax.random.key(0))
    funit = paper_a.unit_mutations(fparams, settings)
    assert paper_a.delta_ratio(fparams, funit, 0.01) > 3 * 0.01  # √σ per factor: the confound
    sigma = paper_a.matched_sigma(fparams, funit, 0.01)
    assert sigma < 0.01
    assert paper_a.delta_ratio(fparams, funit, sigma) == pytest.approx(0.01, rel=0.02)


def test_reference_entropies_match_closed_forms():
    text = "ab" * 500  # held out: "abab…"; counts say a→b and b→a always
    h = lm_train.entropies(text, split=0.9)
    assert h["unigram"] == pytest.approx(math.log(2), rel=1e-3)
    # add-one smoothing over 2 symbols: P(b|a) = (449 + 1) / (449 + 2)
    assert h["bigram"] == pytest.approx(-math.log(450 / 451), rel=0.05)


def test_floor_parts_step_the_envs_and_run_the_forward_they_say():
    task = floor.task_for("CartPole-v1", (8,), 6, 0)
    size, key = 3, jax.random.key(4)
    # env only: every episode takes action 0 until it ends or 6 steps pass.
    start = floor.slots(task, key, size)
    total = 0.0
    for i in range(size):
        state = jax.tree.map(lambda x, i=i: x[i], start.env_state)
        for t in range(6):
            k = jax.random.fold_in(start.step_key[i], t)
            _, state, reward, done, *_ = task.env.step_env(k, state, 0, task.env_params)
            total += float(reward)
            if done:
                break
    got = floor.env_only(task, size)(jnp.zeros(()), key)
    assert float(got) == pytest.approx(total) and 0 < total <= size * 6
    # forward only: the shared policy's actions on the shifted observations.
    params = task.init_params(jax.random.key(0))
    obs = start.obs.astype(jnp.float32)
    want = sum(int(task.action(params, o + t)) for t in range(6) for o in obs)
    assert int(floor.forward_only(task, params, size)(jnp.zeros((), jnp.int32), key)) == want
