"""lrne: low-rank factorized neuroevolution in JAX.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037).
"""

from importlib import metadata as _metadata

from lrne import distributed, genome, nn, perturb, strategies, tasks, wrappers
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
from lrne.runner import Callback, RunResult, evaluate_best, run
from lrne.saved import load_run
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
