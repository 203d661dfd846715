"""lrne.run in process: prefixes, stop and resume, the mesh path, evaluate_best."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lrne
from lrne.nn.perturbed import member_variables
from lrne.strategies import registry


class NoisySphere(lrne.tasks.Task):
    """Fitness −|w − 1|² plus member-keyed noise: cheap, and uses its keys."""

    def init_params(self, key):
        return {"params": {"w": jax.random.normal(key, (4,))}}

    def evaluate_members(self, keys, population):
        weights = jax.vmap(lambda m: member_variables(population.shared, m)["params"]["w"])(
            population.members
        )
        noise = jax.vmap(lambda k: jax.random.normal(k))(keys)
        fitness = -jnp.sum((weights - 1.0) ** 2, axis=-1) + 0.01 * noise
        return fitness, {"evaluations": jnp.asarray(keys.shape[0], jnp.int32)}


class Record(lrne.Callback):
    """Keeps every row and state it is shown; stops after generation ``stop_after``."""

    def __init__(self, stop_after=None):
        self.stop_after = stop_after
        self.start, self.rows, self.states, self.ended = None, [], [], None

    def on_start(self, generation, state):
        self.start = generation

    def on_generation(self, generation, row, state):
        self.rows.append(row)
        self.states.append(state)
        return generation == self.stop_after

    def on_end(self, result):
        self.ended = result


def strip(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


TASK = NoisySphere()


def test_a_run_of_n_generations_is_a_prefix_of_a_run_of_m():
    strategy = registry.make("ga", 8)
    short, long = Record(), Record()
    first = lrne.run(strategy, TASK, jax.random.key(0), 3, callbacks=[short])
    second = lrne.run(strategy, TASK, jax.random.key(0), 5, callbacks=[long])
    assert [row["generation"] for row in second.history] == [0, 1, 2, 3, 4]
    assert strip(first.history) == strip(second.history)[:3] == strip(short.rows)
    assert_same_tree(first.state, long.states[2])
    assert first.generation == 3 and short.ended is first and short.start == 0
    # Later generations differ: the keys really change from one generation to the next.
    assert strip(second.history)[3] != strip(second.history)[4]
    row = second.history[0]
    assert type(row["fitness_mean"]) is float and type(row["evaluations"]) is int
    assert row["seconds"] > 0
    # Another key is another run.
    other = lrne.run(strategy, TASK, jax.random.key(1), 3)
    assert strip(other.history) != strip(first.history)


def test_stop_then_resume_from_checkpoint_dir_is_bit_identical(tmp_path):
    strategy = registry.make("es", 8)  # optimizer state and a mean to restore
    key = jax.random.key(3)
    whole = lrne.run(strategy, TASK, key, 5)
    stopper = Record(stop_after=2)
    stopped = lrne.run(
        strategy, TASK, key, 5, callbacks=[stopper], checkpoint_dir=tmp_path, checkpoint_every=2
    )
    assert stopped.generation == 3 and len(stopper.rows) == 3
    # every 2, and at the stop; beside them the lineage log (lrne.lineage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "3", "lineage.npz"]
    resumer = Record()
    resumed = lrne.run(strategy, TASK, key, 5, callbacks=[resumer], checkpoint_dir=tmp_path)
    assert resumer.start == 3 and [row["generation"] for row in resumed.history] == [3, 4]
    assert strip(stopped.history + resumed.history) == strip(whole.history)
    assert_same_tree(resumed.state, whole.state)
    # A finished run resumes to itself without running anything.
    again = lrne.run(strategy, TASK, key, 5, checkpoint_dir=tmp_path)
    assert again.history == [] and again.generation == 5
    assert_same_tree(again.state, whole.state)


def test_checkpoint_dir_of_another_run_is_refused_and_kept(tmp_path):
    strategy = registry.make("ga", 8)
    lrne.run(strategy, TASK, jax.random.key(0), 2, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another key"):
        lrne.run(strategy, TASK, jax.random.key(1), 2, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another run's state"):
        lrne.run(
            registry.make("ga", 16, num_elites=2),
            TASK,
            jax.random.key(0),
            2,
            checkpoint_dir=tmp_path,
        )
    with pytest.raises(ValueError, match="generations"):
        lrne.run(strategy, TASK, jax.random.key(0), 1, checkpoint_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2", "lineage.npz"]


def test_the_mesh_path_gives_the_same_run():
    strategy = registry.make("ga", 8)
    plain = lrne.run(strategy, TASK, jax.random.key(0), 3)
    mesh = lrne.distributed.population_mesh(jax.devices()[:1])
    sharded = lrne.run(strategy, TASK, jax.random.key(0), 3, mesh=mesh)
    assert strip(sharded.history) == strip(plain.history)
    assert_same_tree(sharded.state, plain.state)


@pytest.mark.parametrize(
    ("argument", "value"), [("generations", 0), ("checkpoint_every", -1), ("generations", 2.0)]
)
def test_bad_arguments_are_value_errors_naming_them(argument, value):
    kwargs = {"generations": 2, "checkpoint_every": 10, argument: value}
    generations = kwargs.pop("generations")
    with pytest.raises(ValueError, match=argument):
        lrne.run(registry.make("ga", 8), TASK, jax.random.key(0), generations, **kwargs)


def test_evaluate_best_of_a_generic_task_is_its_evaluate_on_one_member():
    params = TASK.init_params(jax.random.key(0))
    key = jax.random.key(5)
    member_key = jax.random.fold_in(key, 0)  # lrne keys member m by fold_in(key, m)
    expected = -np.sum((np.asarray(params["params"]["w"]) - 1.0) ** 2) + 0.01 * float(
        jax.random.normal(member_key)
    )
    assert lrne.evaluate_best(TASK, params, key) == pytest.approx(expected, rel=1e-6)


def test_evaluate_best_on_gymnax_plays_fresh_episodes_with_the_same_step_cap():
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((4,), 2), max_steps=12)
    params = task.init_params(jax.random.key(0))
    score = lrne.evaluate_best(task, params, jax.random.key(1), num_episodes=3)
    reference = lrne.tasks.Gymnax("CartPole-v1", task.policy, num_episodes=3, max_steps=12)
    one_member = lrne.Population({}, jax.tree.map(lambda x: x[None], params))
    fitness, metrics = jax.jit(reference.evaluate)(jax.random.key(1), one_member)
    assert score == float(fitness[0])
    # CartPole pays 1 per step: the mean return is the mean episode length, capped.
    assert score == pytest.approx(int(metrics["env_steps"]) / 3) and 1 <= score <= 12


def test_evaluate_best_on_a_language_model_is_minus_the_held_out_loss():
    text = "the quick brown fox jumps over the lazy dog. " * 20
    vocab = len(lrne.tasks.LanguageModel.vocabulary(text))
    model = nn.Sequential([nn.Embed(vocab, 8), nn.Dense(vocab)])
    task = lrne.tasks.LanguageModel(model, text, context=8, batch_size=4)
    params = task.init_params(jax.random.key(0))
    logits = model.apply(params, task.eval_inputs)
    log_p = jax.nn.log_softmax(logits, -1)
    loss = -np.mean(np.take_along_axis(np.asarray(log_p), task.eval_targets[..., None], -1))
    assert lrne.evaluate_best(task, params, jax.random.key(0)) == pytest.approx(-loss, rel=1e-5)


def test_saved_params_load_back_with_their_factor_nodes(tmp_path):
    from lrne.checkpoint import load_params, save_params

    model = lrne.nn.MLP((16,), 3, rank=2)
    params = model.init(jax.random.key(0), jnp.zeros(8))
    save_params(tmp_path / "best", params)
    save_params(tmp_path / "best", params)  # replacing is allowed
    loaded = load_params(tmp_path / "best", template=model.init(jax.random.key(1), jnp.zeros(8)))
    assert isinstance(loaded["params"]["Dense_0"]["kernel"], lrne.Factors)
    assert_same_tree(loaded, params)
