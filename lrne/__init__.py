"""lrne: low-rank factorized neuroevolution in JAX.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037).

``import lrne`` loads the library. The shell around it, :mod:`lrne.callbacks`
(progress bar, metrics file), :mod:`lrne.checkpoint`, :mod:`lrne.config` and
:mod:`lrne.rundir` (:func:`lrne.load_run`), is imported on first use of
``lrne.callbacks``, ``lrne.load_run`` and the like, so the library never pulls in
rich, orbax or the config schema; the command line (``lrne.cli``) is never.
"""

from __future__ import annotations

import importlib as _importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from lrne import distributed, genome, nn, normalization, perturb, strategies, tasks, wrappers
from lrne.distributed import sharded_generation_step
from lrne.ensemble import ensemble_predict
from lrne.generation import fitness_stats, generation_step
from lrne.genome import (
    Factors,
    LowRank,
    Population,
    count_params,
    factorize,
    genome_bytes,
    materialize,
)
from lrne.normalization import normalized
from lrne.runner import Callback, RunResult, evaluate_best, run
from lrne.strategies import (
    ESState,
    GAState,
    MetropolisState,
    OnlineESState,
    Strategy,
    es,
    full_es,
    ga,
    metropolis,
    nres,
    pes,
    tes,
)

if TYPE_CHECKING:  # for type checkers and the API docs; loaded lazily below
    from lrne import callbacks
    from lrne import checkpoint as checkpoint
    from lrne import config as config
    from lrne import rundir as rundir
    from lrne.rundir import load_run

# Shell names loaded on first access: name -> (module, attribute or None for the module).
_LAZY: dict[str, tuple[str, str | None]] = {
    "callbacks": ("lrne.callbacks", None),
    "checkpoint": ("lrne.checkpoint", None),
    "config": ("lrne.config", None),
    "rundir": ("lrne.rundir", None),
    "load_run": ("lrne.rundir", "load_run"),
}


def __getattr__(name: str) -> Any:
    """Import a shell module (or one of its names) the first time it is used."""
    if name not in _LAZY:
        raise AttributeError(f"module 'lrne' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = _importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


try:
    # The version is written once, in pyproject.toml; an installed lrne carries it.
    __version__ = _metadata.version("lrne")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "Callback",
    "ESState",
    "Factors",
    "GAState",
    "LowRank",
    "MetropolisState",
    "OnlineESState",
    "Population",
    "RunResult",
    "Strategy",
    "callbacks",
    "count_params",
    "distributed",
    "ensemble_predict",
    "es",
    "evaluate_best",
    "factorize",
    "fitness_stats",
    "full_es",
    "ga",
    "generation_step",
    "genome",
    "genome_bytes",
    "load_run",
    "materialize",
    "metropolis",
    "nn",
    "normalization",
    "normalized",
    "nres",
    "perturb",
    "pes",
    "run",
    "sharded_generation_step",
    "strategies",
    "tasks",
    "tes",
    "wrappers",
]
