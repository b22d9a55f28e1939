"""The one error a Feast repo that cannot be served raises."""

from __future__ import annotations


class FeastError(Exception):
    """A feature_store.yaml or registry the fetcher cannot serve; `.problems` lists each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n  ".join(problems)
        super().__init__(f"feast repo {source}: {len(problems)} problem(s):\n  {lines}")
