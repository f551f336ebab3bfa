"""``tune``: measure prefix width x shortlist x ef on the store's own vectors and keep the fastest
setting that reaches the target recall as the store's default.

Queries are a seeded sample of stored vectors; each query's own row is excluded from its truth (the
exact full-width top-k over every other live row) and from its results, so the measurement is the
"find the neighbours of a document" task, not a lookup of the document itself.

A stored vector is still a far easier query than a real one, above all for the coarse HNSW graph,
where the query *is* a node whose links lead straight to its neighbours. Measured at 1M x 1024
(synthetic MRL-like data): a setting at 0.998 on stored vectors gave 0.980 on held-out queries. So
by default each sampled vector is moved off its node before it is used (``query_noise``: Gaussian
noise shaped like the data's own per-dimension spread, of norm 0.5, i.e. a query at cosine ~0.9 of
the document it resembles), and a setting counts as meeting the target only if the lower bound of
its recall's one-sided ``confidence`` interval does (95%: mean - 1.645 standard errors over the
sampled queries), so a lucky sample does not pick a setting that is too small. Best of all, pass
real query vectors (``queries=``): then nothing is assumed about them. Each prefix width
is built with ``reindex`` from the stored full vectors (no provider call). Timing is the real
``search`` path (coarse query, rerank, SQLite fetch) on one thread, median over the sample.

Costs: one pass over the vector file for the truth, one coarse-index build per extra prefix width
(minutes at 1M vectors), and ``2 x sample`` searches per setting. Takes the write lock only while
it rebuilds and when it records the result; searches from other threads keep working.

``tune`` is also the thorough version of the store's self-calibration (``calibration.py``): at each
width where a fixed setting meets the target it calibrates the per-query effort model with
``calibration_probes`` probes (2x a checkpoint's; or on ``queries``), and it keeps the narrowest
width whose calibrated policy for the target is modeled within ``WIDER_BY`` of the cheapest width's,
because that policy is what the store's default search runs; the fixed defaults are the fastest
setting at that width. It records both, with
``target_recall`` as the store's target (only when tune met it: otherwise the store stays as it
was). With ``calibration_probes=0`` it keeps the width of the fastest fixed setting, as before the
calibration existed. Checkpoints do not recalibrate while it sweeps widths.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from ...checks import positive_int
from ...errors import InvalidInputError
from ...mrl import as_matrix, normalize
from ...types import Hit
from ..effort import Calibration, check_target
from . import calibration
from .manifest import Manifest
from .rwlock import ReadWriteLock
from .search import fold_top_k
from .state import StoreState
from .kernel import to_float32


class Tunable(Protocol):
    """What ``tune`` needs of the store it tunes: a writable ``MRLStore`` (typed here, not imported:
    the store module imports this one)."""

    @property
    def full_dim(self) -> int: ...

    @property
    def prefix_dim(self) -> int: ...

    @property
    def manifest(self) -> Manifest: ...

    @property
    def _s(self) -> StoreState: ...

    @property
    def _rw(self) -> ReadWriteLock: ...

    def _check_open(self) -> None: ...

    def _check_writable(self) -> None: ...

    def search(self, vector: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
               target_recall: float | None = None) -> list[Hit]: ...

    def reindex(self, prefix_dim: int | None = None, *, funnel_dim: int | None = None) -> None: ...

    def _record_calibration(self, measured: Calibration, queries: np.ndarray | None,
                            check_open: Callable[[], None]) -> Calibration | None: ...


DEFAULT_PREFIX_DIMS = (64, 128, 256)
DEFAULT_SHORTLISTS = (25, 50, 100, 200, 400)
DEFAULT_CONFIDENCE = 0.95
DEFAULT_QUERY_NOISE = 0.5
# Settings whose median latency lies within this fraction of the fastest count as equally fast
# (timing noise); among them the one with the best recall wins, then the cheapest.
TIE_TOLERANCE = 0.05
# A wider prefix is kept only when its calibrated default search is modeled this much cheaper than a
# narrower one's (``_width_for_default_search``): the model overrates a wide prefix (at 100k x 1024
# it priced 256 1.35x cheaper than 128; the default searches measured 1.08-1.12x apart), and the
# wider index costs RAM (135 MB of anonymous memory at 256 wide there, 86 at 128, 61 at 64).
WIDER_BY = 1.5
_BLOCK = 65536


@dataclass(frozen=True)
class TunePoint:
    """One measured setting."""

    prefix_dim: int
    shortlist: int
    ef: int
    recall: float
    recall_low: float  # lower bound of the one-sided confidence interval of ``recall``
    p50_ms: float


@dataclass
class TuneResult:
    """What ``tune`` measured and chose. ``applied``: the choice is now the store's default."""

    target_recall: float
    k: int
    sample: int
    confidence: float
    prefix_dim: int
    shortlist: int
    ef: int
    recall: float
    recall_low: float
    p50_ms: float
    met: bool
    applied: bool
    seconds: float = 0.0
    note: str | None = None
    points: list[TunePoint] = field(default_factory=list)
    # Per width measured: the modeled cost (us a query) of the calibrated policy for the target,
    # what the store's default search will spend there (None: no policy met the target); for the
    # width kept, of the calibration recorded (re-measured when its index was rebuilt after the sweep).
    policy_costs: dict[int, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tune(
    store: Tunable,
    target_recall: float = 0.99,
    sample: int = 200,
    prefix_dims: Sequence[int] | None = None,
    shortlists: Sequence[int] | None = None,
    efs: Sequence[int] | None = None,
    seed: int = 0,
    *,
    k: int = 10,
    queries: np.ndarray | None = None,
    query_noise: float = DEFAULT_QUERY_NOISE,
    confidence: float = DEFAULT_CONFIDENCE,
    progress: Callable[[str], None] | None = None,
    calibration_probes: int | None = None,
) -> TuneResult:
    """Measure settings on ``store`` and record the fastest one reaching ``target_recall`` at the
    width where the calibrated default search costs least.

    Args:
        store: a writable ``MRLStore``.
        target_recall: recall@k against the exact full-width top-k to reach (0 < target <= 1).
        sample: how many stored vectors to use as queries (or how many of ``queries`` to use).
        prefix_dims: coarse widths to try (default 64, 128, 256 and the current one, below full_dim).
        shortlists: shortlist sizes to try (default 25, 50, 100, 200, 400).
        efs: hnswlib ``ef`` values to try (default: each shortlist x 1, x 2 and x 3).
        seed: seeds the query sample.
        k: the k of recall@k.
        queries: real query vectors (n, full_dim) to tune on instead of sampled stored vectors.
        query_noise: norm of the spectrum-shaped noise added to each sampled stored vector
            (0: the stored vectors themselves; ignored with ``queries``).
        confidence: a setting meets the target when the lower bound of this one-sided confidence
            interval of its sampled recall does (0.5: the plain mean).
        progress: called with one line per measured setting.
        calibration_probes: probes of the effort calibration measured at each width (0: skip it, and
            choose the width by the fixed settings alone; None: twice a checkpoint's,
            ``2 x calibration.default_probes(live)``).

    Returns a ``TuneResult``. When no setting reaches the target, the store keeps its previous
    prefix width and defaults (``met`` and ``applied`` are False) and the result says the best seen.
    """
    started = time.perf_counter()
    _check_args(target_recall, sample, k)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1:
        raise InvalidInputError(f"confidence must lie in [0.5, 1), got {confidence!r}")
    if isinstance(query_noise, bool) or not isinstance(query_noise, (int, float)) or not 0 <= query_noise <= 10:
        raise InvalidInputError(f"query_noise must be a number in [0, 10], got {query_noise!r}")
    z = statistics.NormalDist().inv_cdf(confidence)
    store._check_writable()
    s = store._s
    m = s.manifest
    original = (m.prefix_dim, m.shortlist, m.ef)
    live = s.docs.live_rows()
    if len(live) <= max(m.exact_below, k + 1):
        return TuneResult(target_recall, k, 0, confidence, *original, 1.0, 1.0, 0.0, met=True, applied=False,
                          seconds=time.perf_counter() - started,
                          note=f"{len(live)} live items <= exact_below ({m.exact_below}): every search is exact already")
    rng = np.random.default_rng(seed)
    if queries is not None:
        queries = as_matrix(queries, store.full_dim, what="tuning queries")
        vectors = normalize(queries)
        vectors = vectors[np.sort(rng.choice(len(vectors), size=min(sample, len(vectors)), replace=False))]
        rows = np.full(len(vectors), -1, dtype=np.int64)  # real queries have no row of their own
    else:
        rows = np.sort(rng.choice(live, size=min(sample, len(live)), replace=False))
        vectors = _off_node(normalize(s.vectors.gather(rows).astype(np.float32)), query_noise, rng)
    truth_ids, own_ids = _truth(store, live, rows, vectors, k)
    widths = _widths(prefix_dims, store)
    grid = _grid(shortlists, efs, k, len(live))
    points: list[TunePoint] = []
    if calibration_probes is None:
        calibration_probes = 2 * calibration.default_probes(len(live))
    calibrated: dict[int, Calibration] = {}
    s.auto_calibrate = False  # each width's checkpoint would recalibrate; tune measures each width itself
    try:
        for width in widths:
            if width != store.prefix_dim:
                store.reindex(width)
            for shortlist, ef in grid:
                point = _measure(store, vectors, truth_ids, own_ids, k, width, shortlist, ef, z)
                points.append(point)
                if progress:
                    progress(f"prefix {width:5d}  shortlist {shortlist:4d}  ef {ef:4d}  recall@{k} {point.recall:.4f} "
                             f"(>= {point.recall_low:.4f})  p50 {point.p50_ms:.3f} ms")
            if calibration_probes and _choose(_at_width(points, width), target_recall)[1]:
                calibrated[width] = _measure_calibration(store, target_recall, calibration_probes, seed, queries, progress)
        costs = {w: _policy_cost(c, target_recall) for w, c in calibrated.items()}
        best, met = _choose(_at_width(points, _width_for_default_search(costs)), target_recall)
        if not met and store.prefix_dim != original[0]:  # keep what the store had
            store.reindex(original[0])
        elif met and store.prefix_dim != best.prefix_dim:
            store.reindex(best.prefix_dim)
            if calibration_probes:  # a new graph (its build is not bit-reproducible): measure the one kept
                calibrated[best.prefix_dim] = _measure_calibration(store, target_recall, calibration_probes, seed,
                                                                   queries, progress)
                costs[best.prefix_dim] = _policy_cost(calibrated[best.prefix_dim], target_recall)
    finally:
        s.auto_calibrate = True
    if not met:  # the grid did not find anything good enough: the store stays as it was
        return TuneResult(target_recall, k, len(rows), confidence, best.prefix_dim, best.shortlist, best.ef, best.recall,
                          best.recall_low, best.p50_ms, met=False, applied=False, seconds=time.perf_counter() - started,
                          points=points, note=f"no setting reached recall@{k} >= {target_recall} (at {confidence:.0%} "
                                              "confidence); try wider prefixes or larger shortlists")
    _record(store, best.shortlist, best.ef)
    if calibration_probes:  # measured on the coarse index the store keeps
        store._record_calibration(calibrated[best.prefix_dim], queries, store._check_open)
    return TuneResult(target_recall, k, len(rows), confidence, best.prefix_dim, best.shortlist, best.ef, best.recall,
                      best.recall_low, best.p50_ms, met=True, applied=True, seconds=time.perf_counter() - started, points=points,
                      policy_costs=costs)


def _policy_cost(calibrated: Calibration, target_recall: float) -> float | None:
    """The modeled cost (us a query) of the calibrated policy for the target (None: none met it)."""
    measured = calibrated.policies.get(target_recall)
    return None if measured is None else measured.cost


def _off_node(vectors: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Move each (unit) vector by spectrum-shaped Gaussian noise of norm ~``noise``, renormalized.

    The shape is the sample's own per-dimension spread (an MRL model's front-loaded spectrum), so
    the noise disturbs the prefix as much as a real query's difference from a document would.
    """
    if noise == 0 or len(vectors) < 2:
        return vectors
    shape = vectors.std(axis=0)
    shape = shape / max(float(np.linalg.norm(shape)), 1e-12)
    moved = vectors + noise * rng.standard_normal(vectors.shape).astype(np.float32) * shape
    return normalize(moved.astype(np.float32))


def _check_args(target_recall: float, sample: int, k: int) -> None:
    check_target(target_recall)
    for name, value in (("sample", sample), ("k", k)):
        positive_int(name, value)


def _widths(prefix_dims: Sequence[int] | None, store: Tunable) -> list[int]:
    """Current width first (no rebuild), then the others ascending; all below full_dim/funnel_dim."""
    full, funnel = store.full_dim, store.manifest.funnel_dim
    limit = funnel if funnel is not None else full
    if prefix_dims is None:
        candidates = [w for w in DEFAULT_PREFIX_DIMS if w < limit] or [max(1, limit // 4), max(1, limit // 2)]
    else:
        candidates = list(prefix_dims)
        bad = [w for w in candidates if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or not 1 <= w < limit]
        if bad:
            raise InvalidInputError(f"prefix_dims must be integers in 1..{limit - 1}, got {bad}")
    current = store.prefix_dim
    return [current] + sorted({int(w) for w in candidates} - {current})


def _grid(shortlists: Sequence[int] | None, efs: Sequence[int] | None, k: int, live: int) -> list[tuple[int, int]]:
    sizes = sorted({min(int(s), live) for s in (shortlists or DEFAULT_SHORTLISTS)})
    if any(s < 1 for s in sizes) or (efs is not None and any(int(e) < 1 for e in efs)):
        raise InvalidInputError("shortlists and efs must be positive integers")
    sizes = [s for s in sizes if s >= k + 1] or [min(live, k + 1)]
    grid = set()
    for s in sizes:
        # An ef beyond the shortlist finds better candidates for the same rerank cost: in the 1M bench,
        # shortlist 200 / ef 600 reached recall 0.9947 at 73% of the latency of 400 / 800 (0.9964).
        for ef in (efs if efs is not None else (s, 2 * s, 3 * s)):
            grid.add((s, max(int(ef), s)))  # ef below the shortlist is raised to it by the index
    return sorted(grid)


def _truth(store: Tunable, live: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int) -> tuple[list[set[str]], list[str | None]]:
    """Exact top-k ids per query over all live rows but its own (row -1: none), in one pass."""
    s = store._s
    nq = len(rows)
    best = (np.full((nq, 0), -1, dtype=np.int64), np.full((nq, 0), -np.inf, dtype=np.float32))
    qt = np.ascontiguousarray(queries.T)
    for start in range(0, len(live), _BLOCK):
        part = live[start : start + _BLOCK]
        scores = to_float32(s.vectors.gather(part)) @ qt  # (block, nq)
        pos = np.searchsorted(part, rows)
        inside = (pos < len(part)) & (part[np.minimum(pos, len(part) - 1)] == rows)
        scores[pos[inside], np.flatnonzero(inside)] = -np.inf  # a query is not its own neighbour
        best = fold_top_k(best, part, scores, k)
    best_rows = best[0]
    found = s.docs.by_rows(np.unique(np.concatenate([best_rows.ravel(), rows[rows >= 0]])).tolist())
    truth = [{found[r][0] for r in line.tolist() if r in found} for line in best_rows]
    return truth, [found[r][0] if r >= 0 else None for r in rows.tolist()]


def _measure(store, queries, truth_ids, own_ids, k, width, shortlist, ef, z) -> TunePoint:
    hits_per_query = []
    for q in queries:  # first pass: recall (and warm caches)
        hits_per_query.append([h.id for h in store.search(q, k=k + 1, shortlist=shortlist, ef=ef)])
    times = []
    for q in queries:
        started = time.perf_counter()
        store.search(q, k=k + 1, shortlist=shortlist, ef=ef)
        times.append(time.perf_counter() - started)
    recalls = []
    for ids, truth, own in zip(hits_per_query, truth_ids, own_ids):
        others = [i for i in ids if i != own][:k]
        recalls.append(len(set(others) & truth) / max(1, len(truth)))
    mean = float(np.mean(recalls))
    low = mean - z * float(np.std(recalls, ddof=1)) / np.sqrt(len(recalls)) if len(recalls) > 1 else mean
    return TunePoint(width, shortlist, ef, mean, low, float(np.median(times)) * 1e3)


def _choose(points: list[TunePoint], target: float) -> tuple[TunePoint, bool]:
    meeting = [p for p in points if p.recall_low >= target - 1e-9]  # recall is a mean of fractions
    if not meeting:
        return max(points, key=lambda p: (p.recall_low, -p.p50_ms)), False
    fastest = min(p.p50_ms for p in meeting)
    near = [p for p in meeting if p.p50_ms <= fastest * (1 + TIE_TOLERANCE)]
    return min(near, key=lambda p: (-p.recall, p.prefix_dim, p.shortlist, p.ef)), True


def _measure_calibration(store: Tunable, target: float, probes: int, seed: int, queries, progress) -> Calibration:
    """The effort calibration ``tune`` records, measured at the store's current width (read lock;
    nothing recorded)."""
    with store._rw.read():
        store._check_open()
        result = calibration.calibrate(store._s, target_recall=target, probes=probes, seed=seed, queries=queries,
                                       source="tune")
    if progress:
        met = result.policies.get(target)
        progress(f"prefix {store.prefix_dim:5d}  effort calibration ({result.probes} probes, {result.seconds:.1f} s): "
                 + (f"{met.policy.levels} threshold {met.policy.threshold:.2f}{' + exact' if met.policy.exact else ''}, "
                    f"recall {met.recall:.4f} (>= {met.recall_low:.4f}), modeled {met.cost:.0f} us"
                    if met else f"no policy reached {target}"))
    return result


def _width_for_default_search(costs: dict[int, float | None]) -> int | None:
    """The narrowest width whose calibrated policy for the target costs at most ``WIDER_BY`` times
    the cheapest width's (modeled), or None when no width has a policy for it.

    A store's default search runs that policy, not tune's fixed setting. Choosing the width by the
    fixed setting's speed on tune's own sample (paraphrase-like queries) picked prefix 64 for the
    100k x 1024 bench store, where the default search then cost 3.8x what it costs at 128
    (its policy must also serve the calibration's loose probes, which a 64-wide prefix ranks badly;
    docs/benchmarks.md, "tune")."""
    priced = {w: c for w, c in costs.items() if c is not None}
    if not priced:
        return None
    cheapest = min(priced.values())
    return min(w for w, c in priced.items() if c <= cheapest * WIDER_BY)


def _at_width(points: list[TunePoint], width: int | None) -> list[TunePoint]:
    """The points measured at ``width`` (None: all of them)."""
    return points if width is None else [p for p in points if p.prefix_dim == width]


def _record(store: Tunable, shortlist: int, ef: int) -> None:
    """Make (shortlist, ef) the store's defaults: one atomic manifest write under the write lock."""
    with store._rw.write():
        store._check_open()
        state = store._s
        state.set_manifest(dataclasses.replace(state.manifest, shortlist=int(shortlist), ef=int(ef)))


__all__ = ["DEFAULT_PREFIX_DIMS", "DEFAULT_SHORTLISTS", "TunePoint", "TuneResult", "tune"]
