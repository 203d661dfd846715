"""Every strategy by name, with its defaults as data: what tests, configs, the CLI and the
evosax adapters use.

``make(name, population_size, **overrides)`` builds a strategy whose population
(the members one generation evaluates) has ``population_size`` members;
``overrides`` replace the defaults (any argument of the factory, and
``learning_rate`` beside an optimizer name). The online ES entries (``nres``,
``pes``, ``tes``, ``full_es``) build N = population_size / 2 particles and need
``horizon=task.horizon``.

The defaults live here and nowhere else: :data:`DEFAULTS` holds the registry's
own values per name, :func:`defaults` adds the factory's signature defaults and
applies the size rules, and the config schema (:mod:`lrne.config`), ``lrne
train`` and the evosax adapters read them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import optax

from lrne.errors import ArgumentError
from lrne.strategies.base import Strategy
from lrne.strategies.es import es
from lrne.strategies.ga import ga
from lrne.strategies.metropolis import metropolis
from lrne.strategies.online import full_es, nres, pes, tes

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd", "rmsprop", "adabelief", "lion", "nadam")
"""The optax aliases an optimizer may be named by (``optax.<name>(learning_rate)``)."""

_GA: dict[str, Any] = {"sigma": 0.5, "elite_ratio": 1 / 16}
_ES: dict[str, Any] = {"sigma": 0.05, "optimizer": "adam", "learning_rate": 0.03}

DEFAULTS: dict[str, dict[str, Any]] = {
    "ga": {**_GA},
    "ga_subspace": {**_GA, "density": 0.1, "mask": "static"},
    "es": {**_ES},
    "es_lowrank": {**_ES, "noise_rank": 1},
    "es_subspace": {**_ES, "density": 0.1},
    "metropolis": {"sigma": 0.02, "beta": 100.0},
    "nres": {**_ES, "windows_per_episode": 4},
    "pes": {**_ES, "windows_per_episode": 4},
    "tes": {**_ES, "windows_per_episode": 4},
    "full_es": {**_ES},
}
"""Strategy name -> the registry's default values (TOML values, so they can be written
to a config). Keys are arguments of the factory, except:

- ``optimizer``: an optax alias name (:data:`OPTIMIZERS`), built with
  ``learning_rate`` (:func:`optimizer`);
- ``elite_ratio``: ``num_elites = max(1, floor(elite_ratio · population_size))``
  (the meaning of evosax's ``elite_ratio``);
- ``windows_per_episode``: ``truncation_length`` is the largest divisor of the
  horizon that is at most ``horizon / windows_per_episode`` (exactly that where it
  divides): at least that many updates per episode. For RL the horizon is the
  env's episode length (``task.horizon``: CartPole-v1 500 steps, W = 125; MinAtar
  1000, W = 250); set ``truncation_length`` to update more often.

The factory's own signature defaults (``noise_rank=0``, ``antithetic=True``, ...)
are not restated here; :func:`defaults` adds them."""

FACTORIES: dict[str, Callable[..., Strategy]] = {
    "ga": ga,
    "ga_subspace": ga,
    "es": es,
    "es_lowrank": es,
    "es_subspace": es,
    "metropolis": metropolis,
    "nres": nres,
    "pes": pes,
    "tes": tes,
    "full_es": full_es,
}
"""Strategy name -> the library function it builds; its first argument is the
population size (the number of chains for ``metropolis``, of particles,
population_size / 2, for the online ES)."""

ONLINE: frozenset[str] = frozenset({"nres", "pes", "tes", "full_es"})
"""The online ES entries: their factories need ``horizon=task.horizon`` and an
:class:`~lrne.tasks.Unrollable` task (what a config-driven caller must know)."""

_DATA = (bool, int, float, str)


def _is_data(value: Any) -> bool:
    """A TOML value: a scalar, or a tuple of scalars."""
    if isinstance(value, tuple):
        return all(isinstance(v, _DATA) for v in value)
    return isinstance(value, _DATA)


def _check_name(name: str) -> None:
    if name not in FACTORIES:
        raise ValueError(f"strategy: unknown name {name!r}; known: {', '.join(sorted(FACTORIES))}")


def _parameters(name: str) -> list[inspect.Parameter]:
    """The factory's parameters after its size, ``horizon`` left out (a task's, not a choice)."""
    _check_name(name)
    params = list(inspect.signature(FACTORIES[name]).parameters.values())[1:]
    return [p for p in params if p.name != "horizon"]


def options(name: str) -> tuple[str, ...]:
    """The keyword arguments strategy ``name`` takes besides its size and ``horizon``:
    its factory's, with ``learning_rate`` after ``optimizer``."""
    names: list[str] = []
    for param in _parameters(name):
        names += [param.name, "learning_rate"] if param.name == "optimizer" else [param.name]
    return tuple(names)


def defaults(name: str, population_size: int, horizon: int | None = None) -> dict[str, Any]:
    """Every default value strategy ``name`` is built with at ``population_size`` (and,
    for an online ES, ``horizon``): the factory's signature defaults that are TOML
    values, then :data:`DEFAULTS` with its size rules applied.

    Args:
        name: a key of :data:`REGISTRY`.
        population_size: members per generation.
        horizon: the task's episode length (what an online ES's
            ``truncation_length`` default is derived from); None leaves that out.

    Returns:
        Keyword values, TOML values only: ``optimizer`` is an optax alias name
        with its ``learning_rate``, ``freeze`` a tuple of strings.

    Example:
        >>> defaults("es_lowrank", 64)["sigma"]
        0.05
        >>> defaults("ga", 256)["num_elites"]
        16
    """
    out = {
        p.name: p.default
        for p in _parameters(name)
        if p.default is not p.empty and _is_data(p.default)
    }
    data = dict(DEFAULTS[name])
    ratio = data.pop("elite_ratio", None)
    if ratio is not None:
        out["num_elites"] = max(1, int(ratio * population_size))
    windows = data.pop("windows_per_episode", None)
    if windows is not None and isinstance(horizon, int) and horizon > 0:
        most = max(1, horizon // windows)
        out["truncation_length"] = max(w for w in range(1, most + 1) if horizon % w == 0)
    out.update(data)
    return out


def optimizer(name: str, learning_rate: optax.ScalarOrSchedule) -> optax.GradientTransformation:
    """``optax.<name>(learning_rate)``, ``name`` one of :data:`OPTIMIZERS`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown name {name!r}; known: {', '.join(OPTIMIZERS)}")
    return getattr(optax, name)(learning_rate)


def make(name: str, population_size: int, **overrides: Any) -> Strategy:
    """The registered strategy ``name`` with ``population_size`` members per generation.

    Args:
        name: a key of :data:`REGISTRY`.
        population_size: members per generation (even for an online ES: N pairs).
        **overrides: factory arguments replacing :func:`defaults`; ``optimizer``
            may be an optax optimizer, or a name of :data:`OPTIMIZERS` built with
            ``learning_rate`` (which alone changes the default optimizer's rate).

    Returns:
        The strategy.
    """
    _check_name(name)
    size = population_size
    if name in ONLINE:
        if not isinstance(population_size, int) or population_size < 2 or population_size % 2:
            raise ArgumentError(
                "population_size",
                "population_size must be an even int >= 2 (an online ES unrolls N antithetic "
                f"pairs, 2N members), got {population_size!r}",
            )
        if "horizon" not in overrides:
            raise ValueError(
                "horizon is required for an online ES: pass horizon=task.horizon "
                "(the episode length T)"
            )
        size = population_size // 2
    kw = {**defaults(name, population_size, overrides.get("horizon")), **overrides}
    if "optimizer" in kw:
        rate = kw.pop("learning_rate", None)
        if isinstance(kw["optimizer"], str):
            kw["optimizer"] = optimizer(kw["optimizer"], rate)
        elif "learning_rate" in overrides:
            raise ValueError(
                "learning_rate goes with an optimizer name (optimizer='adam'), "
                "not with an optax optimizer"
            )
    return FACTORIES[name](size, **kw)


REGISTRY: dict[str, Callable[..., Strategy]] = {
    name: functools.partial(make, name) for name in FACTORIES
}
"""Strategy name -> factory ``(population_size, **overrides) -> Strategy`` (:func:`make`)."""
