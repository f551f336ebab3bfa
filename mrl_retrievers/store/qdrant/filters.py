"""Translate the one filter syntax (``mrl_retrievers.filters``) to Qdrant filters, exactly.

Qdrant's own matching differs from ours in ways that would silently change results: a condition on
an array matches any element (our ``$eq`` compares whole values), exact-match operands are only
strings, integers and booleans (our ``1 == 1.0``), and there is no case-insensitive substring match.
So the translation does not lean on how Qdrant reads user metadata. At ``add`` we write a few
derived fields (the *match fields*, ``payload_match_fields``) next to the metadata, built with the
reference semantics, and every operator becomes plain keyword matching on them:

=================  ===============================================================================
``match.present``  keys present in the metadata (``$exists``)
``match.nonempty`` keys whose value is not null and not ``[]`` (``$empty``)
``match.list``     keys holding a list (``$all`` must see a list)
``match.number``   keys holding a number, not a bool (guards ``Range`` on ``metadata."key"``)
``match.string``   keys holding a string (the server-side part of the substring operators)
``match.value``    one token per key: hash of (key, canonical JSON of the whole value)
``match.element``  one token per list element: hash of (key, canonical JSON of the element)
=================  ===============================================================================

A token is the 128-bit BLAKE2b of ``[key, value]`` as canonical JSON, where numbers equal under
``json_equal`` (``1`` and ``1.0``) have one spelling; equal tokens therefore mean equal values.

Operator -> Qdrant (``k`` the key, ``t(x)`` the token of ``(k, x)``):

====================  ==========================================================================
``$eq x``             ``match.value`` MatchValue ``t(x)`` (any JSON value, lists/objects whole)
``$ne x``             must_not of the above (so it matches missing keys)
``$in xs``/``$nin``   ``match.value`` MatchAny ``[t(x)...]`` / its must_not (``$in []``: nothing)
``$gt $gte ...``      ``match.number`` has ``k`` AND ``Range`` on ``metadata."k"`` (|x| < 2**53;
                      beyond, float rounding on the server could differ: post-filtered); a string
                      operand (code point order): post-filtered (server-side: ``match.string``)
``$contains x``       ``match.element`` has ``t(x)``; for a string ``x`` also a substring of a
                      string value: post-filtered (server-side part: ``match.string`` has ``k``)
``$any xs``           ``match.element`` MatchAny ``[t(x)...]`` (``$any []``: nothing)
``$all xs``           ``match.list`` has ``k`` AND ``match.element`` has each ``t(x)``
``$text $itext``      post-filtered (server-side part: ``match.string`` has ``k``); ``""`` is exact
``$exists``           ``match.present`` has ``k`` (or its must_not)
``$empty``            must_not ``match.nonempty`` has ``k`` (or the positive form)
``$and $or $not``     must / should / must_not (``$not`` of several: none of them holds)
====================  ==========================================================================

Qdrant has no substring match on every server version we support (unindexed ``match.text`` became
token-based in 1.19.1; ``match.substring`` is newer) and no string range (``DatetimeRange`` parses
dates, which is not code point order), so the substring operators and string ranges are evaluated
in Python by the reference evaluator. For those the translation gives a server-side *superset* filter
(each node has an upper and a lower bound; ``$not`` swaps them), and the store resolves the exact
set by scanning the payloads of the points that pass it. Constant parts are folded (``$in: []``), so
no empty ``should`` (which Qdrant reads as "no constraint") is ever sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from ... import filters
from ...errors import UnsupportedFilterError
from ...filters import And, Condition, Node, Not, Or

MATCH = "match"  # payload key of the derived match fields
_SAFE_RANGE = 2**53  # |operand| below this: the server's f64 comparison agrees with Python's exact one


class _Const:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<{self.value}>"


TRUE, FALSE = _Const(True), _Const(False)
Expr = Union[_Const, Any]  # a constant, or a qdrant Filter / FieldCondition


@dataclass(frozen=True)
class Translation:
    """A filter for Qdrant, and whether it is exact.

    ``never``: nothing can match (skip the call). ``server``: the filter to send (None: none).
    ``post``: the parsed filter to re-check in Python on the points ``server`` selects (None when
    ``server`` is exact).
    """

    never: bool
    server: Any
    post: Node | None


# --- the match fields written at add -------------------------------------------------------------


def canonical(value: Any) -> Any:
    """The JSON value with one spelling per ``json_equal`` class (integral floats become ints)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def token(key: str, value: Any) -> str:
    """The match token of (key, value): equal iff the keys are equal and the values ``json_equal``."""
    text = json.dumps([key, canonical(value)], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def payload_match_fields(metadata: Mapping[str, Any]) -> dict[str, list[str]]:
    """The derived fields for one item's (validated) metadata; see the module docstring."""
    fields: dict[str, list[str]] = {
        "present": [], "nonempty": [], "list": [], "number": [], "string": [], "value": [], "element": [],
    }  # fmt: skip
    elements: set[str] = set()
    for key, value in metadata.items():
        fields["present"].append(key)
        fields["value"].append(token(key, value))
        if value is not None and value != []:
            fields["nonempty"].append(key)
        if isinstance(value, list):
            fields["list"].append(key)
            elements.update(token(key, element) for element in value)
        elif isinstance(value, str):
            fields["string"].append(key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            fields["number"].append(key)
    fields["element"] = sorted(elements)
    return fields


# --- translation ---------------------------------------------------------------------------------


def translate(flt: Any) -> Translation:
    """Translate a filter (dict or parsed AST) for Qdrant. Raises like ``filters.parse_filter``."""
    node = filters.parse_filter(flt)
    if node is None:
        return Translation(never=False, server=None, post=None)
    from qdrant_client import (
        models,  # the caller (QdrantStore) already checked it is installed
    )

    upper, lower = _node(node, models)
    exact = _same(upper, lower)
    if upper is FALSE:
        return Translation(never=True, server=None, post=None)
    server = None if upper is TRUE else upper if isinstance(upper, models.Filter) else models.Filter(must=[upper])
    return Translation(never=False, server=server, post=None if exact else node)


def _same(a: Expr, b: Expr) -> bool:
    if isinstance(a, _Const) or isinstance(b, _Const):
        return a is b
    return a == b  # pydantic models compare by value


def _node(node: Node, m: Any) -> tuple[Expr, Expr]:
    """(upper, lower): a filter selecting a superset / a subset of the matching points."""
    if isinstance(node, Condition):
        return _condition(node, m)
    parts = [_node(child, m) for child in node.children]
    uppers, lowers = [p[0] for p in parts], [p[1] for p in parts]
    if isinstance(node, And):
        return _and(uppers, m), _and(lowers, m)
    if isinstance(node, Or):
        return _or(uppers, m), _or(lowers, m)
    if isinstance(node, Not):  # none holds: the negation swaps the bounds
        return _not(_or(lowers, m), m), _not(_or(uppers, m), m)
    raise UnsupportedFilterError(f"unsupported filter node {type(node).__name__}")


def _and(parts: list[Expr], m: Any) -> Expr:
    if any(p is FALSE for p in parts):
        return FALSE
    parts = [p for p in parts if p is not TRUE]
    if not parts:
        return TRUE
    return parts[0] if len(parts) == 1 else m.Filter(must=parts)


def _or(parts: list[Expr], m: Any) -> Expr:
    if any(p is TRUE for p in parts):
        return TRUE
    parts = [p for p in parts if p is not FALSE]
    if not parts:
        return FALSE
    return parts[0] if len(parts) == 1 else m.Filter(should=parts)


def _not(part: Expr, m: Any) -> Expr:
    if isinstance(part, _Const):
        return FALSE if part.value else TRUE
    if isinstance(part, m.Filter) and part.should and not part.must and not part.must_not and part.min_should is None:
        return m.Filter(must_not=list(part.should))  # not (a or b) == none of a, b
    return m.Filter(must_not=[part])


def _has(field: str, value: str, m: Any) -> Any:
    return m.FieldCondition(key=f"{MATCH}.{field}", match=m.MatchValue(value=value))


def _has_any(field: str, values: list[str], m: Any) -> Expr:
    if not values:
        return FALSE
    return m.FieldCondition(key=f"{MATCH}.{field}", match=m.MatchAny(any=sorted(set(values))))


def _exact(expr: Expr) -> tuple[Expr, Expr]:
    return expr, expr


def _condition(c: Condition, m: Any) -> tuple[Expr, Expr]:
    k, op, x = c.key, c.op, c.operand
    if op == "$eq":
        return _exact(_has("value", token(k, x), m))
    if op == "$ne":
        return _exact(_not(_has("value", token(k, x), m), m))
    if op == "$in":
        return _exact(_has_any("value", [token(k, v) for v in x], m))
    if op == "$nin":
        return _exact(_not(_has_any("value", [token(k, v) for v in x], m), m))
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if isinstance(x, str):  # Qdrant has no string range (DatetimeRange parses dates): post-filtered
            return _has("string", k, m), FALSE
        is_number = _has("number", k, m)
        if abs(x) >= _SAFE_RANGE:
            return is_number, FALSE
        # Quoted path: the key is one top-level key, whatever dots or brackets it holds (filter keys
        # never contain '"'; parse_filter rejects them).
        ranged = m.FieldCondition(key=f'metadata."{k}"', range=m.Range(**{op[1:]: float(x)}))
        return _exact(_and([is_number, ranged], m))
    if op == "$contains":
        in_list = _has("element", token(k, x), m)
        if not isinstance(x, str):
            return _exact(in_list)
        is_string = _has("string", k, m)
        if x == "":  # every string contains ""
            return _exact(_or([in_list, is_string], m))
        return _or([in_list, is_string], m), in_list
    if op == "$any":
        return _exact(_has_any("element", [token(k, v) for v in x], m))
    if op == "$all":
        return _exact(_and([_has("list", k, m)] + [_has("element", token(k, v), m) for v in x], m))
    if op in ("$text", "$itext"):
        is_string = _has("string", k, m)
        empty = x == "" if op == "$text" else x.casefold() == ""
        return (_exact(is_string) if empty else (is_string, FALSE))
    if op == "$exists":
        present = _has("present", k, m)
        return _exact(present if x else _not(present, m))
    if op == "$empty":
        nonempty = _has("nonempty", k, m)
        return _exact(_not(nonempty, m) if x else nonempty)
    raise UnsupportedFilterError(f"unsupported operator {op!r}; supported: {', '.join(filters.OPERATORS)}")


__all__ = ["MATCH", "Translation", "canonical", "payload_match_fields", "token", "translate"]
