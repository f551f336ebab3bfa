"""LlamaIndex's own filter predicate over one node's metadata, nested groups composed.

The post-check behind every inexact translation (``filters.Translation.exact`` False), and the
filter of queries restricted to ``node_ids`` (those are scored in Python, not searched).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llama_index.core.vector_stores.types import FilterCondition, MetadataFilters
from llama_index.core.vector_stores.utils import build_metadata_filter_fn

from mrl_retrievers.errors import UnsupportedFilterError

__all__ = ["reference_matcher"]

Predicate = Callable[[Mapping[str, Any]], bool]


def reference_matcher(filters: MetadataFilters | None) -> Predicate:
    """LlamaIndex's own predicate over one node's metadata dict, nested groups composed.

    Each condition runs through ``build_metadata_filter_fn``; a condition on which it raises
    ``TypeError`` (incomparable types) is false for that document.
    """
    if filters is None or not filters.filters:
        return lambda _metadata: True
    return _compile_group(filters)


def _compile_group(group: MetadataFilters) -> Predicate:
    if not group.filters:
        return lambda _metadata: True
    condition = group.condition or FilterCondition.AND
    if condition not in tuple(FilterCondition):
        raise UnsupportedFilterError(f"unknown filter condition {condition!r}")
    parts = [_compile_item(item) for item in group.filters]
    if condition == FilterCondition.AND:
        return lambda md: all(p(md) for p in parts)
    if condition == FilterCondition.OR:
        return lambda md: any(p(md) for p in parts)
    return lambda md: not any(p(md) for p in parts)


def _compile_item(item: Any) -> Predicate:
    if isinstance(item, MetadataFilters):
        return _compile_group(item)
    # The metadata dict itself is passed as the "node id" the lookup function receives.
    single = MetadataFilters.model_construct(filters=[item], condition=FilterCondition.AND)
    fn = build_metadata_filter_fn(lambda metadata: metadata, single)

    def leaf(metadata: Mapping[str, Any]) -> bool:
        try:
            return bool(fn(metadata))  # type: ignore[arg-type]
        except TypeError:  # incomparable types: the reference raises; the document does not match
            return False

    return leaf
