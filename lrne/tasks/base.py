"""The task contract: score a population, higher is better.

A task evaluates a :class:`~lrne.genome.Population` in three hooks, the way
gymnax's ``step`` wraps ``step_env``: :meth:`Task.evaluate` (the template)
puts the population in evaluation form once (:func:`lrne.nn.prepare`), has
:meth:`Task.evaluate_members` score each member independently (the work that
can be split over devices), then adds :meth:`Task.population_metrics`, which
need the whole population (an ensemble, the best member's held-out loss).
Online strategies need an :class:`Unrollable` task instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from lrne.genome import Metrics, Population, PyTree
from lrne.nn.perturbed import prepare

Scored = tuple[jax.Array, Metrics]
"""Members' fitness (M,) and the metrics summed over them."""
Score = Callable[[jax.Array, Population], Scored]
"""``(keys, population) -> (fitness, metrics)``: scores members (:meth:`TaskWrapper.split`)."""


def member_keys(key: jax.Array, num_members: int) -> jax.Array:
    """One key per member, ``fold_in(key, member index)``: independent of any split."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(num_members))


class Task:
    """Base class of lrne tasks. Subclasses implement :meth:`init_params` and
    :meth:`evaluate_members`; :meth:`population_metrics` is optional.

    Per-member metrics must add up over members (counts such as ``env_steps``),
    so that a split population's metrics are the sums of its parts.
    """

    # Thin dense kernels of lrne layers to relayout for evaluation
    # (:func:`lrne.nn.layers.thin_kernels`); a task that knows its model sets it.
    thin_kernels: frozenset[str] = frozenset()

    def init_params(self, key: jax.Array) -> PyTree:
        """One member's variables."""
        raise NotImplementedError

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        """Fitness (M,) and summable metrics; member m uses ``keys[m]`` for its randomness.

        ``population`` is in evaluation form (:func:`lrne.nn.prepare`).
        """
        raise NotImplementedError

    def population_metrics(self, population: Population, fitness: jax.Array) -> Metrics:
        """Metrics of the whole population, given every member's fitness."""
        del population, fitness
        return {}

    def member_keys(self, key: jax.Array, num_members: int) -> jax.Array:
        """The keys (num_members,) :meth:`evaluate_members` receives for a generation's ``key``.

        By default independent per member (:func:`member_keys`). A task whose
        members should see the same random draw (common random numbers, e.g.
        one data batch per generation) returns ``key`` for every member.
        """
        return member_keys(key, num_members)

    def local(self, tree: PyTree) -> PyTree:
        """This program's part of per-member arrays (leading member axis): here all of them.

        A task split over devices (:class:`lrne.distributed.ShardedTask`)
        returns the contiguous part its device evaluates. Online strategies
        keep their inner states as such parts and pass the matching part of
        every per-member input to ``reset`` and ``unroll``.
        """
        return tree

    def gather(self, tree: PyTree) -> PyTree:
        """Per-member arrays from every part, in member order: the inverse of :meth:`local`."""
        return tree

    def evaluate(self, key: jax.Array, population: Population) -> tuple[jax.Array, Metrics]:
        """Fitness (population_size,) and metrics for a population; the template."""
        population = prepare(population, self.thin_kernels)
        fitness, metrics = self.evaluate_members(self.member_keys(key, population.size), population)
        return fitness, {**metrics, **self.population_metrics(population, fitness)}

    def fresh_fitness(self, key: jax.Array, params: PyTree, num_episodes: int = 32) -> jax.Array:
        """One member's fitness on evaluations it was not selected on; higher is better.

        A member's training fitness is the best of many noisy draws, biased
        upward; this hook scores it again (:func:`lrne.evaluate_best` calls it).
        By default: :meth:`evaluate` of the one-member population under a new
        ``key``. RL tasks use ``num_episodes`` new episodes; tasks with a
        held-out split score on it (``key`` and ``num_episodes`` unused).
        """
        del num_episodes
        population = Population({}, jax.tree.map(lambda x: x[None], params))
        return self.evaluate(key, population)[0][0]

    def differentiable_loss(self, key: jax.Array, variables: PyTree) -> jax.Array:
        """A scalar loss of one member's variables whose ``jax.grad`` is the gradient the
        fitness estimates: minus the fitness :meth:`evaluate` gives under the generation
        key ``key`` (the same batch), or a documented differentiable surrogate of it.

        The hook of gradient diagnostics (:mod:`lrne.diagnostics`). By default a task
        has none (an RL return is not differentiable in the weights): this raises
        ``NotImplementedError`` saying so.
        """
        del key, variables
        raise NotImplementedError(
            f"{type(self).__name__} has no differentiable loss (Task.differentiable_loss): "
            "gradient diagnostics compare an ES estimate with backprop, so they need a "
            "task whose fitness is minus a differentiable loss (a language model, "
            "classification, Lorenz, a Function of a differentiable f, or a Task that "
            "defines differentiable_loss(key, variables))"
        )


@runtime_checkable
class Unrollable(Protocol):
    """A task an online strategy can unroll W steps at a time.

    ``horizon``: T, the episode length. ``reset(keys)``: fresh inner states, one
    per key (leading axis). ``unroll(keys, population, inner, t, num_steps)``:
    advance each member's inner state ``num_steps`` steps under its variables
    (``population`` in evaluation form; ``t`` (M,) is each member's step in its
    episode) and return the new inner states and the per-step fitness
    (M, num_steps), higher is better. Members given the same key see the same
    randomness.

    Optional, as on :class:`Task`: ``local(tree)`` and ``gather(tree)``, for a
    task split over devices (identities when absent).
    """

    horizon: int

    def reset(self, keys: jax.Array) -> PyTree: ...

    def unroll(
        self, keys: jax.Array, population: Population, inner: PyTree, t: jax.Array, num_steps: int
    ) -> tuple[PyTree, jax.Array]: ...


class TaskWrapper(Task):
    """``task`` with some hooks replaced: every hook a subclass does not override,
    and any other attribute (``eval_loss``, ``horizon``...), is ``task``'s.

    Every public attribute of :class:`Task` that this class does not define is
    forwarded to ``task`` generically (below the class), so a hook added to
    ``Task`` reaches the wrapped task inside every wrapper instead of silently
    taking ``Task``'s default. Wrappers override :meth:`split` (how members
    are scored: over devices, in chunks); :meth:`evaluate_members` and
    :meth:`evaluate` are the wrapped task's, run through it.
    """

    def __init__(self, task: Task) -> None:
        self.task = task

    def __getattr__(self, name: str):
        if name == "task":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)

    def split(self, score: Score, keys: jax.Array, population: Population) -> Scored:
        """How members are scored: ``score(keys, population)`` on parts of the population
        (over devices, in chunks...), fitness joined in member order, metrics summed.
        The hook a wrapper overrides; here, the whole population at once."""
        return score(keys, population)

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        return self.split(self.task.evaluate_members, keys, population)

    def evaluate(self, key: jax.Array, population: Population) -> tuple[jax.Array, Metrics]:
        """The template of :meth:`Task.evaluate`, each part put in evaluation form by itself
        (population metrics see the whole population's, dropped when unused)."""
        score = lambda k, part: self.task.evaluate_members(k, prepare(part, self.thin_kernels))
        fitness, metrics = self.split(score, self.member_keys(key, population.size), population)
        whole = prepare(population, self.thin_kernels)
        return fitness, {**metrics, **self.task.population_metrics(whole, fitness)}


def _forwarded(name: str, default: Any) -> Any:
    """``task``'s attribute ``name``: a method calling ``task``'s, or a property reading it."""
    if not callable(default):
        return property(lambda self: getattr(self.task, name), doc=f"``task.{name}``.")

    def hook(self: TaskWrapper, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.task, name)(*args, **kwargs)

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = f"``task.{name}``: the wrapped task's hook."
    return hook


def task_hooks() -> list[str]:
    """The public attributes of :class:`Task`: the hooks a wrapper must not take from it."""
    return [name for name in vars(Task) if not name.startswith("_")]


for _name in task_hooks():
    if _name not in vars(TaskWrapper):
        setattr(TaskWrapper, _name, _forwarded(_name, vars(Task)[_name]))
