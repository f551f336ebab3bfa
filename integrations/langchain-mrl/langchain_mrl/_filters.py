"""Filters LangChain users pass, turned into the one dict syntax of mrl-retrievers.

* A dict (Chroma / Pinecone / PGVector style, ``{"year": {"$gte": 2020}}``) is our syntax already:
  it goes to the store unchanged, and the store validates it (``UnsupportedFilterError`` for what it
  does not understand; it never matches everything by accident).
* LangChain's structured-query IR (``Comparison`` / ``Operation``, what a self-query retriever
  builds) is translated operator by operator with ``MRLTranslator``. Dates the query constructor
  parses (``date("2024-01-01")`` arrives as ``{"date": "2024-01-01", "type": "date"}``) become their
  ISO string, which string ranges order as dates: store dates as ISO 8601 strings in one format.
* A callable (``InMemoryVectorStore``'s ``filter=lambda doc: ...``) cannot be pushed down into the
  index without scanning every document in Python, so it is refused with a message saying what to
  write instead.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from langchain_core.structured_query import (
    Comparator,
    Comparison,
    FilterDirective,
    Operation,
    Operator,
    StructuredQuery,
    Visitor,
)

from mrl_retrievers.errors import UnsupportedFilterError

_COMPARATORS: dict[Comparator, str] = {
    Comparator.EQ: "$eq",
    Comparator.NE: "$ne",
    Comparator.GT: "$gt",
    Comparator.GTE: "$gte",
    Comparator.LT: "$lt",
    Comparator.LTE: "$lte",
    Comparator.IN: "$in",
    Comparator.NIN: "$nin",
    Comparator.CONTAIN: "$contains",
    # LIKE has no reference semantics in LangChain (each store reads its own pattern language), so
    # it is refused rather than guessed.
}
_OPERATORS: dict[Operator, str] = {Operator.AND: "$and", Operator.OR: "$or", Operator.NOT: "$not"}


class MRLTranslator(Visitor):
    """Translate LangChain's structured-query IR into the mrl-retrievers filter dict.

    Pass it to ``SelfQueryRetriever.from_llm(..., structured_query_translator=MRLTranslator())``:
    LangChain's built-in list of translators does not know this store.

    Example:
        >>> from langchain_core.structured_query import Comparator, Comparison
        >>> Comparison(comparator=Comparator.GTE, attribute="year", value=2020).accept(MRLTranslator())
        {'year': {'$gte': 2020}}
        >>> Comparison(comparator=Comparator.LT, attribute="published",
        ...            value={"date": "2024-01-01", "type": "date"}).accept(MRLTranslator())
        {'published': {'$lt': '2024-01-01'}}
    """

    allowed_comparators = tuple(_COMPARATORS)
    allowed_operators = tuple(_OPERATORS)

    def visit_comparison(self, comparison: Comparison) -> dict[str, Any]:
        if comparison.comparator not in _COMPARATORS:
            raise UnsupportedFilterError(
                f"comparator {comparison.comparator.value!r} has no mrl-retrievers equivalent; "
                f"use one of {[c.value for c in _COMPARATORS]} (or $text/$itext in a dict filter)"
            )
        return {comparison.attribute: {_COMPARATORS[comparison.comparator]: _value(comparison.value)}}

    def visit_operation(self, operation: Operation) -> dict[str, Any]:
        if operation.operator not in _OPERATORS:
            raise UnsupportedFilterError(f"operator {operation.operator!r} has no mrl-retrievers equivalent")
        args = [arg.accept(self) for arg in operation.arguments]
        if not args:
            raise UnsupportedFilterError(f"operation {operation.operator.value!r} has no arguments")
        if operation.operator is Operator.NOT:
            return {"$not": args[0] if len(args) == 1 else args}
        return {_OPERATORS[operation.operator]: args}

    def visit_structured_query(self, structured_query: StructuredQuery) -> tuple[str, dict[str, Any]]:
        kwargs = {} if structured_query.filter is None else {"filter": structured_query.filter.accept(self)}
        return structured_query.query, kwargs


def _value(value: Any) -> Any:
    """An IR operand as stored metadata holds it: dates (the query constructor's ``{"date": ...,
    "type": "date"}`` / ``"datetime"`` objects, or Python dates) become ISO 8601 strings."""
    if isinstance(value, Mapping) and value.get("type") in ("date", "datetime") and isinstance(value.get(value["type"]), str):
        return value[value["type"]]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    return value


def to_mrl_filter(flt: Any) -> Any:
    """The filter to hand to the store: dicts and None pass through, IR is translated, callables refused."""
    if flt is None or isinstance(flt, Mapping):
        return flt
    if isinstance(flt, FilterDirective):
        return flt.accept(MRLTranslator())
    if callable(flt):
        raise UnsupportedFilterError(
            "callable filters (InMemoryVectorStore style) cannot run inside the index; pass a dict such as "
            "{'source': 'a.txt'} or {'year': {'$gte': 2020}} (operators: $eq $ne $gt $gte $lt $lte $in $nin "
            "$contains $any $all $text $itext $exists $empty $and $or $not)"
        )
    return flt  # anything else: the store says precisely what is wrong with it


__all__ = ["MRLTranslator", "to_mrl_filter"]
