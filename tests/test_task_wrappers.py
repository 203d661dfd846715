"""Every wrapper forwards every Task hook to the task it wraps (none takes Task's default)."""

import jax
import jax.numpy as jnp
import pytest

import lrne
from lrne.distributed import ShardedTask
from lrne.genome import Population
from lrne.tasks.base import Task, TaskWrapper, task_hooks

WRAPPERS = [TaskWrapper, lrne.tasks.Chunked, ShardedTask]


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=lambda w: w.__name__)
def test_no_wrapper_inherits_a_task_default(wrapper):
    # A hook a wrapper took from Task would silently skip the wrapped task's own.
    inherited = [name for name in task_hooks() if getattr(wrapper, name) is getattr(Task, name)]
    assert inherited == []


class Marked(Task):
    """A task whose every hook answers something Task's defaults never would."""

    thin_kernels = frozenset({"marked"})

    def init_params(self, key):
        return {"params": {"w": jnp.full(2, 7.0)}}

    def evaluate_members(self, keys, population):
        w = population.members["params"]["w"]
        return jnp.sum(w, axis=1) + 100.0, {"calls": jnp.ones(())}

    def population_metrics(self, population, fitness):
        return {"marked_max": jnp.max(fitness)}

    def member_keys(self, key, num_members):
        return jnp.broadcast_to(key, (num_members,))

    def local(self, tree):
        return jax.tree.map(lambda x: x * 2, tree)

    def gather(self, tree):
        return jax.tree.map(lambda x: x * 3, tree)

    def fresh_fitness(self, key, params, num_episodes=32):
        return jnp.asarray(float(num_episodes) + 0.5)

    def differentiable_loss(self, key, variables):
        return jnp.sum(variables["params"]["w"]) - 100.0


@pytest.mark.parametrize(
    "wrap", [TaskWrapper, lambda t: lrne.tasks.Chunked(t, 2)], ids=["TaskWrapper", "Chunked"]
)
def test_every_hook_reaches_the_wrapped_task(wrap):
    task, wrapped = Marked(), wrap(Marked())
    key = jax.random.key(0)
    assert wrapped.thin_kernels == task.thin_kernels
    assert jnp.array_equal(wrapped.init_params(key)["params"]["w"], jnp.full(2, 7.0))
    assert wrapped.member_keys(key, 3).shape == (3,)
    assert jnp.array_equal(wrapped.local(jnp.ones(2)), jnp.full(2, 2.0))
    assert jnp.array_equal(wrapped.gather(jnp.ones(2)), jnp.full(2, 3.0))
    assert float(wrapped.fresh_fitness(key, {}, num_episodes=4)) == 4.5
    assert float(wrapped.differentiable_loss(key, wrapped.init_params(key))) == -86.0
    population = Population({}, {"params": {"w": jnp.arange(8.0).reshape(4, 2)}})
    fitness, metrics = wrapped.evaluate(key, population)
    assert jnp.array_equal(fitness, jnp.array([101.0, 105.0, 109.0, 113.0]))
    assert float(metrics["marked_max"]) == 113.0
    assert set(task_hooks()) == {
        "thin_kernels",
        "init_params",
        "evaluate_members",
        "population_metrics",
        "member_keys",
        "local",
        "gather",
        "evaluate",
        "fresh_fitness",
        "differentiable_loss",
    }, "a new Task hook: add it to Marked above"
