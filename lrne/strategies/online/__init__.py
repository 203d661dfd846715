"""Online ES over truncated unrolls (Li et al. 2023, arXiv 2304.12180): NRES, PES, TES, FullES.

One module per estimator supplies its hooks (:class:`Estimator`) to the shared
builder :func:`online_es`.
"""

from lrne.strategies.online.base import (
    Estimator,
    OnlineESState,
    online_es,
    record_estimate,
)
from lrne.strategies.online.nres import full_es, nres
from lrne.strategies.online.pes import pes
from lrne.strategies.online.tes import tes

__all__ = [
    "Estimator",
    "OnlineESState",
    "full_es",
    "nres",
    "online_es",
    "pes",
    "record_estimate",
    "tes",
]
