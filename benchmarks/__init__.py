"""lrne's benchmarks: ``python -m benchmarks --help`` lists them; harness.py runs them.

The benchmarks import their helpers and each other by module name (``from
common import timed``), as they do when run as scripts (``python
benchmarks/NAME.py``), so this folder goes on the import path.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
