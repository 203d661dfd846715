import os

# The suite is dominated by XLA compiling many small functions; skipping LLVM's
# optimization passes makes it about a quarter faster on 2 cores. Semantics are
# unchanged; the benchmark scripts (run as subprocesses here at toy size only)
# inherit it, real benchmark runs do not.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import jax
import pytest


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)
