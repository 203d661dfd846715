"""Apply a member's perturbation inside the forward pass of any flax.linen model.

A member of an ES population is the shared mean variables plus its own
perturbation δ in the ``perturb`` collection (a pytree mirroring ``params``;
see :mod:`lrne.perturb`). :func:`apply` evaluates such a member with any
``flax.linen`` model, unchanged:

- **Dense δ** (any leaf under ``noise_rank=0``; biases, norms, conv kernels
  and 2-D params that are not weight matrices under low-rank noise) is added
  to the param before the forward pass. It is already param-sized per member,
  so W + δ costs no more memory than δ, and every layer type, stock or custom,
  reads it like a plain param. :func:`prepare` does this once per generation,
  outside any rollout loop.
- **Low-rank δ = UᵀV** (:class:`~lrne.genome.LowRank`, on 2-D weight matrices:
  :func:`lrne.genome.is_weight_matrix`) is never formed. A method interceptor
  (``flax.linen.intercept_methods``) adds ``(x·Uᵀ)·V`` to the output of every
  stock ``nn.Dense`` and ``nn.DenseGeneral`` (a 2-D kernel: one contracted
  axis, no ``batch_dims``) and the looked-up rows (or, in ``attend``,
  ``(x·Vᵀ)·U``) of every ``nn.Embed``; lrne's own layers read the collection
  themselves (:func:`read`), so factorized weights get their perturbation
  between the two factors.
- A low-rank δ that no layer consumed is an error naming the leaf, raised
  while the model is traced: never a silent no-op.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne import perturb
from lrne.genome import LowRank, Population, PyTree, evaluation_layout, path_str

PERTURB = "perturb"

_CONSUMED: contextvars.ContextVar[set | None] = contextvars.ContextVar("consumed", default=None)


def read(module: nn.Module, name: str) -> Any:
    """The member's perturbation of ``module``'s param ``name``, or None; marks it consumed."""
    if not module.has_variable(PERTURB, name):
        return None
    consumed = _CONSUMED.get()
    if consumed is not None:
        consumed.add((*module.path, name))
    return module.get_variable(PERTURB, name)


def _input(args: tuple, kwargs: dict, name: str) -> jax.Array:
    return args[0] if args else kwargs[name]


def _dense_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array | None:
    return perturb.matmul(_input(args, kwargs, "inputs"), delta)


def _dense_general_term(
    module: nn.Module, args: tuple, kwargs: dict, delta: LowRank
) -> jax.Array | None:
    axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    if len(axis) != 1 or module.batch_dims:
        return None  # a 2-D kernel with batch dims: left unconsumed, reported below
    # dot_general keeps the input's other axes in order and appends the features,
    # so contracting over the last axis after moving ``axis`` there matches it.
    return perturb.matmul(jnp.moveaxis(_input(args, kwargs, "inputs"), axis[0], -1), delta)


def _embed_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    return perturb.rows(delta, _input(args, kwargs, "inputs"))


def _attend_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    return perturb.matmul_t(_input(args, kwargs, "query"), delta)


# (layer type, method) -> (perturbed param, the term x·δ the method's output gains).
RULES: dict[tuple[type, str], tuple[str, Callable]] = {
    (nn.Dense, "__call__"): ("kernel", _dense_term),
    (nn.DenseGeneral, "__call__"): ("kernel", _dense_general_term),
    (nn.Embed, "__call__"): ("embedding", _embed_term),
    (nn.Embed, "attend"): ("embedding", _attend_term),
}


def _rule(module: nn.Module, method: str) -> tuple[str, Callable] | None:
    for (cls, name), rule in RULES.items():
        if name == method and isinstance(module, cls):
            return rule
    return None


def _add_lowrank_terms(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    """Interceptor: stock layers' outputs gain the member's low-rank term."""
    module = context.module
    rule = _rule(module, context.method_name)
    out = next_fun(*args, **kwargs)
    if rule is None or not module.has_variable(PERTURB, rule[0]):
        return out
    delta = module.get_variable(PERTURB, rule[0])
    if not isinstance(delta, LowRank):
        return out
    term = rule[1](module, args, kwargs, delta)
    if term is None:
        return out
    _CONSUMED.get().add((*module.path, rule[0]))
    return out + term.astype(out.dtype)


def _check_consumed(lowrank: PyTree, consumed: set) -> None:
    is_lowrank = lambda x: isinstance(x, LowRank)
    for path, _ in jax.tree_util.tree_leaves_with_path(lowrank, is_leaf=is_lowrank):
        printable = path_str(path)
        keys = tuple(printable.split("/"))
        if not any(keys[:n] in consumed for n in range(1, len(keys) + 1)):
            raise ValueError(
                f"the low-rank perturbation of param {printable!r} was not consumed by any "
                "layer: low-rank noise is applied inside nn.Dense, nn.DenseGeneral (2-D "
                "kernel over one axis, no batch_dims), nn.Embed and lrne.nn layers only. Use "
                "noise_rank=0 for this model, or build that layer from those."
            )


def _prune(tree: Any) -> Any:
    """Drop None entries and emptied dicts (a perturb collection holds only what layers read)."""
    if isinstance(tree, Mapping):
        out = {k: _prune(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    return tree


def _add(params: PyTree, delta: PyTree) -> PyTree:
    """params + δ where δ has an entry (δ may be pruned to a subtree, with ``None`` leaves)."""
    if delta is None:
        return params
    if isinstance(delta, Mapping):
        return {**params, **{k: _add(params[k], v) for k, v in delta.items()}}
    return jax.tree.map(lambda p, d: p if d is None else p + d, params, delta)


def _fold_dense(variables: PyTree) -> PyTree:
    """Add the dense part of ``perturb`` into ``params``; keep only the low-rank part."""
    if PERTURB not in variables:
        return variables
    dense, lowrank = perturb.split(variables[PERTURB])
    params = _add(variables["params"], dense)
    out = {**variables, "params": params, PERTURB: _prune(lowrank)}
    if not out[PERTURB]:
        del out[PERTURB]
    return out


def apply(model: nn.Module, variables: PyTree, *args: Any, **kwargs: Any) -> Any:
    """``model.apply(variables, *args, **kwargs)`` for one member, perturbation included.

    ``variables`` may hold a ``perturb`` collection (an ES member): its dense
    entries are added to ``params``, its low-rank entries are applied inside the
    forward pass of the layers that hold them. Raises ``ValueError`` naming the
    leaf if a low-rank entry reached no layer.
    """
    variables = _fold_dense(variables)
    if PERTURB not in variables:
        return model.apply(variables, *args, **kwargs)
    consumed: set = set()
    token = _CONSUMED.set(consumed)
    try:
        with nn.intercept_methods(_add_lowrank_terms):
            out = model.apply(variables, *args, **kwargs)
    finally:
        _CONSUMED.reset(token)
    _check_consumed(variables[PERTURB], consumed)
    return out


def member_variables(shared: PyTree, member: PyTree) -> PyTree:
    """One member's flax variables: ``shared`` overlaid with ``member`` (its ``None`` leaves
    keep the shared value)."""
    out = dict(shared)
    for name, value in member.items():
        if name in out:
            pick = lambda s, m: s if m is None else m
            value = jax.tree.map(pick, out[name], value, is_leaf=lambda x: x is None)
        out[name] = value
    return out


def prepare(population: Population, thin_kernels: frozenset[str] = frozenset()) -> Population:
    """The population in evaluation form, computed once per generation.

    Perturbations not yet drawn (:class:`lrne.genome.Drawn`) are drawn first.
    Dense perturbations are folded into per-member params (only the leaves
    they touch carry a member axis; the rest stay shared, ``None`` in the
    member's tree), low-rank ones stay factors, and per-member factorized
    weights (GA, Metropolis) take their evaluation layout
    (:func:`lrne.genome.evaluation_layout`), as do the ``thin_kernels`` of lrne
    layers (:func:`lrne.nn.layers.thin_kernels`). Evaluate members of the result
    with :func:`apply` on :func:`member_variables`.
    """
    shared, members = population
    if PERTURB in members and "params" in shared:
        dense, lowrank = perturb.split(perturb.draw(members[PERTURB], shared["params"]))
        add = lambda p, d: None if d is None else p + d
        folded = jax.tree.map(
            lambda d, p: add(p, d), dense, shared["params"], is_leaf=lambda x: x is None
        )
        members = {k: v for k, v in members.items() if k != PERTURB}
        if jax.tree.leaves(folded):
            members["params"] = folded
        lowrank = _prune(lowrank)
        if lowrank:
            members[PERTURB] = lowrank
    elif "params" in members:
        # Per-member genomes (GA, Metropolis): x·A is a per-member product, so A's
        # layout matters. A shared mean's x·A is one batched matmul either way.
        layout = lambda params: evaluation_layout(params, thin_kernels)
        members = {**members, "params": jax.vmap(layout)(members["params"])}
    return Population(shared, members)


def population_apply(
    model: nn.Module, population: Population, *args: Any, **kwargs: Any
) -> jax.Array:
    """Every member's ``model.apply`` on the same inputs: outputs with a leading member axis."""
    shared, members = population
    one = lambda member: apply(model, member_variables(shared, member), *args, **kwargs)
    return jax.vmap(one)(members)


__all__ = ["PERTURB", "apply", "member_variables", "population_apply", "prepare", "read"]
