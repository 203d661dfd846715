"""ES throughput: low-rank perturbed population vs plain inference, and vs evosax Open_ES.

(i) A population of 1024 evaluated with rank-1 perturbations inside the forward
    pass, against plain batched inference of the unperturbed network at the same
    batch (1024 episodes sharing one set of weights), full-length rollouts, on
    CartPole-v1 (MLP 64×64) and Breakout-MinAtar (MLP 256×256).
(ii) One ES generation on Breakout-MinAtar at population 1024, lrne low-rank
    (r=1) vs evosax 0.3 ``Open_ES`` + ``GymnaxProblem``, same network, fixed
    episode length, early exit off for both.
(iii) One online-ES generation on CartPole-v1 (MLP 4→64→64→2), population 1024,
    truncation W = 50, horizon T = 500: lrne NRES (512 antithetic particles,
    rank-1 noise, step-unlocked) vs evosax 0.3 ``NoiseReuseES``, whose workers
    step in lockstep; evosax has no truncated rollout, so its unroll is written
    here the way a user would: carry the 1024 env states, reset them all when
    evosax's inner step counter wraps, step W times with each member's dense
    params, fitness = −(window reward).
Same process, warm, medians of interleaved repetitions. Writes
benchmarks/results/es_throughput.json.

    python benchmarks/es_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import optax
from common import machine, median, time_interleaved, write
from evosax.algorithms import NoiseReuseES, Open_ES
from evosax.problems import GymnaxProblem
from ga_vs_evosax import EvosaxPolicy, evosax_generation

import lrne


def obs_ndim(env_id: str) -> int:
    """Axes of one observation: the MLP flattens them into one input ((10, 10, C) on MinAtar)."""
    env, env_params = lrne.tasks.make_env(env_id)
    return len(env.observation_space(env_params).shape)


CHUNKS = (64, 256)


def throughput(env_id: str, hidden: tuple[int, ...], population: int, steps: int, reps: int):
    """Seconds per full-length evaluation: rank-1 perturbed vs plain shared weights."""
    policy = lrne.nn.MLP(hidden, lrne.tasks.action_size(env_id), input_ndim=obs_ndim(env_id))
    task = lrne.tasks.Gymnax(env_id, policy, max_steps=steps, early_exit=False)
    strategy = lrne.es(population, 0.05, optax.sgd(0.01), noise_rank=1)
    key = jax.random.key(0)
    state = strategy.init(key, task.init_params(key))
    perturbed, _ = jax.jit(strategy.ask)(key, state)
    # Plain inference: the same shared weights and batch, no per-member variables
    # (an unused per-member collection only sets the batch size).
    plain = lrne.Population(state.mean, {"batch": {"index": jnp.arange(population)}})
    evaluate = jax.jit(task.evaluate)
    runs = {
        "lowrank": (lambda _, k: evaluate(k, perturbed), None),
        "plain": (lambda _, k: evaluate(k, plain), None),
    }
    # An option tried for small layers: score the members in chunks (cache locality).
    for size in CHUNKS:
        if size < population:
            chunked = jax.jit(lrne.tasks.Chunked(task, size).evaluate)
            runs[f"lowrank_chunked_{size}"] = (lambda _, k, f=chunked: f(k, perturbed), None)
    times, _ = time_interleaved(runs, reps, key)
    return {name: median(t) for name, t in times.items()}


def generation_times(population: int, hidden: tuple[int, ...], steps: int, reps: int):
    env_id = "Breakout-MinAtar"
    key = jax.random.key(0)
    problem = GymnaxProblem(
        env_id, EvosaxPolicy(hidden, 3), episode_length=steps, use_normalize_obs=False
    )
    solution = problem.sample(key)
    evo = Open_ES(population_size=population, solution=solution, optimizer=optax.sgd(0.01))
    evo_params = evo.default_params
    evo_state = evo.init(key, solution, evo_params)
    evosax_step = evosax_generation(evo, evo_params, problem, problem.init(key))

    policy = lrne.nn.MLP(hidden, 3, input_ndim=obs_ndim(env_id))
    task = lrne.tasks.Gymnax(env_id, policy, max_steps=steps, early_exit=False)
    strategy = lrne.es(population, 0.05, optax.sgd(0.01), noise_rank=1)
    state = strategy.init(key, task.init_params(key))
    generation = jax.jit(lrne.generation_step(strategy, task))
    runs = {
        "evosax_open_es": (evosax_step, evo_state),
        "lrne_lowrank_es": (lambda s, k: generation(s, k)[0], state),
    }
    times, first = time_interleaved(runs, reps, key)
    return {name: median(t) for name, t in times.items()}, first


class EvosaxUnroll(NamedTuple):
    evo_state: Any
    obs: jax.Array
    env_state: Any
    alive: jax.Array


def evosax_nres_generation(population: int, hidden, window: int, horizon: int, key):
    """A jitted evosax NoiseReuseES generation over one truncation window."""
    env, env_params = gymnax.make("CartPole-v1")
    policy = EvosaxPolicy(hidden, 2)
    solution = policy.init(key, jnp.zeros(4), key)
    evo = NoiseReuseES(population_size=population, solution=solution, optimizer=optax.sgd(0.01))
    evo_params = evo.default_params.replace(T=horizon, K=window)
    reset = jax.vmap(env.reset, (0, None))
    obs, env_state = reset(jax.random.split(key, population), env_params)
    state = EvosaxUnroll(
        evo.init(key, solution, evo_params), obs, env_state, jnp.ones(population, bool)
    )

    @jax.jit
    def step(state, key):
        key_ask, key_reset, key_step, key_tell = jax.random.split(key, 4)
        members, evo_state = evo.ask(key_ask, state.evo_state, evo_params)
        start = state.evo_state.inner_step_counter == 0
        fresh_obs, fresh_env = reset(jax.random.split(key_reset, population), env_params)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(start, a, b), new, old)
        obs, env_state = pick((fresh_obs, fresh_env), (state.obs, state.env_state))
        alive = state.alive | start

        def body(carry, k):
            obs, env_state, alive = carry
            actions = jax.vmap(policy.apply, (0, 0, None))(members, obs, k)
            obs, env_state, reward, done, _ = jax.vmap(env.step_env, (0, 0, 0, None))(
                jax.random.split(k, population), env_state, actions, env_params
            )
            reward = jnp.where(alive, reward, 0.0)
            return (obs, env_state, alive & ~done), reward

        (obs, env_state, alive), rewards = jax.lax.scan(
            body, (obs, env_state, alive), jax.random.split(key_step, window)
        )
        evo_state, _ = evo.tell(key_tell, members, -rewards.sum(0), evo_state, evo_params)
        return EvosaxUnroll(evo_state, obs, env_state, alive)

    return step, state


def nres_generation_times(population: int, hidden, window: int, horizon: int, reps: int):
    key = jax.random.key(0)
    evosax_step, evosax_state = evosax_nres_generation(population, hidden, window, horizon, key)
    task = lrne.tasks.Gymnax("CartPole-v1", lrne.nn.MLP(hidden, 2), max_steps=horizon)
    strategy = lrne.nres(population // 2, 0.05, optax.sgd(0.01), window, horizon, noise_rank=1)
    state = strategy.init(key, task.init_params(key), task)
    generation = jax.jit(lrne.generation_step(strategy, task))
    runs = {
        "evosax_noise_reuse_es": (evosax_step, evosax_state),
        "lrne_nres": (lambda s, k: generation(s, k)[0], state),
    }
    times, first = time_interleaved(runs, reps, key)
    return {name: median(t) for name, t in times.items()}, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy size, for CI")
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        population, cartpole, breakout, gen_hidden = 64, ((16, 16), 50), ((32, 32), 50), (32, 32)
        gen_steps, (nres_hidden, window, horizon) = 50, ((16, 16), 10, 50)
    else:
        population, cartpole, breakout = 1024, ((64, 64), 500), ((256, 256), 1000)
        gen_hidden, gen_steps = (256, 256), 1000
        nres_hidden, window, horizon = (64, 64), 50, 500
    result: dict = {"lowrank_over_plain": {}, "seconds_per_evaluation": {}}
    for env_id, (hidden, steps) in (("CartPole-v1", cartpole), ("Breakout-MinAtar", breakout)):
        seconds = throughput(env_id, hidden, population, steps, args.repetitions)
        result["lowrank_over_plain"][env_id] = seconds["plain"] / seconds["lowrank"]
        result["seconds_per_evaluation"][env_id] = seconds
        result.setdefault("lowrank_chunked_over_plain", {})[env_id] = {
            name: seconds["plain"] / t for name, t in seconds.items() if "chunked" in name
        }
    nres_population = population
    nres_gens, nres_first = nres_generation_times(
        nres_population, nres_hidden, window, horizon, 10 * args.repetitions
    )
    result["speedup_vs_evosax_nres"] = nres_gens["evosax_noise_reuse_es"] / nres_gens["lrne_nres"]
    result["nres_s_per_generation"] = nres_gens
    result["nres_first_call_s"] = nres_first
    gens, first = generation_times(population, gen_hidden, gen_steps, args.repetitions)
    result["speedup_vs_evosax_open_es"] = gens["evosax_open_es"] / gens["lrne_lowrank_es"]
    result["s_per_generation"] = gens
    result["first_call_s"] = first
    result["machine"] = machine()
    result["setup"] = {
        "population_size": population,
        "throughput": {
            "CartPole-v1": [list(cartpole[0]), cartpole[1]],
            "Breakout-MinAtar": [list(breakout[0]), breakout[1]],
        },
        "generation": {
            "env": "Breakout-MinAtar",
            "mlp": [400, *gen_hidden, 3],
            "episode_steps": gen_steps,
            "noise_rank": 1,
            "early_exit": False,
        },
        "nres": {
            "env": "CartPole-v1",
            "mlp": [4, *nres_hidden, 2],
            "population_size": nres_population,
            "truncation_length": window,
            "horizon": horizon,
            "lrne_noise_rank": 1,
            "repetitions": 10 * args.repetitions,
        },
        "repetitions": args.repetitions,
        "quick": args.quick,
        "note": "lowrank_over_plain is throughput (episodes/s) perturbed over plain",
    }
    write("es_throughput_quick" if args.quick else "es_throughput", result)


if __name__ == "__main__":
    main()
