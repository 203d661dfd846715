"""One process of ``scaling.py --processes``: joins the others, times generations.

Prints ``RESULT {json}``: seconds per warm generation, the first call's
seconds and a hash of this process's copy of the final state. Run by
``scaling.py``; ``jax.distributed.initialize`` must come before any other JAX
call, so lrne is imported after it.

    python scaling_worker.py ga|es_lowrank --num-processes N --process-id I --address HOST:PORT
"""

from __future__ import annotations

import argparse
import hashlib
import json

import jax


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("strategy", choices=("ga", "es_lowrank"))
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--address", default="")
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.num_processes > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.address,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    import numpy as np
    from common import timed
    from scaling import process_strategy

    from lrne.distributed import population_mesh, replicate, sharded_generation_step

    strategy, task, size = process_strategy(args.strategy, args.quick)
    mesh = population_mesh()
    state = replicate(strategy.init(jax.random.key(1), task.init_params(jax.random.key(0))), mesh)
    step = jax.jit(sharded_generation_step(strategy, task, size, mesh))
    keys = jax.random.split(jax.random.key(3), args.generations + 1)
    (state, _), first = timed(step, state, keys[0])
    seconds = []
    for k in keys[1:]:
        (state, _), took = timed(step, state, k)
        seconds.append(took)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        if not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            digest.update(np.asarray(leaf.addressable_data(0)).tobytes())
    row = {"seconds": seconds, "first_call_s": first, "state_sha256": digest.hexdigest()}
    print("RESULT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
