"""What the commands show of a run, by task kind: words for a fresh score, a GIF of a
policy playing one episode (:func:`rollout`), text a language model writes."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrne.cli.parser import UsageError
from lrne.config import TaskSection
from lrne.errors import ArgumentError
from lrne.genome import PyTree

_RETURN = "mean return {fitness:.6g} over {episodes} fresh episodes"
_SCORES: dict[str, str] = {
    "gymnax": _RETURN,
    "pixel_pendulum": _RETURN,
    "language_model": "held-out loss {loss:.4f} nats/char",
    "lorenz": "loss {loss:.6g} (mean (z - z*)^2 over the horizon)",
    "classification": "{section.objective} {fitness:.4f} on the test split",
}


def describe(section: TaskSection, fitness: float, episodes: int) -> str:
    """Words for a :func:`lrne.evaluate_best` value of the task of ``section``."""
    words = _SCORES.get(section.kind, "fresh fitness {fitness:.6g}")
    return words.format(section=section, fitness=fitness, loss=-fitness, episodes=episodes)


class Episode(NamedTuple):
    """One episode played by a policy: the states and observations from the reset to
    the end (``len(rewards) + 1`` each), the rewards and their running sum."""

    states: list
    observations: list
    rewards: np.ndarray
    returns: np.ndarray


def rollout(task: Any, params: PyTree, key: jax.Array, max_steps: int | None = None) -> Episode:
    """Play one episode of a :class:`lrne.tasks.Gymnax` task with ``params`` (at most
    ``max_steps`` steps, and at most the task's ``max_steps``), stepped by the task's
    own :meth:`~lrne.tasks.Gymnax.env_step`."""
    num_steps = min(max_steps or task.max_steps, task.max_steps)

    @jax.jit
    def play(params: PyTree, key: jax.Array) -> tuple:
        key_reset, key_steps = jax.random.split(key)
        obs, state = task.env.reset_env(key_reset, task.env_params)

        def step(carry: tuple, k: jax.Array) -> tuple:
            obs, state, done = carry
            obs, state, reward, ended = task.env_step(k, state, task.action(params, obs))
            done = done | ended
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
    MinAtar, bsuite, misc), headless (matplotlib's Agg backend).

    Raises:
        UsageError: a classic-control env, and no pygame to draw it with.
    """
    import matplotlib

    matplotlib.use("Agg")
    from gymnax.visualize import Visualizer, vis_gym

    if env.name in vis_gym.SUPPORTED_GYM_ENVS:
        # Gymnasium draws classic control with pygame, an optional dependency.
        if importlib.util.find_spec("pygame") is None:
            raise UsageError(
                f"drawing {env.name} needs pygame (gymnasium's classic-control renderer): "
                "pip install pygame"
            )
        # Headless: pygame needs no display and no sound card.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
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


def _draw_env(task: Any, episode: Episode, path: Path) -> None:
    draw_with_gymnax(task.env, task.env_params, episode, path)


def _draw_pixels(task: Any, episode: Episode, path: Path) -> None:
    write_gif([obs[..., -1] for obs in episode.observations], path, fps=20)


_DRAW: dict[str, Callable[[Any, Episode, Path], None]] = {
    "gymnax": _draw_env,
    "pixel_pendulum": _draw_pixels,  # the newest frame of each observation
}


def render(
    section: TaskSection,
    task: Any,
    params: PyTree,
    key: jax.Array,
    path: Path,
    max_steps: int | None = None,
) -> int:
    """Write a GIF of ``params`` playing one episode of ``task`` (built from ``section``)
    to ``path``; returns the frames written.

    Raises:
        UsageError: the task kind has nothing to draw.
    """
    if section.kind not in _DRAW:
        raise UsageError(f"task kind {section.kind!r} has nothing to render")
    episode = rollout(task, params, key, max_steps)
    _DRAW[section.kind](task, episode, path)
    return len(episode.states)


def sample(
    section: TaskSection,
    task: Any,
    params: PyTree,
    prompt: str,
    length: int,
    key: jax.Array,
    temperature: float = 1.0,
) -> str:
    """Text ``params`` write after ``prompt`` (a language-model task built from ``section``).

    Raises:
        UsageError: not a language model, or a prompt it cannot read.
    """
    if section.kind != "language_model":
        raise UsageError(f"task kind {section.kind!r} is not a language model: nothing to sample")
    try:
        return task.sample(params, prompt, length, key, temperature)
    except ArgumentError as error:
        flag = {"text": "prompt"}.get(error.argument, error.argument)
        raise UsageError(f"argument --{flag}: {error}") from None
