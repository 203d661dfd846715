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

from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import optax
from common import median, time_interleaved
from evosax.algorithms import NoiseReuseES, Open_ES
from evosax.problems import GymnaxProblem
from ga_vs_evosax import EvosaxPolicy, evosax_generation
from harness import goal, script

import lrne

FULL = {
    "population_size": 1024,
    # env: [MLP hidden widths, episode steps]
    "throughput": {"CartPole-v1": [[64, 64], 500], "Breakout-MinAtar": [[256, 256], 1000]},
    "generation_hidden": [256, 256],
    "generation_steps": 1000,
    "nres_hidden": [64, 64],
    "window": 50,
    "horizon": 500,
    "repetitions": 3,
}
QUICK = {
    **FULL,
    "population_size": 64,
    "throughput": {"CartPole-v1": [[16, 16], 50], "Breakout-MinAtar": [[32, 32], 50]},
    "generation_hidden": [32, 32],
    "generation_steps": 50,
    "nres_hidden": [16, 16],
    "window": 10,
    "horizon": 50,
}
TARGETS = {"lowrank_over_plain/*": (">=", 0.9), "speedup_vs_evosax_open_es": (">=", 10.0)}


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


def run(args) -> dict:
    population, reps = args.population_size, args.repetitions
    result: dict = {"lowrank_over_plain": {}, "seconds_per_evaluation": {}}
    for env_id, (hidden, steps) in args.throughput.items():
        seconds = throughput(env_id, tuple(hidden), population, steps, reps)
        result["lowrank_over_plain"][env_id] = seconds["plain"] / seconds["lowrank"]
        result["seconds_per_evaluation"][env_id] = seconds
        result.setdefault("lowrank_chunked_over_plain", {})[env_id] = {
            name: seconds["plain"] / t for name, t in seconds.items() if "chunked" in name
        }
    nres_hidden, window, horizon = tuple(args.nres_hidden), args.window, args.horizon
    nres_gens, nres_first = nres_generation_times(
        population, nres_hidden, window, horizon, 10 * reps
    )
    result["speedup_vs_evosax_nres"] = nres_gens["evosax_noise_reuse_es"] / nres_gens["lrne_nres"]
    result["nres_s_per_generation"] = nres_gens
    result["nres_first_call_s"] = nres_first
    gen_hidden, gen_steps = tuple(args.generation_hidden), args.generation_steps
    gens, first = generation_times(population, gen_hidden, gen_steps, reps)
    result["speedup_vs_evosax_open_es"] = gens["evosax_open_es"] / gens["lrne_lowrank_es"]
    result["s_per_generation"] = gens
    result["first_call_s"] = first
    result["setup"] = {
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
            "population_size": population,
            "truncation_length": window,
            "horizon": horizon,
            "lrne_noise_rank": 1,
            "repetitions": 10 * reps,
        },
        "note": "lowrank_over_plain is throughput (episodes/s) perturbed over plain",
    }
    return result


def table(es: dict) -> str:
    """Markdown: rank-1 ES against plain inference, and generations against evosax."""
    setup = es["setup"]
    gen = setup["generation"]
    lines = [
        f"**ES with low-rank noise** (`benchmarks/es_throughput.py`): population "
        f"{setup['population_size']}, full-length rollouts, early exit off. Throughput of a "
        "rank-1 perturbed population relative to plain batched inference of the shared "
        "network at the same batch:",
        "",
        "| env | MLP | s / eval, rank-1 ES | s / eval, plain | lowrank_over_plain | target |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for env, (hidden, steps) in setup["throughput"].items():
        t = es["seconds_per_evaluation"][env]
        lowrank = t.get("lowrank", t.get("lowrank_r1"))
        lines.append(
            f"| {env} ({steps} steps) | {'×'.join(map(str, hidden))} | {lowrank:.3f} | "
            f"{t['plain']:.3f} | {es['lowrank_over_plain'][env]:.2f} | "
            f"{goal(TARGETS, 'lowrank_over_plain/*')} |"
        )
    chunked = es.get("lowrank_chunked_over_plain")
    if chunked:
        lines += [
            "",
            "Option tried, scoring the members in chunks (`lrne.tasks.Chunked`), "
            "lowrank_over_plain by members per chunk: "
            + "; ".join(
                f"{env} " + ", ".join(f"{n.rsplit('_', 1)[1]}: {r:.2f}" for n, r in c.items())
                for env, c in chunked.items()
            )
            + ".",
        ]
    g = es["s_per_generation"]
    lines += [
        "",
        f"ES generation on {gen['env']}, MLP {'→'.join(map(str, gen['mlp']))}, "
        f"{gen['episode_steps']} steps, rank {gen['noise_rank']} noise:",
        "",
        "| method | s / generation | speedup | target |",
        "| --- | ---: | ---: | ---: |",
        f"| evosax 0.3 `Open_ES` + `GymnaxProblem` | {g['evosax_open_es']:.3f} | 1.00 | |",
        f"| lrne `es(noise_rank=1)` | {g['lrne_lowrank_es']:.3f} | "
        f"{es['speedup_vs_evosax_open_es']:.2f} | {goal(TARGETS, 'speedup_vs_evosax_open_es')} |",
    ]
    n = setup["nres"]
    g = es["nres_s_per_generation"]
    lines += [
        "",
        f"Online ES generation (one truncation window) on {n['env']}, MLP "
        f"{'→'.join(map(str, n['mlp']))}, population {n['population_size']}, "
        f"W = {n['truncation_length']}, T = {n['horizon']}:",
        "",
        "| method | s / generation | speedup |",
        "| --- | ---: | ---: |",
        f"| evosax 0.3 `NoiseReuseES` (lockstep workers) | {g['evosax_noise_reuse_es']:.4f} | "
        "1.00 |",
        f"| lrne `nres(noise_rank=1)` (step-unlocked) | {g['lrne_nres']:.4f} | "
        f"{es['speedup_vs_evosax_nres']:.2f} |",
        "",
        f"Machine: {es['machine']}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
