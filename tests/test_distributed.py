"""Sharded populations: 1, 2 and 4 devices give bit-identical runs for the same key."""

import os
import socket
import subprocess
import sys

import chex
import jax
import numpy as np
import optax
import pytest
from test_lineage import TWO_DEVICES as LINEAGE_ON_2_DEVICES
from test_normalization import TWO_DEVICES as NORMALIZATION_ON_2_DEVICES

import lrne
from lrne.distributed import population_mesh, sharded_generation_step
from lrne.strategies import REGISTRY

ONLINE = ("nres", "pes", "tes", "full_es")
POPULATION = 8  # as in SETUP

# The run both scripts share: every registry strategy on a tiny CartPole. These
# random policies fall within 32 steps at different times, so fitness varies,
# and the discrete actions make the fitness exact under the float differences
# between batch sizes (members per device). T = 32: online ES take windows of 8.
SETUP = """
import sys
import jax, numpy as np
import lrne
from lrne.distributed import population_mesh, sharded_generation_step

POPULATION = 8
ONLINE = ("nres", "pes", "tes", "full_es")
task = lrne.tasks.Gymnax(
    "CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=32, early_exit=False
)
params = task.init_params(jax.random.key(3))
keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(4), jax.numpy.arange(6))

def build(name):
    extra = {"horizon": task.horizon} if name in ONLINE else {}
    strategy = lrne.strategies.make(name, POPULATION, **extra)
    return strategy, strategy.init(jax.random.key(0), params, task)

def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)
            if not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)]
"""

# One process with 4 CPU devices: every registry strategy on meshes of 1 and 2
# devices, and TES (one particle per device) on 4 as well (the low-rank ES on 4
# devices is MULTI_PROCESS's run). Also recorded: the rows of Local state (online
# ES's inner states) each device holds, and the elements of the collectives in the
# compiled 2-device step.
SCRIPT = (
    SETUP
    + """
import re
from lrne.genome import is_local

def collective_elements(compiled):
    hlo = compiled.as_text()
    total = 0
    for line in hlo.splitlines():
        kinds = "all-gather|all-reduce|all-to-all|collective-permute"
        match = re.search(rf"=\\s+(.+?)\\s+({kinds})", line)
        for dims in re.findall(r"\\[([\\d,]*)\\]", match.group(1) if match else ""):
            total += int(np.prod([int(d) for d in dims.split(",") if d]))
    return total

assert len(jax.devices()) == 4
out = {}
for name in sys.argv[2:]:
    strategy, start = build(name)
    for i, x in enumerate(leaves(start)):
        out[f"{name}/start/{i}"] = x
    for n in (1, 2, 4) if name == "tes" else (1, 2):
        mesh = population_mesh(jax.devices()[:n])
        step = jax.jit(sharded_generation_step(strategy, task, POPULATION, mesh))
        state = lrne.distributed.replicate(start, mesh)
        if n == 2 and name in ONLINE:  # the run below reuses this executable
            compiled = step.lower(state, keys[0]).compile()
            out[f"{name}/collective_elements"] = collective_elements(compiled)
            # A compiled step takes only the placements it was built for: the
            # Local inner states come back placed as they went in.
            step = compiled
        history = []
        for k in keys:
            state, metrics = step(state, k)
            history.append([metrics["fitness_mean"], metrics["fitness_max"]])
        if name in ONLINE and n != 2:  # no recompiling for the placements it returned
            assert step._cache_size() == 1, name
        out[f"{name}/{n}/fitness"] = np.asarray(history)
        for i, x in enumerate(leaves(state)):
            out[f"{name}/{n}/state/{i}"] = x
        boxes = [b for b in jax.tree.leaves(state, is_leaf=is_local) if is_local(b)]
        rows = lambda x: [s.data.shape[0] for s in x.addressable_shards]
        out[f"{name}/rows{n}"] = np.asarray([rows(x) for b in boxes for x in jax.tree.leaves(b)])
np.savez(sys.argv[1], **out)
"""
)


# Two processes of 2 CPU devices each, joined by jax.distributed (gloo): the
# README's multi-host recipe on one machine. Same run as SCRIPT's "es_lowrank".
MULTI_PROCESS = (
    """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
    coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2])
)
"""
    + SETUP
    + """
assert len(jax.devices()) == 4 and len(jax.local_devices()) == 2
strategy, state = build("es_lowrank")
state = lrne.distributed.replicate(state)
step = jax.jit(sharded_generation_step(strategy, task, POPULATION))
for k in keys:
    state, metrics = step(state, k)
local = jax.tree.map(lambda x: x.addressable_data(0), state)
np.savez(sys.argv[3], *leaves(local))
"""
)


def _launch(code: str, args: list[str], devices: int) -> subprocess.Popen:
    flags = os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "XLA_FLAGS": flags},
    )


def _wait(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


# One strategy per code path of the sharded step: replicated state (ES with
# low-rank noise, also over 4 devices and two processes), online ES with Local
# inner states (TES, which also scores unperturbed copies; NRES, PES and FullES
# share its online step). The GA's sharded step (replicated state too) is
# covered by test_resume's run on 2 devices resumed on 1, bit for bit; every
# other strategy runs here under -m slow.
REPRESENTATIVE = ("es_lowrank", "tes")


def _check_runs(runs: dict, names) -> None:
    """1 and 2 devices (and 4 for TES, one particle per device) agree bit for bit.

    The low-rank ES on 4 devices is the two-process run (2 devices each).

    Members' fitness differed and the state moved, so the comparison is not
    vacuous; online ES keep their inner states split over devices.
    """
    for name in names:
        ones = sorted(k for k in runs if k.startswith(f"{name}/1/"))
        assert len(ones) > 2, name
        for devices in (2, 4) if name == "tes" else (2,):
            for k in ones:
                other = k.replace("/1/", f"/{devices}/")
                np.testing.assert_array_equal(runs[other], runs[k], err_msg=other)
        # Not vacuous: members' fitness differed (a member scored on the wrong
        # device or gathered out of order would change the update), and the
        # run moved the state.
        mean, best = runs[f"{name}/1/fitness"].T
        assert np.any(best != mean), f"{name}: every member scored alike in every generation"
        starts = sorted(k for k in runs if k.startswith(f"{name}/start/"))
        assert starts, name
        assert any(
            runs[k].dtype.kind == "f"
            and not np.array_equal(runs[k.replace("/start/", "/1/state/")], runs[k])
            for k in starts
        ), f"{name}: the run left every state leaf unchanged"
        if name not in ONLINE:
            continue
        # Online ES keep their inner states split: each of n devices holds 1/n of
        # every leaf's rows, and only the members' window sums (3 per particle for
        # TES, which also sums its unperturbed copies) cross devices. Before, every
        # window all-gathered the inner states (and the per-step rewards).
        whole = runs[f"{name}/rows1"]
        assert whole.size and np.all(whole == (POPULATION if name != "tes" else POPULATION // 2))
        for devices in (2, 4) if name == "tes" else (2,):
            np.testing.assert_array_equal(
                runs[f"{name}/rows{devices}"] * devices, whole.repeat(devices, 1)
            )
        assert runs[f"{name}/collective_elements"] <= 3 * POPULATION // 2, name
    if "ga" in names:
        assert runs["ga/rows2"].size == 0  # nothing boxed: a GA's state is replicated


def test_sharded_runs_are_bit_identical_across_devices_and_processes(tmp_path):
    """One test, so that the subprocesses run once (xdist would split a fixture's users).

    :data:`REPRESENTATIVE` strategies on 1, 2 (and 4) devices: see
    :func:`_check_runs`. Two processes of 2 devices each, joined by
    jax.distributed, give the 1-device low-rank ES run bit for bit. The
    4-device process then runs the other modules' checks on 2 devices (a
    sharded run's lineage record replays on one; normalized statistics
    equal one device's), saving a process start each.
    """
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        address = f"localhost:{probe.getsockname()[1]}"
    script = SCRIPT + LINEAGE_ON_2_DEVICES + NORMALIZATION_ON_2_DEVICES
    procs = [_launch(script, [str(tmp_path / "runs.npz"), *REPRESENTATIVE], 4)] + [
        _launch(MULTI_PROCESS, [address, str(i), str(tmp_path / f"{i}.npz")], 2) for i in range(2)
    ]
    out, *_ = [_wait(proc) for proc in procs]  # every process ends
    assert "lineage es_lowrank ok\n" in out and "normalized nres ok\n" in out, out[-3000:]
    runs = dict(np.load(tmp_path / "runs.npz"))
    _check_runs(runs, REPRESENTATIVE)

    single = sorted(
        (k for k in runs if k.startswith("es_lowrank/1/state/")),
        key=lambda k: int(k.split("/")[-1]),
    )
    for i in range(2):
        got = np.load(tmp_path / f"{i}.npz")
        assert len(got.files) == len(single)
        for j, k in enumerate(single):
            np.testing.assert_array_equal(got[f"arr_{j}"], runs[k], err_msg=k)


@pytest.mark.slow  # the same sharded step as the representative strategies above
def test_every_other_registry_strategy_is_bit_identical_across_devices(tmp_path):
    others = sorted(set(REGISTRY) - set(REPRESENTATIVE))
    _wait(_launch(SCRIPT, [str(tmp_path / "runs.npz"), *others], 4))
    _check_runs(dict(np.load(tmp_path / "runs.npz")), others)


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
    task = lrne.tasks.Gymnax(
        "CartPole-v1", lrne.nn.MLP((8,), 2, rank=2), max_steps=32, early_exit=False
    )
    strategy = lrne.es(8, 0.05, optax.adam(0.03), noise_rank=1)
    start = strategy.init(jax.random.key(0), task.init_params(jax.random.key(3)))
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
    chex.assert_trees_all_close(sharded.mean, plain.mean, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(sharded.mean)[1], jax.tree.leaves(start.mean)[1])
