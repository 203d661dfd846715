"""Use a run that ``lrne train`` wrote: :func:`load_run`; the episodes ``lrne render`` draws.

A run directory holds ``config.toml`` (the run's whole config, resolved: it is
itself a valid ``--config``), ``run_state/`` (the strategy state every
``checkpoint_every`` generations and at the end, orbax), ``checkpoint/`` (the
best params), ``metrics.jsonl``, ``learning_curve.png`` and ``summary.json``.
:func:`load_run` rebuilds the strategy, task and model from the config and
restores the latest readable state, read-only (a killed run loads too).

Garbus & Pollack 2025, *Low Rank Factorizations are Indirect Encodings for Deep
Neuroevolution* (arXiv 2504.03037).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrne.config import Config, ConfigError, read_toml
from lrne.genome import PyTree

CONFIG_FILE = "config.toml"


def run_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """``(run key, test key)`` of a run's seed: the run's generations, and the
    fresh evaluations of ``summary.json`` (and of ``lrne eval`` by default)."""
    key_run, key_test = jax.random.split(jax.random.key(seed))
    return key_run, key_test


class SavedRun(NamedTuple):
    """A run loaded by :func:`load_run`.

    Attributes:
        config: the run's :class:`~lrne.config.Config`.
        strategy, task: rebuilt from the config.
        model: the task's flax module (None for a task without one, Lorenz).
        state: the strategy state after ``generation`` generations.
        generation: generations done at the restored checkpoint.
        params: ``state.best_params``, the best variables found.
        mean: the search distribution's mean variables (ES, online ES; for
            online ES the same as ``params``), else None.
        path: the run directory.
    """

    config: Config
    strategy: Any
    task: Any
    model: Any
    state: Any
    generation: int
    params: PyTree
    mean: PyTree | None
    path: Path

    @property
    def answer(self) -> PyTree:
        """What the run answers with: the mean where the strategy has one, else the best."""
        return self.params if self.mean is None else self.mean


def read_config(run_dir: str | Path) -> Config:
    """The config of a run directory, every key present (ConfigError otherwise)."""
    path = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).is_dir():
        raise ConfigError("", f"{str(run_dir)!r} is not a directory")
    if not path.is_file():
        raise ConfigError("", f"no {CONFIG_FILE} in {str(run_dir)!r}: not a run of lrne train")
    try:
        return Config.from_dict(read_toml(path), strict=True)
    except ConfigError as error:
        raise ConfigError("", f"{path}: {error}") from None


def completed_generations(run_dir: str | Path) -> int:
    """The newest checkpointed generation in ``run_dir/run_state`` (0 if none)."""
    state_dir = Path(run_dir) / "run_state"
    steps = (
        [int(p.name) for p in state_dir.glob("*") if p.name.isdigit()] if state_dir.is_dir() else []
    )
    return max(steps, default=0)


def template(config: Config, strategy: Any, task: Any) -> PyTree:
    """Shapes, dtypes and placement of a run's checkpoints (what :func:`lrne.run` saves)."""
    from jax.sharding import NamedSharding, PartitionSpec

    from lrne.distributed import population_mesh

    key_run, _ = run_keys(config.run.seed)
    key_params, key_init, _ = jax.random.split(key_run, 3)
    state = jax.eval_shape(lambda: strategy.init(key_init, task.init_params(key_params), task))
    key = jax.eval_shape(lambda: jax.random.key_data(key_run))
    # Replicated over the local devices, as lrne train holds the state: functions
    # compiled for the run's arrays (lrne.evaluate_best) then serve these too.
    sharding = NamedSharding(population_mesh(jax.local_devices()), PartitionSpec())
    place = lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding)
    return jax.tree.map(place, {"state": state, "key": key})


def restore_latest(run_dir: str | Path, abstract: PyTree) -> tuple[int, PyTree] | None:
    """``(step, tree)`` of the newest readable checkpoint in ``run_dir/run_state``; read-only
    (unlike :class:`lrne.checkpoint.RunCheckpoints`, damaged steps are skipped, not moved)."""
    import orbax.checkpoint as ocp

    directory = (Path(run_dir) / "run_state").resolve()
    if not directory.is_dir():
        return None
    handler = ocp.StandardCheckpointHandler()
    with ocp.CheckpointManager(directory, item_handlers=handler) as manager:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                return step, manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception:  # orbax raises several types for damaged files
                continue
    return None


def load_run(run_dir: str | Path) -> SavedRun:
    """Load a run of ``lrne train`` (finished or killed) for use in Python.

    Args:
        run_dir: the run's directory (``run.output``).

    Returns:
        A :class:`SavedRun`: the config, the rebuilt strategy, task and model,
        and the latest readable strategy state with its best and mean params.

    Raises:
        ConfigError: no run there, a damaged or incomplete ``config.toml``, a
            config this lrne cannot build (e.g. its text file is gone), or no
            readable checkpoint.

    Example:
        >>> run = lrne.load_run("runs/train")
        >>> lrne.evaluate_best(run.task, run.params, jax.random.key(0))
        >>> run.model.apply(run.params, obs)  # the policy's outputs
    """
    config = read_config(run_dir)
    strategy, task, model = config.build()
    restored = restore_latest(run_dir, template(config, strategy, task))
    if restored is None:
        raise ConfigError("", f"no readable checkpoint in {str(Path(run_dir) / 'run_state')!r}")
    generation, tree = restored
    state = tree["state"]
    # ES and online ES answer with their mean (a field of their state); GA and
    # Metropolis have none.
    mean = getattr(state, "mean", None)
    return SavedRun(
        config, strategy, task, model, state, generation, state.best_params, mean, Path(run_dir)
    )


class Episode(NamedTuple):
    """One episode played by a policy: the states and observations from the reset to
    the end (``len(rewards) + 1`` each), the rewards and their running sum."""

    states: list
    observations: list
    rewards: np.ndarray
    returns: np.ndarray


def rollout(task: Any, params: PyTree, key: jax.Array, max_steps: int) -> Episode:
    """Play one episode of a :class:`lrne.tasks.Gymnax` task with ``params`` (at most
    ``max_steps`` steps, and at most the task's ``max_steps``)."""
    env, env_params = task.env, task.env_params
    num_steps = min(max_steps, task.max_steps)

    @jax.jit
    def play(params: PyTree, key: jax.Array) -> tuple:
        key_reset, key_steps = jax.random.split(key)
        obs, state = env.reset_env(key_reset, env_params)

        def step(carry: tuple, k: jax.Array) -> tuple:
            obs, state, done = carry
            out = env.step_env(k, state, task.action(params, obs), env_params)
            obs, state, reward, terminated = out[:4]
            truncated = out[4] if len(out) == 6 else env.is_truncated(state, env_params)
            done = done | terminated | truncated
            return (obs, state, done), (obs, state, reward, done)

        carry = (obs, state, jnp.asarray(False))
        _, seq = jax.lax.scan(step, carry, jax.random.split(key_steps, num_steps))
        return (obs, state), seq

    (obs0, state0), (obs, states, rewards, done) = jax.device_get(play(params, key))
    length = int(np.argmax(done)) + 1 if done.any() else num_steps
    take = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    rewards = np.asarray(rewards[:length], np.float64)
    return Episode(
        [state0, *(take(states, i) for i in range(length))],
        [obs0, *(take(obs, i) for i in range(length))],
        rewards,
        np.concatenate([[0.0], np.cumsum(rewards)]),
    )


def draw_with_gymnax(env: Any, env_params: Any, episode: Episode, path: Path) -> None:
    """Write ``episode`` as a GIF with gymnax's own visualizer (classic control,
    MinAtar, bsuite, misc), headless (matplotlib's Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from gymnax.visualize import Visualizer, vis_gym

    if env.name in vis_gym.SUPPORTED_GYM_ENVS:
        # Headless: pygame (which gymnasium initializes per frame) needs no
        # display and no sound card.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        # Gymnasium draws classic control with pygame, an optional dependency;
        # inside the animation a missing one surfaces as an unrelated error.
        try:
            vis_gym.render_gym_frame(env.name, episode.states[0], env_params)
        except Exception as error:
            if not isinstance(error, ImportError) and "pygame" not in str(error):
                raise
            raise ConfigError(
                "",
                f"drawing {env.name} needs pygame (gymnasium's classic-control renderer): "
                "pip install pygame",
            ) from None
    Visualizer(env, env_params, episode.states, episode.returns).animate(str(path))


def write_gif(frames: list, path: Path, fps: int = 20, size: int = 256) -> None:
    """Write grey images in [0, 1] (each (H, W)) as a GIF, scaled up to about ``size`` pixels."""
    from PIL import Image

    images = []
    for frame in frames:
        pixels = np.clip(np.asarray(frame, np.float32), 0.0, 1.0)
        scale = max(1, size // max(pixels.shape))
        pixels = np.kron(pixels, np.ones((scale, scale), np.float32))
        images.append(Image.fromarray((pixels * 255).astype(np.uint8)))
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0, format="GIF"
    )
