"""The errors of a backfill a user can cause."""

from __future__ import annotations


class BackfillArgumentError(ValueError):
    """A bad argument: `argument` names it (`--source`, `--end`, ...), `message` says why."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}")
        self.argument = argument
        self.message = message


class BackfillSetupError(Exception):
    """The backfill cannot start: bad catalog, unknown group, a store that cannot be opened."""
