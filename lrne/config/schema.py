"""The schema engine: a config section is a frozen pydantic model whose fields are its keys.

A field's type, range and choices are pydantic's (``Field(ge=1)``, ``Literal[...]``);
a :class:`Quick` in its ``Annotated`` metadata is its ``--quick`` cap. :meth:`Section.parse`
reads a TOML table strictly (no coercion but int to float and list to tuple) and turns
pydantic's structured error (its ``type``, ``loc`` and ``ctx``) into a :class:`ConfigError`
naming the key, in the words of ``lrne train``.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, NamedTuple, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from lrne.errors import ArgumentError

TINYSHAKESPEARE = "tinyshakespeare"

# pydantic's error type of a failed bound -> (the sign shown, the bound's key in its ctx)
_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}


class ConfigError(ValueError):
    """A bad config value; ``key`` (``"strategy.sigma"``) names it, or is ``""``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class Quick(NamedTuple):
    """``--quick`` caps the value (each element of a list) at ``cap``; with ``fill``, a
    ``None`` value (the library's default) becomes ``cap`` too."""

    cap: int
    fill: bool = False


def _resolve(path: str) -> str:
    return path if path == TINYSHAKESPEARE else str(Path(path).expanduser().resolve())


FilePath = Annotated[str, AfterValidator(_resolve), Field(validate_default=True)]
"""A path, resolved against the current directory when read (its default too);
``"tinyshakespeare"`` names the downloaded corpus and stays as it is."""


def _bare(hint: Any) -> Any:
    """``hint`` without ``| None`` and ``Annotated``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_args(hint)[0] if typing.get_origin(hint) is Annotated else hint


def _type_name(hint: Any) -> str:
    hint = _bare(hint)
    if typing.get_origin(hint) is tuple:
        (item, *rest) = typing.get_args(hint)
        count = "" if rest == [Ellipsis] else f"{1 + len(rest)} "
        return f"a list of {count}{_type_name(item).removeprefix('an ').removeprefix('a ')}s"
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}[hint]


class Section(BaseModel):
    """Base of a config section: its fields are the allowed keys."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    SECTION: ClassVar[str] = ""
    ARGUMENTS: ClassVar[Mapping[str, str]] = {}
    """Library argument -> the key it is, where the names differ (``"seed"`` ->
    ``"batch_seed"``); ``""``: the argument is the whole section (a task's ``policy``)."""

    @classmethod
    def keys(cls) -> list[str]:
        """The allowed keys, in order."""
        return list(cls.model_fields)

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, strict: bool = False, what: str = "") -> Self:
        """The section from a TOML table; ConfigError for unknown keys and bad values.

        With ``strict`` (a run directory's saved config), every key whose
        default is not ``None`` must be present. ``what`` names the table in an
        unknown key's message (default ``[section]``).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(cls.SECTION, f"must be a table ([{cls.SECTION}]), got {data!r}")
        try:
            section = cls.model_validate(
                {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
            )
        except ValidationError as error:
            # An unknown key first, as it may explain the others.
            first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
            raise cls._error(first, data, what) from None
        if strict:
            for name, field in cls.model_fields.items():
                if name not in data and field.default is not None:
                    raise ConfigError(f"{cls.SECTION}.{name}", "missing")
        section.check()
        return section

    @classmethod
    def _error(cls, error: Mapping[str, Any], data: Mapping[str, Any], what: str) -> ConfigError:
        """pydantic's ``error`` (one of ``ValidationError.errors()``) as a ConfigError."""
        name = str(error["loc"][0])
        key = f"{cls.SECTION}.{name}"
        if error["type"] == "extra_forbidden":
            owner = what or f"[{cls.SECTION}]"
            return ConfigError(key, f"unknown key for {owner}; allowed: {', '.join(cls.keys())}")
        value, hint = data[name], cls.model_fields[name].annotation
        if error["type"] == "literal_error":
            allowed = ", ".join(map(repr, typing.get_args(_bare(hint))))
            return ConfigError(key, f"unknown value {value!r}; allowed: {allowed}")
        if error["type"] in _BOUNDS:
            sign, bound = _BOUNDS[error["type"]]
            limit = error["ctx"][bound]
            return ConfigError(key, f"must be {_type_name(hint)} {sign} {limit:g}, got {value!r}")
        if typing.get_origin(_bare(hint)) is tuple:
            args = typing.get_args(_bare(hint))
            fixed = args[-1] is not Ellipsis
            strings = _bare(args[0]) is str
            example = "[2, 2]" if fixed else '["LayerNorm"]' if strings else "[64, 64]"
            return ConfigError(key, f"must be {_type_name(hint)}, e.g. {example}; got {value!r}")
        return ConfigError(key, f"must be {_type_name(hint)}, got {value!r}")

    def check(self) -> None:
        """Checks across keys of the section (none by default); raises ConfigError."""

    def to_dict(self) -> dict[str, Any]:
        """The set keys as TOML values (``None`` left out); a kind's own keys first."""
        own = inspect.get_annotations(type(self))
        data = self.model_dump(mode="json", exclude_none=True)
        return dict(sorted(data.items(), key=lambda kv: (kv[0] != "kind", kv[0] not in own)))

    def shrink(self, keep: Container[str] = ()) -> Self:
        """The ``--quick`` version: values capped by their :class:`Quick` metadata, but
        the keys in ``keep`` (``"strategy.population_size"``) stay as they are."""
        changes: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            quick = next((m for m in field.metadata if isinstance(m, Quick)), None)
            value = getattr(self, name)
            if quick is None or f"{self.SECTION}.{name}" in keep:
                continue
            if value is None:
                if quick.fill:
                    changes[name] = quick.cap
            elif isinstance(value, tuple):
                changes[name] = tuple(min(v, quick.cap) for v in value)
            else:
                changes[name] = min(value, quick.cap)
        return self.model_copy(update=changes)


def library_error(error: ValueError, *sections: Section | None) -> ConfigError:
    """A library's ``error``, raised while building from ``sections``, as a ConfigError.

    An :class:`~lrne.errors.ArgumentError` names the key of its ``argument`` in the
    first of ``sections`` that has it (see :attr:`Section.ARGUMENTS`); any other
    error, or an argument no section has, names the first section.
    """
    message = str(error).splitlines()[0]
    present = [s for s in sections if s is not None]
    if isinstance(error, ArgumentError):
        for section in present:
            name = section.ARGUMENTS.get(error.argument, error.argument)
            if not name:
                return ConfigError(section.SECTION, message)
            if name in section.keys():
                return ConfigError(f"{section.SECTION}.{name}", message)
    return ConfigError(present[0].SECTION, message)
