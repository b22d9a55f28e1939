"""A service's request-time values and derivations checked against its groups' features:
parsed and type-checked with fetcher.expressions, each declared type the checked one."""

from __future__ import annotations

from collections.abc import Mapping

from fetcher.catalog._fields import Problems
from fetcher.expressions import analyze_derivations, type_name
from fetcher.types import FeatureGroup, FeatureService, FeatureType


def check_derivations(service: FeatureService, groups: Mapping[str, FeatureGroup],
                      p: Problems) -> None:
    """Every derivation parses, type-checks to its declared type over the service's
    features (after prefixes) and context values; names are unique; no cycle."""
    if not service.context and not service.derivations:
        return
    rel = service.source
    inputs: dict[str, FeatureType] = {}
    for join in service.joins:
        group = groups.get(join.group)
        if group is None:
            return  # reported by check_service (or the group's own file)
        for feature in group.features:
            inputs.setdefault(join.prefix + feature.name, feature.type)
    for i, value in enumerate(service.context):
        if value.name in inputs:
            p.add(rel, f"context[{i}].name", f"{value.name!r} is also a feature of the service",
                  "rename the request-time value")
        elif any(value.name == other.name for other in service.context[:i]):
            p.add(rel, f"context[{i}].name", f"{value.name!r} is listed twice",
                  "remove the duplicate")
        inputs.setdefault(value.name, value.type)
    where = {d.name: i for i, d in reversed(list(enumerate(service.derivations)))}
    analysis = analyze_derivations([(d.name, d.expression) for d in service.derivations],
                                   inputs)
    found: list[tuple[int, str, str, str]] = []  # reported in the order of the file
    for found_problem in analysis.problems:
        index = where.get(found_problem.derivation, -1)
        field = f"derivations[{index}]" if index >= 0 else "derivations"
        found.append((index, field, f"{found_problem.derivation}: {found_problem.message}",
                      found_problem.hint or "correct the derivation"))
    for i, d in enumerate(service.derivations):
        checked = analysis.types.get(d.name)
        if checked is not None and where[d.name] == i and checked is not d.type:
            found.append((i, f"derivations[{i}].type", f"is {type_name(d.type)} but the "
                          f"expression is {type_name(checked)}",
                          f'write "type": "{type_name(checked)}"'))
    for _, field, problem, fix in sorted(found, key=lambda f: f[0]):
        p.add(rel, field, problem, fix)
