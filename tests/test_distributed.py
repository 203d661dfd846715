"""Sharded populations: 1, 2 and 4 devices give bit-identical runs for the same key."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

import lrne
from lrne.distributed import population_mesh, sharded_generation_step

# One process with 4 CPU devices; meshes over the first 1, 2 and 4 of them.
SCRIPT = """
import sys
import jax, numpy as np, optax
import lrne
from lrne.distributed import population_mesh, sharded_generation_step

assert len(jax.devices()) == 4
# Fixed-length rollouts compile faster than early exit; random CartPole
# policies fall within 50 steps at different times, so fitness varies.
offline_task = lrne.tasks.Gymnax(
    "CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=50, early_exit=False
)
online_task = lrne.tasks.Gymnax(
    "CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=20, early_exit=False
)
params = offline_task.init_params(jax.random.key(1))
offline = (
    ("ga", lrne.ga(8, 2, 0.3), 8),
    ("es", lrne.es(8, 0.05, optax.adam(0.03), noise_rank=1), 8),
    ("metropolis", lrne.metropolis(4, 0.05, 10.0), 4),
)
online = (
    ("nres", lrne.nres(4, 0.05, optax.sgd(0.01), 5, 20, noise_rank=1), 4),
    ("tes", lrne.tes(4, 0.05, optax.sgd(0.01), 5, 20), 4),
)

def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)
            if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]

out = {}
keys = jax.random.split(jax.random.key(2), 5)
for name, strategy, size in offline + online:
    task = online_task if (name, strategy, size) in online else offline_task
    start = (strategy.init(jax.random.key(0), params, task) if task is online_task
             else strategy.init(jax.random.key(0), params))
    for i, x in enumerate(leaves(start)):
        out[f"{name}/start/{i}"] = x
    for n in (1, 2, 4):
        mesh = population_mesh(jax.devices()[:n])
        step = jax.jit(sharded_generation_step(strategy, task, size, mesh))
        state = lrne.distributed.replicate(start, mesh)
        for k in keys:
            state, metrics = step(state, k)
        for i, x in enumerate(leaves(state) + [np.asarray(metrics["fitness_mean"])]):
            out[f"{name}/{n}/{i}"] = x
np.savez(sys.argv[1], **out)
"""

NAMES = ("ga", "es", "metropolis", "nres", "tes")


# Two processes of 2 CPU devices each, joined by jax.distributed (gloo): the
# README's multi-host recipe on one machine. Same run as the fixture's "es".
MULTI_PROCESS = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2])
)
import numpy as np, optax
import lrne

assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2
task = lrne.tasks.Gymnax(
    "CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=50, early_exit=False
)
strategy = lrne.es(8, 0.05, optax.adam(0.03), noise_rank=1)
state = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
state = lrne.distributed.replicate(state)
step = jax.jit(lrne.sharded_generation_step(strategy, task, 8))
for k in jax.random.split(jax.random.key(2), 5):
    state, metrics = step(state, k)
leaves = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(state)
          if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
np.savez(sys.argv[3], *leaves)
"""


def _launch(code: str, args: list[str], devices: int) -> subprocess.Popen:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "XLA_FLAGS": flags},
    )


def _wait(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


def test_sharded_runs_are_bit_identical_across_devices_and_processes(tmp_path):
    """One test, so that the subprocesses run once (xdist would split a fixture's users).

    For every strategy: 1, 2 and 4 devices give the same bits, and the run
    moved the parameters (so the comparison is not vacuous). Two processes of 2 devices
    each, joined by jax.distributed, give the 1-device ES run bit for bit.
    """
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        address = f"localhost:{probe.getsockname()[1]}"
    procs = [_launch(SCRIPT, [str(tmp_path / "runs.npz")], 4)] + [
        _launch(MULTI_PROCESS, [address, str(i), str(tmp_path / f"{i}.npz")], 2) for i in range(2)
    ]
    for proc in procs:
        _wait(proc)
    runs = dict(np.load(tmp_path / "runs.npz"))

    for name in NAMES:
        ones = sorted(k for k in runs if k.startswith(f"{name}/1/"))
        assert ones, name
        for k in ones:
            for devices in (2, 4):
                other = k.replace("/1/", f"/{devices}/")
                np.testing.assert_array_equal(runs[other], runs[k], err_msg=other)
        starts = sorted(k for k in runs if k.startswith(f"{name}/start/"))
        assert any(
            not np.array_equal(runs[k.replace("/start/", "/4/")], runs[k]) for k in starts
        ), f"{name}: the run left every state leaf unchanged"

    for i in range(2):
        got = np.load(tmp_path / f"{i}.npz")
        assert len(got.files) == len([k for k in runs if k.startswith("es/1/")]) - 1
        for j in range(len(got.files)):
            np.testing.assert_array_equal(got[f"arr_{j}"], runs[f"es/1/{j}"])


def test_population_must_be_a_multiple_of_the_devices():
    class ThreeDevices:
        axis_names = ("population",)
        devices = np.empty(3)

    with pytest.raises(ValueError, match=r"population_size \(8\) must be a multiple .* \(3\)"):
        sharded_generation_step(lrne.es(8, 0.1, optax.sgd(0.1)), None, 8, ThreeDevices())


def test_mesh_must_have_the_population_axis():
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
    with pytest.raises(ValueError, match="'population'"):
        sharded_generation_step(lrne.ga(8, 2, 0.1), None, 8, mesh)


def test_sharded_step_under_scan_matches_the_unsharded_step():
    """In process, on one device: the same algorithm as generation_step, to rounding."""
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=50)
    strategy = lrne.es(8, 0.05, optax.adam(0.03), noise_rank=1)
    start = strategy.init(jax.random.key(0), task.init_params(jax.random.key(1)))
    keys = jax.random.split(jax.random.key(2), 3)
    results = []
    for step in (
        sharded_generation_step(strategy, task, 8, population_mesh()),
        lrne.generation_step(strategy, task),
    ):
        state, history = jax.jit(lambda s, k, step=step: jax.lax.scan(step, s, k))(start, keys)
        results.append((state, history))
    (sharded, history), (plain, plain_history) = results
    assert history["fitness_max"].shape == (3,) and np.all(np.asarray(history["env_steps"]) > 0)
    np.testing.assert_allclose(history["fitness_mean"], plain_history["fitness_mean"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(sharded.mean), jax.tree.leaves(plain.mean), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(sharded.mean)[1], jax.tree.leaves(start.mean)[1])
