"""Seed-lineage records (lrne.lineage): a run's answer rebuilt bit for bit from its seed
and a few bytes, for every kind of strategy, resumed runs and 2 devices."""

import jax
import numpy as np
import pytest

import lrne
from lrne.lineage import Log, Record, replay, unreplayed

# A regression by a small MLP: continuous fitness, so the best improves often and
# a GA elite's chain is long. rank=2: factorized weights (A·B); rank=0: dense.
TASK_CODE = """
import jax, jax.numpy as jnp, lrne
X = jax.random.normal(jax.random.key(7), (32, 3))
Y = jnp.sin(X @ jnp.array([1.0, -2.0, 0.5]))[:, None]

def regression(rank):
    model = lrne.nn.MLP((8,), 1, rank=rank)
    f = lambda v: -jnp.mean((model.apply(v, X) - Y) ** 2)
    return lrne.tasks.Function(f, lambda key: model.init(key, X[:1]), horizon=8)
"""
exec(TASK_CODE)

# name -> (registry name, overrides, MLP rank)
CASES = {
    "ga_factorized": ("ga", {}, 2),
    "ga_dense": ("ga", {}, 0),
    "metropolis": ("metropolis", {}, 2),
    "es_dense": ("es", {}, 2),
    "es_rank1": ("es_lowrank", {}, 2),
    "nres": ("nres", {"horizon": 8}, 2),
}


def same(a, b) -> bool:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in pairs)


def build(case):
    name, overrides, rank = CASES[case]
    return lrne.strategies.make(name, 16, **overrides), regression(rank)  # noqa: F821


@pytest.mark.parametrize("case", sorted(CASES))
def test_replay_rebuilds_the_answer_bit_for_bit(case):
    strategy, task = build(case)
    key = jax.random.key(3)
    result = lrne.run(strategy, task, key, 20)
    record = Record.from_bytes(result.lineage.record(key).to_bytes())
    params = replay(record, strategy, task)
    assert same(params, result.state.best_params), case
    # Not vacuous: the answer moved from the initial params.
    assert not same(params, task.init_params(lrne.generation.split_key(key).params))
    if record.chain is not None:
        assert len(record.chain) >= 3, record.chain  # several mutations on the way
        assert record.fitness is None and len(record.to_bytes()) < 400
    else:
        assert record.fitness.shape == (20, 16)


def test_every_elite_replays_and_a_wrong_chain_does_not():
    strategy, task = build("ga_factorized")
    key = jax.random.key(4)
    result = lrne.run(strategy, task, key, 12)
    for member in range(result.state.elites["params"]["Dense_0"]["kernel"].A.shape[0]):
        elite = jax.tree.map(lambda x, m=member: x[m], result.state.elites)
        record = result.lineage.record(key, member=member)
        assert same(replay(record, strategy, task), elite), member
    record = result.lineage.record(key)
    wrong = Record(record.key, record.generations, chain=record.chain[:-1])
    assert not same(replay(wrong, strategy, task), result.state.best_params)


def test_a_resumed_run_keeps_its_lineage(tmp_path):
    strategy, task = build("ga_dense")
    key = jax.random.key(5)
    straight = lrne.run(strategy, task, key, 14)
    lrne.run(strategy, task, key, 6, checkpoint_dir=tmp_path, checkpoint_every=3)
    # The log on disk ran ahead of an older step: a resume cuts it back.
    log = Log.load(tmp_path / "lineage.npz")
    assert len(log.entries) == 6
    resumed = lrne.run(strategy, task, key, 14, checkpoint_dir=tmp_path)
    assert resumed.history[0]["generation"] == 6  # it did resume
    record = resumed.lineage.record(key)
    np.testing.assert_array_equal(record.chain, straight.lineage.record(key).chain)
    assert same(replay(record, strategy, task), straight.state.best_params)


@pytest.mark.parametrize("damage", ["removed", "cut_short"])
def test_a_resume_without_a_usable_log_warns_and_keeps_no_record(damage, tmp_path):
    strategy, task = build("ga_dense")
    key = jax.random.key(5)
    lrne.run(strategy, task, key, 4, checkpoint_dir=tmp_path)
    path = tmp_path / "lineage.npz"
    if damage == "removed":
        path.unlink()
    else:  # a log of 2 generations beside a checkpoint of 4
        log = Log.load(path)
        Log(log.chains, log.seeded, log.entries[:2]).save(path)
    with pytest.warns(UserWarning, match="resuming without a lineage record"):
        resumed = lrne.run(strategy, task, key, 6, checkpoint_dir=tmp_path)
    assert resumed.history[0]["generation"] == 4  # it did resume
    assert resumed.lineage is None  # not a record missing its first generations


def test_a_run_given_its_params_needs_them_to_replay():
    strategy, task = build("es_dense")
    key = jax.random.key(6)
    start = task.init_params(jax.random.key(99))
    result = lrne.run(strategy, task, key, 5, params=start)
    record = result.lineage.record(key)
    assert not record.seeded
    with pytest.raises(ValueError, match="pass them as params"):
        replay(record, strategy, task)
    assert same(replay(record, strategy, task, params=start), result.state.best_params)
    given_state = lrne.run(strategy, task, key, 2, state=result.state)
    assert given_state.lineage is None  # an unknown root: no record


def test_record_bytes_round_trip_and_bad_input():
    chain = Record(np.array([1, 2], np.uint32), 9, chain=np.array([[0, 3], [4, 1]], np.int32))
    back = Record.from_bytes(chain.to_bytes())
    np.testing.assert_array_equal(back.chain, chain.chain)
    assert back.generations == 9 and back.seeded and back.fitness is None
    fit = Record(np.array([1, 2], np.uint32), 2, fitness=np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(Record.from_bytes(fit.to_bytes()).fitness, fit.fitness)
    # Collections no replay rebuilds (a normalized run's statistics) travel as they are.
    answer = {"params": {"w": np.ones(3)}, "normalizer": {"mean": np.arange(4.0), "clip": 5.0}}
    kept = unreplayed(answer, {"params": {"w": np.zeros(3)}})
    assert sorted(kept) == ["normalizer/clip", "normalizer/mean"]
    back = Record.from_bytes(Record(fit.key, 2, fitness=fit.fitness, kept=kept).to_bytes())
    np.testing.assert_array_equal(back.fitness, fit.fitness)
    np.testing.assert_array_equal(back.kept["normalizer/mean"], np.arange(4.0))
    with pytest.raises(ValueError, match="not an lrne lineage record"):
        Record.from_bytes(b"hello")


# Run by tests/test_distributed.py in its process of 4 devices (one process start
# for every multi-device check), on a mesh of 2.
TWO_DEVICES = (
    TASK_CODE
    + """
import numpy as np
from lrne.lineage import replay
mesh = lrne.distributed.population_mesh(jax.devices()[:2])
# A fitness record (low-rank ES): the 2-device run's record replays on one device.
# (1 and 2 devices give the same runs, the GA's included: tests/test_distributed.py,
# tests/test_resume.py; a GA's chain replays: test_replay_rebuilds_the_answer_bit_for_bit.)
cases = {"es_lowrank": ("es_lowrank", {}, 2)}
key = jax.random.key(3)
for case, (name, overrides, rank) in cases.items():
    strategy, task = lrne.strategies.make(name, 16, **overrides), regression(rank)
    sharded = lrne.run(strategy, task, key, 8, mesh=mesh)
    params = replay(sharded.lineage.record(key), strategy, task)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(sharded.state.best_params),
                    strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b)), case
    print("lineage", case, "ok")
"""
)
