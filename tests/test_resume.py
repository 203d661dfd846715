"""`lrne train` killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""

import fcntl
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

from lrne.cli import main

GENERATIONS = 8
ARGS = [
    "--generations", str(GENERATIONS), "--population-size", "16", "--num-elites", "2",
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


def steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "run_state").glob("*") if p.name.isdigit())


def final_state(run: Path):
    manager = ocp.CheckpointManager(run / "run_state")
    step = manager.latest_step()
    return step, manager.restore(step, args=ocp.args.StandardRestore())


def metrics(run: Path):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def rows_written(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_text().count("\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run, made once per session even when xdist splits these tests."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the session's directory, shared by the xdist workers
    run, log = root / "resume-reference", root / "resume-reference.log"
    with (root / "resume-reference.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for this one's run
        if not (run / "summary.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            code, out = finish(lrne(log, *ARGS, "--output", str(run)), log)
            assert code == 0, out
    return run


def assert_same_run(run: Path, reference: Path) -> None:
    step, state = final_state(run)
    ref_step, ref_state = final_state(reference)
    assert step == ref_step == GENERATIONS
    assert jax.tree.structure(state) == jax.tree.structure(ref_state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert metrics(run) == metrics(reference)
    summary, ref_summary = (json.loads((r / "summary.json").read_text()) for r in (run, reference))
    assert summary["best_fitness"] == ref_summary["best_fitness"]
    assert (
        summary["best_params_test_return_32_episodes"]
        == (ref_summary["best_params_test_return_32_episodes"])
    )


def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(tmp_path, request):
    run = tmp_path / "run"
    process = lrne(tmp_path / "first.log", *ARGS, "--output", str(run))
    # Kill once a random number of generations is logged, after a random delay
    # (mid-generation, or mid-save of a checkpoint). Past the compiling first
    # generation each takes milliseconds but each checkpoint ~0.1 s, and at
    # least two saves are still to come: the kill lands before the end.
    rng = np.random.default_rng(0)
    kill_after = int(rng.integers(1, GENERATIONS - 3))
    deadline = time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if rows_written(run) >= kill_after:
            break
        time.sleep(0.005)
    time.sleep(float(rng.uniform(0.0, 0.02)))
    process.send_signal(signal.SIGKILL)
    code = process.wait(timeout=60)
    log = (tmp_path / "first.log").read_text()
    assert code == -signal.SIGKILL, f"the run ended by itself (code {code}) before the kill: {log}"
    saved = max(steps(run), default=0)
    assert saved < GENERATIONS and not (run / "summary.json").exists()
    code, out = finish(lrne(tmp_path / "resume.log", "--resume", str(run)), tmp_path / "resume.log")
    assert code == 0, out
    expected = f"resuming from generation {saved}" if saved else "starting from generation 0"
    assert expected in out
    # Asked for only now: another xdist worker may be making it meanwhile.
    assert_same_run(run, request.getfixturevalue("reference"))


def test_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    # Damage the final checkpoint: truncate every file in it.
    for path in (run / "run_state" / str(GENERATIONS)).rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    code, out = finish(lrne(tmp_path / "resume.log", "--resume", str(run)), tmp_path / "resume.log")
    assert code == 0, out
    assert f"checkpoint {GENERATIONS} is unreadable" in out
    assert f"resuming from generation {GENERATIONS - 2}" in out
    # The damaged checkpoint is kept aside, not deleted; the rerun rewrites
    # the last generations identically.
    assert (run / "run_state" / f"unreadable-{GENERATIONS}").is_dir()
    assert_same_run(run, reference)


def test_resume_needs_a_run_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--resume", str(tmp_path / "missing")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and err.count("\n") == 1
