"""Control suite: lrne against evosax Open_ES and rejax PPO at equal wall-clock.

Four methods train the same policy network (an MLP, 64×64 tanh; MinAtar
observations flattened) on one gymnax environment for the same wall-clock
budget each (default 3 minutes, compiling included):

- ``lrne_es``: lrne low-rank ES (registry ``es_lowrank``: rank-1 noise on a
  dense network, antithetic, centered ranks, Adam);
- ``lrne_ga``: lrne factorized GA (registry ``ga``: every layer stored as A·B
  of rank 4, truncation selection with elites);
- ``lrne_nres``: lrne noise-reuse online ES (registry ``nres``, Li et al. 2023:
  rank-1 noise on the dense network, step-unlocked particles, the mean updated
  every W steps of the env's episode instead of once per episode), with or
  without normalized observations (``lrne.normalized``; swept);
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

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import Snapshots, band_plot, machine, mean_ci95, train_loop, write_config
from harness import RESULTS, pm, read, read_each, script

import lrne
from lrne.callbacks import TimeLimit
from lrne.genome import Population
from lrne.rundir import run_keys
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
    # W: steps per update (a divisor of the env's episode length); observation
    # normalization on or off.
    "lrne_nres": [
        {"sigma": s, "population": p, "truncation_length": w, "normalize": n}
        for n in (True, False)
        for s in (0.03, 0.1)
        for p, w in ((128, 50), (512, 100))
    ],
}
METHODS = ("lrne_es", "lrne_ga", "lrne_nres", "openes", "ppo")
LRNE = ("lrne_es", "lrne_ga", "lrne_nres")
"""The lrne methods: the table's verdict takes the best of those run."""
REQUIRED = ("lrne_es", "lrne_ga", "openes", "ppo")
"""The methods every env has run (lrne_nres joined later, env by env)."""
FULL = {
    "seconds": 180.0,
    "sweep_seconds": 30.0,
    "snapshot_seconds": 10.0,
    "seeds": 3,
    "episodes": 128,
}
QUICK = {"seconds": 4.0, "sweep_seconds": 2.0, "snapshot_seconds": 1.0, "seeds": 1, "episodes": 8}
TARGETS = {
    # by the mean final return, the better lrne method against each baseline
    "envs_lrne_below_openes": ("<=", 0),
    "envs_lrne_ge_ppo": (">=", 5),
}


def window(env_id: str, setting: dict) -> int:
    """The swept W where it divides the env's episode length, else the largest divisor
    below it (the registry's rule): MountainCarContinuous-v0's 999 steps take W = 37."""
    horizon = int(make_env(env_id)[1].max_steps_in_episode)
    most = int(setting["truncation_length"])
    return max(w for w in range(1, most + 1) if horizon % w == 0)


def lrne_config(method: str, env_id: str, setting: dict, seed: int, seconds: float):
    """The ``lrne train`` config of one lrne run: what ``configs/suite/`` holds.

    ``lrne train --config configs/suite/ENV_METHOD.toml`` runs the same
    generations (the same key from ``run.seed``, the same strategy, task and
    network) for the same wall-clock budget.
    """
    from lrne.config import Config

    population = int(setting["population"])
    strategy: dict[str, Any] = {"population_size": population, "sigma": float(setting["sigma"])}
    if method in ("lrne_es", "lrne_nres"):
        strategy |= {"name": "es_lowrank", "noise_rank": 1, "optimizer": "adam"}
        strategy["learning_rate"] = ES_LEARNING_RATE
    task = {"kind": "gymnax", "env": env_id, "num_episodes": ENVS[env_id].episodes_per_member}
    if method == "lrne_nres":
        strategy |= {"name": "nres", "truncation_length": int(setting["truncation_length"])}
        task["normalize_observations"] = bool(setting["normalize"])
    if method == "lrne_ga":
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
        "task": task,
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
    answer = (lambda s: _first(s.elites)) if method == "lrne_ga" else (lambda s: s.mean)
    snapshots = Snapshots(clock, answer, snap, growing=True)
    callbacks = [clock, snapshots]
    if method == "lrne_nres":  # a window: every member steps W times
        steps = int(setting["population"]) * int(setting["truncation_length"])
        callbacks.insert(0, WindowSteps(steps))
    key = run_keys(config.run.seed)[0]  # the key `lrne train` derives from the seed
    lrne.run(strategy, task, key, config.run.generations, callbacks=callbacks)
    return snapshots, task


class WindowSteps(lrne.runner.Callback):
    """Adds an online ES's env steps per window (population × W) to each row."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_generation(self, generation: int, row: dict, state: Any) -> None:
        row["env_steps"] = self.steps


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
        return state, {"env_steps": metrics["env_steps"]}

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
    snapshots = Snapshots(clock, lambda s: algorithm._unravel_solution(s.mean), snap, growing=True)
    train_loop(step, state, key_run, snapshots)
    return snapshots, task


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


def train_ppo(env_id: str, seed: int, seconds: float, snap: float) -> Snapshots:
    algo = ppo_algorithm(env_id)
    train = jax.jit(lambda ts: algo.train(train_state=ts)[0])  # new: this run compiles
    clock = TimeLimit(seconds)
    clock.on_start(0, None)
    ts = algo.init_state(jax.random.key(seed))

    def step(ts, key):
        return train(ts), {"env_steps": PPO_CHUNK}

    snapshots = Snapshots(clock, lambda ts: ts, snap, growing=True)
    train_loop(step, ts, jax.random.key(seed), snapshots)
    return snapshots


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
    """(snapshots, act) for one run; ``act(policy, obs)`` is the method's deterministic action."""
    if method == "ppo":
        return train_ppo(env_id, seed, seconds, snap), ppo_action(env_id)
    if method == "openes":
        snapshots, task = train_openes(env_id, setting, seed, seconds, snap)
    else:
        snapshots, task = train_lrne(method, env_id, setting, seed, seconds, snap)
    return snapshots, _task_action(task)


_ACTIONS: dict = {}


def _task_action(task: Gymnax) -> Callable:
    # One function per task object, so the evaluator compiles once per task.
    if id(task) not in _ACTIONS:
        _ACTIONS[id(task)] = (task, lambda params, obs: task.action(params, obs))
    return _ACTIONS[id(task)][1]


def score(act, env_id: str, snapshots: Snapshots, seed: int, episodes: int) -> dict:
    """The curve (32 episodes per snapshot) and the final policy on ``episodes`` episodes."""
    key = jax.random.key(10_000 + seed)
    curve = [
        float(returns(act, env_id, p, jax.random.fold_in(key, i), CURVE_EPISODES).mean())
        for i, p in enumerate(snapshots.policies)
    ]
    final = returns(act, env_id, snapshots.policies[-1], jax.random.fold_in(key, 10**6), episodes)
    final = mean_ci95(final.tolist())
    seconds = [row["seconds"] for row in snapshots.rows]
    reached = [t for t, r in zip(seconds, curve, strict=True) if r >= ENVS[env_id].threshold]
    return {
        "seed": seed,
        "final_return": final["mean"],
        "final_return_ci95": final["ci95"],
        "seconds_to_threshold": reached[0] if reached else None,
        "train_seconds": seconds[-1],
        "compile_seconds": snapshots.compile_seconds,
        "env_steps": snapshots.steps,
        "updates": snapshots.generations,
        "curve_seconds": seconds,
        "curve_env_steps": [row["steps"] for row in snapshots.rows],
        "curve_return": curve,
    }


def sweep(
    method: str, env_id: str, grid: list[dict], seconds: float, snap: float, measured=()
) -> dict:
    """Each setting of ``grid`` for ``seconds``, seed 100: the best by fresh return,
    ties broken by the earlier time to the threshold. ``measured``: rows of an
    earlier sweep (``--extend``), kept for the settings they hold, not rerun."""
    rows = []
    for setting in grid:
        kept = [row for row in measured if {k: row.get(k) for k in setting} == setting]
        if kept:
            rows.append(kept[0])
            print(f"  sweep {method} {setting}: {kept[0]['final_return']:.1f} (kept)", flush=True)
            continue
        snapshots, act = train(method, env_id, setting, 100, seconds, snap)
        scored = score(act, env_id, snapshots, 100, CURVE_EPISODES)
        keep = ("final_return", "seconds_to_threshold", "env_steps")
        rows.append({**setting, **{k: scored[k] for k in keep}})
        print(f"  sweep {method} {setting}: {scored['final_return']:.1f}", flush=True)
    rank = lambda row: (row["final_return"], -(row["seconds_to_threshold"] or math.inf))
    best = max(rows, key=rank)
    return {"rows": rows, "best": {k: best[k] for k in grid[0]}}


def plot(env_id: str, result: dict, path: Path) -> None:
    lines = [
        {
            "x": run["curve_seconds"],
            "y": run["curve_return"],
            "color": f"C{METHODS.index(method)}",
            "alpha": 0.8,
            "label": method if i == 0 else None,
        }
        for method, data in result["methods"].items()
        for i, run in enumerate(data["runs"])
    ]
    panel = {
        "lines": lines,
        "hlines": [(ENVS[env_id].threshold, "threshold", ":")],
        "xlabel": "wall-clock seconds (compiling included)",
        "ylabel": f"return ({CURVE_EPISODES} fresh episodes)",
        "title": f"{env_id}: equal wall-clock, {result['seeds']} seeds",
    }
    band_plot(path, [panel])


def arguments(parser) -> None:
    parser.add_argument("--env", choices=sorted(ENVS), help="the env to run (required)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--extend",
        action="store_true",
        help="a grown grid: keep the committed sweep rows of the settings they hold "
        "and, when the best setting is unchanged, the committed runs",
    )


def output(args) -> str:
    if args.env is None:
        raise SystemExit("suite: --env is required")
    return f"suite/{args.env}"


def run(args) -> dict:
    spec = ENVS[args.env]
    result: dict[str, Any] = {
        "env": args.env,
        "seconds": args.seconds,
        "seeds": args.seeds,
        "episodes": args.episodes,
        "threshold": spec.threshold,
        "episodes_per_member": spec.episodes_per_member,
        "network": f"MLP {HIDDEN} tanh (GA: rank {GA_RANK} factors)",
        "methods": {},
    }
    earlier = read(args.output)
    for method in args.methods:
        print(f"{args.env} {method}", flush=True)
        entry: dict[str, Any] = {"machine": machine()}
        before = (earlier or {}).get("methods", {}).get(method, {}) if args.extend else {}
        setting: dict = {}
        if method in SWEEP:
            grid = SWEEP[method][:1] if args.quick else SWEEP[method]
            if method == "lrne_nres":
                grid = [{**g, "truncation_length": window(args.env, g)} for g in grid]
            measured = before.get("sweep", {}).get("rows", [])
            entry["sweep"] = sweep(
                method, args.env, grid, args.sweep_seconds, args.snapshot_seconds, measured
            )
            setting = entry["sweep"]["best"]
        if before.get("setting") == setting and len(before.get("runs", [])) == args.seeds:
            # The grown grid changed nothing: the runs of that setting stand as measured.
            print(f"  runs of {setting} kept", flush=True)
            result["methods"][method] = {**before, "sweep": entry["sweep"]}
            continue
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
            snapshots, act = train(
                method, args.env, setting, seed, args.seconds, args.snapshot_seconds
            )
            runs.append(score(act, args.env, snapshots, seed, args.episodes))
            print(f"  seed {seed}: {runs[-1]['final_return']:.1f}", flush=True)
        entry["runs"] = runs
        entry["final_return"] = mean_ci95([r["final_return"] for r in runs])
        reached = [r["seconds_to_threshold"] for r in runs if r["seconds_to_threshold"] is not None]
        entry["seeds_reaching_threshold"] = len(reached)
        entry["median_seconds_to_threshold"] = float(np.median(reached)) if reached else None
        entry["env_steps"] = float(np.mean([r["env_steps"] for r in runs]))
        result["methods"][method] = entry
    if earlier is not None and set(args.methods) != set(METHODS):
        # A rerun of some methods: keep the others' runs from the earlier file,
        # each with the machine it ran on (the envelope's machine is this run's).
        kept = {m: {"machine": earlier["machine"], **e} for m, e in earlier["methods"].items()}
        methods = {**kept, **result["methods"]}
        result["methods"] = {m: methods[m] for m in METHODS if m in methods}
    if not args.quick:
        plot(args.env, result, SUITE / f"{args.env}.png")
    return result


def load(suffix: str = "") -> dict:
    """Every env's committed result: ``suite/<env>.json``, in :data:`ENVS` order."""
    return read_each("suite/{}" + suffix, ENVS)


LABELS = {
    "lrne_es": "lrne low-rank ES",
    "lrne_ga": "lrne factorized GA",
    "lrne_nres": "lrne online ES (NRES)",
    "openes": "evosax Open_ES",
    "ppo": "rejax PPO",
}


def gaps(result: dict) -> dict[str, float] | None:
    """The best lrne method's mean final return minus each baseline's; None until the
    :data:`REQUIRED` methods ran."""
    means = {m: e["final_return"]["mean"] for m, e in result["methods"].items()}
    if not set(REQUIRED) <= set(means):
        return None
    best = max(means[m] for m in LRNE if m in means)
    return {other: best - means[other] for other in ("openes", "ppo")}


def summary(results: dict) -> dict:
    """How many envs run in full the better lrne method is below Open_ES on, and at least PPO on."""
    full = [g for g in map(gaps, results.values()) if g is not None]
    return {
        "envs_run": len(full),
        "envs_lrne_below_openes": sum(g["openes"] < 0 for g in full),
        "envs_lrne_ge_ppo": sum(g["ppo"] >= 0 for g in full),
    }


def table(results: dict) -> str:
    """The equal-wall-clock suite, env × method: README.md's headline table."""
    any_result = next(iter(results.values()))
    minutes = any_result["seconds"] / 60
    lines = [
        f"Each method trains for the same wall-clock ({minutes:g} min, compiling included) "
        f"on the same network ({any_result['network']}), {any_result['seeds']} seeds; the "
        f"final policy is scored on {any_result['episodes']} fresh episodes (mean over seeds "
        "± 95% CI over seeds). Time to threshold: median over the seeds that reached it "
        "(k/n seeds), from snapshots at growing gaps (a quarter of the time so far, 0.5 s to "
        "10 s) scored off the clock on 32 episodes; the clock starts before compiling. "
        "Settings: the best of a σ × population sweep (30 s each, one seed; NRES also "
        "sweeps its truncation W and observation normalization on/off) for the "
        "evolutionary methods (`sweep` in each JSON); rejax PPO defaults. Updates: "
        "generations (ES, GA) or truncation windows (NRES) made per run.",
        "",
        "| env (threshold) | " + " | ".join(LABELS.values()) + " | best lrne vs Open_ES / PPO |",
        "| --- | " + " | ".join("---:" for _ in LABELS) + " | --- |",
    ]
    for env in ENVS:
        if env not in results:
            lines.append(f"| {env} | " + " | ".join("not run yet" for _ in LABELS) + " | |")
            continue
        result = results[env]
        cells = []
        for method in LABELS:
            entry = result["methods"].get(method)
            if entry is None:
                cells.append("not run yet")
                continue
            cell = pm(entry["final_return"], 1)
            reached, seeds = entry["seeds_reaching_threshold"], len(entry["runs"])
            if reached:
                cell += f"<br>{entry['median_seconds_to_threshold']:.0f} s ({reached}/{seeds})"
            cell += f"<br>{entry['env_steps'] / 1e6:.1f} M steps"
            if method in LRNE and "updates" in entry["runs"][0]:
                updates = np.mean([r["updates"] for r in entry["runs"]])
                cell += f"<br>{updates:,.0f} updates"
            cells.append(cell)
        gap = gaps(result)
        if gap is None:  # some methods run so far (`--methods`): no verdict yet
            cells.append(f"{len(result['methods'])} of {len(REQUIRED)} methods run")
        else:
            cells.append(" / ".join(f"{'≥' if g >= 0 else '<'} ({g:+.1f})" for g in gap.values()))
        lines.append(f"| {env} ({result['threshold']:g}) | " + " | ".join(cells) + " |")
    counts = summary(results)
    n = counts["envs_run"]
    machines: dict[str, set[str]] = {}
    for r in results.values():
        for method, e in r["methods"].items():
            machines.setdefault(e.get("machine", r["machine"]), set()).add(LABELS[method])
    lines += [
        "",
        f"By the mean final return, the better lrne method is ≥ evosax Open_ES on "
        f"**{n - counts['envs_lrne_below_openes']}/{n}** envs run in full (target: every env) "
        f"and ≥ rejax PPO on **{counts['envs_lrne_ge_ppo']}/{n}** (target: "
        f"{TARGETS['envs_lrne_ge_ppo'][1]} of the {len(ENVS)}).",
        "",
        "Machines, by method: "
        + "; ".join(
            f"{name} ({', '.join(sorted(methods))})" for name, methods in sorted(machines.items())
        )
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    script(__file__)
