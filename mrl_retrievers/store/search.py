"""Search orchestration: coarse shortlist -> (funnel) -> exact rerank -> hits.

Pure functions over the store's parts (vector file, coarse index, doc store), so the facade stays a
facade. The caller holds the store's read lock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import CorruptStoreError, InvalidInputError
from ..metadata import load_metadata
from ..mrl import normalize, prefix
from ..types import Hit
from .ann import AnnIndex
from .docstore import DocStore
from .vectors import VectorFile


@dataclass(frozen=True)
class SearchPlan:
    """Resolved knobs for one search (store defaults with per-call overrides applied)."""

    k: int
    shortlist: int
    ef: int
    exact_below: int
    prefix_dim: int
    funnel_dim: int | None


def check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def exact_scores(vf: VectorFile, docs: DocStore, checked: "RowChecks", rows: np.ndarray, query: np.ndarray, block: int = 32768) -> np.ndarray:
    """Full-width cosine of ``query`` (unit) against the given rows (ascending), block by block."""
    out = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        stored = vf.gather(part)
        checked.verify(docs, part, stored)
        out[start : start + len(part)] = stored.astype(np.float32) @ query
    return out


class RowChecks:
    """Which vector rows this handle has already checked against their CRC-32.

    Every row is checked the first time a search reads it (so a damaged row can neither surface nor
    silently drop out of a ranking); checking it again on every read would double small-store
    latency for nothing, since committed rows never change.
    """

    def __init__(self) -> None:
        self._ok = np.zeros(0, dtype=bool)

    def reset(self) -> None:
        self._ok = np.zeros(0, dtype=bool)

    def verify(self, docs: DocStore, rows: np.ndarray, stored: np.ndarray) -> None:
        if len(rows) == 0:
            return
        if int(rows.max()) >= len(self._ok):
            grown = np.zeros(max(int(rows.max()) + 1, 2 * len(self._ok)), dtype=bool)
            grown[: len(self._ok)] = self._ok
            self._ok = grown
        todo = ~self._ok[rows]
        if todo.any():
            verify_rows(docs, rows[todo], stored[todo])
            self._ok[rows[todo]] = True


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` (score descending, row ascending on ties: deterministic)."""
    if len(rows) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))
    return rows[order], scores[order]


def rerank(vf: VectorFile, docs: DocStore, checked: RowChecks, rows: np.ndarray, query: np.ndarray, k: int, funnel_dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Score candidate rows exactly at full width (optionally narrowed at ``funnel_dim`` first).

    Rows are checked against their CRC-32 (``RowChecks``): a flipped bit in the vector file becomes
    a typed error, never a silently wrong ranking.
    """
    rows = np.unique(rows)  # sorted: sequential-ish reads
    if funnel_dim is not None and len(rows) > 4 * k:
        partial = vf.gather(rows, columns=funnel_dim).astype(np.float32)
        coarse = (normalize(partial) @ prefix(query, funnel_dim)).astype(np.float32)
        rows, _ = top_k(rows, coarse, max(4 * k, len(rows) // 4))
        rows = np.sort(rows)
    stored = vf.gather(rows)
    checked.verify(docs, rows, stored)
    return top_k(rows, stored.astype(np.float32) @ query, k)


def verify_rows(docs: DocStore, rows: np.ndarray, stored: np.ndarray) -> None:
    expected = docs.crcs(rows)
    for row, data in zip(rows.tolist(), stored):
        crc = expected.get(row)
        if crc is not None and zlib.crc32(data.tobytes()) != crc:
            raise CorruptStoreError(
                f"vector row {row} of {docs.path.parent} fails its checksum; "
                f"run `mrl-retrievers verify {docs.path.parent}` to list damaged rows"
            )


def to_hits(docs: DocStore, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
    """Attach ids, texts and metadata (one query). Rows deleted meanwhile are dropped."""
    found = docs.by_rows(rows.tolist())
    hits = []
    for row, score in zip(rows.tolist(), scores.tolist()):
        if row in found:
            id_, text, meta, _crc = found[row]
            hits.append(Hit(id=id_, score=float(score), text=text, metadata=load_metadata(meta)))
    return hits


def coarse_candidates(ann: AnnIndex, query: np.ndarray, plan: SearchPlan, allowed: np.ndarray | None) -> np.ndarray | None:
    """Shortlist rows from the coarse index, or None when the caller should scan exactly.

    With a filter, the shortlist is widened by the inverse of the filter's selectivity and then
    intersected with the allowed rows (hnswlib's Python filter callback costs 35-120x QPS).
    """
    live = ann.live
    shortlist = max(plan.shortlist, plan.k)
    if allowed is not None:
        shortlist = min(live, int(np.ceil(shortlist * live / max(len(allowed), 1))))
    try:
        rows, _ = ann.query(prefix(query, plan.prefix_dim)[None, :], shortlist, max(plan.ef, shortlist))
    except LookupError:
        return None
    rows = rows[0]
    if allowed is not None:
        rows = rows[np.isin(rows, allowed, assume_unique=False)]
        if len(rows) < plan.k:
            return None
    return rows
