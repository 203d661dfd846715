"""Observation normalization (lrne.normalization): Welford statistics of live steps,
carried in the run state (resume, extend, 2 devices: the same bits), frozen when scoring."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrne
from lrne.genome import Population
from lrne.lineage import replay
from lrne.normalization import (
    MOMENTS,
    NORMALIZER,
    Moments,
    RunningStats,
    merge,
    no_stats,
    normalize,
    split_sum,
)

TASK_CODE = """
import jax, lrne, optax
def cartpole():
    return lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2, rank=0), max_steps=32)

def strategy(name):
    make = {
        "ga": lambda: lrne.ga(8, 2, 0.5),
        "es": lambda: lrne.es(8, 0.05, optax.adam(0.03), noise_rank=1),
        "nres": lambda: lrne.nres(4, 0.05, optax.adam(0.03), 8, 32),
    }
    return lrne.normalized(make[name]())
"""
exec(TASK_CODE)
TASK = cartpole()  # noqa: F821
STRATEGIES = {name: strategy(name) for name in ("ga", "es", "nres")}  # noqa: F821


def same(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def welford(batches: list[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Welford's one-pass update, one observation at a time, in float64."""
    count, mean, m2 = 0, np.zeros(batches[0].shape[1:]), np.zeros(batches[0].shape[1:])
    for x in np.concatenate(batches).astype(np.float64):
        count += 1
        delta = x - mean
        mean = mean + delta / count
        m2 = m2 + delta * (x - mean)
    return count, mean, m2


def test_statistics_match_a_numpy_welford_reference():
    rng = np.random.default_rng(0)
    # Off zero and of unequal sizes: later batches are summed around the running mean.
    loc, scale = [3.0, -20.0, 100.0], [0.5, 2.0, 30.0]
    batches = [rng.normal(loc, scale, (n, 3)).astype(np.float32) for n in (5, 1, 40)]
    stats = no_stats((3,))
    for batch in [*batches, np.zeros((0, 3), np.float32)]:  # an empty batch changes nothing
        x = jnp.asarray(batch) - stats.mean
        moments = Moments(jnp.array(len(batch)), jnp.sum(x, 0), jnp.sum(x * x, 0))
        stats = merge(stats, moments, stats.mean)
    count, mean, m2 = welford(batches)
    assert float(stats.count) == count
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(stats.m2, m2, rtol=1e-4)
    np.testing.assert_allclose(stats.var, np.concatenate(batches).var(0), rtol=1e-4)
    assert np.array_equal(no_stats((3,)).var, np.ones(3))  # no data: the identity
    obs = jnp.array([100.0, 100.0, 1e6])
    normalizer = {"mean": stats.mean, "var": stats.var, "clip": jnp.float32(5.0)}
    want = np.clip((obs - mean) / np.sqrt(np.concatenate(batches).var(0) + 1e-8), -5, 5)
    np.testing.assert_allclose(normalize(normalizer, obs), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n", [1, 6, 8, 12, 40])
def test_split_sum_is_the_same_bits_for_either_half(n):
    x = jax.random.normal(jax.random.key(n), (n, 5)) * 1e3 + 0.1
    assert np.allclose(split_sum(x), x.sum(0), rtol=1e-5)
    if n % 2 == 0:
        assert np.array_equal(split_sum(x), split_sum(x[: n // 2]) + split_sum(x[n // 2 :]))


@pytest.mark.parametrize("early_exit", [True, False])
def test_only_live_steps_are_counted(early_exit):
    task = lrne.tasks.Gymnax(TASK.env, TASK.policy, max_steps=32, early_exit=early_exit)
    members = jax.vmap(task.init_params)(jax.random.split(jax.random.key(1), 4))
    stats = RunningStats(jnp.float32(10.0), jnp.array([0.0, 0.1, 0.0, -0.1]), jnp.ones(4) * 3.0)
    normalizer = {"mean": stats.mean, "var": stats.var, "clip": jnp.float32(5.0)}
    key = jax.random.key(2)
    fitness, metrics = task.evaluate(key, Population({NORMALIZER: normalizer}, members))
    moments = metrics[MOMENTS]
    # Reference: each member's episode played step by step, stopped at its end.
    act = jax.jit(lambda v, obs: task.action({**v, NORMALIZER: normalizer}, obs))
    step = jax.jit(task.env_step)
    count, total, sq = 0, np.zeros(4), np.zeros(4)
    for m, member_key in enumerate(task.member_keys(key, 4)):
        variables = jax.tree.map(lambda x, m=m: x[m], members)
        reset_key, step_key = jax.random.split(jax.random.fold_in(member_key, 0))
        obs, state = task.env.reset_env(reset_key, task.env_params)
        for t in range(task.max_steps):
            x = np.asarray(obs, np.float64) - np.asarray(stats.mean)
            count, total, sq = count + 1, total + x, sq + x * x
            obs, state, _, done = step(jax.random.fold_in(step_key, t), state, act(variables, obs))
            if done:
                break
    assert int(moments.count) == count == int(metrics["env_steps"]) < 4 * task.max_steps
    np.testing.assert_allclose(moments.sum, total, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(moments.sq, sq, rtol=1e-5, atol=1e-5)
    # Scoring (no normalizer in the shared variables) gathers nothing.
    per_member = jax.tree.map(lambda x: jnp.broadcast_to(x, (4, *x.shape)), normalizer)
    scoring = Population({}, {**members, NORMALIZER: per_member})
    scored, metrics = task.evaluate(key, scoring)
    assert MOMENTS not in metrics and np.array_equal(scored, fitness)


# The GA under -m slow: its statistics come from the same offline hook as the ES's.
@pytest.mark.parametrize("name", [pytest.param("ga", marks=pytest.mark.slow), "es", "nres"])
def test_resumed_and_extended_runs_equal_a_straight_run(name, tmp_path):
    strategy, key = STRATEGIES[name], jax.random.key(4)
    straight = lrne.run(strategy, TASK, key, 6)
    assert float(straight.state.observations.count) > 0

    class StopAt3(lrne.Callback):
        def on_generation(self, generation, row, state):
            return generation == 2

    killed = tmp_path / "killed"
    stopped = lrne.run(strategy, TASK, key, 6, callbacks=[StopAt3()], checkpoint_dir=killed)
    assert stopped.generation == 3
    resumed = lrne.run(strategy, TASK, key, 6, checkpoint_dir=killed)
    extended_dir = tmp_path / "extended"
    lrne.run(strategy, TASK, key, 4, checkpoint_dir=extended_dir)
    extended = lrne.run(strategy, TASK, key, 6, checkpoint_dir=extended_dir)
    assert resumed.history[0]["generation"] == 3 and extended.history[0]["generation"] == 4
    assert same(resumed.state, straight.state) and same(extended.state, straight.state)
    assert resumed.history[-1] | {"seconds": 0} == straight.history[-1] | {"seconds": 0}


@pytest.mark.parametrize("name", ["ga", "es", "nres"])
def test_scoring_uses_the_frozen_statistics(name):
    strategy = STRATEGIES[name]
    result = lrne.run(strategy, TASK, jax.random.key(5), 3)
    state = result.state
    answer = state.best_params
    assert set(answer) == {"params", NORMALIZER}
    assert np.array_equal(answer[NORMALIZER]["mean"], state.observations.mean)
    # The policy acts on the normalized observation, with the saved statistics.
    obs = jax.random.normal(jax.random.key(6), (16, 4)) * 3.0
    plain = {"params": answer["params"]}
    acts = jax.vmap(lambda o: TASK.action(answer, o))(obs)
    want = jax.vmap(lambda o: TASK.action(plain, normalize(answer[NORMALIZER], o)))(obs)
    assert np.array_equal(acts, want)
    # Scoring is a pure function of the answer: the same score twice, the state untouched.
    before = jax.tree.map(np.asarray, state.observations)
    scores = [lrne.evaluate_best(TASK, answer, jax.random.key(7), 4) for _ in range(2)]
    assert scores[0] == scores[1]
    assert same(state.observations, before)
    # The statistics matter: other statistics play another policy.
    other = {**answer, NORMALIZER: {**answer[NORMALIZER], "mean": answer[NORMALIZER]["mean"] + 3}}
    assert not np.array_equal(jax.vmap(lambda o: TASK.action(other, o))(obs), acts)
    # The mean of an ES carries them too; the GA has none.
    if name == "ga":
        assert getattr(state, "mean", None) is None
        assert state.ancestry is state.inner.ancestry
    else:
        assert state.mean is answer


def test_a_chain_replays_the_params_of_a_normalized_ga():
    strategy, key = STRATEGIES["ga"], jax.random.key(8)
    result = lrne.run(strategy, TASK, key, 4)
    params = replay(result.lineage.record(key), strategy, TASK)
    assert same(params["params"], result.state.best_params["params"])


def test_normalized_needs_its_task():
    with pytest.raises(lrne.errors.ArgumentError, match="task"):
        STRATEGIES["ga"].init(jax.random.key(0), TASK.init_params(jax.random.key(0)))
    with pytest.raises(lrne.errors.ArgumentError, match="clip"):
        lrne.normalized(lrne.ga(8, 2, 0.5), clip=0.0)


# Run by tests/test_distributed.py in its process of 4 devices (one process start
# for every multi-device check), on a mesh of 2.
TWO_DEVICES = (
    TASK_CODE
    + """
import numpy as np
mesh = lrne.distributed.population_mesh(jax.devices()[:2])
task, key = cartpole(), jax.random.key(9)
# NRES: statistics from the online unroll, inner states split over the devices.
# (A GA's come from the offline hook, the same as on one device; 1 and 2 devices
# give the same GA run: tests/test_resume.py; the merge's split-invariance:
# test_split_sum_is_the_same_bits_for_either_half.)
for name in ("nres",):
    s = strategy(name)
    sharded = lrne.run(s, task, key, 3, mesh=mesh)
    single = lrne.run(s, task, key, 3)
    assert float(single.state.observations.count) > 0
    for a, b in zip(jax.tree.leaves(sharded.state), jax.tree.leaves(single.state), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
    print("normalized", name, "ok")
"""
)
