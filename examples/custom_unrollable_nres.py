"""NRES on your own unrollable task: tuning an inner optimizer's learning rate online.

Online ES (Li et al. 2023, *Noise-Reuse in Online Evolution Strategies*, arXiv
2304.12180) update the outer parameters θ after every window of W inner steps
instead of after whole episodes of T steps. Any object with ``horizon``,
``reset(keys)`` and ``unroll(keys, population, inner, t, num_steps)`` (the
``lrne.tasks.Unrollable`` protocol) can be trained so. Here θ is the log
learning rate of noisy gradient descent on an ill-conditioned quadratic; the
fitness of a step is −log of the inner loss after it, so the objective rewards
a learning rate that makes the inner loss fall fast and stay low, and a rate
past the stability edge (2 / the largest curvature) blows up.

    python examples/custom_unrollable_nres.py           # about 15 s on 2 cores
    python examples/custom_unrollable_nres.py --quick   # toy sizes
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import lrne
from lrne.genome import Population


class NoisyQuadratic(lrne.tasks.Task):
    """Inner loss ½·Σᵢ hᵢ·wᵢ², curvatures hᵢ from 0.01 to 1; SGD with gradient noise.

    θ = ``{"params": {"log_lr": ()}}``. An inner state is the inner weights w
    (dim,); an episode starts at w ~ N(0, 1) and runs ``horizon`` SGD steps.

    Subclassing :class:`lrne.tasks.Task` gives ``lrne.run`` the ``init_params``
    hook and, through :meth:`evaluate_members`, lets offline strategies (ES,
    GA) and ``lrne.evaluate_best`` score whole episodes too.
    """

    def __init__(self, dim: int = 10, horizon: int = 100, noise: float = 0.1) -> None:
        self.dim = dim
        self.horizon = horizon  # T: the Unrollable protocol's episode length
        self.noise = noise
        self.curvature = jnp.logspace(-2, 0, dim)

    def init_params(self, key: jax.Array | None = None) -> dict:
        del key  # a fixed, too-small starting learning rate
        return {"params": {"log_lr": jnp.log(jnp.float32(0.01))}}

    def reset(self, keys: jax.Array) -> jax.Array:
        """Fresh inner weights, one row per key: (M, dim)."""
        return jax.vmap(lambda key: jax.random.normal(key, (self.dim,)))(keys)

    def _step(
        self, log_lr: jax.Array, w: jax.Array, key: jax.Array, t: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        # Noise keyed by (member key, step in the episode): the ± copies of a
        # particle share their key and t, so they see the same gradient noise
        # and their fitness difference measures only ±δ.
        noise = self.noise * jax.random.normal(jax.random.fold_in(key, t), w.shape)
        w = w - jnp.exp(log_lr) * (self.curvature * w + noise)
        loss = 0.5 * jnp.sum(self.curvature * w**2)
        return w, -jnp.log(loss)  # diverged: -inf or NaN, which ES rank last

    def unroll(
        self,
        keys: jax.Array,
        population: Population,
        inner: jax.Array,
        t: jax.Array,
        num_steps: int,
    ) -> tuple[jax.Array, jax.Array]:
        """Advance every member ``num_steps`` SGD steps; fitness (M, num_steps)."""
        # The population is in evaluation form: each member's variables are θ + δ.
        shared, members = population
        log_lr = jax.vmap(lambda m: lrne.nn.member_variables(shared, m)["params"]["log_lr"])(
            members
        )

        def body(w: jax.Array, i: jax.Array) -> tuple[jax.Array, jax.Array]:
            return jax.vmap(self._step)(log_lr, w, keys, t + i)

        inner, fitness = jax.lax.scan(body, inner, jnp.arange(num_steps))
        return inner, fitness.T

    def evaluate_members(self, keys: jax.Array, population: Population) -> tuple[jax.Array, dict]:
        """Fitness (M,): the mean per-step fitness of one whole episode per member."""
        t = jnp.zeros(keys.shape[0], jnp.int32)
        _, fitness = self.unroll(keys, population, self.reset(keys), t, self.horizon)
        return jnp.mean(fitness, axis=1), {}


def objective(task: NoisyQuadratic, log_lr: jax.Array, key: jax.Array, episodes: int) -> jax.Array:
    """The mean per-step fitness of each learning rate in ``log_lr`` (K,), over episodes."""
    population = Population({}, {"params": {"log_lr": log_lr}})  # K members, as a GA holds them
    scores = jax.vmap(lambda k: task.evaluate(k, population)[0])(jax.random.split(key, episodes))
    return jnp.mean(scores, axis=0)


def main(quick: bool = False, seed: int = 0) -> dict[str, float]:
    """Learn log_lr with NRES; compare with a grid search. Returns both."""
    horizon, window, particles, generations = (20, 10, 4, 4) if quick else (100, 10, 32, 400)
    task = NoisyQuadratic(horizon=horizon)
    assert isinstance(task, lrne.tasks.Unrollable)  # horizon, reset, unroll
    # N particles, each with its own step counter (started at a random multiple
    # of W) and ± inner states; one update per window of W steps.
    strategy = lrne.nres(particles, 0.1, optax.adam(0.05), window, horizon=task.horizon)

    key_run, key_grid, key_eval = jax.random.split(jax.random.key(seed), 3)
    result = lrne.run(strategy, task, key_run, generations)
    start, learned = task.init_params()["params"]["log_lr"], result.state.mean["params"]["log_lr"]

    grid = jnp.linspace(jnp.log(0.01), jnp.log(4.0), 8 if quick else 64)
    scores = objective(task, grid, key_grid, 2 if quick else 16)
    best = grid[jnp.argmax(jnp.nan_to_num(scores, nan=-jnp.inf))]
    episodes = 2 if quick else 16
    at = objective(task, jnp.stack([start, learned, best]), key_eval, episodes)
    print(
        f"learning rate {jnp.exp(start):.3f} -> {jnp.exp(learned):.3f} by NRES "
        f"(grid search: {jnp.exp(best):.3f})"
    )
    print(f"objective (mean -log inner loss): {at[0]:.3f} -> {at[1]:.3f} (grid: {at[2]:.3f})")
    return {
        "lr": float(jnp.exp(learned)),
        "grid_lr": float(jnp.exp(best)),
        "start_objective": float(at[0]),
        "objective": float(at[1]),
        "grid_objective": float(at[2]),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.quick, args.seed)
