"""LlamaIndex ``MetadataFilters`` -> the store's filter dict, with LlamaIndex's reference semantics.

The reference is ``build_metadata_filter_fn`` in ``llama_index/core/vector_stores/utils.py`` (what
``SimpleVectorStore`` runs), applied per condition and combined with AND / OR / NOT (nested
``MetadataFilters`` compose the same way). In it, a missing key and a present ``null`` are the same
(``metadata.get(key)`` is None), and every operator is Python's own: ``==``, ``<``, ``in``. So:

=========================  ===================================================================
LlamaIndex                 store filter (``k`` is the key, ``v`` the value)
=========================  ===================================================================
``EQ v``                   ``{k: {$in: eq(v)}}``; a list ``v`` is an ``$or`` of ``$eq`` lists;
                           ``EQ None`` matches nothing (``None`` never equals)
``NE v``                   ``{$not: EQ v}`` (so missing / null keys match, as in the reference)
``GT GTE LT LTE`` number   ``{k: {$gt: v}}`` or-ed with ``{k: true/false}`` where ``1 > v`` /
                           ``0 > v`` (Python's ``True > 0``)
``GT GTE LT LTE`` string   ``{k: {$gt: v}}``: string values in code point order, as Python's
                           ``str`` compares (ISO dates sort as dates); lists, None: rejected
``IN list``                ``{k: {$in: eq(v...)}}`` without None (a null value never matches)
``NIN list``               ``{$not: IN list}``
``CONTAINS x``             ``{k: {$contains: eq(x)...}}`` (list element, or substring of a string)
``ANY list``               ``{k: {$any: ...}}`` or ``$text`` per string element (a string value is
                           searched for each element in order, up to the first non-string one)
``ALL list``               ``$and`` of ``{k: {$any: eq(x)}}`` or of ``$text`` (strings only);
                           ``ALL []`` matches every present non-null value
``TEXT_MATCH s``           ``{k: {$text: s}}``
``TEXT_MATCH_INSENSITIVE`` ``{k: {$itext: s}}`` (see below)
``IS_EMPTY``               ``{$or: [{k: {$empty: true}}, {k: ""}]}`` (missing, null, ``[]``, ``""``)
``AND OR NOT``             ``$and $or $not`` (``NOT`` = none of them holds); an empty filter
                           list matches everything, as in the reference
=========================  ===================================================================

``eq(x)`` lists every JSON scalar Python finds equal to ``x``: ``1`` also matches ``true`` and ``0``
``false`` (``True == 1`` in Python; the store keeps bool apart from numbers).

Two operators cannot be said exactly in the store's syntax, so the translation carries an *upper*
filter (a superset) and a *lower* one (a subset); when they differ the caller runs the store with
the upper filter and keeps only the hits that ``reference.reference_matcher`` accepts
(``Translation.exact``):

* ``TEXT_MATCH_INSENSITIVE`` lower-cases (``str.lower``) where the store case-folds
  (``str.casefold``: "STRASSE" finds "straße"). Case-folding matches everything lower-casing
  matches (``casefold(c) == casefold(lower(c))`` for every code point), so ``$itext`` is a superset;
  it is exact when the operand folds to ASCII without any of ``afhijlnstwy`` (the only ASCII letters
  that a special case-folding produces), else the lower bound is "nothing".
* ``CONTAINS`` / ``ANY`` / ``ALL`` with strings: Python's ``in`` on a dict value tests its keys,
  which no store operator addresses; the upper bound adds "the value is an object".

Where the reference itself raises (``TypeError`` comparing a number with a string, ``in`` on a
number) a document simply does not match. Operands the reference cannot use for any document (a
string for ``GT``, a number for ``IN``), or that the store cannot hold (NaN, integers beyond 64
bits, keys with quotes or control characters), raise ``UnsupportedFilterError``.

Example:
    >>> from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    >>> t = translate_filters(MetadataFilters(filters=[MetadataFilter(key="year", value=2020, operator=">")]))
    >>> t.filter
    {'$or': [{'year': {'$gt': 2020}}]}
    >>> t.exact
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters

from mrl_retrievers.errors import UnsupportedFilterError
from mrl_retrievers.json_values import json_scalar, json_text
from mrl_retrievers.json_values import short as _short

__all__ = ["Translation", "translate_filters"]

Filter = dict  # one filter dict in the store's syntax
MAX_EQ_ALTERNATIVES = 64  # EQ on a list holding many 0/1 values expands to 2**n alternatives
_ANY_KEY = "_"  # any key will do for "everything": $nin [] matches missing keys too
# The ASCII characters that some special case-folding produces (ß -> ss, ﬁ -> fi, ẖ -> h, ...).
_FOLD_TARGETS_ASCII = frozenset("afhijlnstwy")


@dataclass(frozen=True)
class Translation:
    """A translated filter. ``filter`` is None when nothing is filtered.

    ``exact`` False means ``filter`` is a superset: keep only hits ``reference_matcher`` accepts.
    ``lower`` is a subset (used to build negations); callers need only ``filter`` and ``exact``.
    """

    filter: Filter | None
    lower: Filter | None
    exact: bool


@dataclass(frozen=True)
class _Bounds:
    upper: Filter
    lower: Filter

    @property
    def exact(self) -> bool:
        return self.upper == self.lower


def translate_filters(filters: MetadataFilters | None) -> Translation:
    """Translate LlamaIndex filters, or raise ``UnsupportedFilterError`` (never match everything)."""
    if filters is None:
        return Translation(None, None, True)
    if not isinstance(filters, MetadataFilters):
        raise UnsupportedFilterError(
            f"filters must be llama_index MetadataFilters, got {type(filters).__name__}: {_short(filters)}"
        )
    if not filters.filters:  # the reference matches everything
        return Translation(None, None, True)
    bounds = _translate_group(filters, "filters", 1)
    return Translation(bounds.upper, bounds.lower, bounds.exact)


# --- groups ----------------------------------------------------------------------------------------


def _condition(group: MetadataFilters, where: str) -> FilterCondition:
    condition = group.condition or FilterCondition.AND
    try:
        return FilterCondition(condition)
    except ValueError:
        raise UnsupportedFilterError(f"{where}: unknown filter condition {condition!r}") from None


def _translate_group(group: MetadataFilters, where: str, depth: int) -> _Bounds:
    if depth > 16:
        raise UnsupportedFilterError(f"{where}: MetadataFilters nested deeper than 16 levels")
    condition = _condition(group, where)
    if not group.filters:  # a nested empty group: the reference's filter_fn is `lambda _: True`
        everything = {_ANY_KEY: {"$nin": []}}
        return _Bounds(everything, everything)
    parts = [_translate_item(item, f"{where}[{i}]", depth) for i, item in enumerate(group.filters)]
    uppers, lowers = [p.upper for p in parts], [p.lower for p in parts]
    if condition == FilterCondition.AND:
        return _Bounds(_join("$and", uppers), _join("$and", lowers))
    if condition == FilterCondition.OR:
        return _Bounds(_join("$or", uppers), _join("$or", lowers))
    # NOT: none holds. Negating flips the bounds: not(subset) is a superset.
    return _Bounds({"$not": lowers}, {"$not": uppers})


def _translate_item(item: Any, where: str, depth: int) -> _Bounds:
    if isinstance(item, MetadataFilters):
        return _translate_group(item, where, depth + 1)
    if not isinstance(item, MetadataFilter):
        raise UnsupportedFilterError(f"{where}: expected MetadataFilter or MetadataFilters, got {_short(item)}")
    try:
        op = FilterOperator(item.operator)
    except ValueError:
        raise UnsupportedFilterError(f"{where}: unknown filter operator {item.operator!r}") from None
    key = _check_key(item.key, where)
    return _LEAVES[op](key, item.value, f"{where} ({key!r} {op.name})")


def _join(name: str, parts: list[Filter]) -> Filter:
    return parts[0] if len(parts) == 1 else {name: parts}


# --- leaves: each returns exact bounds (upper == lower) unless documented ------------------------


def _exact(flt: Filter) -> _Bounds:
    return _Bounds(flt, flt)


def _nothing(key: str) -> Filter:
    return {key: {"$in": []}}


def _or(key: str, parts: list[Filter]) -> Filter:
    return _nothing(key) if not parts else {"$or": parts}


def _eq_filter(key: str, value: Any, where: str) -> Filter:
    if value is None:  # the reference returns False for a None metadata value; others never == None
        return _nothing(key)
    if _is_list(value):
        options = [_eq_alternatives(_scalar(x, where)) for x in value]
        count = math.prod(len(o) for o in options)
        if count > MAX_EQ_ALTERNATIVES:
            raise UnsupportedFilterError(
                f"{where}: EQ on a list with {count} readings (each 0/1 may also be false/true); "
                f"at most {MAX_EQ_ALTERNATIVES} are supported"
            )
        return _or(key, [{key: {"$eq": list(combo)}} for combo in itertools.product(*options)])
    return {key: {"$in": _eq_alternatives(_scalar(value, where))}}


def _eq(key: str, value: Any, where: str) -> _Bounds:
    return _exact(_eq_filter(key, value, where))


def _ne(key: str, value: Any, where: str) -> _Bounds:
    return _exact({"$not": _eq_filter(key, value, where)})


def _compare(op: str, holds: Callable[[int, float], bool]) -> Callable[[str, Any, str], _Bounds]:
    def leaf(key: str, value: Any, where: str) -> _Bounds:
        if isinstance(value, str):  # code point order on string values, as the store's string ranges
            return _exact({key: {op: _check_text(value, where)}})
        if _is_list(value) or value is None:
            # Python orders lists lexicographically (and None not at all); the store has no such order.
            raise UnsupportedFilterError(
                f"{where}: {op} compares numbers or strings; got {type(value).__name__} {_short(value)} "
                "(list ordering has no store equivalent)"
            )
        number = _scalar(value, where)
        if isinstance(number, bool):
            number = int(number)
        parts = [{key: {op: number}}]
        parts += [{key: {"$eq": flag}} for flag in (True, False) if holds(int(flag), number)]
        return _exact({"$or": parts})

    return leaf


def _in_filter(key: str, value: Any, where: str) -> Filter:
    if not _is_list(value):
        # `x in "abc"` is a substring test of the *document's* value; `x in 5` always raises.
        raise UnsupportedFilterError(f"{where}: IN/NIN need a list, got {type(value).__name__} {_short(value)}")
    options = [a for x in value if x is not None for a in _eq_alternatives(_scalar(x, where))]
    return {key: {"$in": options}}


def _in(key: str, value: Any, where: str) -> _Bounds:
    return _exact(_in_filter(key, value, where))


def _nin(key: str, value: Any, where: str) -> _Bounds:
    return _exact({"$not": _in_filter(key, value, where)})


def _elements(value: Any, where: str, op: str) -> list[Any]:
    if isinstance(value, str):  # the reference iterates a string's characters
        return list(value)
    if not _is_list(value):
        raise UnsupportedFilterError(f"{where}: {op} needs a list, got {type(value).__name__} {_short(value)}")
    return [_scalar(x, where) for x in value]


def _with_object(key: str, lower: Filter, strings: bool) -> _Bounds:
    # `"a" in {"a": 1}` is True in Python: an object value may match a string operand.
    return _Bounds({"$or": [lower, _is_object(key)]}, lower) if strings else _exact(lower)


def _contains(key: str, value: Any, where: str) -> _Bounds:
    if _is_list(value):
        raise UnsupportedFilterError(f"{where}: CONTAINS needs a scalar (a list element), got {_short(value)}")
    x = _scalar(value, where)
    lower = _or(key, [{key: {"$contains": a}} for a in _eq_alternatives(x)])
    return _with_object(key, lower, isinstance(x, str))


def _any(key: str, value: Any, where: str) -> _Bounds:
    items = _elements(value, where, "ANY")
    if not items:
        return _exact(_nothing(key))
    parts = [{key: {"$any": [a for x in items for a in _eq_alternatives(x)]}}]
    for x in items:  # a string value: `x in s` per element, raising at the first non-string
        if not isinstance(x, str):
            break
        parts.append({key: {"$text": x}})
    return _with_object(key, {"$or": parts}, any(isinstance(x, str) for x in items))


def _all(key: str, value: Any, where: str) -> _Bounds:
    items = _elements(value, where, "ALL")
    if not items:  # all([]) is True for every value the reference gets that far with (not None)
        return _exact({"$and": [{key: {"$exists": True}}, {key: {"$ne": None}}]})
    parts = [_join("$and", [{key: {"$any": _eq_alternatives(x)}} for x in items])]
    strings = all(isinstance(x, str) for x in items)
    if strings:
        parts.append(_join("$and", [{key: {"$text": x}} for x in items]))
    return _with_object(key, _join("$or", parts), strings)


def _text_match(key: str, value: Any, where: str) -> _Bounds:
    return _exact({key: {"$text": _string(value, where, "TEXT_MATCH")}})


def _text_match_insensitive(key: str, value: Any, where: str) -> _Bounds:
    text = _string(value, where, "TEXT_MATCH_INSENSITIVE")
    upper = {key: {"$itext": text}}
    folded = text.casefold()
    if folded.isascii() and not _FOLD_TARGETS_ASCII.intersection(folded):
        return _exact(upper)  # no special folding can produce these characters: lower == casefold
    return _Bounds(upper, _nothing(key))


def _is_empty(key: str, value: Any, where: str) -> _Bounds:
    return _exact({"$or": [{key: {"$empty": True}}, {key: {"$eq": ""}}]})


def _is_object(key: str) -> Filter:
    """The value is a JSON object: present and none of null, bool, number, string, list."""
    not_object = [
        {key: {"$eq": None}}, {key: {"$in": [True, False]}}, {key: {"$gte": 0}}, {key: {"$lt": 0}},
        {key: {"$text": ""}}, {key: {"$all": []}},
    ]  # fmt: skip
    return {"$and": [{key: {"$exists": True}}, {"$not": not_object}]}


_LEAVES: dict[FilterOperator, Callable[[str, Any, str], _Bounds]] = {
    FilterOperator.EQ: _eq,
    FilterOperator.NE: _ne,
    FilterOperator.GT: _compare("$gt", lambda a, b: a > b),
    FilterOperator.GTE: _compare("$gte", lambda a, b: a >= b),
    FilterOperator.LT: _compare("$lt", lambda a, b: a < b),
    FilterOperator.LTE: _compare("$lte", lambda a, b: a <= b),
    FilterOperator.IN: _in,
    FilterOperator.NIN: _nin,
    FilterOperator.ANY: _any,
    FilterOperator.ALL: _all,
    FilterOperator.TEXT_MATCH: _text_match,
    FilterOperator.TEXT_MATCH_INSENSITIVE: _text_match_insensitive,
    FilterOperator.CONTAINS: _contains,
    FilterOperator.IS_EMPTY: _is_empty,
}


# --- operands --------------------------------------------------------------------------------------


def _eq_alternatives(x: Any) -> list[Any]:
    """Every JSON scalar Python's ``==`` finds equal to ``x`` (bool is an int in Python)."""
    if isinstance(x, bool):
        return [x, int(x)]
    if isinstance(x, (int, float)) and x in (0, 1):
        return [x, bool(x)]
    return [x]


def _scalar(value: Any, where: str) -> Any:
    """Check a scalar operand the store can hold (str, finite number in int64, bool, None)."""
    return json_scalar(value, where, UnsupportedFilterError)


def _string(value: Any, where: str, op: str) -> str:
    if not isinstance(value, str):  # the reference raises TypeError for any non-string operand
        raise UnsupportedFilterError(f"{where}: {op} needs a string, got {type(value).__name__} {_short(value)}")
    return _check_text(value, where)


def _check_text(text: str, where: str) -> str:
    return json_text(text, where, UnsupportedFilterError)


def _check_key(key: Any, where: str) -> str:
    if not isinstance(key, str) or not key:
        raise UnsupportedFilterError(f"{where}: a filter key must be a non-empty string, got {key!r}")
    if key.startswith("$"):
        raise UnsupportedFilterError(f"{where}: key {key!r} starts with '$', which the store reads as an operator")
    if any(c in '"\\' or ord(c) < 0x20 for c in key):
        # The store addresses keys through SQLite JSON paths, which cannot name these.
        raise UnsupportedFilterError(f"{where}: key {key!r} holds a quote, backslash or control character")
    return _check_text(key, where)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


