"""The search keyword arguments ``MRLVectorStore`` accepts, checked once per call (no LangChain state)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mrl_retrievers.errors import InvalidInputError

from ._filters import to_mrl_filter
from ._utils import check_count

SEARCH_KWARGS = ("shortlist", "filter", "score_threshold", "ef", "target_recall")
# MMR's knobs reach plain similarity searches when a retriever's search_type changes and its
# search_kwargs do not: VectorStoreRetriever passes them on, and the reference stores ignore them.
MMR_ONLY_KWARGS = ("fetch_k", "lambda_mult")


@dataclasses.dataclass(frozen=True)
class Search:
    """One search's options: the store's defaults unless the call gave them."""

    shortlist: int | None = None
    filter: Any = None
    score_threshold: float | None = None  # a minimum cosine similarity
    ef: int | None = None
    target_recall: float | None = None  # recall@10 to aim for (None: the store's)

    def effort(self) -> dict[str, float]:
        """The store-search keyword for the recall target, when one is set (any backend takes it)."""
        return {} if self.target_recall is None else {"target_recall": self.target_recall}


def parse_search_kwargs(kwargs: dict[str, Any], *, shortlist: int | None, ef: int | None,
                        target_recall: float | None = None) -> Search:
    """Checked options; an unknown name is a ``TypeError`` (a typo such as ``filters=`` must not
    silently search without the filter)."""
    kwargs = {name: value for name, value in kwargs.items() if name not in MMR_ONLY_KWARGS}
    if not kwargs:  # the common call: the store's defaults
        return Search(shortlist=shortlist, ef=ef, target_recall=target_recall)
    unknown = sorted(set(kwargs) - set(SEARCH_KWARGS))
    if unknown:
        raise TypeError(
            f"MRLVectorStore search got unexpected arguments {unknown}; accepted: k, {', '.join(SEARCH_KWARGS)} "
            "(MMR also fetch_k, lambda_mult)"
        )
    threshold = kwargs.get("score_threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not -1.0 <= threshold <= 1.0):
        raise InvalidInputError(f"score_threshold is a minimum cosine similarity in [-1, 1], got {threshold!r}")
    return Search(
        shortlist=kwargs.get("shortlist", shortlist),
        filter=to_mrl_filter(kwargs.get("filter")),
        score_threshold=threshold,
        ef=kwargs.get("ef", ef),
        target_recall=kwargs.get("target_recall", target_recall),
    )


def check_mmr(k: Any, fetch_k: Any, lambda_mult: Any) -> None:
    """MMR's arguments: counts may be 0 (nothing asked, nothing returned), ``lambda_mult`` in [0, 1]."""
    check_count("k", k)
    check_count("fetch_k", fetch_k)
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, (int, float)) or not 0.0 <= lambda_mult <= 1.0:
        raise InvalidInputError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")


__all__ = ["MMR_ONLY_KWARGS", "SEARCH_KWARGS", "Search", "check_mmr", "parse_search_kwargs"]
