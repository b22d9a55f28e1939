"""Client input quoted in an error message or a log line, cut to a bounded length.

A status message travels in a response header: one that echoes a 100 KB name would pass
the client's metadata limit (16 KB by default) and turn a NOT_FOUND into
RESOURCE_EXHAUSTED; in a log line it would let a client flood the log.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Characters of client input kept in a message: room for any real name.
QUOTE_LIMIT = 80
#: Items of a client-sent list named in one message.
LIST_LIMIT = 5


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)`, cut to `limit` characters of the value with its length said when cut."""
    if isinstance(value, str | bytes) and len(value) > limit:
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"{value[:limit]!r}... ({len(value)} {unit})"
    text = repr(value)
    if len(text) > limit + 2:
        return f"{text[:limit]}... ({len(text)} chars)"
    return text


def cut(text: str, limit: int = 300) -> str:
    """`text` as it is when it fits in `limit` characters, else its start and "..." (for
    messages that carry an exception's text, which may quote a whole input file)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted_list(values: Iterable[object], limit: int = LIST_LIMIT) -> str:
    """The first `limit` values, quoted, comma-separated, then how many more there were."""
    items = list(values)
    shown = ", ".join(quoted(v) for v in items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown
