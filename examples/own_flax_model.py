"""Your own flax.linen model, trained with low-rank ES on CartPole-v1.

The policy below is built only from stock ``flax.linen`` layers; lrne needs
no changes to it. With ``noise_rank=1``, each member's perturbation of a
``nn.Dense`` kernel is a rank-1 factor pair that lrne applies inside the
layer's forward pass (through ``flax.linen.intercept_methods``), so no
member's dense weights are ever formed.

    python examples/own_flax_model.py           # about 15 s on 2 cores
    python examples/own_flax_model.py --quick   # toy sizes, seconds
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import optax

import lrne


class Policy(nn.Module):
    """A plain two-hidden-layer MLP: observation -> one logit per action."""

    hidden: int = 32
    num_actions: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = nn.tanh(nn.Dense(self.hidden)(obs))
        x = nn.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_actions)(x)


def main(quick: bool = False, seed: int = 0) -> dict[str, float]:
    """Train, then score the ES mean on fresh episodes; returns the scores."""
    population, generations, max_steps = (8, 2, 50) if quick else (64, 50, 500)
    # Gymnax acts with the argmax of the logits and stops when all episodes are done.
    task = lrne.tasks.Gymnax("CartPole-v1", Policy(), max_steps=max_steps)
    strategy = lrne.es(population, sigma=0.05, optimizer=optax.adam(0.03), noise_rank=1)

    key_params, key_run, key_before, key_after = jax.random.split(jax.random.key(seed), 4)
    initial = task.init_params(key_params)  # {"params": {"Dense_0": {"kernel", "bias"}, ...}}
    # Generation g uses the key fold_in(key_run, g): the run is reproducible, and a
    # run of N generations is a prefix of a longer one.
    result = lrne.run(strategy, task, key_run, generations, params=initial)

    # Training fitness is noisy and selected; score the answer (the ES mean) on
    # episodes it never saw, against the untrained initial policy.
    episodes = 4 if quick else 32
    before = lrne.evaluate_best(task, initial, key_before, num_episodes=episodes)
    after = lrne.evaluate_best(task, result.state.mean, key_after, num_episodes=episodes)
    print(f"CartPole-v1 return over {episodes} fresh episodes: {before:.1f} -> {after:.1f}")
    return {"before": before, "after": after, "generations": result.generation}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.quick, args.seed)
