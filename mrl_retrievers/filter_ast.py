"""The filter AST (what ``filters.parse_filter`` produces) and JSON-value equality.

The shared vocabulary of the Python reference evaluator (``filters``) and the SQL compiler
(``_filter_sql``): both import it, neither imports the other's internals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from .errors import UnsupportedFilterError

OPERATORS = (
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
    "$contains", "$any", "$all", "$text", "$itext", "$exists", "$empty",
)  # fmt: skip
COMBINATORS = ("$and", "$or", "$not")


# --- the AST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``key <op> operand`` on one top-level key. List operands are tuples, object operands are
    read-only mappings, so a parsed filter cannot change under a caller."""

    key: str
    op: str
    operand: Any


@dataclass(frozen=True)
class And:
    """All children hold."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child holds."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """None of the children holds (one child: plain negation)."""

    children: tuple[Node, ...]


Node = Union[Condition, And, Or, Not]
NODE_TYPES = (Condition, And, Or, Not)


def json_equal(a: Any, b: Any) -> bool:
    """JSON-value equality: numbers by value, bool is not a number, containers recursively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if is_list(a) and is_list(b):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def operator_for(table: dict[str, Any], node: Condition) -> Any:
    """The table entry for a condition's operator; a hand-built Condition may carry any op."""
    try:
        return table[node.op]
    except KeyError:
        raise UnsupportedFilterError(f"unsupported operator {node.op!r}; supported: {', '.join(OPERATORS)}") from None


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple))


__all__ = ["COMBINATORS", "NODE_TYPES", "OPERATORS", "And", "Condition", "Node", "Not", "Or", "is_list", "is_number",
           "json_equal", "operator_for"]
