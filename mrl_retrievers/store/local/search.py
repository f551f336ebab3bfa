"""Search orchestration: coarse shortlist -> (funnel) -> exact rerank -> hits.

Pure functions over the store's parts (vector file, coarse index, doc store), so the facade stays a
facade. The caller holds the store's read lock.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Callable, TypeVar

import numpy as np

from ...checks import positive_int
from ...errors import CorruptStoreError, InvalidInputError
from ...metadata import load_metadata
from ...mrl import normalize, prefix
from ...types import Hit
from .. import effort
from .ann import AnnIndex
from ..validation import check_k
from . import kernel
from .docstore import DocStore
from .manifest import calibrates
from .kernel import to_float32, top_k
from .records import HitRecords
from .vectors import VectorFile, row_checksums

T = TypeVar("T")


@dataclass(frozen=True)
class SearchPlan:
    """Resolved knobs for one search (store defaults with per-call overrides applied)."""

    k: int
    shortlist: int
    ef: int
    exact_below: int
    prefix_dim: int
    funnel_dim: int | None
    policy: effort.EffortPolicy | None = None  # adaptive effort (shortlist/ef: its last level)


# A store that needs a calibration and has none yet (a bulk load or ``tune`` paused it, it failed, a
# read-only handle reads while the writer measures) is scanned exactly up to this many stored values
# (live x full_dim: 65,536 rows at 1024 dims, ~25 ms a search): the fixed defaults it would search at
# otherwise miss the target silently (recall@10 0.53 at 4,000 x 96, prefix 6, where the calibrated
# search gives 0.999: tests/store/test_live_store_recall.py). Above it a scan costs more than waiting
# for the calibration is worth, and the defaults serve.
EXACT_UNCALIBRATED = 1 << 26

# Float32 bytes one block of an exact scan or a deep shortlist holds (a 65,536-row shortlist at 1024
# dims would be 256 MB at once; per block the gather's cost is amortized over thousands of rows).
_SCAN_BLOCK_BYTES = 16 << 20


def exact_scores(vf: VectorFile, docs: DocStore, checked: "RowChecks", rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Full-width cosine of ``query`` (unit) against the given rows (ascending), block by block."""
    out = np.empty(len(rows), dtype=np.float32)
    block = max(1024, _SCAN_BLOCK_BYTES // (4 * vf.dim))
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        checked.ensure(vf, docs, part)
        out[start : start + len(part)] = vf.scores_of(part, query)
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

    @property
    def bitmap(self) -> np.ndarray:
        """One flag a row: checked (rows past its end are not)."""
        return self._ok

    def ensure(self, vf: VectorFile, docs: DocStore, rows: np.ndarray) -> None:
        """Check the ``rows`` (any order) this handle has not checked yet, before their scores count."""
        if len(rows) and kernel.unchecked(self._ok, rows):  # the warm path: one call, no copy
            todo = np.unique(rows)  # ascending, for the gather
            self.verify(docs, todo, vf.gather(todo))

    def verify(self, docs: DocStore, rows: np.ndarray, stored: np.ndarray) -> None:
        if len(rows) == 0:
            return
        try:
            seen = self._ok[rows]
        except IndexError:  # a row past the bitmap: grow it (rows are never negative)
            top = int(rows.max())
            grown = np.zeros(max(top + 1, 2 * len(self._ok)), dtype=bool)
            grown[: len(self._ok)] = self._ok
            self._ok = grown
            seen = grown[rows]
        if seen.all():  # the warm path: every row was checked before
            return
        todo = ~seen
        verify_rows(docs, rows[todo], stored[todo])
        self._ok[rows[todo]] = True


def fold_top_k(best: tuple[np.ndarray, np.ndarray], rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge one block into running per-query top-k lists (exact scans of many queries at once).

    ``best`` is (rows, scores), each (n_queries, <= k), best first; start from two (n_queries, 0)
    arrays. ``scores`` is (len(rows), n_queries) for the block's ``rows``; blocks come in ascending
    row order. Ranked by score, ties by the lower row (``top_k``'s rule), whatever the block size.

    Only a score above its query's current k-th best can enter (one comparison a score), so past the
    first block a fold touches a handful of candidates per query. Why: a per-column partition of
    every block took 21 of the 96 s a calibration spent at 1M x 1024 (1536 probes, 3907 blocks).
    """
    best_rows, best_scores = best
    n, nq = scores.shape
    if best_rows.shape[1] >= k:  # a score equal to the k-th is a later (higher) row's: it loses
        enters = scores > best_scores[:, k - 1]
    elif n > k:  # lists not full yet (the first block): each query's k best here, and any row tied with the k-th
        enters = scores >= np.partition(scores, n - k, axis=0)[n - k]
    else:
        enters = np.ones(scores.shape, dtype=bool)
    at, query = np.nonzero(enters)
    held = best_rows.shape[1]
    width = min(k, held + n)  # every query holds as many (every row is scored for every query)
    if width == held:  # the lists are full: only the queries something entered change
        touched, query = np.unique(query, return_inverse=True)
        if not len(touched):
            return best
    else:
        touched = np.arange(nq)
    # Per touched query: its list and what entered, ranked by score down, then row up.
    cand_query = np.concatenate([np.repeat(np.arange(len(touched)), held), query])
    cand_rows = np.concatenate([best_rows[touched].ravel(), rows[at]])
    cand_scores = np.concatenate([best_scores[touched].ravel(), scores[at, touched[query]]])
    order = np.lexsort((cand_rows, -cand_scores, cand_query))
    per_query = np.bincount(cand_query, minlength=len(touched))
    first = np.cumsum(per_query) - per_query  # where each query's candidates start in ``order``
    take = order[first[:, None] + np.arange(width)[None, :]]
    if width != held:
        return cand_rows[take], cand_scores[take]
    out_rows, out_scores = best_rows.copy(), best_scores.copy()
    out_rows[touched], out_scores[touched] = cand_rows[take], cand_scores[take]
    return out_rows, out_scores


def rerank(vf: VectorFile, docs: DocStore, checked: RowChecks, rows: np.ndarray, query: np.ndarray, k: int, funnel_dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Score candidate rows (any order) exactly at full width (optionally narrowed at ``funnel_dim``
    first); the best ``k``, best first (``kernel.best_of``: a row listed twice counts once).

    Rows are checked against their CRC-32 (``RowChecks``): a flipped bit in the vector file becomes
    a typed error, never a silently wrong ranking.
    """
    if funnel_dim is not None and len(rows) > 4 * k:
        rows = np.unique(rows)  # ascending: sequential-ish reads
        partial = to_float32(vf.gather(rows, columns=funnel_dim))
        coarse = (normalize(partial) @ prefix(query, funnel_dim)).astype(np.float32)
        rows, _ = top_k(rows, coarse, max(4 * k, len(rows) // 4))
    checked.ensure(vf, docs, rows)
    return vf.best_of(rows, query, k)


def verify_rows(docs: DocStore, rows: np.ndarray, stored: np.ndarray) -> None:
    expected = docs.crcs(rows)
    for row, actual in zip(rows.tolist(), row_checksums(stored)):
        crc = expected.get(row)
        if crc is not None and actual != crc:
            raise CorruptStoreError(
                f"vector row {row} of {docs.path.parent} fails its checksum; "
                f"run `mrl-retrievers verify {docs.path.parent}` to list damaged rows"
            )


def to_hits(docs: DocStore, records: HitRecords, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
    """Attach ids, texts and metadata (one query), each record checked against its checksum the
    first time this handle reads it (``records.HitRecords``).

    The caller reads inside the committed state it ranked (see ``follow``): every row is live there.
    """
    # Metadata is parsed per hit, never shared (a caller may change the dict it was handed); most
    # items carry none: the empty object skips the JSON parser. tolist: Python floats already.
    return [Hit._of(record[0], score, record[1], {} if record[2] == "{}" else load_metadata(record[2]))
            for record, score in zip(records.get(docs, rows.tolist()), scores.tolist()) if record is not None]


def coarse_candidates(ann: AnnIndex, query: np.ndarray, plan: SearchPlan, allowed: np.ndarray | None) -> np.ndarray | None:
    """Shortlist rows from the coarse index, or None when the caller should scan exactly."""
    found = coarse_ranked(ann, query, plan, allowed, plan.shortlist, plan.ef)
    return None if found is None else found[0]


def coarse_ranked(ann: AnnIndex, query: np.ndarray, plan: SearchPlan, allowed: np.ndarray | None,
                  shortlist: int, ef: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, prefix similarities) of a shortlist in prefix order, or None (scan exactly instead).

    With a filter, the shortlist is widened by the inverse of the filter's selectivity and then
    intersected with the allowed rows (hnswlib's Python filter callback costs 35-120x QPS).
    """
    shortlist = max(shortlist, plan.k)
    if allowed is not None:
        live = ann.live
        shortlist = min(live, int(np.ceil(shortlist * live / max(len(allowed), 1))))
    try:
        rows, sims = ann.query(kernel.unit_prefix(query, plan.prefix_dim)[None, :], shortlist, max(ef, shortlist))
    except LookupError:
        return None
    rows, sims = rows[0], sims[0]
    if allowed is not None:
        keep = np.isin(rows, allowed, assume_unique=False)
        rows, sims = rows[keep], sims[keep]
        if len(rows) < plan.k:
            return None
    return rows, sims


class Searcher:
    """Runs the searches of one open store. The caller holds the store's read lock.

    Small stores (live <= exact_below) are scanned exactly; their vectors are kept here as float32
    (bounded by exact_below x full_dim) so a scan is one mat-vec, not a gather and a float16
    conversion per query. Every write calls ``invalidate``.
    """

    def __init__(self, state) -> None:
        self.s = state
        self._small: tuple[np.ndarray, np.ndarray] | None = None
        # Resolved plans of this manifest object, by the call's arguments (and their types: True
        # and 1.0 hash like 1 but are refused). A new manifest (reindex, calibration, tune, a
        # read-only handle catching up) is a new object: the cache starts over.
        self._plans: tuple[object, dict] = (None, {})

    def invalidate(self) -> None:
        self._small = None

    def plan(self, k, shortlist: int | None, ef: int | None, target_recall: float | None = None) -> SearchPlan:
        """The resolved plan for these arguments (validated: a bad one raises ``InvalidInputError``).
        Resolved once per manifest and arguments (a search resolves its plan twice: before the lock
        and under it)."""
        m = self.s.manifest
        # A calibrated policy widens as the store grows past the size it was measured at (in steps).
        grown = effort.growth(m.calibration.live, self.s.ann.live) if m.calibration is not None else 1.0
        scan = self._scan_until_calibrated(m)
        key = (k, type(k), shortlist, type(shortlist), ef, type(ef), target_recall, type(target_recall), grown, scan)
        owner, plans = self._plans
        if owner is m:
            try:
                found = plans.get(key)
            except TypeError:  # an unhashable argument: resolve (and refuse) it below
                found = None
            if found is not None:
                return found
        else:
            plans = {}
            self._plans = (m, plans)
        plan = self._resolve(m, k, shortlist, ef, target_recall, grown, scan)  # the growth the key holds
        if len(plans) < 256:  # bounded: callers vary k and effort over a handful of values
            plans[key] = plan
        return plan

    def _scan_until_calibrated(self, m) -> bool:
        """Whether this store is one that calibrates (a target, no funnel, past the sizes that never
        do), has no calibration for its width yet, and is small enough to scan instead
        (``EXACT_UNCALIBRATED``)."""
        cal = m.calibration
        if cal is not None and cal.prefix_dim == m.prefix_dim:
            return False
        live = self.s.ann.live
        return calibrates(m, live) and live * m.full_dim <= EXACT_UNCALIBRATED

    def _resolve(self, m, k, shortlist: int | None, ef: int | None, target_recall: float | None, grown: float,
                 scan: bool) -> SearchPlan:
        for name, value in (("shortlist", shortlist), ("ef", ef)):
            if value is not None:
                positive_int(name, value)
        plan = SearchPlan(
            k=check_k(k), shortlist=int(shortlist or m.shortlist), ef=int(ef or m.ef),
            exact_below=m.exact_below, prefix_dim=m.prefix_dim, funnel_dim=m.funnel_dim,
        )
        if shortlist is not None or ef is not None:  # the expert override: a fixed search
            if target_recall is not None:
                raise InvalidInputError("pass target_recall or shortlist/ef, not both (shortlist/ef fix the effort)")
            return plan
        target = effort.check_target(target_recall) if target_recall is not None else m.target_recall
        if target is not None and target >= 1:
            return replace(plan, exact_below=sys.maxsize)  # only an exact scan is sure to find everything
        policy, shortlist, ef = effort.resolve(target, m.calibration, plan.k, plan.shortlist, plan.ef, m.funnel_dim, m.prefix_dim, grown)
        plan = replace(plan, shortlist=shortlist, ef=ef, policy=policy)
        if policy is None and scan:  # nothing measured yet: scan rather than miss the target silently
            return replace(plan, exact_below=sys.maxsize)
        return plan

    def one(self, query: np.ndarray, plan: SearchPlan, flt) -> list[Hit]:
        allowed = self.s.docs.rows_matching(flt) if flt is not None else None
        if allowed is not None and len(allowed) == 0:
            return []
        if not self._use_exact(plan, allowed):
            if plan.policy is not None:
                found = self._climb(query, plan, allowed)
                if found is not None:
                    return found
            else:
                found = self._fused(query, plan) if allowed is None and plan.funnel_dim is None else None
                if found is not None:
                    return found
                rows = coarse_candidates(self.s.ann, query, plan, allowed)
                if rows is not None:
                    return self._finish(query, rows, plan)
        return self.exact(query, allowed, plan.k)

    def batch(self, queries: np.ndarray, plan: SearchPlan, flt) -> list[list[Hit]]:
        if flt is not None or self._use_exact(plan, None) or len(queries) < 2:
            return [self.one(q, plan, flt) for q in queries]
        shortlist, ef = plan.policy.levels[0] if plan.policy is not None else (plan.shortlist, plan.ef)
        shortlist = max(shortlist, plan.k)
        try:
            rows, sims = self.s.ann.query(kernel.unit_prefixes(queries, plan.prefix_dim), shortlist, max(ef, shortlist), num_threads=2)
        except LookupError:
            return [self.one(q, plan, flt) for q in queries]
        if plan.policy is not None:  # the first level ran as one threaded batch; each query climbs on its own
            return [self._climb(q, plan, None, first=(rows[i], sims[i])) or self.exact(q, None, plan.k) for i, q in enumerate(queries)]
        return [self._finish(q, rows[i], plan) for i, q in enumerate(queries)]

    def exact(self, query: np.ndarray, rows: np.ndarray | None, k: int) -> list[Hit]:
        """Exact scan of ``rows`` (None: every live row), from the small-store cache when it fits."""
        s = self.s
        if s.ann.live <= s.manifest.exact_below:
            live, matrix = self._small_store()
            if rows is None:
                return to_hits(s.docs, s.records, *top_k(live, matrix @ query, k))
            positions = np.minimum(np.searchsorted(live, rows), len(live) - 1)
            known = live[positions] == rows  # a read-only handle may see rows newer than its cache
            return to_hits(s.docs, s.records, *top_k(rows[known], matrix[positions[known]] @ query, k))
        rows = s.docs.live_rows() if rows is None else rows
        return to_hits(s.docs, s.records, *top_k(rows, exact_scores(s.vectors, s.docs, s.checked, rows, query), k))

    def exact_batch(self, queries: np.ndarray, rows: np.ndarray | None, k: int, block: int = 65536) -> list[list[Hit]]:
        """Exact scan of ``rows`` (None: every live row) for many queries in one pass over the
        vector file (one matrix product per block of rows): the oracle for large stores."""
        s = self.s
        rows = s.docs.live_rows() if rows is None else rows
        best = (np.full((len(queries), 0), -1, dtype=np.int64), np.full((len(queries), 0), -np.inf, dtype=np.float32))
        transposed = np.ascontiguousarray(queries.T, dtype=np.float32)
        for start in range(0, len(rows), block):
            part = rows[start : start + block]
            stored = s.vectors.gather(part)
            s.checked.verify(s.docs, part, stored)
            best = fold_top_k(best, part, to_float32(stored) @ transposed, k)
        return [to_hits(s.docs, s.records, r, sc) for r, sc in zip(*best)]

    def _small_store(self) -> tuple[np.ndarray, np.ndarray]:
        small = self._small
        if small is None:
            s = self.s
            live = s.docs.live_rows()
            stored = s.vectors.gather(live)
            s.checked.verify(s.docs, live, stored)
            small = self._small = (live, to_float32(stored))
        return small

    def _use_exact(self, plan: SearchPlan, allowed: np.ndarray | None) -> bool:
        if self.s.ann.live <= plan.exact_below:
            return True
        # A selective filter: scanning the few matching rows beats a widened coarse search.
        return allowed is not None and len(allowed) <= max(plan.exact_below, 10 * plan.shortlist)

    def _climb(self, query: np.ndarray, plan: SearchPlan, allowed: np.ndarray | None, first=None) -> list[Hit] | None:
        """Adaptive effort (``effort.climb``). A query still unsure after the last level is scanned
        exactly when its policy says so, or when its filter matches at most ``EXACT_FALLBACK`` times
        the last level's shortlist."""
        s = self.s

        def coarse(shortlist: int, ef: int):
            if (shortlist, ef) == plan.policy.levels[0]:
                if first is not None:
                    return first
                if allowed is None:
                    scored = self._fused_scored(query, plan, shortlist, ef)
                    if scored is not None:
                        return scored
            return coarse_ranked(s.ann, query, plan, allowed, shortlist, ef)

        found = effort.climb(plan.policy, plan.k, coarse, lambda rows: exact_scores(s.vectors, s.docs, s.checked, rows, query),
                             kernel.confidence_parts)
        if found is None:
            return None
        rows, scores, _level, sure = found
        if not sure and (plan.policy.exact or allowed is not None and len(allowed) <= effort.EXACT_FALLBACK * plan.shortlist):
            return self.exact(query, allowed, plan.k)
        return to_hits(s.docs, s.records, *kernel.best_scored(rows, scores, plan.k))

    def _fused(self, query: np.ndarray, plan: SearchPlan) -> list[Hit] | None:
        """A fixed-effort search without a filter or funnel in one compiled call (graph walk, checksum
        look-up, rerank; ``ann.AnnIndex.search_best_of``), or None: the call cannot answer (several
        segments, the hnswlib package, a cache not known to be warm, fewer live items than the
        shortlist) and the steps run one by one. Both ways give the same hits (the same walk at the
        same ef, the same scoring code). Why: each step in Python kept the GIL between hnswlib and
        the kernel, and two searching threads waited on each other (docs/benchmarks.md)."""
        s = self.s
        shortlist = max(plan.shortlist, plan.k)
        answer = self._read_fused(query, plan, shortlist, lambda prefix, matrix, bitmap: s.ann.search_best_of(
            prefix, shortlist, plan.ef, matrix, bitmap, query, plan.k))
        if answer is None:
            return None
        if isinstance(answer, np.ndarray):  # a candidate this handle never checked: check, then rerank
            return self._finish(query, answer, plan)
        return to_hits(s.docs, s.records, *answer)

    def _fused_scored(self, query: np.ndarray, plan: SearchPlan, shortlist: int, ef: int):
        """The climb's first level (no filter) in one compiled call: (rows, prefix sims, full scores)
        in prefix order, the numbers ``coarse_ranked`` and ``exact_scores`` give; or None, and the
        steps run one by one (``_fused``'s cases, and a shortlist row this handle never checked).
        Why: the climb's steps in Python cost ~35 us a query over the fused fixed search at 100k x
        1024, where 99% of the queries stop at the first level (docs/benchmarks.md)."""
        shortlist = max(shortlist, plan.k)
        return self._read_fused(query, plan, shortlist, lambda prefix, matrix, bitmap: self.s.ann.search_scored(
            prefix, shortlist, ef, matrix, bitmap, query))

    def _read_fused(self, query: np.ndarray, plan: SearchPlan, shortlist: int, call: Callable[..., T]) -> T | None:
        """``call(prefix query, the vector map, the checked bitmap)``: a fused graph call reading
        ``shortlist`` rows in place; None where no compiled scoring may serve (the numpy twin asked for,
        or the kernel not built) or the map's cache is not known to be warm (``read_unnamed``)."""
        if not kernel.compiled():
            return None
        s = self.s
        prefix_query = kernel.unit_prefix(query, plan.prefix_dim)
        bitmap = s.checked.bitmap
        return s.vectors.read_unnamed(lambda matrix: call(prefix_query, matrix, bitmap), shortlist)

    def _finish(self, query: np.ndarray, rows: np.ndarray, plan: SearchPlan) -> list[Hit]:
        s = self.s
        best_rows, scores = rerank(s.vectors, s.docs, s.checked, rows, query, plan.k, plan.funnel_dim)
        return to_hits(s.docs, s.records, best_rows, scores)
