"""Derived features: a small expression language over a service's features and request-time
values, its type checker, and its columnar evaluator (docs/derivations.md).

Owns: the tokenizer and parser (text -> syntax tree; never Python's eval), the types
(fetcher.types.FeatureType) of expressions, the null and error rules, the dependency order
of a service's derivations (cycles and unknown names refused), and closures compiled once
that evaluate a batch column by column.

Pure: imports only fetcher.types and the standard library, so the compiler, the catalog and
the serving path can all use it; it must not import any other fetcher layer.
"""

from fetcher.expressions._ast import Binary, Call, Literal, Name, Node, Unary, names
from fetcher.expressions._check import FUNCTIONS, Typed, check, type_name
from fetcher.expressions._derivations import (
    Analysis,
    CompiledDerivations,
    DerivedColumn,
    InputColumn,
    analyze_derivations,
    compile_derivations,
)
from fetcher.expressions._errors import DerivationError, DerivationProblem, ExpressionError
from fetcher.expressions._parser import INT64_MAX, INT64_MIN, KEYWORDS, parse

__all__ = [
    "FUNCTIONS",
    "INT64_MAX",
    "INT64_MIN",
    "KEYWORDS",
    "Analysis",
    "Binary",
    "Call",
    "CompiledDerivations",
    "DerivationError",
    "DerivationProblem",
    "DerivedColumn",
    "ExpressionError",
    "InputColumn",
    "Literal",
    "Name",
    "Node",
    "Typed",
    "Unary",
    "analyze_derivations",
    "check",
    "compile_derivations",
    "names",
    "parse",
    "type_name",
]
