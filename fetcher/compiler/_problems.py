"""Problems found by a compile: where (file, line, object, field), what, and the fix."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Stage(enum.IntEnum):
    """The validation stages, in the order they run; a stage with errors stops the compile."""

    DISCOVERY = 0
    SCHEMA = 1
    CONSISTENCY = 2
    DEPENDENCIES = 3
    EVOLUTION = 4
    PERFORMANCE = 5
    OUTPUT = 6

    @property
    def label(self) -> str:
        """The stage's name as reports show it: schema, consistency..."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Problem:
    """One error or warning of a definition, with the fix."""

    stage: Stage
    file: str  # relative to the repository
    line: int
    definition: str  # the definition's served name ("" when the file itself is the problem)
    field: str  # e.g. "aggregations[0].operation"; "" for the whole object
    problem: str
    fix: str
    warning: bool = False

    def render(self) -> str:
        """`file:line: object: field: problem. Fix: fix` (the human form)."""
        where = ": ".join(part for part in (self.definition, self.field) if part)
        head = f"{self.file}:{self.line}: " + (f"{where}: " if where else "")
        kind = "warning: " if self.warning else ""
        return f"{head}{kind}{self.problem}. Fix: {self.fix}"

    def as_json(self) -> dict[str, object]:
        """The problem as the --json report lists it."""
        return {
            "stage": self.stage.label,
            "file": self.file,
            "line": self.line,
            "object": self.definition,
            "field": self.field,
            "problem": self.problem,
            "fix": self.fix,
        }


@dataclass(slots=True)
class ProblemSink:
    """Collects the problems of one stage for one definition (file, line, object)."""

    stage: Stage
    file: str
    line: int
    definition: str
    items: list[Problem] = field(default_factory=list)

    def error(self, field_name: str, problem: str, fix: str) -> None:
        """Record an error of `field_name` of the current object."""
        self.items.append(
            Problem(self.stage, self.file, self.line, self.definition, field_name, problem, fix)
        )

    def warn(self, field_name: str, problem: str, fix: str) -> None:
        """Record a warning (an error under --strict)."""
        self.items.append(
            Problem(
                self.stage, self.file, self.line, self.definition, field_name, problem, fix, True
            )
        )
