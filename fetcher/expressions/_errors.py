"""Errors of expressions: a syntax or type error at a position, and a derivation's problems."""

from __future__ import annotations

from dataclasses import dataclass

_MAX_QUOTE = 80  # an expression quoted in a message is cut to this many characters


def position(text: str, offset: int) -> str:
    """`column 7` (1-based), or `line 2, column 3` when the expression spans lines."""
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"column {column}" if "\n" not in text else f"line {line}, column {column}"


def quote(text: str) -> str:
    """An expression as messages quote it: in double quotes, cut to a bounded length."""
    flat = " ".join(text.split())
    return '"' + (flat if len(flat) <= _MAX_QUOTE else flat[: _MAX_QUOTE - 3] + "...") + '"'


class ExpressionError(Exception):
    """A syntax or type error of one expression, at `offset` (0-based) of `text`."""

    def __init__(self, message: str, offset: int, text: str = "") -> None:
        self.message = message
        self.offset = offset
        self.text = text
        super().__init__(f"{position(text, offset)}: {message}")

    @property
    def column(self) -> int:
        """The 1-based column of the problem (on its line)."""
        offset = max(0, min(self.offset, len(self.text)))
        return offset - (self.text.rfind("\n", 0, offset) + 1) + 1

    def with_text(self, text: str) -> ExpressionError:
        """The same error, positioned in `text` (the parser raises it before it knows it)."""
        return ExpressionError(self.message, self.offset, text)


@dataclass(frozen=True, slots=True)
class DerivationProblem:
    """One problem of one derivation.

    `kind` says which check found it: "syntax" and "type" (the expression itself), "name"
    (the derivation's own name), "unknown" (a name that is neither an input nor a
    derivation) and "cycle" (derivations that use each other); `hint` is a fix, or "".
    """

    derivation: str
    kind: str
    message: str
    hint: str = ""

    def render(self) -> str:
        """`<derivation>: <message>` (the hint, if any, after "Fix:")."""
        fix = f". Fix: {self.hint}" if self.hint else ""
        return f"{self.derivation}: {self.message}{fix}"


class DerivationError(Exception):
    """Derivations that do not compile; `.problems` lists every problem found."""

    def __init__(self, problems: list[DerivationProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.render() for p in problems))
