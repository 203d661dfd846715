"""The README is the front door: its example runs and its tables match the results."""

import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_benchmark_tables_match_committed_results():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def _api_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.split("## API", 1)[1], re.S)


def _run(block: str, namespace: dict) -> dict:
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def test_api_ga_and_es_examples_run_as_written():
    blocks = _api_blocks()
    namespace = _run(blocks[0], {})
    assert float(namespace["metrics"]["best_fitness"]) >= 475.0
    assert namespace["history"]["best_fitness"].shape == (20,)
    # The rank-4 GA solved CartPole: its best member on 64 fresh episodes it was
    # never selected on (not only its best training episode).
    best = namespace["state"].best_params
    assert (
        float(namespace["lrne"].evaluate_best(namespace["task"], best, jax.random.key(8), 64))
        >= 475.0
    )
    _run(blocks[1], namespace)  # ES, on the same task
    assert float(namespace["metrics"]["fitness_mean"]) >= 400.0


def test_api_flax_and_online_examples_run_as_written():
    """The next two blocks, after the imports the earlier ones made (one test
    each half, so that the two xdist workers share the README's examples)."""
    blocks = _api_blocks()
    namespace = _run("import jax\nimport lrne\nimport optax\n", {})
    # A stock flax.linen policy: low-rank ES solves CartPole through interception.
    _run(blocks[2], namespace)
    assert len(namespace["result"].history) == 30
    score = namespace["lrne"].evaluate_best(
        namespace["task"], namespace["result"].state.mean, jax.random.key(7)
    )
    assert float(score) >= 475.0
    _run(blocks[3], namespace)  # NRES on Lorenz
    assert float(namespace["task"].loss(namespace["state"].mean)) < 150.0
    assert namespace["history"]["update_norm"].shape == (200,)


def test_evosax_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.split("## Use with evosax", 1)[1], re.S)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    ns = namespace
    start, _, _ = ns["problem"].eval(jax.random.key(0), ns["solution"][None], ns["problem_state"])
    first = float(start[0])
    assert float(namespace["metrics"]["best_fitness"]) < first


def test_quickstart_commands_are_the_ci_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e . && lrne train" in README
    assert "pip install -e '.[test]' && pytest" in README
    assert "pip install -q -e '.[test]'" in ci and "\npytest\n" in ci


def test_scaling_out_example_runs_as_written():
    section = README.split("### Scaling out", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    ns = namespace
    # The sharded step equals the plain one on the same key, and the mean moved.
    plain = jax.jit(ns["lrne"].generation_step(ns["strategy"], ns["task"]))
    state, metrics = plain(ns["strategy"].init(jax.random.key(0), ns["params"]), jax.random.key(2))
    for k in ("fitness_mean", "fitness_max"):
        np.testing.assert_allclose(ns["metrics"][k], metrics[k], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        ns["state"].mean,
        state.mean,
    )
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), state.mean, ns["params"])
    assert max(jax.tree.leaves(moved)) > 0
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4 lrne train" in section
