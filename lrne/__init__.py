"""lrne: low-rank factorized neuroevolution in JAX.

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037).
"""

from lrne import nn, strategies, tasks
from lrne.factors import count_params, factorize, genome_bytes, materialize
from lrne.generation import fitness_stats, generation_step
from lrne.strategies import GAState, Strategy, ga

__version__ = "0.1.0"

__all__ = [
    "GAState",
    "Strategy",
    "count_params",
    "factorize",
    "fitness_stats",
    "ga",
    "generation_step",
    "genome_bytes",
    "materialize",
    "nn",
    "strategies",
    "tasks",
]
