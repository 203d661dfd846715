"""lrne train: bad input fails in one line with exit code 2; a tiny run writes its files."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from lrne.cli import build, build_parser, main


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--env", "NoSuchEnv-v9"], "--env"),
        (["--population-size", "8", "--num-elites", "8"], "--num-elites"),
        (["--rank", "-1"], "--rank"),
        (["--sigma", "0"], "--sigma"),
        (["--sigma", "-0.5"], "--sigma"),
        (["--sigma", "lots"], "--sigma"),
        (["--population-size", "many"], "--population-size"),
        (["--generations", "0"], "--generations"),
        (["--hidden", "64,x"], "--hidden"),
        (["--output", "/proc/forbidden/run"], "--output"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, names):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err and "Traceback" not in err


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for option in [
        "--env",
        "--population-size",
        "--num-elites",
        "--sigma",
        "--rank",
        "--hidden",
        "--generations",
        "--seed",
        "--output",
    ]:
        assert option in out


@pytest.mark.parametrize(("env", "input_ndim"), [("CartPole-v1", 1), ("Breakout-MinAtar", 3)])
def test_the_policy_takes_one_observation_of_the_env(env, input_ndim):
    args = build_parser().parse_args(["train", "--env", env])
    _, task = build(args)
    assert task.policy.input_ndim == input_ndim
    params = task.init_params(jax.random.key(0))
    # One observation gives one action's outputs; a batch of them gives a batch.
    obs, _ = task.env.reset(jax.random.key(1), task.env_params)
    assert task.policy.apply(params, obs).shape == (task.num_outputs,)
    assert task.policy.apply(params, jnp.stack([obs] * 3)).shape == (3, task.num_outputs)


def test_tiny_run_writes_metrics_checkpoint_and_plot(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "lrne.cli",
        "train",
        "--generations",
        "3",
        "--population-size",
        "16",
        "--num-elites",
        "2",
        "--hidden",
        "16",
        "--output",
        str(out),
    ]
    # The same run on 2 CPU devices, concurrently: lrne train splits the
    # population over them by itself and must give the same numbers.
    out2 = tmp_path / "run2"
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    two = subprocess.Popen(
        [*command[:-1], str(out2)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "XLA_FLAGS": flags},
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log, _ = two.communicate(timeout=300)
    assert two.returncode == 0, log[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows2 = [json.loads(line) for line in (out2 / "metrics.jsonl").read_text().splitlines()]
    # Timings differ, and so do the slot-steps computed: each device compacts
    # its own episodes. Everything the run computes is the same.
    drop = lambda row: {k: v for k, v in row.items() if k not in ("seconds", "env_steps_computed")}
    assert [drop(r) for r in rows2] == [drop(r) for r in rows]
    assert json.loads((out2 / "summary.json").read_text())["devices"] == 2
    assert [row["generation"] for row in rows] == [0, 1, 2]
    assert {"fitness_mean", "fitness_max", "best_fitness", "env_steps"} <= set(rows[0])
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    restored = ocp.StandardCheckpointer().restore(out / "checkpoint")
    assert set(restored["params"]) == {"Dense_0", "Dense_1"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_fitness"] == rows[-1]["best_fitness"]
