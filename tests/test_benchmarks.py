"""The benchmark scripts run end to end at toy size (--quick) and write their keys."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        (
            "ga_vs_evosax",
            {
                "evosax_s_per_gen",
                "lrne_rank0_s_per_gen",
                "lrne_rank4_s_per_gen",
                "speedup_rank0",
                "speedup_rank4",
                "machine",
            },
        ),
        ("early_exit", {"speedup_compaction", "identical_fraction", "machine"}),
        # Fresh processes that only compile: the compacted path is in test_gymnax_task.
        pytest.param(
            "compile_time",
            {"first_call_s", "warm_s", "lm_first_call_ratio", "machine"},
            marks=pytest.mark.slow,
        ),
        # Member bytes of stock layers: test_contract; fresh processes that compile.
        pytest.param(
            "stock_layers",
            {"lowrank", "dense_noise", "machine"},
            marks=pytest.mark.slow,
        ),
        ("es_memory", {"lrne_es_bytes", "lrne_nres_bytes", "dense_bytes", "machine"}),
        # Chunked scoring and noise drawn per chunk, against the stored-noise run: test_chunked.
        pytest.param(
            "hyperscale",
            {"peak_rss_gib", "generation_s", "dense_population_bytes", "machine"},
            marks=pytest.mark.slow,
        ),
        # Its env-only and forward-only loops: test_benchmark_parts; the generation: test_ga.
        pytest.param(
            "floor", {"ga_over_floor", "es_over_floor", "machine"}, marks=pytest.mark.slow
        ),
        pytest.param(
            "es_throughput",
            {
                "lowrank_over_plain",
                "speedup_vs_evosax_open_es",
                "speedup_vs_evosax_nres",
                "machine",
            },
            # ES/NRES evaluation: test_es, test_online; the evosax baselines: ga_vs_evosax.
            marks=pytest.mark.slow,
        ),
        # lrne.tasks.Function and member_params: test_contract, test_docs_pages.
        pytest.param("blackbox", {"arms", "machine"}, marks=pytest.mark.slow),
        ("nres_lorenz", {"final_loss", "steps_to_threshold", "machine"}),
        ("estimator_variance", {"variance", "nres_over_pes", "machine"}),
        # The chains' one-step statistics against the closed forms of GD: test_metropolis.
        pytest.param(
            "correspondence",
            {"one_step", "trajectories", "delta_decreases_with_sigma", "machine"},
            marks=pytest.mark.slow,
        ),
        # Subspace masks, the classification task and its ensemble: test_subspace.
        pytest.param(
            "subspace_finetune",
            {"pretrained_test_accuracy", "one_generation", "generations", "machine"},
            marks=pytest.mark.slow,
        ),
        # The sharded step on 1/2/4 devices: test_distributed.
        pytest.param("scaling", {"strategies", "devices", "machine"}, marks=pytest.mark.slow),
        # The population's LM losses against each member's explicit loss: test_language.
        pytest.param(
            "lm_throughput",
            {"lm_lowrank_over_plain", "tokens_per_s", "machine"},
            marks=pytest.mark.slow,
        ),
        # lrne.run, the LM task and pixel Pendulum: test_run, test_language, test_vision.
        pytest.param(
            "paper_a", {"arms", "sweep", "best", "matched", "machine"}, marks=pytest.mark.slow
        ),
    ],
)
def test_quick_benchmark_writes_its_keys(script, keys):
    # paper_a: one task per run; the language model (the RL tasks share its code).
    extra = ["--task", "lm"] if script == "paper_a" else []
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--quick", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name = "paper_a/lm" if script == "paper_a" else script
    result = json.loads((BENCH / "results" / f"{name}_quick.json").read_text())
    assert keys <= set(result)
    assert all(v > 0 for k, v in result.items() if k.startswith("speedup"))
