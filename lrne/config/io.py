"""Config documents as TOML: read (``tomllib``), written (``tomli-w``), and layered.

A config is built from layers of nested dicts (the file or :data:`DEFAULT`, the
shortcut options, ``--set`` assignments), later keys over earlier ones
(:func:`merge`); nothing here knows a section's keys.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from lrne.config.schema import ConfigError

SECTIONS = ("run", "strategy", "task", "model")
# A section whose discriminator changes (in a later layer) starts afresh from its defaults.
DISCRIMINATORS = {"strategy": "name", "task": "kind", "model": "kind"}

DEFAULT: dict[str, dict[str, Any]] = {
    "run": {},
    "strategy": {"name": "ga"},
    "task": {"kind": "gymnax"},
    "model": {"kind": "mlp"},
}
"""What ``lrne train`` runs without ``--config`` (``configs/cartpole_ga.toml``): every key
at its default, the factorized GA (the registry's ``ga``) on CartPole-v1, ~10 s on 2 cores.
It names only the kinds, so that a later layer that changes one drops the others' keys."""


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as dicts; ConfigError (key ``""``) names the file and the problem."""
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError("", f"cannot read {str(path)!r}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError("", f"{str(path)!r} is not valid TOML: {error}") from None


def as_toml(data: Mapping[str, Any]) -> str:
    """Nested dicts of TOML values as a TOML document (what
    :meth:`lrne.config.Config.to_toml` writes), by ``tomli_w``."""
    return tomli_w.dumps(data)


def parse_assignment(text: str) -> tuple[str, str, Any]:
    """``"strategy.sigma=0.05"`` -> ``("strategy", "sigma", 0.05)``.

    The value is read as a TOML value (``0.05``, ``true``, ``[64, 64]``,
    ``"text"``); what is not one (``CartPole-v1``, ``runs/x``) is a string.
    """
    name, sep, raw = text.partition("=")
    parts = name.strip().split(".")
    if not sep or len(parts) != 2 or not all(re.fullmatch(r"[A-Za-z_]\w*", p) for p in parts):
        raise ConfigError(
            "--set", f"expected SECTION.KEY=VALUE (e.g. strategy.sigma=0.05), got {text!r}"
        )
    raw = raw.strip()
    if not raw:
        raise ConfigError("--set", f"{name.strip()}: empty value")
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts[0], parts[1], value


def assignments_layer(assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set`` assignments as one layer."""
    layer: dict[str, dict[str, Any]] = {}
    for text in assignments:
        section, key, value = parse_assignment(text)
        layer.setdefault(section, {})[key] = value
    return layer


def flatten(layer: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The ``"section.key"`` names a layer sets."""
    return [f"{s}.{k}" for s, table in layer.items() if isinstance(table, Mapping) for k in table]


def merge(layers: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later layers' keys over earlier ones', section by section.

    A layer that changes a section's discriminator (``strategy.name``,
    ``task.kind``, ``model.kind``) drops that section's earlier keys (the new
    kind starts from its defaults); a new task kind drops the model too.
    """
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        order = sorted(layer, key=lambda s: SECTIONS.index(s) if s in SECTIONS else len(SECTIONS))
        for section in order:
            values = layer[section]
            if not isinstance(values, Mapping):
                out[section] = values  # reported by Config.from_dict
                continue
            current = out.setdefault(section, {})
            if not isinstance(current, dict):
                current = out[section] = {}
            disc = DISCRIMINATORS.get(section)
            if disc in values and current.get(disc, values[disc]) != values[disc]:
                current.clear()
                if section == "task":
                    out.pop("model", None)
            current.update(values)
    return out
