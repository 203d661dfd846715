"""Control suite: lrne against evosax Open_ES and rejax PPO at equal wall-clock.

Four methods train the same policy network (an MLP, 64×64 tanh; MinAtar
observations flattened) on one gymnax environment for the same wall-clock
budget each (default 3 minutes, compiling included):

- ``lrne_es``: lrne low-rank ES (registry ``es_lowrank``: rank-1 noise on a
  dense network, antithetic, centered ranks, Adam);
- ``lrne_ga``: lrne factorized GA (registry ``ga``: every layer stored as A·B
  of rank 4, truncation selection with elites);
- ``openes``: evosax 0.3 ``Open_ES`` (antithetic, centered ranks, Adam, dense
  noise), its members scored by the same lrne rollout as ``lrne_es``;
- ``ppo``: rejax PPO with its default settings (64 envs × 64 steps, 8 epochs,
  16 minibatches, Adam 3e-4, clip 0.2), actor and critic 64×64 tanh. gymnax 1.0's
  ``step`` returns six values and rejax expects five: :class:`FiveTuple` adapts it.

Settings: the three evolutionary methods each take the best setting of one
sweep (``SWEEP``: σ × population, one seed, ``--sweep-seconds`` each, scored on
32 fresh episodes); the two ES methods share the same grid and learning rate.
PPO runs rejax's defaults (not tuned).

Protocol: each method runs ``--seeds`` seeds of ``--seconds`` each; every run
compiles its own step inside its budget (``compile_seconds``: its first
generation or PPO chunk, compiling included). At growing gaps (a quarter of
the time so far, 0.5 s to ``--snapshot-seconds``) a copy of the policy (ES:
the mean; GA: the top elite of the latest generation; PPO: the actor) is kept.
Off the clock, every snapshot is scored on 32 fresh episodes (the
return-vs-wall-clock curve) and the final policy on ``--episodes`` fresh
episodes (≥ 64), all by one evaluator (:func:`returns`). PPO acts with its
policy's mode (argmax / mean), the other methods with their deterministic
policy. ``seconds_to_threshold``: the first snapshot whose score reaches the
env's stated threshold.

Writes ``benchmarks/results/suite/<env>.json`` and ``<env>.png``.

    python benchmarks/suite.py --env CartPole-v1 [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import RESULTS, machine, mean_ci95, write, write_config

import lrne
from lrne.callbacks import TimeLimit
from lrne.genome import Population
from lrne.saved import run_keys
from lrne.tasks.gymnax import Gymnax, make_env

HIDDEN = (64, 64)
GA_RANK = 4
ES_LEARNING_RATE = 0.03
CURVE_EPISODES = 32
SUITE = RESULTS / "suite"


class EnvSpec(NamedTuple):
    """Per-env protocol: the score a solved run reaches, and episodes per member."""

    threshold: float
    episodes_per_member: int = 1


ENVS: dict[str, EnvSpec] = {
    "CartPole-v1": EnvSpec(475.0),
    "Acrobot-v1": EnvSpec(-100.0),
    "Pendulum-v1": EnvSpec(-300.0, 4),
    "MountainCarContinuous-v0": EnvSpec(90.0),
    "Breakout-MinAtar": EnvSpec(10.0, 2),
    "SpaceInvaders-MinAtar": EnvSpec(50.0, 2),
    "Asterix-MinAtar": EnvSpec(10.0, 2),
    "Freeway-MinAtar": EnvSpec(20.0, 2),
}

# One grid per evolutionary method: (sigma, population size).
SWEEP: dict[str, list[dict[str, float]]] = {
    "lrne_es": [{"sigma": s, "population": p} for s in (0.03, 0.1) for p in (128, 512)],
    "openes": [{"sigma": s, "population": p} for s in (0.03, 0.1) for p in (128, 512)],
    "lrne_ga": [{"sigma": s, "population": p} for s in (0.1, 0.3) for p in (128, 512)],
}
METHODS = ("lrne_es", "lrne_ga", "openes", "ppo")


class Trace(NamedTuple):
    """One training run: snapshot times (s since start), env steps then, policies."""

    seconds: list[float]
    env_steps: list[int]
    policies: list[Any]
    compile_seconds: float
    updates: int


class Snapshots(lrne.Callback):
    """Keeps a host copy of ``policy(state)`` at growing gaps and at the end.

    The gap after a snapshot at t seconds is 0.25·t, at least 0.5 s and at
    most ``interval``: dense early, where the fast methods reach a threshold.
    """

    def __init__(self, clock: TimeLimit, policy: Callable[[Any], Any], interval: float) -> None:
        self.clock, self.policy, self.interval = clock, policy, interval
        self.trace = Trace([], [], [], math.nan, 0)
        self.steps = 0

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        self.steps += int(row.get("env_steps", 0))
        if generation == 0:
            self.trace = self.trace._replace(compile_seconds=row["seconds"])
        self.trace = self.trace._replace(updates=generation + 1)
        last = self.trace.seconds[-1] if self.trace.seconds else 0.0
        gap = min(self.interval, max(0.5, 0.25 * last))
        done = self.clock.elapsed >= self.clock.seconds
        if done or self.clock.elapsed - last >= gap:
            self.keep(self.clock.elapsed, state)

    def keep(self, elapsed: float, state: Any) -> None:
        self.trace.seconds.append(elapsed)
        self.trace.env_steps.append(self.steps)
        self.trace.policies.append(jax.device_get(self.policy(state)))


def lrne_config(method: str, env_id: str, setting: dict, seed: int, seconds: float):
    """The ``lrne train`` config of one lrne run: what ``configs/suite/`` holds.

    ``lrne train --config configs/suite/ENV_METHOD.toml`` runs the same
    generations (the same key from ``run.seed``, the same strategy, task and
    network) for the same wall-clock budget.
    """
    from lrne.config import Config

    population = int(setting["population"])
    strategy: dict[str, Any] = {"population_size": population, "sigma": float(setting["sigma"])}
    if method == "lrne_es":
        strategy |= {"name": "es_lowrank", "noise_rank": 1, "optimizer": "adam"}
        strategy["learning_rate"] = ES_LEARNING_RATE
    else:
        strategy |= {"name": "ga", "num_elites": max(1, population // 8)}
    data = {
        "run": {
            "seed": seed,
            "generations": 10**9,
            "seconds": seconds,
            "checkpoint_every": 0,
            "output": f"runs/suite/{env_id}_{method}",
        },
        "strategy": strategy,
        "task": {
            "kind": "gymnax",
            "env": env_id,
            "num_episodes": ENVS[env_id].episodes_per_member,
        },
        "model": {
            "kind": "mlp",
            "hidden": list(HIDDEN),
            "rank": GA_RANK if method == "lrne_ga" else 0,
            "activation": "tanh",
        },
    }
    return Config.from_dict(data)


def train_lrne(method: str, env_id: str, setting: dict, seed: int, seconds: float, snap: float):
    config = lrne_config(method, env_id, setting, seed, seconds)
    # The sections' own builders (not Config.build, which caches): new objects,
    # so every run compiles its own step inside its budget.
    task, _ = config.task.build(config.model)
    strategy = config.strategy.build(task)
    clock = TimeLimit(seconds)
    # ES: the mean. GA: the top elite of the latest generation (elites are
    # re-scored every generation; the best-ever member is the luckiest episode).
    answer = (lambda s: s.mean) if method == "lrne_es" else (lambda s: _first(s.elites))
    snapshots = Snapshots(clock, answer, snap)
    key = run_keys(config.run.seed)[0]  # the key `lrne train` derives from the seed
    lrne.run(strategy, task, key, config.run.generations, callbacks=[clock, snapshots])
    return snapshots.trace, task


def _first(tree: Any) -> Any:
    return jax.tree.map(lambda x: x[0], tree)


def openes_step(task: Gymnax, setting: dict):
    """evosax Open_ES and a new jitted generation scored by ``task``."""
    from evosax.algorithms import Open_ES

    solution = task.init_params(jax.random.key(0))
    algorithm = Open_ES(
        population_size=int(setting["population"]),
        solution=solution,
        optimizer=optax.adam(ES_LEARNING_RATE),
        std_schedule=optax.constant_schedule(setting["sigma"]),
    )

    @jax.jit
    def step(state, key):
        key_ask, key_eval, key_tell = jax.random.split(key, 3)
        population, state = algorithm.ask(key_ask, state, algorithm.default_params)
        fitness, metrics = task.evaluate(key_eval, Population({}, population))
        state, _ = algorithm.tell(key_tell, population, -fitness, state, algorithm.default_params)
        return state, metrics["env_steps"]

    return algorithm, step


def train_openes(env_id: str, setting: dict, seed: int, seconds: float, snap: float):
    # The same task and dense network as lrne_es, from the same config builder.
    config = lrne_config("lrne_es", env_id, setting, seed, seconds)
    task, _ = config.task.build(config.model)
    algorithm, step = openes_step(task, setting)
    key_params, key_init, key_run = jax.random.split(jax.random.key(seed), 3)
    clock = TimeLimit(seconds)
    clock.on_start(0, None)
    state = algorithm.init(key_init, task.init_params(key_params), algorithm.default_params)
    mean = lambda state: algorithm._unravel_solution(state.mean)
    return _timed_loop(step, state, key_run, Snapshots(clock, mean, snap)), task


def _timed_loop(step, state, key: jax.Array, snapshots: Snapshots) -> Trace:
    """Call ``step(state, key_g) -> (state, env_steps)`` until ``snapshots.clock`` runs out,
    as :func:`lrne.run` would with the same callbacks (the clock started by the caller)."""
    generation = 0
    while True:
        tick = time.perf_counter()
        state, env_steps = step(state, jax.random.fold_in(key, generation))
        row = {"env_steps": int(env_steps), "seconds": time.perf_counter() - tick}  # blocks
        stop = snapshots.clock.on_generation(generation, row, state)
        snapshots.on_generation(generation, row, state)
        generation += 1
        if stop:
            return snapshots.trace


class FiveTuple:
    """A gymnax 1.0 env whose ``step`` returns rejax's five values.

    ``done`` = terminated or truncated; observations are cast to float32
    (MinAtar's are booleans). Everything else is the wrapped env's.
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def reset(self, key: jax.Array, params: Any = None):
        obs, state = self.env.reset(key, params)
        return obs.astype(jnp.float32), state

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        done = jnp.logical_or(terminated, truncated)
        return obs.astype(jnp.float32), state, reward, done, info

    def action_space(self, params: Any = None):
        return self.env.action_space(params)

    def observation_space(self, params: Any = None):
        return self.env.observation_space(params)


PPO_CHUNK = 16_384  # env steps per jitted call (4 PPO iterations of 64 × 64)


@functools.cache
def ppo_algorithm(env_id: str):
    """rejax PPO with its defaults on ``env_id`` (through :class:`FiveTuple`)."""
    from rejax import PPO

    env, params = make_env(env_id)
    algo = PPO.create(
        env=FiveTuple(env),
        env_params=params,
        agent_kwargs={"hidden_layer_sizes": HIDDEN, "activation": "tanh"},
        total_timesteps=PPO_CHUNK,
        eval_freq=PPO_CHUNK,
        skip_initial_evaluation=True,
    )
    # Evaluation happens off the clock, by the shared evaluator.
    return algo.replace(eval_callback=lambda algo, ts, rng: jnp.zeros(()))


def train_ppo(env_id: str, seed: int, seconds: float, snap: float) -> Trace:
    algo = ppo_algorithm(env_id)
    train = jax.jit(lambda ts: algo.train(train_state=ts)[0])  # new: this run compiles
    clock = TimeLimit(seconds)
    clock.on_start(0, None)
    ts = algo.init_state(jax.random.key(seed))

    def step(ts, key):
        return train(ts), PPO_CHUNK

    return _timed_loop(step, ts, jax.random.key(seed), Snapshots(clock, lambda ts: ts, snap))


@functools.cache
def ppo_action(env_id: str) -> Callable[[Any, jax.Array], jax.Array]:
    """The PPO actor's mode: argmax of its logits, or its mean action (clipped)."""
    algo = ppo_algorithm(env_id)

    def act(ts, obs):
        obs = obs.astype(jnp.float32)[None]
        mode = lambda actor, x: actor._action_dist(x).mode()
        action = algo.actor.apply(ts.actor_ts.params, obs, method=mode)[0]
        space = algo.action_space
        if hasattr(space, "low"):
            action = jnp.clip(action, space.low, space.high)
        return action

    return act


def returns(act: Callable, env_id: str, policy: Any, key: jax.Array, episodes: int) -> np.ndarray:
    """Undiscounted returns of ``episodes`` fresh episodes of ``act(policy, obs)``."""
    return np.asarray(_returns(act, env_id, episodes)(policy, key))


_RETURNS: dict = {}


def _returns(act: Callable, env_id: str, episodes: int):
    cache_key = (act, env_id, episodes)
    if cache_key not in _RETURNS:
        env, params = make_env(env_id)
        max_steps = int(params.max_steps_in_episode)

        def episode(policy, key):
            key_reset, key_steps = jax.random.split(key)
            obs, state = env.reset_env(key_reset, params)

            def body(carry):
                obs, state, total, alive, t = carry
                key_t = jax.random.fold_in(key_steps, t)
                out = env.step_env(key_t, state, act(policy, obs), params)
                obs, state, reward, terminated = out[:4]
                total = total + jnp.where(alive, reward, 0.0)
                truncated = env.is_truncated(state, params)
                alive = alive & ~terminated & ~truncated & (t + 1 < max_steps)
                return obs, state, total, alive, t + 1

            carry = (obs, state, jnp.zeros(()), jnp.ones((), bool), jnp.zeros((), jnp.int32))
            return jax.lax.while_loop(lambda c: c[3], body, carry)[2]

        def many(policy, key):
            return jax.vmap(episode, (None, 0))(policy, jax.random.split(key, episodes))

        _RETURNS[cache_key] = jax.jit(many)
    return _RETURNS[cache_key]


def train(method: str, env_id: str, setting: dict, seed: int, seconds: float, snap: float):
    """(trace, act) for one run; ``act(policy, obs)`` is the method's deterministic action."""
    if method == "ppo":
        return train_ppo(env_id, seed, seconds, snap), ppo_action(env_id)
    if method == "openes":
        trace, task = train_openes(env_id, setting, seed, seconds, snap)
    else:
        trace, task = train_lrne(method, env_id, setting, seed, seconds, snap)
    return trace, _task_action(task)


_ACTIONS: dict = {}


def _task_action(task: Gymnax) -> Callable:
    # One function per task object, so the evaluator compiles once per task.
    if id(task) not in _ACTIONS:
        _ACTIONS[id(task)] = (task, lambda params, obs: task.action(params, obs))
    return _ACTIONS[id(task)][1]


def score(act, env_id: str, trace: Trace, seed: int, episodes: int, threshold: float) -> dict:
    """The curve (32 episodes per snapshot) and the final policy on ``episodes`` episodes."""
    key = jax.random.key(10_000 + seed)
    curve = [
        float(returns(act, env_id, p, jax.random.fold_in(key, i), CURVE_EPISODES).mean())
        for i, p in enumerate(trace.policies)
    ]
    final = returns(act, env_id, trace.policies[-1], jax.random.fold_in(key, 10**6), episodes)
    reached = [t for t, r in zip(trace.seconds, curve, strict=True) if r >= threshold]
    return {
        "seed": seed,
        "final_return": float(final.mean()),
        "final_return_ci95": float(1.96 * final.std(ddof=1) / math.sqrt(len(final))),
        "seconds_to_threshold": reached[0] if reached else None,
        "train_seconds": trace.seconds[-1],
        "compile_seconds": trace.compile_seconds,
        "env_steps": trace.env_steps[-1],
        "updates": trace.updates,
        "curve_seconds": [round(t, 2) for t in trace.seconds],
        "curve_env_steps": trace.env_steps,
        "curve_return": curve,
    }


def sweep(method: str, env_id: str, seconds: float, snap: float, episodes: int) -> dict:
    """Each setting of ``SWEEP[method]`` for ``seconds``, seed 100: the best by fresh return,
    ties broken by the earlier time to the threshold."""
    rows = []
    for setting in SWEEP[method]:
        trace, act = train(method, env_id, setting, 100, seconds, snap)
        scored = score(act, env_id, trace, 100, episodes, ENVS[env_id].threshold)
        keep = ("final_return", "seconds_to_threshold", "env_steps")
        rows.append({**setting, **{k: scored[k] for k in keep}})
        print(f"  sweep {method} {setting}: {scored['final_return']:.1f}", flush=True)
    rank = lambda row: (row["final_return"], -(row["seconds_to_threshold"] or math.inf))
    best = max(rows, key=rank)
    return {"rows": rows, "best": {k: best[k] for k in ("sigma", "population")}}


def plot(env_id: str, result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, data in result["methods"].items():
        for i, run in enumerate(data["runs"]):
            ax.plot(
                run["curve_seconds"],
                run["curve_return"],
                color=f"C{METHODS.index(method)}",
                alpha=0.8,
                label=method if i == 0 else None,
            )
    ax.axhline(ENVS[env_id].threshold, color="gray", ls=":", lw=1, label="threshold")
    ax.set_xlabel("wall-clock seconds (compiling included)")
    ax.set_ylabel(f"return ({CURVE_EPISODES} fresh episodes)")
    ax.set_title(f"{env_id}: equal wall-clock, {len(data['runs'])} seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, choices=sorted(ENVS))
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--sweep-seconds", type=float, default=30.0)
    parser.add_argument("--snapshot-seconds", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--quick", action="store_true", help="seconds-long runs (tests)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.sweep_seconds, args.snapshot_seconds = 4.0, 2.0, 1.0
        args.seeds, args.episodes = 1, 8
        for method in SWEEP:
            SWEEP[method] = SWEEP[method][:1]
    spec = ENVS[args.env]
    result: dict[str, Any] = {
        "machine": machine(),
        "env": args.env,
        "quick": args.quick,
        "seconds": args.seconds,
        "seeds": args.seeds,
        "episodes": args.episodes,
        "threshold": spec.threshold,
        "episodes_per_member": spec.episodes_per_member,
        "network": f"MLP {HIDDEN} tanh (GA: rank {GA_RANK} factors)",
        "methods": {},
    }
    for method in args.methods:
        print(f"{args.env} {method}", flush=True)
        entry: dict[str, Any] = {}
        setting: dict = {}
        if method in SWEEP:
            entry["sweep"] = sweep(
                method, args.env, args.sweep_seconds, args.snapshot_seconds, CURVE_EPISODES
            )
            setting = entry["sweep"]["best"]
        entry["setting"] = setting or "rejax PPO defaults"
        if method.startswith("lrne") and not args.quick:
            entry["config"] = write_config(
                lrne_config(method, args.env, setting, 0, args.seconds),
                f"suite/{args.env}_{method}",
                f"benchmarks/suite.py --env {args.env}: {method}, the sweep's best setting",
                output=f"runs/suite/{args.env}_{method}",
            )
        runs = []
        for seed in range(args.seeds):
            trace, act = train(method, args.env, setting, seed, args.seconds, args.snapshot_seconds)
            runs.append(score(act, args.env, trace, seed, args.episodes, spec.threshold))
            print(f"  seed {seed}: {runs[-1]['final_return']:.1f}", flush=True)
        entry["runs"] = runs
        entry["final_return"] = mean_ci95([r["final_return"] for r in runs])
        reached = [r["seconds_to_threshold"] for r in runs if r["seconds_to_threshold"] is not None]
        entry["seeds_reaching_threshold"] = len(reached)
        entry["median_seconds_to_threshold"] = float(np.median(reached)) if reached else None
        entry["env_steps"] = float(np.mean([r["env_steps"] for r in runs]))
        result["methods"][method] = entry
    name = args.env + ("_quick" if args.quick else "")
    SUITE.mkdir(parents=True, exist_ok=True)
    path = SUITE / f"{name}.json"
    if path.exists() and set(args.methods) != set(METHODS):
        # A rerun of some methods: keep the others' runs from the earlier file.
        earlier = json.loads(path.read_text())
        result["methods"] = {**earlier["methods"], **result["methods"]}
        result["methods"] = {m: result["methods"][m] for m in METHODS if m in result["methods"]}
    write(f"suite/{name}", result)
    if not args.quick:
        plot(args.env, result, SUITE / f"{args.env}.png")


if __name__ == "__main__":
    main()
