"""Character-level language modelling as a fitness: −cross-entropy on a fixed batch.

Garbus & Pollack 2025 (arXiv 2504.03037) score each member of a population of
transformers by its loss on a fixed set of training stories. Here the corpus
is tiny Shakespeare at the character level; fitness is −(mean cross-entropy in
nats per token) on a fixed batch of windows from the first 90% of the text, and
the metric ``best_eval_loss`` is the fittest member's loss on a fixed batch
from the last 10%.
"""

from __future__ import annotations

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
from lrne.genome import Metrics, Population, PyTree
from lrne.nn.perturbed import apply
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
    """Fitness = −mean next-character cross-entropy (nats per token) on a fixed batch.

    Args:
        model: flax module mapping token ids (batch, L) to logits (batch, L, vocab),
            e.g. :class:`lrne.nn.Transformer` with ``vocab_size=task.vocab_size``
            (build the task first with any model, or use :meth:`vocabulary`).
        text: the corpus; its distinct characters are the vocabulary.
        context: L, the window length.
        batch_size: windows in the fixed training batch (and in the held-out one).
        seed: picks the windows.
        eval_fraction: the last part of the text, held out for ``best_eval_loss``.

    ``evaluate(key, population)``: the key is unused (the batch is fixed, as in
    the paper), so a member's fitness is a deterministic function of its params.
    """

    def __init__(
        self,
        model: nn.Module,
        text: str,
        context: int = 64,
        batch_size: int = 32,
        seed: int = 0,
        eval_fraction: float = 0.1,
    ) -> None:
        for name, value in (("context", context), ("batch_size", batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 < eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
        chars = self.vocabulary(text)
        split = int(len(text) * (1 - eval_fraction))
        if min(split, len(text) - split) < context + 1:
            raise ValueError(
                f"text: {len(text)} characters is too short for windows of context + 1 = "
                f"{context + 1} in both splits"
            )
        self.model = model
        self.chars = chars
        self.vocab_size = len(chars)
        ids = np.asarray([chars.index(c) for c in text], np.int32)  # small vocab
        rng = np.random.default_rng(seed)
        self.inputs, self.targets = self._windows(ids[:split], context, batch_size, rng)
        self.eval_inputs, self.eval_targets = self._windows(ids[split:], context, batch_size, rng)
        out = jax.eval_shape(self.model.apply, self.init_params(jax.random.key(0)), self.inputs)
        if out.shape != (*self.inputs.shape, self.vocab_size):
            raise ValueError(
                f"model: outputs shape {out.shape} but the task needs "
                f"{(*self.inputs.shape, self.vocab_size)} (vocab_size={self.vocab_size})"
            )

    @staticmethod
    def vocabulary(text: str) -> str:
        """The sorted distinct characters of ``text``: token i is ``vocabulary[i]``."""
        return "".join(sorted(set(text)))

    @staticmethod
    def _windows(
        ids: np.ndarray, context: int, batch_size: int, rng: np.random.Generator
    ) -> tuple[jax.Array, jax.Array]:
        starts = rng.integers(0, len(ids) - context, batch_size)
        windows = np.stack([ids[s : s + context + 1] for s in starts])
        return jnp.asarray(windows[:, :-1]), jnp.asarray(windows[:, 1:])

    def init_params(self, key: jax.Array) -> PyTree:
        return self.model.init(key, self.inputs[:1])

    def loss(self, variables: PyTree, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        """Mean cross-entropy (nats per token) of one member's predictions."""
        logits = apply(self.model, variables, inputs)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(log_p, targets[..., None], axis=-1))

    def _losses(self, population: Population, inputs: jax.Array, targets: jax.Array) -> jax.Array:
        loss = lambda variables, batch: self.loss(variables, *batch)
        return member_outputs(loss, population, (inputs, targets))

    def evaluate_members(
        self, keys: jax.Array, population: Population
    ) -> tuple[jax.Array, Metrics]:
        """Fitness (M,) = −training loss; metric ``tokens`` scored."""
        del keys
        fitness = -self._losses(population, self.inputs, self.targets)
        tokens = population.size * self.inputs.size
        return fitness, {"tokens": jnp.asarray(tokens, jnp.int32)}

    def fresh_fitness(self, key: jax.Array, params: PyTree, num_episodes: int = 32) -> jax.Array:
        """−loss on the held-out batch (nats per token; ``key``, ``num_episodes`` unused)."""
        del key, num_episodes
        return -self.loss(params, self.eval_inputs, self.eval_targets)

    def population_metrics(self, population: Population, fitness: jax.Array) -> Metrics:
        """``best_eval_loss``: the fittest member's held-out loss (nats per token)."""
        best = population.select(top_k(fitness, 1))
        return {"best_eval_loss": self._losses(best, self.eval_inputs, self.eval_targets)[0]}
