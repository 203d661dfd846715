"""The library's structured error for a bad argument, below every other module."""

from __future__ import annotations


class ArgumentError(ValueError):
    """A bad argument: ``argument`` names it (``"sigma"``, ``"truncation_length"``).

    A ``ValueError``, so ``except ValueError`` still catches it; callers that
    map arguments to their own names (the config schema: ``strategy.sigma``)
    read ``argument`` and never parse the message.
    """

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        self.message = message
        super().__init__(message)
