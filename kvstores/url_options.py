"""Store URL query options: `?name=value&...` -> constructor keywords, each parsed and checked.

Shared by the factory and the backends' own URL parsers (Cassandra's), so every backend
reports a bad option the same way, naming the URL and the option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A number > 0."""
    value = float(text)
    if not value > 0:
        raise ValueError(f"expected a number > 0, got {text!r}")
    return value


def flag(text: str) -> bool:
    """true/false, 1/0, yes/no, on/off (any case)."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


# option name -> (constructor keyword, parser); the keyword differs when the URL
# unit is friendlier than the constructor's (map_size_mb vs bytes).
Option = tuple[str, Callable[[str], Any]]


def parse_options(url: str, query: str, accepted: dict[str, Option]) -> dict[str, Any]:
    """Parse the query string into constructor keywords; ValueError names the bad option."""
    names = ", ".join(sorted(accepted))
    kwargs: dict[str, Any] = {}
    for name, text in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if name not in accepted:
            raise ValueError(f"store URL {url!r}: unknown option {name!r}; accepted: {names}")
        keyword, parse = accepted[name]
        if keyword in kwargs:
            raise ValueError(f"store URL {url!r}: option {name!r} given twice")
        try:
            kwargs[keyword] = parse(text)
        except ValueError as exc:
            raise ValueError(f"store URL {url!r}: option {name!r}: {exc}") from None
    return kwargs
