"""The one metadata filter syntax (Mongo style): parse it, evaluate it in Python, compile it to SQL.

``matches`` is THE reference: ``to_sql`` (in ``_filter_sql``) and every framework translator must
agree with it on every input (tests fuzz them against each other). Filters address top-level
metadata keys; a bare value means ``$eq``; several keys in one dict, or several operators on one
key, mean AND. Anything not understood raises: a filter never silently matches everything.

Semantics (``v`` is the document's value for the key, possibly missing):

=============  ==================================================================================
``$eq $ne``    JSON-value equality: ``1 == 1.0``, ``true != 1`` (bool is not a number), lists and
               objects compare whole and recursively by the same rule, ``null`` equals a present
               null only. Missing is "not equal", so ``$ne`` matches missing keys.
``$gt`` ...    ``$gt $gte $lt $lte``: the operand is a finite int/float (not bool) or a string. A
               number compares with number values; a string with string values, by Unicode code
               point (Python's ``str`` order, as LlamaIndex's ``SimpleVectorStore`` compares; ISO
               dates such as ``"2024-01-01"`` sort as dates). Documents whose value is of the
               other kind (or missing, or a bool) do not match.
``$in $nin``   ``v`` equals one of a list of scalars (whole value: a list ``v`` never matches
               element-wise). ``$in: []`` matches nothing, ``$nin`` is its negation (matches missing).
``$contains``  ``v`` is a list with an element equal to the scalar operand, or ``v`` is a string
               containing the (string) operand as a substring.
``$any``       ``v`` is a list sharing at least one element with the operand list
               (``$any: []`` matches nothing).
``$all``       ``v`` is a list holding every element of the operand list (``$all: []`` matches
               every list value, including ``[]``, and nothing else).
``$text``      ``v`` is a string containing the operand (case-sensitive substring).
``$itext``     the same after Unicode ``str.casefold()`` of both sides (so "STRASSE" finds "straße").
``$exists``    ``true``: the key is present (even with ``null``); ``false``: absent.
``$empty``     ``true``: ``v`` is missing, ``null`` or ``[]`` (NOT ``""`` and NOT ``{}``, as in the
               design table); ``false`` is the exact negation.
``$and $or``   a non-empty list of non-empty filter dicts.
``$not``       a filter dict (its negation) or a non-empty list of them (none of them holds).
               Combinators sit in a filter dict, not on a key (``{"a": {"$not": ...}}`` raises).
=============  ==================================================================================

Nesting is limited to ``MAX_FILTER_DEPTH`` AST levels: deeper SQL overflows SQLite's parser stack.

Operands must be JSON that metadata can hold (no NaN/inf, ints within signed 64-bit, valid Unicode
without U+0000); numpy scalars are accepted and converted with ``.item()``. Tuples count as lists.

Example:
    >>> flt = {"year": {"$gte": 2020}, "$or": [{"lang": "en"}, {"tags": {"$contains": "faq"}}]}
    >>> matches(flt, {"year": 2021, "lang": "de", "tags": ["faq"]})
    True
    >>> sql, params = to_sql({"lang": "en"})   # keys and values only ever travel in params
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from . import _filter_sql
from .errors import FilterError, UnsupportedFilterError
from .json_values import json_scalar, json_text, short as _short, unwrap_numpy as _unwrap_numpy
from .filter_ast import (
    COMBINATORS,
    NODE_TYPES,
    OPERATORS,
    And,
    Condition,
    Node,
    Not,
    Or,
    is_list,
    is_number,
    json_equal,
    operator_for,
)

# Levels of the AST (a condition is 1; each $and/$or/$not, and each dict holding several conditions,
# adds 1). SQLite's parser (YYSTACKDEPTH 100) overflows on the compiled SQL at 24 levels here.
MAX_FILTER_DEPTH = 16
_MAX_OPERAND_DEPTH = 32  # as metadata's nesting limit: a deeper $eq operand could never match

__all__ = [
    "COMBINATORS", "OPERATORS", "And", "Condition", "Node", "Not", "Or",
    "json_equal", "matches", "parse_filter", "register_sql_functions", "to_sql",
]  # fmt: skip


# --- public API ------------------------------------------------------------------------------


def parse_filter(spec: Mapping[str, Any] | Node | None) -> Node | None:
    """Validate a filter dict and build its AST. ``None`` and ``{}`` mean "no filter" (``None``).

    Raises:
        UnsupportedFilterError: an unknown operator/combinator, or a nested-object match.
        FilterError: a malformed filter (bad key, wrong operand type, empty list...).
    """
    if spec is None:
        return None
    if isinstance(spec, NODE_TYPES):  # trusted as built by parse_filter (only the depth is checked)
        node = spec
    elif not isinstance(spec, Mapping):
        raise FilterError(f"a filter must be a dict, got {type(spec).__name__}: {_short(spec)}")
    elif not spec:
        return None
    else:
        node = _parse_dict(spec, "filter", 1)
    if _depth(node) > MAX_FILTER_DEPTH:
        raise FilterError(
            f"filter nests {_depth(node)} levels deep (counting $and/$or/$not and dicts with several "
            f"conditions); the limit is {MAX_FILTER_DEPTH}"
        )
    return node


def matches(flt: Node | Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> bool:
    """Evaluate a filter on one item's metadata (a JSON object as ``load_metadata`` returns it).

    No filter (``None`` or ``{}``) matches everything.
    """
    node = parse_filter(flt)
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict (a JSON object), got {type(metadata).__name__}")
    return True if node is None else _evaluate(node, metadata)


def to_sql(flt: Node | Mapping[str, Any] | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile a filter to a SQLite boolean expression over a TEXT column of metadata JSON.

    Returns ``(sql, params)`` with ``?`` placeholders; keys and values are only in ``params``.
    ``column`` is a trusted identifier from our own code (``name`` or ``table.name``). The SQL uses
    functions from ``register_sql_functions``: call it on the connection first. No filter gives
    ``("1", [])``. The expression is never NULL, so it can be negated or combined freely.
    """
    node = parse_filter(flt)
    _filter_sql.check_column(column)
    return ("1", []) if node is None else _filter_sql.compile_node(node, column)


def register_sql_functions(conn: Any) -> None:
    """Register the deterministic SQL functions ``to_sql`` output needs on a sqlite3 connection."""
    _filter_sql.register(conn)


# --- parsing ---------------------------------------------------------------------------------


def _parse_dict(spec: Mapping[Any, Any], where: str, depth: int) -> Node:
    if depth > MAX_FILTER_DEPTH:  # also bounds the recursion before the AST-depth check
        raise FilterError(f"{where}: filter nested deeper than {MAX_FILTER_DEPTH} levels")
    parts: list[Node] = []
    for key, value in spec.items():
        here = f"{where}[{key!r}]"
        if isinstance(key, str) and key.startswith("$"):
            parts.append(_parse_combinator(key, value, here, depth))
        else:
            _check_key(key, here)
            parts.extend(_parse_field(key, value, here))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_combinator(name: str, value: Any, where: str, depth: int) -> Node:
    if name in ("$and", "$or"):
        children = _parse_filter_list(name, value, where, depth)
        return And(children) if name == "$and" else Or(children)
    if name == "$not":
        if isinstance(value, Mapping):
            return Not((_parse_sub(value, where, depth),))
        return Not(_parse_filter_list(name, value, where, depth))
    hint = " (it is an operator: use it on a key, {key: {op: value}})" if name in OPERATORS else ""
    raise UnsupportedFilterError(
        f"{where}: unknown combinator {name!r}{hint}. A filter dict's $-keys may be "
        f"{', '.join(COMBINATORS)}; operators on a key may be {', '.join(OPERATORS)}"
    )


def _parse_filter_list(name: str, value: Any, where: str, depth: int) -> tuple[Node, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        what = "a dict or " if name == "$not" else ""
        raise FilterError(f"{where}: {name} takes {what}a non-empty list of filter dicts, got {_short(value)}")
    return tuple(_parse_sub(item, f"{where}[{i}]", depth) for i, item in enumerate(value))


def _parse_sub(value: Any, where: str, depth: int) -> Node:
    if not isinstance(value, Mapping):
        raise FilterError(f"{where}: expected a filter dict, got {type(value).__name__}: {_short(value)}")
    if not value:  # {} means "no filter": inside $or/$not it would silently match (or drop) everything
        raise FilterError(f"{where}: an empty filter dict is not allowed inside a combinator")
    return _parse_dict(value, where, depth + 1)


def _depth(node: Node) -> int:
    if isinstance(node, Condition):
        return 1
    return 1 + max(_depth(child) for child in node.children)


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        raise FilterError(f"{where}: a filter key must be a string, got {type(key).__name__}")
    if not key:
        raise FilterError(f"{where}: a filter key must not be empty")
    bad = next((c for c in key if c in '"\\' or ord(c) < 0x20), None)
    if bad is not None:
        # SQLite JSON paths compare a quoted label with the key's raw (escaped) JSON text, so a key
        # JSON must escape (quote, backslash, control character) cannot be addressed.
        raise FilterError(f"{where}: key {key!r} contains {bad!r}, which a SQLite JSON path cannot address")
    _check_string(key, where)


def _parse_field(key: str, value: Any, where: str) -> list[Node]:
    if not isinstance(value, Mapping):
        return [Condition(key, "$eq", _json_operand(value, where, 1))]
    if not value:
        raise FilterError(f"{where}: an empty operator dict; give an operator, e.g. {{'$eq': ...}}")
    if not all(isinstance(op, str) and op.startswith("$") for op in value):
        raise UnsupportedFilterError(
            f"{where}: {_short(dict(value))} mixes or lacks $-operators; filters address top-level "
            "keys only. To compare a whole object use {'$eq': {...}}"
        )
    return [_parse_condition(key, op, operand, f"{where}[{op!r}]") for op, operand in value.items()]


def _parse_condition(key: str, op: str, operand: Any, where: str) -> Condition:
    if op not in _OPERAND_KINDS:
        hint = "; combinators take whole filter dicts, e.g. {'$not': {key: {...}}}" if op in COMBINATORS else ""
        raise UnsupportedFilterError(
            f"{where}: unsupported operator {op!r}. Supported: {', '.join(OPERATORS)}{hint}"
        )
    return Condition(key, op, _check_operand(op, _unwrap_numpy(operand), where))


# --- operand checks: each returns the normalized, frozen operand or raises FilterError ---------


def _json_operand(value: Any, where: str, depth: int) -> Any:
    value = _unwrap_numpy(value)
    if _is_scalar(value):
        return _scalar(value, where)
    if depth > _MAX_OPERAND_DEPTH:
        raise FilterError(f"{where}: operand nested deeper than {_MAX_OPERAND_DEPTH} levels")
    if is_list(value):
        return tuple(_json_operand(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise FilterError(f"{where}: object keys must be strings, got {k!r}")
            _check_string(k, where)
        return MappingProxyType({k: _json_operand(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()})
    raise FilterError(f"{where}: {type(value).__name__} is not a JSON value: {_short(value)}")


def _scalar(value: Any, where: str) -> Any:
    """Validate one JSON scalar (None, bool, int, float, str) and return it as a plain type."""
    return json_scalar(value, where, FilterError)


def _check_operand(op: str, value: Any, where: str) -> Any:
    """The operand of ``op``, validated and normalized (lists become tuples), or FilterError."""
    what, accepts = _OPERAND_KINDS[op]
    _expect(op, value, where, what, accepts)
    if op in ("$eq", "$ne"):
        return _json_operand(value, where, 1)
    if is_list(value):  # $in $nin $any $all: a list of scalars
        items = []
        for i, item in enumerate(value):
            here = f"{where}[{i}]"
            items.append(_scalar(_expect(op, _unwrap_numpy(item), here, *_SCALAR), here))
        return tuple(items)
    return _scalar(value, where)


def _expect(op: str, value: Any, where: str, what: str, accepts: Callable[[Any], bool]) -> Any:
    if not accepts(value):
        raise FilterError(f"{where}: {op} needs {what}, got {type(value).__name__}: {_short(value)}")
    return value


def _check_string(text: str, where: str) -> None:
    json_text(text, where, FilterError)  # metadata cannot hold it: no filter may ask for it


def _is_orderable(v: Any) -> bool:
    return is_number(v) or isinstance(v, str)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


_SCALAR = ("a scalar (str, number, bool or None)", _is_scalar)
_OPERAND_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    **dict.fromkeys(("$eq", "$ne"), ("a JSON value", lambda v: True)),
    **dict.fromkeys(("$gt", "$gte", "$lt", "$lte"), ("a number (int or float) or a string", _is_orderable)),
    **dict.fromkeys(("$in", "$nin", "$any", "$all"), ("a list of scalars", is_list)),
    "$contains": _SCALAR,
    **dict.fromkeys(("$text", "$itext"), ("a string", lambda v: isinstance(v, str))),
    **dict.fromkeys(("$exists", "$empty"), ("true or false", lambda v: isinstance(v, bool))),
}


# --- the reference evaluator ------------------------------------------------------------------

_MISSING: Any = object()  # the value of a key the document does not have


def _evaluate(node: Node, md: Mapping[str, Any]) -> bool:
    if isinstance(node, Condition):
        return operator_for(_PY_OPS, node)(md.get(node.key, _MISSING), node.operand)
    if isinstance(node, And):
        return all(_evaluate(child, md) for child in node.children)
    if isinstance(node, Or):
        return any(_evaluate(child, md) for child in node.children)
    return not any(_evaluate(child, md) for child in node.children)


def _eq(v: Any, x: Any) -> bool:
    return v is not _MISSING and json_equal(v, x)


def _in(v: Any, xs: tuple[Any, ...]) -> bool:
    return any(_eq(v, x) for x in xs)


def _has_element(v: Any, x: Any) -> bool:
    return is_list(v) and any(json_equal(e, x) for e in v)


def _contains(v: Any, x: Any) -> bool:
    return _has_element(v, x) or (isinstance(v, str) and isinstance(x, str) and x in v)


def _comparable(v: Any, x: Any) -> bool:
    """A range operand orders values of its own kind only: numbers with numbers, strings with strings."""
    return is_number(v) if is_number(x) else isinstance(v, str)


def _empty(v: Any) -> bool:
    return v is _MISSING or v is None or (is_list(v) and len(v) == 0)


_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": _eq,
    "$ne": lambda v, x: not _eq(v, x),
    "$gt": lambda v, x: _comparable(v, x) and v > x,
    "$gte": lambda v, x: _comparable(v, x) and v >= x,
    "$lt": lambda v, x: _comparable(v, x) and v < x,
    "$lte": lambda v, x: _comparable(v, x) and v <= x,
    "$in": _in,
    "$nin": lambda v, xs: not _in(v, xs),
    "$contains": _contains,
    "$any": lambda v, xs: any(_has_element(v, x) for x in xs),
    "$all": lambda v, xs: is_list(v) and all(_has_element(v, x) for x in xs),
    "$text": lambda v, x: isinstance(v, str) and x in v,
    "$itext": lambda v, x: isinstance(v, str) and x.casefold() in v.casefold(),
    "$exists": lambda v, x: (v is not _MISSING) == x,
    "$empty": lambda v, x: _empty(v) == x,
}


# --- small helpers ---------------------------------------------------------------------------


