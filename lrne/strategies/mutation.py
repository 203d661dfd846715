"""Per-leaf Gaussian mutation scales and leaf freezing, shared by strategies."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lrne.genome import Factors, PyTree, as_dense, is_node, path_str


def frozen_mask(params: PyTree, freeze: Sequence[str]) -> PyTree:
    """Bool per leaf: True where the leaf's path matches any regex in ``freeze``."""
    patterns = [re.compile(p) for p in freeze]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(p.search(path_str(path)) for p in patterns), params
    )


def factor_mask(params: PyTree) -> PyTree:
    """Bool per leaf: True for the A and B leaves of a factorized weight."""
    mark = lambda node: jax.tree.map(lambda _: isinstance(node, Factors), node)
    return jax.tree.map(mark, params, is_leaf=is_node)


def init_std(params: PyTree) -> PyTree:
    """Each leaf's initialization standard deviation, read off the initial params.

    A leaf with spread (kernels, factors) gets its empirical std. A constant-
    initialized leaf (biases at 0, norm scales at 1) gets the std of its layer's
    materialized kernel, so a bias mutates on the scale of the weights feeding
    it; a constant leaf with no varying kernel beside it (a LayerNorm, a raw
    array of one value) gets 1.0, so every leaf mutates.

    This is the one place the GA's and Metropolis's relative σ is defined:
    a leaf's mutation std is ``sigma × init_std``.
    """

    def visit(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return jax.tree.map(jnp.std, node)
        kernel = node.get("kernel", node.get("embedding"))
        fallback = jnp.float32(1.0)
        if kernel is not None and not isinstance(kernel, Mapping):
            spread = jnp.std(as_dense(kernel))
            fallback = jnp.where(spread > 0, spread, fallback)
        out = {}
        for name, child in node.items():
            std = visit(child)
            constant = not isinstance(child, Mapping) and not is_node(child)
            out[name] = jnp.where(std > 0, std, fallback) if constant else std
        return type(node)(out)

    nonzero = lambda std: jnp.where(std > 0, std, jnp.float32(1.0))
    return jax.tree.map(nonzero, visit(params))
