"""Per-leaf Gaussian mutation scales and leaf freezing, shared by strategies."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lrne.factors import is_factors, materialize

PyTree = Any


def path_str(path: tuple) -> str:
    """A pytree path as 'Dense_0/kernel/A'."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def frozen_mask(params: PyTree, freeze: Sequence[str]) -> PyTree:
    """Bool per leaf: True where the leaf's path matches any regex in ``freeze``."""
    patterns = [re.compile(p) for p in freeze]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(p.search(path_str(path)) for p in patterns), params
    )


def factor_mask(params: PyTree) -> PyTree:
    """Bool per leaf: True for the A and B leaves of a factorized weight."""

    def mark(node: Any) -> Any:
        if is_factors(node):
            return {"A": True, "B": True}
        return jax.tree.map(lambda _: False, node)

    return jax.tree.map(mark, params, is_leaf=is_factors)


def init_std(params: PyTree) -> PyTree:
    """Each leaf's initialization standard deviation, read off the initial params.

    A leaf with spread (kernels, factors) gets its empirical std. A constant-
    initialized leaf (biases at 0, norm scales at 1) gets the std of its layer's
    materialized kernel, so a bias mutates on the scale of the weights feeding
    it; a constant leaf with no varying kernel beside it (a LayerNorm) gets 1.0.
    """

    def visit(node: Any, dense_node: Any) -> Any:
        if is_factors(node):
            return type(node)({"A": jnp.std(node["A"]), "B": jnp.std(node["B"])})
        if not isinstance(node, Mapping):
            return jnp.std(node)
        kernel = dense_node.get("kernel", dense_node.get("embedding"))
        fallback = jnp.float32(1.0)
        if kernel is not None:
            fallback = jnp.where(jnp.std(kernel) > 0, jnp.std(kernel), fallback)
        out = {}
        for name, child in node.items():
            std = visit(child, dense_node[name])
            out[name] = std if isinstance(child, Mapping) else jnp.where(std > 0, std, fallback)
        return type(node)(out)

    return visit(params, materialize(params))
