"""`lrne train` killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ARGS = [
    "--generations", "6", "--population-size", "16", "--num-elites", "2",
    "--hidden", "8,8", "--rank", "2", "--checkpoint-every", "2",
]  # fmt: skip


def lrne(log: Path, *args: str) -> subprocess.Popen:
    """Start ``lrne train``; output goes to ``log`` (a pipe could fill and block it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "lrne.cli", "train", *args]
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def finish(process: subprocess.Popen, log: Path, timeout: float = 300) -> tuple[int, str]:
    code = process.wait(timeout=timeout)
    return code, log.read_text()


def final_state(run: Path):
    manager = ocp.CheckpointManager(run / "run_state")
    step = manager.latest_step()
    return step, manager.restore(step, args=ocp.args.StandardRestore())


def metrics(run: Path):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference")
    log = run.parent / "reference.log"
    code, out = finish(lrne(log, *ARGS, "--output", str(run)), log)
    assert code == 0, out
    return run


def assert_same_run(run: Path, reference: Path) -> None:
    step, state = final_state(run)
    ref_step, ref_state = final_state(reference)
    assert step == ref_step == 6
    assert jax.tree.structure(state) == jax.tree.structure(ref_state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert metrics(run) == metrics(reference)
    summary, ref_summary = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert summary["best_fitness"] == ref_summary["best_fitness"]


@pytest.mark.parametrize("kill_after_checkpoints", [1, 2])
def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(
    tmp_path, reference, kill_after_checkpoints
):
    run = tmp_path / "run"
    process = lrne(tmp_path / "first.log", *ARGS, "--output", str(run))
    # Kill at a random moment after the k-th checkpoint appeared (mid-generation,
    # possibly mid-save of the next one).
    rng = np.random.default_rng(kill_after_checkpoints)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        steps = [p for p in (run / "run_state").glob("*") if p.name.isdigit()]
        if len(steps) >= kill_after_checkpoints:
            break
        time.sleep(0.05)
    time.sleep(float(rng.uniform(0.0, 0.5)))
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    code, out = finish(lrne(tmp_path / "resume.log", "--resume", str(run)), tmp_path / "resume.log")
    assert code == 0, out
    assert_same_run(run, reference)


def test_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    # Damage the final checkpoint: truncate every file in it.
    for path in (run / "run_state" / "6").rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    code, out = finish(lrne(tmp_path / "resume.log", "--resume", str(run)), tmp_path / "resume.log")
    assert code == 0, out
    assert "checkpoint 6 is unreadable" in out and "resuming from generation 4" in out
    # The damaged checkpoint is kept aside, not deleted; the rerun rewrites
    # generation 6 identically.
    assert (run / "run_state" / "unreadable-6").is_dir()
    assert_same_run(run, reference)


def test_resume_needs_a_run_directory(tmp_path):
    log = tmp_path / "resume.log"
    code, out = finish(lrne(log, "--resume", str(tmp_path / "missing")), log)
    assert code == 2
    assert "--resume" in out
