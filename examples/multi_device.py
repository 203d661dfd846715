"""Split a population over several devices of one machine, and check it changes nothing.

On a CPU-only machine, XLA can present the cores as several devices; the flag
must be set before jax is imported. ``lrne.run(..., mesh=mesh)`` then runs
``lrne.sharded_generation_step``: every device regenerates the whole
population from the generation's key, scores its slice of the members, and
only the fitness vector (and metric sums) crosses devices. Each member's
randomness is keyed by its index, so the result does not depend on the number
of devices: this script checks that 2 devices give exactly the ordinary
1-device run.
With GPUs or TPUs, drop the flag: ``population_mesh()`` takes every device.

    python examples/multi_device.py           # about 25 s on 2 cores
    python examples/multi_device.py --quick   # toy sizes, seconds
"""

from __future__ import annotations

import os

# Before importing jax: 2 host (CPU) devices, keeping any flags already set.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    os.environ["XLA_FLAGS"] = flags.strip()

import argparse

import jax
import numpy as np
import optax

import lrne


def main(quick: bool = False, seed: int = 0) -> dict:
    """Run the same ES on 1 and on 2 devices; returns whether the results are identical."""
    if jax.device_count() < 2:
        raise SystemExit(
            f"found {jax.device_count()} device; run this file as a script, so that XLA_FLAGS "
            "is set before jax is imported (with one GPU, add JAX_PLATFORMS=cpu)"
        )
    population, generations, max_steps = (8, 2, 50) if quick else (256, 30, 500)
    policy = lrne.nn.MLP(features=(32, 32), num_outputs=2, rank=4)
    task = lrne.tasks.Gymnax("CartPole-v1", policy, max_steps=max_steps)
    strategy = lrne.es(population, sigma=0.05, optimizer=optax.adam(0.03), noise_rank=1)
    key = jax.random.key(seed)

    # The ordinary run, on the default device.
    single = lrne.run(strategy, task, key, generations)
    # The same run split over a 1-D mesh named "population" of 2 devices (the
    # population size must be a multiple of the mesh size).
    mesh = lrne.distributed.population_mesh(jax.devices()[:2])
    split = lrne.run(strategy, task, key, generations, mesh=mesh)

    for name, result in (("1 device", single), ("2 devices", split)):
        returns = [round(row["fitness_mean"], 1) for row in result.history]
        print(f"{name}: population mean return by generation {returns}")

    leaves = zip(jax.tree.leaves(single.state), jax.tree.leaves(split.state), strict=True)
    identical = all(np.array_equal(a, b) for a, b in leaves)
    identical &= [r["fitness_mean"] for r in single.history] == [
        r["fitness_mean"] for r in split.history
    ]
    print(f"2 devices reproduce the 1-device run bit for bit: {identical}")
    return {"identical": identical, "devices": len(mesh.devices)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not main(args.quick, args.seed)["identical"]:
        raise SystemExit(1)
