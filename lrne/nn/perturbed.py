"""Apply a member's perturbation inside the forward pass of any flax.linen model.

A member of an ES population is the shared mean variables plus its own
perturbation δ in the ``perturb`` collection (a pytree mirroring ``params``;
see :mod:`lrne.perturb`). :func:`apply` evaluates such a member with any
``flax.linen`` model, unchanged:

- **Dense δ** (any leaf under ``noise_rank=0``; 0-D and 1-D leaves such as
  biases and norms, and the leaves named in a strategy's ``dense_noise``,
  under low-rank noise) is added to the param before the forward pass. It is
  already param-sized per member, so W + δ costs no more memory than δ, and
  every layer type, stock or custom, reads it like a plain param.
  :func:`prepare` does this once per generation, outside any rollout loop.
- **Low-rank δ = UᵀV** (:class:`~lrne.genome.LowRank`, on every leaf of two or
  more axes; :func:`lrne.perturb.matrix_split`) is never formed. A method
  interceptor (``flax.linen.intercept_methods``) adds the layer's own
  operation applied to δ, computed through the factors, to the output of the
  layer that consumes the weight: ``(x·Uᵀ)·V`` for ``nn.Dense``; the same
  einsum over ``(x, U, V)`` for ``nn.DenseGeneral`` with any contracted and
  feature axes (attention's q/k/v/out projections) and ``nn.Einsum``; a
  convolution to r channels followed by an r→out projection for ``nn.Conv``
  and ``nn.ConvTranspose``; looked-up rows (or, in ``attend``, ``(x·Vᵀ)·U``)
  for ``nn.Embed``. lrne's own layers read the collection themselves
  (:func:`read`), so factorized weights get their perturbation between the
  two factors. The weight is low-rank because its consuming layer supports
  it, never because of its name.
- A low-rank δ that no layer consumed is an error naming the param and its
  module, raised while the model is traced: never a silent no-op.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from lrne import perturb
from lrne.genome import (
    LowRank,
    Population,
    PyTree,
    evaluation_layout,
    is_variables,
    params_of,
    path_str,
    with_params,
)

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


def _unsupported(module: nn.Module, name: str, why: str) -> ValueError:
    where = "/".join((*module.path, name))
    return ValueError(
        f"param {where!r} of module {'/'.join(module.path) or type(module).__name__!r} "
        f"({type(module).__name__}) has a low-rank perturbation, but {why}. Give it dense "
        f"noise by naming it in the strategy's dense_noise (e.g. dense_noise=({name!r},)), "
        "or use noise_rank=0."
    )


def _lowrank_einsum(
    x: jax.Array, x_spec: str, kernel_spec: str, out_spec: str, delta: LowRank, shape: tuple
) -> jax.Array:
    """``einsum(x_spec,kernel_spec->out_spec, x, δ)`` for δ = UᵀV without forming δ.

    δ's rows are the kernel's first k axes (:func:`lrne.perturb.matrix_split`):
    the term is ``Σ_r einsum(x, U_r (first k axes), V_r (the rest))``, whose
    contraction order (x·U first) is left to ``jnp.einsum``.
    """
    k = perturb.matrix_split(shape)
    rank = delta.U.shape[0]
    free = next(c for c in "RSTUVWXYZrstuvwxyz" if c not in x_spec + kernel_spec + out_spec)
    u = delta.U.reshape(rank, *shape[:k])
    v = delta.V.reshape(rank, *shape[k:])
    spec = f"{x_spec},{free}{kernel_spec[:k]},{free}{kernel_spec[k:]}->{out_spec}"
    return jnp.einsum(spec, x, u, v)


def _dense_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    return perturb.matmul(_input(args, kwargs, "inputs"), delta)


def _dense_general_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    if module.batch_dims:
        raise _unsupported(module, "kernel", "nn.DenseGeneral with batch_dims is not supported")
    x = _input(args, kwargs, "inputs")
    axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    axis = tuple(sorted(a % x.ndim for a in axis))
    features = module.features if isinstance(module.features, tuple) else (module.features,)
    letters = iter("abcdefghijklmnopq")
    x_spec = "".join(next(letters) for _ in range(x.ndim))
    feature_spec = "".join(next(letters) for _ in features)
    kernel_spec = "".join(x_spec[a] for a in axis) + feature_spec
    out_spec = "".join(c for i, c in enumerate(x_spec) if i not in axis) + feature_spec
    shape = tuple(x.shape[a] for a in axis) + tuple(features)
    return _lowrank_einsum(x, x_spec, kernel_spec, out_spec, delta, shape)


def _einsum_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    x = _input(args, kwargs, "inputs")
    equation = kwargs.get("einsum_str", args[1] if len(args) > 1 else None)
    equation = (equation or module.einsum_str).replace(" ", "")
    operands, out_spec = equation.split("->")
    x_spec, kernel_spec = operands.split(",")
    if "." in x_spec + kernel_spec:
        raise _unsupported(module, "kernel", "an nn.Einsum equation with '...' is not supported")
    return _lowrank_einsum(x, x_spec, kernel_spec, out_spec, delta, tuple(module.shape))


def conv_term(
    conv: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, delta: LowRank, shape: tuple
) -> jax.Array:
    """``conv(x, δ)`` for a conv kernel of ``shape`` (window..., in, out) and δ = UᵀV.

    Convolution is linear in the kernel: with δ's rows the window and input
    channels (the split :func:`lrne.perturb.matrix_split` picks unless the
    output channels are fewer than a handful), ``conv(x, δ) = conv(x, U)·V``, a
    convolution to r channels and an r→out projection. Otherwise δ is small
    (window·in·out under a few times U's size) and is formed inside the layer.
    """
    if perturb.matrix_split(shape) == len(shape) - 1:
        rank = delta.U.shape[0]
        return conv(x, delta.U.T.reshape(*shape[:-1], rank)) @ delta.V
    return conv(x, delta.dense().reshape(shape))


def _stock_conv_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    if getattr(module, "feature_group_count", 1) != 1 or module.mask is not None:
        raise _unsupported(module, "kernel", "grouped or masked convolutions are not supported")
    if getattr(module, "transpose_kernel", False):
        raise _unsupported(module, "kernel", "ConvTranspose(transpose_kernel=True) is unsupported")
    x = _input(args, kwargs, "inputs")
    kernel = module.get_variable("params", "kernel")

    def conv(inputs: jax.Array, k: jax.Array) -> jax.Array:
        # The same layer (strides, padding, dilation...) with kernel k and no bias.
        layer = module.clone(parent=None, features=k.shape[-1], use_bias=False)
        return layer.apply({"params": {"kernel": k}}, inputs)

    return conv_term(conv, x, delta, kernel.shape)


def _bias_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    """A bias of two or more axes (a DenseGeneral's over several features) is added to
    the output: its δ is formed, no larger than the layer's output features."""
    bias = module.get_variable("params", "bias")
    return perturb.dense(delta, bias)


def _einsum_bias_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    x = _input(args, kwargs, "inputs")
    equation = kwargs.get("einsum_str", args[1] if len(args) > 1 else None) or module.einsum_str
    kernel = module.get_variable("params", "kernel")
    _, broadcast = module._get_bias_shape(equation.replace(" ", ""), x, kernel)
    return delta.dense().reshape(broadcast)


def _embed_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    return perturb.rows(delta, _input(args, kwargs, "inputs"))


def _attend_term(module: nn.Module, args: tuple, kwargs: dict, delta: LowRank) -> jax.Array:
    return perturb.matmul_t(_input(args, kwargs, "query"), delta)


# (layer type, method) -> ((param, the term its δ adds to the method's output), ...).
# nn.Dense before nn.DenseGeneral: the first rule whose type matches applies.
RULES: dict[tuple[type, str], tuple[tuple[str, Callable], ...]] = {
    (nn.Dense, "__call__"): (("kernel", _dense_term),),
    (nn.DenseGeneral, "__call__"): (("kernel", _dense_general_term), ("bias", _bias_term)),
    (nn.Einsum, "__call__"): (("kernel", _einsum_term), ("bias", _einsum_bias_term)),
    (nn.Conv, "__call__"): (("kernel", _stock_conv_term),),
    (nn.ConvTranspose, "__call__"): (("kernel", _stock_conv_term),),
    (nn.Embed, "__call__"): (("embedding", _embed_term),),
    (nn.Embed, "attend"): (("embedding", _attend_term),),
}


def _rules(module: nn.Module, method: str) -> tuple[tuple[str, Callable], ...]:
    for (cls, name), rules in RULES.items():
        if name == method and isinstance(module, cls):
            return rules
    return ()


def _add_lowrank_terms(next_fun: Callable, args: tuple, kwargs: dict, context: Any) -> Any:
    """Interceptor: stock layers' outputs gain the member's low-rank terms."""
    module = context.module
    out = next_fun(*args, **kwargs)
    for name, term in _rules(module, context.method_name):
        if not module.has_variable(PERTURB, name):
            continue
        delta = module.get_variable(PERTURB, name)
        if isinstance(delta, LowRank):
            out = out + term(module, args, kwargs, delta).astype(out.dtype)
            _CONSUMED.get().add((*module.path, name))
    return out


def _check_consumed(lowrank: PyTree, consumed: set) -> None:
    is_lowrank = lambda x: isinstance(x, LowRank)
    for path, _ in jax.tree_util.tree_leaves_with_path(lowrank, is_leaf=is_lowrank):
        printable = path_str(path)
        keys = tuple(printable.split("/"))
        if not any(keys[:n] in consumed for n in range(1, len(keys) + 1)):
            module = "/".join(keys[:-1]) or "(top level)"
            raise ValueError(
                f"the low-rank perturbation of param {printable!r} (module {module!r}) was not "
                "consumed by any layer: low-rank noise is applied inside the flax.linen layers "
                "that multiply by a weight (Dense, DenseGeneral, Einsum, Conv, ConvTranspose, "
                "Embed) and lrne.nn layers. A param your own code uses (e.g. a table added to "
                f"the input) needs dense noise: name it in the strategy's dense_noise (e.g. "
                f"dense_noise=({keys[-1]!r},)), or use noise_rank=0."
            )


def _prune(tree: Any) -> Any:
    """Drop None entries and emptied dicts (a perturb collection holds only what layers read)."""
    if isinstance(tree, Mapping):
        out = {k: _prune(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if v is not None and v != {}}
    return tree


def _add(params: PyTree, delta: PyTree) -> PyTree:
    """params + δ where δ has an entry (δ may be pruned to a subtree, with ``None`` leaves;
    a low-rank entry is formed: for black-box evaluation only)."""
    if delta is None:
        return params
    if isinstance(delta, Mapping):
        return {**params, **{k: _add(params[k], v) for k, v in delta.items()}}
    return jax.tree.map(lambda p, d: p if d is None else p + perturb.dense(d, p), params, delta)


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
    perturbed = isinstance(members, Mapping) and PERTURB in members
    if perturbed and not is_variables(shared):
        # A black-box genome (no flax variables): its perturbations are only drawn;
        # :func:`member_params` forms members' params.
        members = {**members, PERTURB: perturb.draw(members[PERTURB], params_of(shared))}
    elif perturbed:
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
    elif is_variables(members):
        # Per-member genomes (GA, Metropolis): x·A is a per-member product, so A's
        # layout matters. A shared mean's x·A is one batched matmul either way.
        layout = lambda params: evaluation_layout(params, thin_kernels)
        members = {**members, "params": jax.vmap(layout)(members["params"])}
    return Population(shared, members)


def member_params(population: Population) -> PyTree:
    """Every member's genome as dense params (leading member axis), in the structure the
    strategy was given (a raw array, a dict, flax variables): for evaluating members
    with your own function (``jax.vmap(f)(member_params(population))``).

    For an ES this forms each member's θ + δ: a black-box objective needs it, but
    a flax model should be evaluated with :func:`population_apply`, which never
    forms a member's weights. Takes a population from ``ask`` or in evaluation
    form (:func:`prepare`).
    """
    shared, members = population
    if not (isinstance(members, Mapping) and PERTURB in members):
        if not shared:
            return members
        return jax.vmap(lambda m: member_variables(shared, m))(members)
    delta = perturb.draw(members[PERTURB], params_of(shared))
    rest = {k: v for k, v in members.items() if k != PERTURB}

    def one(delta: PyTree, rest: PyTree) -> PyTree:
        base = member_variables(shared, rest) if rest else shared
        return with_params(base, _add(params_of(base), delta))

    return jax.vmap(one)(delta, rest)


def population_apply(
    model: nn.Module, population: Population, *args: Any, **kwargs: Any
) -> jax.Array:
    """Every member's ``model.apply`` on the same inputs: outputs with a leading member axis."""
    shared, members = population
    one = lambda member: apply(model, member_variables(shared, member), *args, **kwargs)
    return jax.vmap(one)(members)


__all__ = [
    "PERTURB",
    "apply",
    "member_params",
    "member_variables",
    "population_apply",
    "prepare",
    "read",
]
