"""The benchmarks run end to end at toy size (``python -m benchmarks NAME --quick``) and
write their keys; the harness lists every benchmark and checks a committed result."""

import json
import subprocess
import sys
from pathlib import Path

import harness  # benchmarks/harness.py (pytest's pythonpath)
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def benchmarks(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGS`` from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_help_lists_every_benchmark_with_a_line_each():
    done = benchmarks("--help", timeout=60)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.split("benchmarks:\n", 1)[1].splitlines()}
    helpers = {"__init__", "__main__", "harness", "common", "tables", "scaling_worker"}
    assert listed == {path.stem for path in BENCH.glob("*.py")} - helpers
    for line in done.stdout.split("benchmarks:\n", 1)[1].splitlines():
        assert len(line.split()) > 3, line  # the name and its docstring's first line


def test_check_holds_a_committed_result_to_its_targets(capsys):
    # In-process: --check reads the committed JSON and runs nothing (the command
    # itself runs as a process in test_quick_benchmark_writes_its_keys).
    code = harness.main(["es_memory", "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ok   lrne_es_bytes" in out and "(target <= 1e+08)" in out


RUNS = {
    "paper_a": (["--task", "lm"], "paper_a/lm"),
    "suite": (["--env", "CartPole-v1"], "suite/CartPole-v1"),
    "lm_train": (["--method", "es"], "lm_train_es"),
    "pixel_pendulum": (["--method", "es"], "pixel_pendulum_es"),
}


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        # lrne's GA and evosax's SimpleGA side by side: test_ga, test_evosax_plugin
        # (FactorizedGA follows the native trajectory); the harness: the quick run below.
        pytest.param(
            "ga_vs_evosax",
            {
                "evosax_s_per_gen",
                "lrne_rank0_s_per_gen",
                "lrne_rank4_s_per_gen",
                "speedup_rank0",
                "speedup_rank4",
            },
            marks=pytest.mark.slow,
        ),
        ("early_exit", {"speedup_compaction", "identical_fraction"}),
        # Fresh processes that only compile: the compacted path is in test_gymnax_task.
        pytest.param(
            "compile_time",
            {"first_call_s", "warm_s", "lm_first_call_ratio"},
            marks=pytest.mark.slow,
        ),
        # Member bytes of stock layers: test_contract; fresh processes that compile.
        pytest.param(
            "stock_layers",
            {"lowrank", "dense_noise"},
            marks=pytest.mark.slow,
        ),
        # Member bytes of ES and NRES: test_contract (stock layers' low-rank bytes).
        pytest.param(
            "es_memory",
            {"lrne_es_bytes", "lrne_nres_bytes", "dense_bytes"},
            marks=pytest.mark.slow,
        ),
        # Chunked scoring and noise drawn per chunk, against the stored-noise run: test_chunked.
        pytest.param(
            "hyperscale",
            {"peak_rss_gib", "generation_s", "dense_population_bytes"},
            marks=pytest.mark.slow,
        ),
        # Its env-only and forward-only loops: test_benchmark_parts; the generation: test_ga.
        pytest.param("floor", {"ga_over_floor", "es_over_floor"}, marks=pytest.mark.slow),
        pytest.param(
            "es_throughput",
            {
                "lowrank_over_plain",
                "speedup_vs_evosax_open_es",
                "speedup_vs_evosax_nres",
            },
            # ES/NRES evaluation: test_es, test_online; the evosax baselines: ga_vs_evosax.
            marks=pytest.mark.slow,
        ),
        # lrne.tasks.Function and member_params: test_contract, test_docs_pages.
        pytest.param("blackbox", {"arms"}, marks=pytest.mark.slow),
        # NRES/PES learning Lorenz: test_online (test_online_es_learns_lorenz_parameters).
        pytest.param("nres_lorenz", {"final_loss", "steps_to_threshold"}, marks=pytest.mark.slow),
        # NRES's and PES's estimates against full ES and the analytic gradient: test_online.
        pytest.param("estimator_variance", {"variance", "nres_over_pes"}, marks=pytest.mark.slow),
        # The chains' one-step statistics against the closed forms of GD: test_metropolis.
        pytest.param(
            "correspondence",
            {"one_step", "trajectories", "delta_decreases_with_sigma"},
            marks=pytest.mark.slow,
        ),
        # Subspace masks, the classification task and its ensemble: test_subspace.
        pytest.param(
            "subspace_finetune",
            {"pretrained_test_accuracy", "one_generation", "generations"},
            marks=pytest.mark.slow,
        ),
        # The sharded step on 1/2/4 devices: test_distributed.
        pytest.param("scaling", {"strategies", "devices"}, marks=pytest.mark.slow),
        # The population's LM losses against each member's explicit loss: test_language.
        pytest.param(
            "lm_throughput",
            {"lm_lowrank_over_plain", "tokens_per_s"},
            marks=pytest.mark.slow,
        ),
        # lrne.run, the LM task and pixel Pendulum: test_run, test_language, test_vision.
        pytest.param("paper_a", {"arms", "sweep", "best", "matched"}, marks=pytest.mark.slow),
        # Its rejax adapter and shared evaluator: test_benchmark_parts.
        pytest.param("suite", {"methods", "threshold"}, marks=pytest.mark.slow),
        # Its reference entropies: test_benchmark_parts; the LM task: test_language.
        pytest.param("lm_train", {"curve", "final_eval_loss"}, marks=pytest.mark.slow),
        # Pixel Pendulum: test_vision.
        pytest.param("pixel_pendulum", {"curve", "final_return"}, marks=pytest.mark.slow),
        # Records and their replay for every kind of strategy: test_lineage.
        pytest.param("lineage", {"runs"}, marks=pytest.mark.slow),
        # The estimator's cosine against its closed form and the callback: test_diagnostics.
        pytest.param("diagnostics", {"cosine", "overhead"}, marks=pytest.mark.slow),
    ],
)
def test_quick_benchmark_writes_its_keys(script, keys):
    # The benchmarks with one file per task, env or method: one of them (paper_a's
    # language model: the RL tasks share its code).
    extra, name = RUNS.get(script, ([], script))
    done = benchmarks(script, "--quick", *extra)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((BENCH / "results" / f"{name}_quick.json").read_text())
    assert keys | {"machine", "quick", "setup", "wall_seconds"} <= set(result)
    assert result["quick"] is True
    assert all(v > 0 for k, v in result.items() if k.startswith("speedup"))
    assert "| ---" in done.stdout  # its table, rendered from what it wrote
