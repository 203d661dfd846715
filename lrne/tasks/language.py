"""Character-level language modelling as a fitness: −cross-entropy on a batch of text.

Fitness is −(mean next-character cross-entropy, nats per token) on a batch of
windows from the first part of the corpus (e.g. tiny Shakespeare). By default
every generation draws a fresh batch from its key, shared by all members (and
so by ES's ± pairs): common random numbers, so members are compared on the
same text while the population never sees one batch twice. Garbus & Pollack
2025 (arXiv 2504.03037) instead score every generation on one fixed batch;
``fresh_batches=False`` keeps that mode. Held-out loss is measured on a fixed
set of ≥ 32k characters from the last part of the corpus.
"""

from __future__ import annotations

import functools
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from lrne.ensemble import member_outputs, top_k
from lrne.errors import ArgumentError
from lrne.genome import Array, Metrics, Population, PyTree
from lrne.nn.perturbed import apply, member_variables
from lrne.tasks.base import Task

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def load_tinyshakespeare(
    path: str | os.PathLike | None = None, cache_dir: str | None = None
) -> str:
    """The tiny Shakespeare corpus (1,115,394 characters) as text.

    Args:
        path: a local copy; read as is, and its md5 checked against the
            canonical file's.
        cache_dir: where a downloaded copy is kept (default ``~/.cache/lrne``).

    Without ``path`` the cached copy is used, or the canonical file is
    downloaded and its md5 verified. Raises ``FileNotFoundError`` with what to do
    when there is no copy and no network, ``ValueError`` on a checksum mismatch.
    """
    if path is not None:
        data = Path(path).read_bytes()
        if _md5(data) != TINYSHAKESPEARE_MD5:
            raise ValueError(
                f"{str(path)!r} is not tiny Shakespeare: md5 {_md5(data)}, "
                f"expected {TINYSHAKESPEARE_MD5}"
            )
        return data.decode("utf-8")
    cache = Path(cache_dir or Path.home() / ".cache" / "lrne") / "tinyshakespeare.txt"
    if cache.exists():
        return load_tinyshakespeare(cache)
    try:
        with urllib.request.urlopen(TINYSHAKESPEARE_URL, timeout=30) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise FileNotFoundError(
            f"could not download tiny Shakespeare from {TINYSHAKESPEARE_URL} ({error}); "
            "pass path= to a local copy (md5 " + TINYSHAKESPEARE_MD5 + ")"
        ) from error
    if _md5(data) != TINYSHAKESPEARE_MD5:
        raise ValueError(
            f"the download from {TINYSHAKESPEARE_URL} has md5 {_md5(data)}, "
            f"expected {TINYSHAKESPEARE_MD5}"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(cache)  # atomic: a killed download leaves no bad cache
    return data.decode("utf-8")


class LanguageModel(Task):
    """Fitness = −mean next-character cross-entropy (nats per token) on a batch of windows.

    Args:
        model: flax module mapping token ids (batch, L) to logits (batch, L, vocab),
            causal, e.g. :class:`lrne.nn.Transformer` with ``vocab_size=task.vocab_size``
            (build the task first with any model, or use :meth:`vocabulary`).
        text: the corpus; its distinct characters are the vocabulary.
        context: L, the window length.
        batch_size: windows per member per generation, so a member is scored on
            ``batch_size × context`` tokens.
        seed: picks the fixed training batch (``fresh_batches=False``).
        eval_fraction: the last part of the text, held out.
        fresh_batches: draw a new batch each generation from its key, the same
            for every member (default); ``False``: one fixed batch, as in the
            paper, so a member's fitness is a deterministic function of its params.
        eval_tokens: held-out tokens :meth:`eval_loss` scores: consecutive
            windows from the start of the held-out part (at most all of it).

    Metric ``best_eval_loss``: the fittest member's :meth:`eval_loss`.
    """

    def __init__(
        self,
        model: nn.Module,
        text: str,
        context: int = 64,
        batch_size: int = 32,
        seed: int = 0,
        eval_fraction: float = 0.1,
        fresh_batches: bool = True,
        eval_tokens: int = 32_768,
    ) -> None:
        for name, value in (
            ("context", context),
            ("batch_size", batch_size),
            ("eval_tokens", eval_tokens),
        ):
            if not isinstance(value, int) or value < 1:
                raise ArgumentError(name, f"{name} must be an int >= 1, got {value!r}")
        if not 0 < eval_fraction < 1:
            raise ArgumentError(
                "eval_fraction", f"eval_fraction must be in (0, 1), got {eval_fraction!r}"
            )
        chars = self.vocabulary(text)
        split = int(len(text) * (1 - eval_fraction))
        if min(split, len(text) - split) < context + 1:
            raise ArgumentError(
                "text",
                f"text: {len(text)} characters is too short for windows of context + 1 = "
                f"{context + 1} in both splits",
            )
        self.model = model
        self.chars = chars
        self.vocab_size = len(chars)
        self.context = context
        self.batch_size = batch_size
        self.fresh_batches = bool(fresh_batches)
        ids = np.asarray([chars.index(c) for c in text], np.int32)  # small vocab
        self.train_ids = jnp.asarray(ids[:split])
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, split - context, batch_size)
        self.inputs, self.targets = self._windows(self.train_ids, jnp.asarray(starts))
        held_out = ids[split:]
        num_windows = max(1, min(-(-eval_tokens // context), (len(held_out) - 1) // context))
        windows = held_out[: num_windows * context + 1]
        self.eval_inputs = jnp.asarray(windows[:-1].reshape(num_windows, context))
        self.eval_targets = jnp.asarray(windows[1:].reshape(num_windows, context))
        # Shapes only: an eager init of a transformer costs seconds of op-by-op dispatch.
        forward = lambda: self.model.apply(self.init_params(jax.random.key(0)), self.inputs)
        out = jax.eval_shape(forward)
        if out.shape != (*self.inputs.shape, self.vocab_size):
            raise ArgumentError(
                "model",
                f"model: outputs shape {out.shape} but the task needs "
                f"{(*self.inputs.shape, self.vocab_size)} (vocab_size={self.vocab_size})",
            )

    @staticmethod
    def vocabulary(text: str) -> str:
        """The sorted distinct characters of ``text``: token i is ``vocabulary[i]``."""
        return "".join(sorted(set(text)))

    def _windows(self, ids: Array, starts: Array) -> tuple[Array, Array]:
        offsets = starts[:, None] + jnp.arange(self.context + 1)
        windows = ids[offsets]
        return windows[:, :-1], windows[:, 1:]

    def batch(self, key: jax.Array) -> tuple[Array, Array]:
        """The training (inputs, targets), each (batch_size, context), of a generation's key."""
        if not self.fresh_batches:
            return self.inputs, self.targets
        high = self.train_ids.shape[0] - self.context
        return self._windows(self.train_ids, jax.random.randint(key, (self.batch_size,), 0, high))

    def init_params(self, key: jax.Array) -> PyTree:
        return self.model.init(key, self.inputs[:1])

    def loss(self, variables: PyTree, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean cross-entropy (nats per token) of one member's predictions."""
        logits = apply(self.model, variables, inputs)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, targets[..., None], axis=-1))

    def differentiable_loss(self, key: jax.Array, variables: PyTree) -> jax.Array:
        """:meth:`loss` on the batch of the generation key ``key``: minus the fitness
        :meth:`evaluate` gives every member under ``key``."""
        return self.loss(variables, *self.batch(key))

    def eval_loss(self, variables: PyTree) -> jax.Array:
        """One member's mean cross-entropy (nats per token) on the held-out windows.

        Scored ``batch_size`` windows at a time (``lax.map``), so memory stays
        that of one training batch.
        """
        size = min(self.batch_size, self.eval_inputs.shape[0])
        full = self.eval_inputs.shape[0] // size * size
        chunks = (self.eval_inputs[:full], self.eval_targets[:full])
        chunks = jax.tree.map(lambda x: x.reshape(-1, size, self.context), chunks)
        losses = jax.lax.map(lambda batch: self.loss(variables, *batch), chunks)
        total = losses.sum() * size * self.context
        if full < self.eval_inputs.shape[0]:
            rest = self.eval_inputs.shape[0] - full
            tail = self.loss(variables, self.eval_inputs[full:], self.eval_targets[full:])
            total = total + tail * rest * self.context
        return total / self.eval_inputs.size

    def _losses(self, population: Population, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        loss = lambda variables, batch: self.loss(variables, *batch)
        return member_outputs(loss, population, (inputs, targets))

    def member_keys(self, key: jax.Array, num_members: int) -> jax.Array:
        """Every member gets the generation's key: one batch for the whole population."""
        return jnp.broadcast_to(key, (num_members,))

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        """Fitness (M,) = −training loss on the batch of ``keys[0]``; metric ``tokens`` scored."""
        inputs, targets = self.batch(keys[0])
        fitness = -self._losses(population, inputs, targets)
        tokens = population.size * inputs.size
        return fitness, {"tokens": jnp.asarray(tokens, jnp.int32)}

    def fresh_fitness(self, key: jax.Array, params: PyTree, num_episodes: int = 32) -> jax.Array:
        """−:meth:`eval_loss` (``key``, ``num_episodes`` unused)."""
        del key, num_episodes
        return -self.eval_loss(params)

    def population_metrics(self, population: Population, fitness: jax.Array) -> Metrics:
        """``best_eval_loss``: the fittest member's held-out loss (nats per token)."""
        best = population.select(top_k(fitness, 1))
        variables = member_variables(best.shared, jax.tree.map(lambda x: x[0], best.members))
        return {"best_eval_loss": self.eval_loss(variables)}

    def encode(self, text: str) -> Array:
        """Token ids of ``text``; ``ValueError`` naming characters outside the vocabulary."""
        unknown = sorted(set(text) - set(self.chars))
        if unknown:
            raise ArgumentError(
                "text", f"text: characters {unknown!r} are not in the task's vocabulary"
            )
        return jnp.asarray([self.chars.index(c) for c in text], jnp.int32)

    def sample(
        self, params: PyTree, prompt: str, length: int, key: jax.Array, temperature: float = 1.0
    ) -> str:
        """``length`` characters sampled after ``prompt`` from one member's variables.

        The model sees at most the last ``context`` characters. ``temperature``
        divides the logits (> 0).
        """
        if not isinstance(length, int) or length < 0:
            raise ArgumentError("length", f"length must be an int >= 0, got {length!r}")
        if not temperature > 0:
            raise ArgumentError("temperature", f"temperature must be > 0, got {temperature!r}")
        if not prompt:
            raise ArgumentError("prompt", "prompt must hold at least one character")
        ids = self.encode(prompt)[-self.context :]
        out = _sample(self, params, ids, length, key, float(temperature))
        return "".join(self.chars[i] for i in np.asarray(out))


@functools.partial(jax.jit, static_argnames=("task", "length"))
def _sample(
    task: LanguageModel, params: PyTree, ids: Array, length: int, key: jax.Array, temperature: float
) -> Array:
    # A window of the last `context` tokens; with a causal model, padding after
    # position n - 1 does not change the logits there.
    context = task.context
    window = jnp.zeros((context,), jnp.int32).at[: ids.shape[0]].set(ids)

    def step(carry, k):
        window, n = carry
        logits = apply(task.model, params, window[None])[0, n - 1]
        token = jax.random.categorical(k, logits / temperature).astype(jnp.int32)
        full = n == context
        window = jnp.where(full, jnp.roll(window, -1), window)
        window = window.at[jnp.where(full, context - 1, n)].set(token)
        return (window, jnp.minimum(n + 1, context)), token

    start = (window, jnp.asarray(ids.shape[0], jnp.int32))
    return jax.lax.scan(step, start, jax.random.split(key, length))[1]
