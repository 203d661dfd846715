"""lrne: low-rank factorized neuroevolution in JAX.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037).
"""

from lrne import distributed, nn, perturb, strategies, tasks
from lrne.distributed import sharded_generation_step
from lrne.ensemble import ensemble_predict
from lrne.factors import count_params, factorize, genome_bytes, materialize
from lrne.generation import fitness_stats, generation_step
from lrne.perturb import Population
from lrne.strategies import (
    ESState,
    GAState,
    MetropolisState,
    OnlineESState,
    OnlineStrategy,
    Strategy,
    es,
    full_es,
    ga,
    metropolis,
    nres,
    online_es,
    pes,
    tes,
)

__version__ = "0.1.0"

__all__ = [
    "ESState",
    "GAState",
    "MetropolisState",
    "OnlineESState",
    "OnlineStrategy",
    "Population",
    "Strategy",
    "count_params",
    "distributed",
    "ensemble_predict",
    "es",
    "factorize",
    "fitness_stats",
    "full_es",
    "ga",
    "generation_step",
    "genome_bytes",
    "materialize",
    "metropolis",
    "nn",
    "nres",
    "online_es",
    "perturb",
    "pes",
    "sharded_generation_step",
    "strategies",
    "tasks",
    "tes",
]
