"""`lrne train --resume`: a killed run resumed, or a finished one extended, ends bit-identical
to a straight run; what would change a run's meaning is refused in one line."""

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

import lrne.config as cfg
from lrne.cli import build_parser, main, resolve_train_config

GENERATIONS = 8
# configs/cartpole_ga.toml at quick size: the programs of tests/test_cli.py's run of it.
ARGS = [
    "--config", "configs/cartpole_ga.toml", "--quick",
    "--generations", str(GENERATIONS), "--checkpoint-every", "2",
]  # fmt: skip


def start(log: Path, *args: str, devices: int = 1) -> subprocess.Popen:
    """Start ``lrne train`` in a process, output to ``log`` (a pipe could fill and block it)."""
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "XLA_FLAGS": flags}
    command = [sys.executable, "-m", "lrne.cli", "train", *args]
    with log.open("w") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def train(capsys, *args: str) -> str:
    """``lrne train`` in-process; returns its stdout (the compiled step is shared)."""
    assert main(["train", *args]) == 0
    return capsys.readouterr().out


def steps(run: Path) -> list[int]:
    return sorted(int(p.name) for p in (run / "run_state").glob("*") if p.name.isdigit())


def final_state(run: Path):
    manager = ocp.CheckpointManager(run / "run_state")
    step = manager.latest_step()
    return step, manager.restore(step, args=ocp.args.StandardRestore())


def metrics(run: Path):
    # Seconds differ, and so do the slot-steps computed on 2 devices (each compacts its own).
    drop = ("seconds", "env_steps_computed")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def rows_written(run: Path) -> int:
    try:
        return (run / "metrics.jsonl").read_text().count("\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="session")
def reference(tmp_path_factory) -> Path:
    """The straight run, made once per session even when xdist splits these tests."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the session's directory, shared by the xdist workers
    run = root / "resume-reference"
    with (root / "resume-reference.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for this one's run
        if not (run / "summary.json").exists():
            shutil.rmtree(run, ignore_errors=True)
            assert main(["train", *ARGS, "--output", str(run)]) == 0
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
    assert summary["fresh_fitness"] == ref_summary["fresh_fitness"]


def test_sigkill_on_2_devices_then_resume_on_1_is_bit_identical(tmp_path, capsys, request):
    run = tmp_path / "run"
    # lrne train splits the population over the local devices by itself; a run
    # on 2 devices, killed, and resumed on 1 gives the bits of a straight 1-device run.
    process = start(tmp_path / "first.log", *ARGS, "--output", str(run), devices=2)
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
    assert "8 members over 2 device(s)" in log
    saved = max(steps(run), default=0)
    assert saved < GENERATIONS and not (run / "summary.json").exists()
    out = train(capsys, "--resume", str(run))
    expected = f"resuming from generation {saved}" if saved else "starting from generation 0"
    assert expected in out
    # Asked for only now: another xdist worker may be making it meanwhile.
    assert_same_run(run, request.getfixturevalue("reference"))


def test_corrupted_latest_checkpoint_falls_back_to_the_previous_one(
    tmp_path, capsys, caplog, reference
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    # Damage the final checkpoint: truncate every file in it.
    for path in (run / "run_state" / str(GENERATIONS)).rglob("*"):
        if path.is_file():
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    out = train(capsys, "--resume", str(run))
    assert f"checkpoint {GENERATIONS} is unreadable" in caplog.text
    assert f"resuming from generation {GENERATIONS - 2}" in out
    # The damaged checkpoint is kept aside, not deleted; the rerun rewrites
    # the last generations identically.
    assert (run / "run_state" / f"unreadable-{GENERATIONS}").is_dir()
    assert_same_run(run, reference)


def test_a_finished_run_extended_is_the_straight_run(tmp_path, capsys, reference):
    run = tmp_path / "run"
    train(capsys, *ARGS, "--generations", "3", "--output", str(run))
    assert (
        steps(run)[-1] == 3 and json.loads((run / "summary.json").read_text())["generations"] == 3
    )
    out = train(capsys, "--resume", str(run), "--generations", str(GENERATIONS))
    assert "resuming from generation 3" in out
    assert_same_run(run, reference)
    # The run's config now asks for the new total, and says nothing else new.
    written = cfg.Config.from_dict(cfg.read_toml(run / "config.toml"), strict=True)
    ref = cfg.Config.from_dict(cfg.read_toml(reference / "config.toml"), strict=True)
    assert written.run.generations == GENERATIONS
    assert (written.strategy, written.task, written.model) == (ref.strategy, ref.task, ref.model)


def test_a_run_stopped_by_its_time_limit_resumes_to_the_straight_run(tmp_path, capsys, reference):
    run = tmp_path / "run"
    # A limit shorter than any generation: the run stops after the first one.
    train(capsys, *ARGS, "--seconds", "1e-9", "--output", str(run))
    assert json.loads((run / "summary.json").read_text())["generations"] == 1
    out = train(capsys, "--resume", str(run), "--seconds", "0")  # 0: no limit
    assert "resuming from generation 1" in out
    assert_same_run(run, reference)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run directory's config (no training needed to test what --resume accepts)."""
    args = build_parser().parse_args(["train", *ARGS, "--output", str(tmp_path / "run")])
    config, _ = resolve_train_config(args)
    Path(config.run.output).mkdir()
    (Path(config.run.output) / "config.toml").write_text(config.to_toml())
    return Path(config.run.output)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--sigma", "0.3"], "argument --sigma (strategy.sigma)"),
        (["--strategy", "es"], "argument --strategy (strategy.name)"),
        (["--set", "strategy.name=es"], "--set strategy.name"),
        (["--seed", "1"], "argument --seed (run.seed)"),
        (["--population-size", "16"], "argument --population-size"),
        (["--env", "Acrobot-v1"], "argument --env (task.env)"),
        (["--set", "task.max_steps=50"], "--set task.max_steps"),
        (["--set", "model.rank=1"], "--set model.rank"),
        (["--hidden", "16,16"], "argument --hidden"),
        (["--output", "elsewhere"], "argument --output"),
        (["--config", "configs/cartpole_ga.toml"], "argument --config"),
        (["--quick"], "argument --quick"),
        (["--generations", "0"], "argument --generations (run.generations): must be"),
        (["--set", "strategy.sigma"], "--set: expected"),
    ],
)
def test_resume_refuses_what_changes_the_run(run_dir, capsys, argv, named):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--resume", str(run_dir), *argv])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err


def test_resume_accepts_new_lengths_and_unchanged_values(run_dir):
    argv = ["train", "--resume", str(run_dir), "--generations", "20", "--seconds", "5"]
    argv += ["--sigma", "0.5", "--set", "run.checkpoint_every=4", "--output", str(run_dir)]
    config, resumed = resolve_train_config(build_parser().parse_args(argv))
    stored = cfg.Config.from_dict(cfg.read_toml(run_dir / "config.toml"), strict=True)
    assert resumed and (config.strategy, config.task, config.model) == (
        stored.strategy,
        stored.task,
        stored.model,
    )
    assert (config.run.generations, config.run.seconds, config.run.checkpoint_every) == (20, 5, 4)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            lambda text: text.replace("population_size = 8\n", ""),
            "strategy.population_size: missing",
        ),
        (lambda text: text[: len(text) // 2] + "[[[", "not valid TOML"),
        (lambda text: text.replace('kind = "mlp"', 'kind = "cnn"'), "model.kind"),
        (lambda text: "", "missing section"),
    ],
)
def test_a_damaged_run_config_is_one_line_exit_2(run_dir, capsys, damage, expected):
    path = run_dir / "config.toml"
    path.write_text(damage(path.read_text()))
    for command in (["train", "--resume"], ["eval"]):
        with pytest.raises(SystemExit) as stop:
            main([*command, str(run_dir)])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "config.toml" in err, err


def test_resume_needs_a_run_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--resume", str(tmp_path / "missing")])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--resume" in err and err.count("\n") == 1


def test_a_run_cannot_be_shortened(tmp_path, capsys, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--resume", str(run), "--generations", "4"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"has done {GENERATIONS} generations" in err
