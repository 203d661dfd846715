"""lrne's low-rank ES inside an existing evosax 0.3 ask/tell loop.

``lrne.integrations.evosax.LowRankES`` subclasses evosax's
``DistributionBasedAlgorithm``: code written for ``evosax.algorithms.Open_ES``
runs unchanged with it, here on evosax's own ``GymnaxProblem`` with evosax's
own MLP policy. Its 2-D weight matrices (flax ``kernel`` leaves) get rank-1
noise, the biases dense noise. evosax minimizes, so the loop passes minus the
return, as it would to ``Open_ES``; the plugin flips the sign back for lrne.
Needs the ``evosax`` extra (``pip install -e '.[evosax]'``).

    python examples/evosax_plugin.py              # about 25 s on 2 cores
    python examples/evosax_plugin.py --baseline   # also evosax's Open_ES, same loop
    python examples/evosax_plugin.py --quick      # toy sizes, seconds
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from evosax.algorithms import Open_ES
from evosax.problems import MLP, GymnaxProblem

from lrne.integrations.evosax import LowRankES


def evosax_loop(es, problem, key: jax.Array, generations: int) -> tuple[float, float]:
    """An evosax 0.3 training loop, as written for any evosax algorithm.

    Returns the last generation's mean return and the mean's return.
    """
    key_problem, key_init, key_loop, key_score = jax.random.split(key, 4)
    params = es.default_params
    problem_state = problem.init(key_problem)
    state = es.init(key_init, problem.sample(key_init), params)
    for key_generation in jax.random.split(key_loop, generations):
        key_ask, key_eval, key_tell = jax.random.split(key_generation, 3)
        population, state = es.ask(key_ask, state, params)
        returns, problem_state, _ = problem.eval(key_eval, population, problem_state)
        state, _ = es.tell(key_tell, population, -returns, state, params)  # minus: minimized
    # The mean's return on fresh episodes: a population of copies of it.
    copies = jax.tree.map(lambda x: jnp.stack([x] * es.population_size), es.get_mean(state))
    score, _, _ = problem.eval(key_score, copies, problem_state)
    return float(returns.mean()), float(score.mean())


def main(quick: bool = False, baseline: bool = False, seed: int = 0) -> dict[str, float]:
    """Train LowRankES (and optionally Open_ES) on CartPole-v1; returns their scores."""
    population, generations, length = (8, 1, 50) if quick else (64, 40, 500)
    problem = GymnaxProblem(
        "CartPole-v1",
        MLP(layer_sizes=(32, 32, 2)),  # evosax's MLP: actions sampled from the logits
        episode_length=length,
        num_rollouts=1 if quick else 4,
    )
    solution = problem.sample(jax.random.key(0))  # a template pytree of the policy params
    algorithms = {
        "lrne LowRankES": LowRankES(
            population_size=population,
            solution=solution,
            sigma=0.05,
            optimizer=optax.adam(0.03),
            noise_rank=1,
        )
    }
    if baseline:
        algorithms["evosax Open_ES"] = Open_ES(
            population_size=population,
            solution=solution,
            optimizer=optax.adam(0.03),
            std_schedule=optax.constant_schedule(0.05),
        )
    results = {}
    for name, es in algorithms.items():
        last, score = evosax_loop(es, problem, jax.random.key(seed), generations)
        print(f"{name}: population mean return {last:.1f}, the mean's return {score:.1f}")
        results[name] = score
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--baseline", action="store_true", help="also run evosax's Open_ES")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.quick, args.baseline, args.seed)
