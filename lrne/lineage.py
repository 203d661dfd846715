"""Seed-lineage genomes: a run's answer as a compact record, rebuilt bit for bit.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037): deep neuroevolution scales "due to its
unique ability to encode network updates in a small number of bytes"; their
Jevo.jl stores a genome as its list of (seed, mutation) genes. Every random
draw of an lrne run comes from its key (:func:`lrne.generation.split_key`), so a
member is fully described by:

- **a chain** (GA, Metropolis: strategies with a
  :attr:`~lrne.strategies.Strategy.mutate` hook): the initial params' seed
  and the (generation, mutation index) genes on the way from them to the
  member. Replay applies each gene with ``mutate``, the function ``ask`` itself
  vmaps, so the bits are the same. Eight bytes a gene.
- **a fitness record** (ES, online ES): the seed and every generation's
  fitness vector; replay runs ``ask`` and ``tell`` again with the recorded
  fitness in place of the evaluation (the noise is regenerated from the key).
  Four bytes a member and generation.

:func:`lrne.run` keeps a :class:`Log` of each generation (the ancestry of the
kept members, or the fitness) and saves it beside its checkpoints, so resumed
runs keep it; :meth:`Log.record` follows the answer (or any kept member) back
to its root; :func:`replay` rebuilds it from the :class:`Record` and the
run's strategy and task (for ``lrne train``: ``config.toml``), a few hundred
bytes that are the whole elite.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lrne.generation import isolated, split_key, step_keys
from lrne.genome import Metrics, Population, PyTree
from lrne.strategies.base import Strategy, typed

FITNESS = "fitness"
"""The metrics key under which :func:`recording` adds each generation's fitness vector."""

_MAGIC = b"LRNE-LINEAGE-1\n"


def recording(strategy: Strategy) -> Strategy:
    """``strategy`` whose evaluate hook also returns the fitness as metric :data:`FITNESS`."""
    evaluate = strategy.evaluate

    def evaluate_and_record(
        key: jax.Array, state: Any, population: Population, task: Any
    ) -> tuple[jax.Array, Metrics, Any]:
        fitness, metrics, state = evaluate(key, state, population, task)
        return fitness, {**metrics, FITNESS: fitness}, state

    return strategy._replace(evaluate=evaluate_and_record)


@dataclass(frozen=True)
class Record:
    """One member's seed lineage: what :func:`replay` rebuilds it from.

    Attributes:
        key: the run key's data (``jax.random.key_data`` of :func:`lrne.run`'s ``key``).
        generations: the generations the run had done.
        chain: (k, 2) int32 (generation, mutation index) genes, oldest first
            (chain records), else None.
        fitness: (generations, population) float32, each generation's fitness
            (fitness records), else None.
        seeded: whether the initial params are ``task.init_params`` of the key;
            False: the run was given them, and :func:`replay` needs them too.
        kept: variables collections of the answer that no replay rebuilds, kept as
            they are (:func:`unreplayed`: e.g. the observation statistics of
            :func:`lrne.normalized`, gathered from rollouts), by
            ``"collection/name"``; :func:`replay` puts them back.
    """

    key: np.ndarray
    generations: int
    chain: np.ndarray | None = None
    fitness: np.ndarray | None = None
    seeded: bool = True
    kept: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The record as bytes: a JSON header and the zlib-compressed genes or fitness."""
        body = self.chain if self.chain is not None else self.fitness
        header = {
            "key": [int(x) for x in np.asarray(self.key).ravel()],
            "key_shape": list(np.shape(self.key)),
            "generations": self.generations,
            "kind": "chain" if self.chain is not None else "fitness",
            "shape": list(body.shape),
            "seeded": self.seeded,
            "kept": {k: [list(np.shape(x)), str(x.dtype)] for k, x in self.kept.items()},
        }
        text = json.dumps(header, separators=(",", ":")).encode()
        raw = np.ascontiguousarray(body).astype("<i4" if self.chain is not None else "<f4")
        kept = b"".join(np.ascontiguousarray(x).tobytes() for x in self.kept.values())
        data = zlib.compress(raw.tobytes() + kept, 9)
        return _MAGIC + struct.pack("<I", len(text)) + text + data

    @classmethod
    def from_bytes(cls, data: bytes) -> Record:
        """Inverse of :meth:`to_bytes`.

        Raises:
            ValueError: not a record.
        """
        if not data.startswith(_MAGIC):
            raise ValueError("not an lrne lineage record (bad magic)")
        offset = len(_MAGIC)
        (size,) = struct.unpack_from("<I", data, offset)
        header = json.loads(data[offset + 4 : offset + 4 + size])
        dtype = "<i4" if header["kind"] == "chain" else "<f4"
        raw = zlib.decompress(data[offset + 4 + size :])
        count = int(np.prod(header["shape"]))
        body = np.frombuffer(raw, dtype, count).reshape(header["shape"]).astype(dtype[1:])
        at, kept = 4 * count, {}
        for name, (shape, kind) in header["kept"].items():
            array = np.frombuffer(raw, kind, int(np.prod(shape)), at).reshape(shape)
            kept[name], at = array.copy(), at + array.nbytes
        key = np.asarray(header["key"], np.uint32).reshape(header["key_shape"])
        chain = body if header["kind"] == "chain" else None
        fitness = body if header["kind"] == "fitness" else None
        return cls(key, header["generations"], chain, fitness, header["seeded"], kept)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_bytes` to ``path`` (atomically)."""
        _write_atomic(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> Record:
        return cls.from_bytes(Path(path).read_bytes())


@dataclass
class Log:
    """A run's lineage so far, one entry per generation (host-side, NumPy).

    Chain strategies (a ``mutate`` hook) log their state's
    :class:`~lrne.strategies.base.Ancestry` and whether the best fitness
    improved; the others log the fitness vector.
    """

    chains: bool
    seeded: bool = True
    entries: list[dict[str, np.ndarray]] = field(default_factory=list)

    def append(self, fitness: np.ndarray, state: Any) -> None:
        """Log one generation: its fitness vector and the state after it."""
        if not self.chains:
            self.entries.append({"fitness": np.asarray(fitness, np.float32)})
            return
        ancestry = jax.device_get(state.ancestry)
        best = np.asarray(jax.device_get(state.best_fitness), np.float32)
        previous = self.entries[-1]["best_fitness"] if self.entries else np.float32(-np.inf)
        self.entries.append(
            {
                "parent": np.asarray(ancestry.parent, np.int32),
                "mutation": np.asarray(ancestry.mutation, np.int32),
                "best": np.asarray(ancestry.best, np.int32),
                "improved": np.asarray(best > previous),
                "best_fitness": best,
            }
        )

    def truncate(self, generations: int) -> Log:
        """The log of the first ``generations`` generations.

        Raises:
            ValueError: it holds fewer.
        """
        if len(self.entries) < generations:
            held = len(self.entries)
            raise ValueError(f"the lineage log holds {held} < {generations} generations")
        return Log(self.chains, self.seeded, self.entries[:generations])

    def record(
        self, key: jax.Array, member: int | None = None, kept: dict[str, np.ndarray] | None = None
    ) -> Record:
        """The record of the run's answer (``member=None``) or of kept member ``member``.

        The answer is the best member seen (chain strategies) or the mean after
        the last generation (fitness records; ``member`` must then be None).
        ``kept``: collections no replay rebuilds (:func:`unreplayed`).
        """
        kept = {} if kept is None else kept
        key_data = np.asarray(jax.random.key_data(key))
        generations = len(self.entries)
        if not self.chains:
            if member is not None:
                raise ValueError("a fitness record rebuilds the mean only: member must be None")
            fitness = np.stack([e["fitness"] for e in self.entries]) if self.entries else None
            if fitness is None:
                fitness = np.zeros((0, 0), np.float32)
            return Record(key_data, generations, fitness=fitness, seeded=self.seeded, kept=kept)
        end = generations
        if member is None:  # the best member: kept member `best` of its last improvement
            improved = [g for g, e in enumerate(self.entries) if e["improved"]]
            end = improved[-1] + 1 if improved else 0
            member = int(self.entries[end - 1]["best"]) if improved else 0
        genes = []
        for generation in range(end - 1, -1, -1):
            entry = self.entries[generation]
            if entry["mutation"][member] >= 0:
                genes.append((generation, int(entry["mutation"][member])))
            member = int(entry["parent"][member])
        chain = np.asarray(genes[::-1], np.int32).reshape(-1, 2)
        return Record(key_data, generations, chain=chain, seeded=self.seeded, kept=kept)

    def save(self, path: str | Path) -> None:
        """Write the log to ``path`` (``.npz``, atomically)."""
        names = sorted(self.entries[0]) if self.entries else []
        arrays = {name: np.stack([e[name] for e in self.entries]) for name in names}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(partial, chains=self.chains, seeded=self.seeded, **arrays)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: str | Path) -> Log:
        with np.load(path) as data:
            names = [n for n in data.files if n not in ("chains", "seeded")]
            arrays = {n: data[n] for n in names}
            chains, seeded = bool(data["chains"]), bool(data["seeded"])
        count = len(next(iter(arrays.values()))) if arrays else 0
        entries = [{n: arrays[n][g] for n in names} for g in range(count)]
        return cls(chains, seeded, entries)


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def replay(record: Record, strategy: Strategy, task: Any, params: PyTree | None = None) -> PyTree:
    """Rebuild the member a :class:`Record` describes, bit for bit.

    Args:
        record: from :meth:`Log.record` (or :meth:`Record.load`).
        strategy, task: the run's (``lrne.load_run(...).strategy`` and ``.task``,
            or ``config.build()``).
        params: the initial params, when the run was given them
            (``record.seeded`` is False); else drawn from the key.

    Returns:
        The member's params (chain records) or the mean (fitness records).
    """
    if not record.seeded and params is None:
        raise ValueError("the run was given its initial params: pass them as params")
    keys = split_key(jax.random.wrap_key_data(jnp.asarray(record.key)))
    params = task.init_params(keys.params) if params is None else params
    state = strategy.init(keys.init, params, task)
    generation_key = lambda g: jax.random.fold_in(keys.generations, g)
    if record.chain is not None:
        if strategy.mutate is None:
            raise ValueError("a chain record needs a strategy with a mutate hook (GA, Metropolis)")
        mutate = jax.jit(strategy.mutate)
        member = typed(params)
        for generation, index in record.chain.tolist():
            at = state._replace(generation=jnp.asarray(generation, jnp.int32))
            key_ask = step_keys(generation_key(generation))[0]
            member = mutate(key_ask, at, member, jnp.asarray(index, jnp.int32))
        return _restored(member, record.kept)

    @jax.jit
    def step(state: Any, key: jax.Array, fitness: jax.Array) -> Any:
        key_ask, _, key_tell = step_keys(key)
        population, state = isolated(strategy.ask, key_ask, state)
        return isolated(strategy.tell, key_tell, state, population, fitness)[0]

    for generation, fitness in enumerate(record.fitness):
        state = step(state, generation_key(generation), jnp.asarray(fitness))
    return _restored(state.best_params, record.kept)


def unreplayed(answer: PyTree, initial: PyTree) -> dict[str, np.ndarray]:
    """The variables collections of ``answer`` that ``initial`` (the run's initial
    params) lacks, flattened to ``"collection/name"``: what a strategy wrapper adds
    from the rollouts (:func:`lrne.normalized`'s statistics), which no replay rebuilds."""
    if not isinstance(answer, dict) or not isinstance(initial, dict):
        return {}
    kept = {}
    for collection in sorted(set(answer) - set(initial)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(answer[collection])[0]:
            name = "/".join(str(getattr(k, "key", k)) for k in path)
            kept[f"{collection}/{name}"] = np.asarray(leaf)
    return kept


def _restored(params: PyTree, kept: dict[str, np.ndarray]) -> PyTree:
    """``params`` with the :attr:`Record.kept` collections put back (each whole)."""
    if not kept:
        return params
    params = dict(params)
    fresh: dict[str, dict] = {}
    for name, value in kept.items():
        collection, *path = name.split("/")
        node = fresh.setdefault(collection, {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = jnp.asarray(value)
    return params | fresh
