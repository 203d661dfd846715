"""Score a population of classifiers on a fixed labelled batch, with a top-k ensemble metric."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne.ensemble import member_outputs, top_k
from lrne.errors import ArgumentError
from lrne.genome import Metrics, Population, PyTree
from lrne.nn.perturbed import apply
from lrne.tasks.base import Task

OBJECTIVES = ("accuracy", "log_likelihood")


class Classification(Task):
    """Fitness of each member on (inputs, labels); higher is better.

    Args:
        model: flax module mapping one input to logits (applied with vmap).
        inputs: the selection split's inputs.
        labels: the selection split's labels (int class ids).
        eval_inputs: a held-out split's inputs for the metrics; default ``inputs``.
        eval_labels: the held-out split's labels; default ``labels``.
        objective: ``"accuracy"`` or ``"log_likelihood"`` (mean log p(label)).
        ensemble_size: k of the ``ensemble_accuracy`` metric (the top-k members
            by fitness, softmax outputs averaged).

    Metrics: ``best_eval_accuracy`` (the fittest member on the eval split) and
    ``ensemble_accuracy``.
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: jax.Array,
        labels: jax.Array,
        eval_inputs: jax.Array | None = None,
        eval_labels: jax.Array | None = None,
        objective: str = "accuracy",
        ensemble_size: int = 5,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ArgumentError(
                "objective", f"objective must be one of {OBJECTIVES}, got {objective!r}"
            )
        if len(inputs) != len(labels):
            raise ArgumentError(
                "labels", f"inputs and labels differ in length: {len(inputs)} vs {len(labels)}"
            )
        if (eval_inputs is None) != (eval_labels is None):
            raise ArgumentError("eval_labels", "give both eval_inputs and eval_labels, or neither")
        if not isinstance(ensemble_size, int) or ensemble_size < 1:
            raise ArgumentError(
                "ensemble_size", f"ensemble_size must be an int >= 1, got {ensemble_size!r}"
            )
        self.model = model
        self.inputs, self.labels = jnp.asarray(inputs), jnp.asarray(labels)
        self.eval_inputs = self.inputs if eval_inputs is None else jnp.asarray(eval_inputs)
        self.eval_labels = self.labels if eval_labels is None else jnp.asarray(eval_labels)
        self.objective = objective
        self.ensemble_size = ensemble_size

    def init_params(self, key: jax.Array) -> PyTree:
        return self.model.init(key, self.inputs[0])

    def apply(self, variables: PyTree, inputs: jax.Array) -> jax.Array:
        """Logits (batch, classes) of one member (its perturbation included)."""
        return jax.vmap(lambda x: apply(self.model, variables, x))(inputs)

    def score(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        """Fitness of logits (..., batch, classes) against labels (batch,)."""
        if self.objective == "accuracy":
            return jnp.mean(jnp.argmax(logits, -1) == labels, axis=-1)
        log_p = jax.nn.log_softmax(logits, -1)
        return jnp.mean(jnp.sum(log_p * jax.nn.one_hot(labels, logits.shape[-1]), -1), axis=-1)

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        """Fitness (M,) on the selection split; no metrics."""
        del keys
        return self.score(member_outputs(self.apply, population, self.inputs), self.labels), {}

    def differentiable_loss(self, key: jax.Array, variables: PyTree) -> jax.Array:
        """Mean cross-entropy on the selection split (``key`` unused).

        With ``objective="log_likelihood"`` exactly minus the fitness. Accuracy is
        piecewise constant (its gradient is zero almost everywhere): with
        ``objective="accuracy"`` this is the differentiable surrogate, so a
        diagnostic compares the ES estimate of accuracy's ascent with minus the
        cross-entropy's gradient (a direction; their norms are not comparable).
        """
        del key
        logits = self.apply(variables, self.inputs)
        log_p = jax.nn.log_softmax(logits, -1)
        return -jnp.mean(jnp.sum(log_p * jax.nn.one_hot(self.labels, logits.shape[-1]), -1))

    def fresh_fitness(self, key: jax.Array, params: PyTree, num_episodes: int = 32) -> jax.Array:
        """The objective on the eval split (``key`` and ``num_episodes`` unused)."""
        del key, num_episodes
        return self.score(self.apply(params, self.eval_inputs), self.eval_labels)

    def population_metrics(self, population: Population, fitness: jax.Array) -> Metrics:
        """``best_eval_accuracy`` and ``ensemble_accuracy``: only the top-k members run."""
        best = population.select(top_k(fitness, min(self.ensemble_size, fitness.shape[0])))
        eval_logits = member_outputs(self.apply, best, self.eval_inputs)
        probs = jnp.mean(jax.nn.softmax(eval_logits, axis=-1), axis=0)
        return {
            "best_eval_accuracy": jnp.mean(jnp.argmax(eval_logits[0], -1) == self.eval_labels),
            "ensemble_accuracy": jnp.mean(jnp.argmax(probs, -1) == self.eval_labels),
        }
