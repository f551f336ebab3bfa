"""Compile a parsed filter (``filters.Node``) to one SQLite boolean expression with bound parameters.

Used through ``filters.to_sql`` / ``filters.register_sql_functions``. Rules this module keeps:

* Keys and values reach SQLite only as parameters; even the JSON path ``$."key"`` is a parameter.
  The SQL text depends on the filter's shape alone (a test pins that).
* Every leaf is a ``CASE`` on ``json_type`` whose branches are never NULL, so each leaf is 0 or 1
  and ``NOT`` / ``AND`` / ``OR`` stay two-valued (SQL's NULL logic would make ``NOT`` drop rows).
* ``json_type`` tells the types apart: ``json_extract`` gives 1/0 for true/false and JSON text
  for arrays/objects, so a bare ``json_extract(...) = ?`` would confuse ``true`` with ``1``.
  ``json_type`` is NULL for a missing key and ``'null'`` for a present null.
* Only SQLite >= 3.37 JSON1 functions (json_type, json_extract, json_each, json_array_length);
  no ``->``/``->>`` (3.38+).
* Two things SQLite cannot do the way the reference evaluator does, so Python does them through
  deterministic functions: Unicode case folding (SQLite's ``lower()`` is ASCII-only) and
  whole list/object equality with ``1 == 1.0`` inside (SQLite would compare JSON text).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from .errors import FilterError
from .filter_ast import And, Condition, Node, Or, json_equal, operator_for

Sql = tuple[str, list[Any]]

# `name` or `table.name`: the column is spliced into the SQL text, so it must be an identifier.
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# Inside `json_each(...) AS mrl_je`, an unqualified column with one of these names would resolve
# to json_each's own column instead of the table's.
_SHADOWED = frozenset({"key", "value", "type", "atom", "id", "parent", "fullkey", "path", "json", "root", "mrl_je"})
_NUMBER_TYPES = ("integer", "real")  # json_type's names for JSON numbers


def check_column(column: str) -> None:
    """Refuse a column expression that is not a plain (optionally table-qualified) identifier."""
    if not isinstance(column, str) or not _COLUMN_RE.match(column):
        raise FilterError(f"column must be an identifier like 'metadata' or 'docs.metadata', got {column!r}")
    if column.lower() in _SHADOWED:
        raise FilterError(f"column {column!r} collides with a json_each column; qualify it as 'table.{column}'")


def register(conn: sqlite3.Connection) -> None:
    """Register the functions compiled SQL calls; ``deterministic`` lets SQLite cache/optimize them."""
    conn.create_function("mrl_casefold", 1, _casefold, deterministic=True)
    conn.create_function("mrl_json_equal", 2, _json_text_equal, deterministic=True)


def compile_node(node: Node, column: str) -> Sql:
    """The SQL for one AST node over ``column`` (already checked)."""
    if isinstance(node, Condition):
        return operator_for(_LEAVES, node)(column, '$."' + node.key + '"', node.operand)
    parts = [compile_node(child, column) for child in node.children]
    if isinstance(node, And):
        return _balanced("AND", parts)
    joined, params = _balanced("OR", parts)
    return (joined if isinstance(node, Or) else f"(NOT {joined})"), params


def _balanced(op: str, parts: list[Sql]) -> Sql:
    """``(a op b op c ...)`` as a balanced tree: SQLite parses a flat chain left-deep and refuses
    expressions deeper than 1000, which a framework's "one $eq per allowed id" filter reaches."""
    if len(parts) <= 8:
        return "(" + f" {op} ".join(s for s, _ in parts) + ")", [p for _, ps in parts for p in ps]
    middle = len(parts) // 2
    left, right = _balanced(op, parts[:middle]), _balanced(op, parts[middle:])
    return f"({left[0]} {op} {right[0]})", left[1] + right[1]


# --- building blocks ---------------------------------------------------------------------------


def _case(subject: Sql, branches: list[Sql]) -> Sql:
    """``CASE <subject> WHEN ... ELSE 0 END``; no branches means the leaf is always false."""
    if not branches:
        return "0", []
    sql = f"(CASE {subject[0]} {' '.join(s for s, _ in branches)} ELSE 0 END)"
    return sql, subject[1] + [p for _, ps in branches for p in ps]


def _type_of(col: str, path: str) -> Sql:
    return f"json_type({col}, ?)", [path]


def _member_branches(value_sql: str, value_params: list[Any], scalars: tuple[Any, ...]) -> list[Sql]:
    """WHEN branches (on a json type name) that hold when the value equals one of ``scalars``.

    Strings and numbers are compared by SQLite as bound parameters (a Python float binds as an
    exact REAL; SQLite compares INTEGER with REAL exactly, as Python does). Bools and null are
    decided by the type name alone.
    """
    texts = [s for s in scalars if isinstance(s, str)]
    numbers = [s for s in scalars if isinstance(s, (int, float)) and not isinstance(s, bool)]
    branches: list[Sql] = []
    if texts:
        branches.append((f"WHEN 'text' THEN {value_sql} IN ({_marks(texts)})", value_params + texts))
    for kind in _NUMBER_TYPES if numbers else ():
        branches.append((f"WHEN '{kind}' THEN {value_sql} IN ({_marks(numbers)})", value_params + numbers))
    for kind, present in (("true", True in _bools(scalars)), ("false", False in _bools(scalars)),
                          ("null", any(s is None for s in scalars))):  # fmt: skip
        if present:
            branches.append((f"WHEN '{kind}' THEN 1", []))
    return branches


def _some_element_in(col: str, path: str, scalars: tuple[Any, ...]) -> Sql:
    """The array at ``path`` has an element equal to one of ``scalars`` (only call on arrays)."""
    cond, params = _case(("mrl_je.type", []), _member_branches("mrl_je.value", [], scalars))
    return f"EXISTS (SELECT 1 FROM json_each({col}, ?) AS mrl_je WHERE {cond})", [path] + params


def _substring(value_sql: str, path: str, needle: str) -> Sql:
    # instr() of '' is 1, as `'' in s` is True in Python.
    return f"instr({value_sql}, ?) > 0", [path, needle]


def _negate(leaf: Callable[[str, str, Any], Sql]) -> Callable[[str, str, Any], Sql]:
    def negated(col: str, path: str, operand: Any) -> Sql:
        sql, params = leaf(col, path, operand)
        return f"(NOT {sql})", params

    return negated


# --- one compiler per operator -----------------------------------------------------------------


def _eq(col: str, path: str, x: Any) -> Sql:
    if isinstance(x, (tuple, Mapping)):
        kind = "array" if isinstance(x, tuple) else "object"
        compare = (f"WHEN '{kind}' THEN mrl_json_equal(json_extract({col}, ?), ?)", [path, _json_text(x)])
        return _case(_type_of(col, path), [compare])
    return _in(col, path, (x,))


def _in(col: str, path: str, xs: tuple[Any, ...]) -> Sql:
    return _case(_type_of(col, path), _member_branches(f"json_extract({col}, ?)", [path], xs))


def _compare(symbol: str) -> Callable[[str, str, Any], Sql]:
    def compare(col: str, path: str, x: Any) -> Sql:
        sql = f"json_extract({col}, ?) {symbol} ?"
        # A string operand orders text values: SQLite compares TEXT with the BINARY collation
        # (memcmp of UTF-8), and UTF-8 byte order is Unicode code point order, Python's str order.
        kinds = ("text",) if isinstance(x, str) else _NUMBER_TYPES
        return _case(_type_of(col, path), [(f"WHEN '{kind}' THEN {sql}", [path, x]) for kind in kinds])

    return compare


def _contains(col: str, path: str, x: Any) -> Sql:
    element_sql, element_params = _some_element_in(col, path, (x,))
    branches = [(f"WHEN 'array' THEN {element_sql}", element_params)]
    if isinstance(x, str):
        sql, params = _substring(f"json_extract({col}, ?)", path, x)
        branches.append((f"WHEN 'text' THEN {sql}", params))
    return _case(_type_of(col, path), branches)


def _any(col: str, path: str, xs: tuple[Any, ...]) -> Sql:
    if not xs:
        return "0", []  # no element can be shared with an empty list
    sql, params = _some_element_in(col, path, xs)
    return _case(_type_of(col, path), [(f"WHEN 'array' THEN {sql}", params)])


def _all(col: str, path: str, xs: tuple[Any, ...]) -> Sql:
    parts = [_some_element_in(col, path, (x,)) for x in xs]
    body = " AND ".join(s for s, _ in parts) or "1"  # `$all: []` holds for every list value
    return _case(_type_of(col, path), [(f"WHEN 'array' THEN ({body})", [p for _, ps in parts for p in ps])])


def _text(col: str, path: str, x: str) -> Sql:
    sql, params = _substring(f"json_extract({col}, ?)", path, x)
    return _case(_type_of(col, path), [(f"WHEN 'text' THEN {sql}", params)])


def _itext(col: str, path: str, x: str) -> Sql:
    sql, params = _substring(f"mrl_casefold(json_extract({col}, ?))", path, x.casefold())
    return _case(_type_of(col, path), [(f"WHEN 'text' THEN {sql}", params)])


def _exists(col: str, path: str, x: bool) -> Sql:
    sql = f"(json_type({col}, ?) IS NOT NULL)"
    return (sql if x else f"(NOT {sql})"), [path]


def _empty(col: str, path: str, x: bool) -> Sql:
    # COALESCE turns "missing" (NULL) into '' so the simple CASE can match it.
    sql = (
        f"(CASE COALESCE(json_type({col}, ?), '') WHEN '' THEN 1 WHEN 'null' THEN 1 "
        f"WHEN 'array' THEN json_array_length({col}, ?) = 0 ELSE 0 END)"
    )
    return (sql if x else f"(NOT {sql})"), [path, path]


_LEAVES: dict[str, Callable[[str, str, Any], Sql]] = {
    "$eq": _eq,
    "$ne": _negate(_eq),
    "$gt": _compare(">"),
    "$gte": _compare(">="),
    "$lt": _compare("<"),
    "$lte": _compare("<="),
    "$in": _in,
    "$nin": _negate(_in),
    "$contains": _contains,
    "$any": _any,
    "$all": _all,
    "$text": _text,
    "$itext": _itext,
    "$exists": _exists,
    "$empty": _empty,
}


# --- helpers and the registered functions ------------------------------------------------------


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


def _bools(scalars: tuple[Any, ...]) -> list[bool]:
    return [s for s in scalars if isinstance(s, bool)]


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str:
    return json.dumps(_thaw(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _casefold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _json_text_equal(stored: Any, operand: Any) -> int:
    if not isinstance(stored, str) or not isinstance(operand, str):
        return 0
    return int(json_equal(json.loads(stored), json.loads(operand)))
