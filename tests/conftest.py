import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version

# The suite is dominated by XLA compiling many small functions. Two codegen settings
# make XLA:CPU compile faster: fusions emitted by its elemental IR emitter instead
# of the MLIR fusion emitters, and LLVM at -O1 (measured side by side on the
# contract, es, ga, online, any_flax_model and subspace tests, 3 runs each:
# 0.83x the wall time of -O0 with the MLIR emitters; -O0 with the elemental
# emitter compiles faster still but breaks loop = scan bit for bit, an (8, 4)·(4,)
# dot rounded one way in one fusion and another in the next). The two xdist
# workers already fill both cores, so each runs its programs on one thread (no
# Eigen thread pool contending with the other worker). The MLIR emitters' self-check
# of what they generate is skipped (it changes no generated code). The bit-identity
# tests (1 vs 2 devices, loop vs scan, replays, resume) pass under these flags and
# under XLA's defaults. The benchmark scripts (run as subprocesses here at toy size
# only) inherit the flags, real benchmark runs do not.
CODEGEN_FLAGS = (
    "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
    " --xla_cpu_multi_thread_eigen=false --xla_cpu_emitter_verification_level=0"
)
CHECKED_JAXLIB = ("0.10.2",)  # versions the suite has run with these flags


def codegen_flags() -> str:
    """The flags above, or none where this jaxlib refuses them.

    XLA aborts a process on a flag it does not know, and an XLA release may drop
    one: with a jaxlib not in CHECKED_JAXLIB the flags are first tried in a
    throwaway process (~2 s); refused, the suite runs under XLA's defaults (the
    tests pass under both; the defaults compile slower).
    """
    jaxlib = version("jaxlib")
    if jaxlib in CHECKED_JAXLIB:
        return CODEGEN_FLAGS
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env={**os.environ, "XLA_FLAGS": CODEGEN_FLAGS},
        capture_output=True,
    )
    if probe.returncode == 0:
        return CODEGEN_FLAGS
    print(f"tests/conftest.py: jaxlib {jaxlib} refuses {CODEGEN_FLAGS!r}", file=sys.stderr)
    return ""


if "XLA_FLAGS" not in os.environ:  # set once by the controller; xdist workers inherit it
    os.environ["XLA_FLAGS"] = codegen_flags()

# Many tests start subprocesses (the CLI, resume, benchmarks, several devices)
# that compile the same programs again. One persistent compilation cache per
# test session, fresh each run, lets them share executables; the xdist workers
# and the subprocesses inherit the directory from the controller's environment.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="lrne-jax-cache-")
# Cache every executable, not only those that took over a second to compile:
# most programs here compile in well under a second.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import gc  # noqa: E402

import jax  # noqa: E402 (after the environment above, which jax reads at import)
import pytest  # noqa: E402

from lrne.strategies import REGISTRY  # noqa: E402

# Tracing makes many short-lived Python objects, and the cyclic collector's
# passes over the imported modules (jax, flax, gymnax) took ~4% of a test
# process's samples: freeze what the imports made and collect less often
# (~4% faster measured on test_online, test_es, test_ga and test_subspace).
gc.collect()
gc.freeze()
gc.set_threshold(100_000, 50, 1000)


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


@pytest.fixture(params=sorted(REGISTRY))
def strategy_name(request: pytest.FixtureRequest) -> str:
    """Every registered strategy (evosax style: the registry feeds the shared tests)."""
    return request.param


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller removes the session's compilation cache when it made it."""
    if _OWN_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
