"""Factorized GA on a MinAtar CNN (Garbus & Pollack 2025, arXiv 2504.03037).

Every weight of ``lrne.nn.MinAtarCNN(rank=4)`` is stored as two factors,
W = A·B of rank 4, and the truncation GA mutates the factors: the genome is a
fraction of the dense network's size, and a population is evaluated without
forming any member's dense weights.

    python examples/minatar_ga.py           # about 25 s on 2 cores
    python examples/minatar_ga.py --quick   # toy sizes, seconds
"""

from __future__ import annotations

import argparse

import jax

import lrne


def main(quick: bool = False, seed: int = 0) -> dict[str, float]:
    """Evolve a rank-4 CNN on Breakout-MinAtar; returns the best member's fresh score."""
    population, elites, generations, max_steps = (8, 2, 2, 50) if quick else (128, 16, 100, 1000)
    policy = lrne.nn.MinAtarCNN(num_outputs=3, rank=4)  # Breakout: no-op, left, right
    task = lrne.tasks.Gymnax("Breakout-MinAtar", policy, max_steps=max_steps)
    # Elites survive unmutated; each child copies a random elite and adds noise of
    # sigma × the init std per tensor (sqrt(sigma) × it per factor).
    strategy = lrne.ga(population, num_elites=elites, sigma=0.5)

    key_params, key_run, key_eval = jax.random.split(jax.random.key(seed), 3)
    params = task.init_params(key_params)
    dense = lrne.materialize(params)  # the rank-0 network the factors encode
    print(
        f"genome: {lrne.count_params(params):,} numbers for a "
        f"{lrne.count_params(dense):,}-parameter CNN"
    )

    # A callback that prints every 20th generation (see logger_callback.py).
    class Every20(lrne.Callback):
        def on_generation(self, generation, row, state):
            if generation % 20 == 19:
                print(f"gen {generation + 1}: best {row['best_fitness']:.1f}")

    result = lrne.run(strategy, task, key_run, generations, params=params, callbacks=[Every20()])
    episodes = 4 if quick else 32
    score = lrne.evaluate_best(task, result.state.best_params, key_eval, num_episodes=episodes)
    print(f"best member: {score:.2f} mean return over {episodes} fresh episodes")
    return {
        "score": score,
        "genome": lrne.count_params(params),
        "dense": lrne.count_params(dense),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.quick, args.seed)
