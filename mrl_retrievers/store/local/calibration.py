"""Self-calibration: how much effort this store's queries need to reach a target recall.

The store measures itself (after the writes that grow it, or when asked: ``calibrate``, ``tune``)
and records in its manifest, for each target recall, the cheapest ``EffortPolicy`` whose measured
recall's lower confidence bound reaches it. Searches then read the policy; nothing here runs on the
query path.

Probes are held-out style, never stored vectors as they are (a stored vector's own graph node links
straight to its neighbours: ``tuning`` measured 0.998 on those against 0.980 on real queries). Each
probe is a seeded sample row moved off its node by Gaussian noise shaped like the sample's own
per-dimension spread, of a norm drawn uniformly from ``NOISE`` (from a paraphrase at cosine ~0.96
to the row to a loose question at ~0.55), and its own row is excluded from its truth and results.
Near, middle and far probes are three strata, and a policy meets a target only if it does in each
(the lower confidence bound over all, and over each): loose queries need more effort than
paraphrases (with real man-page sentences the old fixed 200/400 fell to 0.82 at prefix 24; probes
at one distance, as ``tune`` uses, gave policies that reached only 0.978 there), and the policy
must hold for any mix.
Pass real query vectors (``queries=``) to measure on them instead.

Procedure: exact full-width top-k of every probe (one pass over the vector file); then each probe
climbs the ladder (shortlists ``ladder()`` x ef at 1 and 2 times the shortlist), recording
at each level the recall of that level's own top-k and the query's ``confidence``. Policies (a ratio,
a start, a stride, a last level, a threshold) are then simulated on these traces exactly as
``effort.climb`` would run them (its decisions use only the level's own rows; its answer, the top-k
of every row scored, is at least as good as the level's, so the simulated recall is a lower bound).
The probes are split in two halves: the candidates are ranked on the first half and the cheapest one
whose lower confidence bound also reaches the target on the second half is recorded, with the second
half's figures (the selection does not flatter them). Cost is a deterministic model (microseconds,
constants below), never a clock: the same store state always records the same policies.

Bounded cost: one pass over the vectors (``probes`` x live x full_dim multiply-adds; its scores are
kept for the trace when they fit ``_TABLE_BYTES``, which then reads no row again) plus at most
one coarse query per probe, level and ef ratio (the deep levels ask only the probes still
incomplete: ``trace``), each level cheaper than an exact scan (``ladder``),
and the climb stops where its deep levels stop paying (``trace``); after a write it reruns
only when the live count has grown by ``GROWTH`` (or shrunk by it), or the prefix width changed,
since the last calibration, so over a store's growth it costs O(probes) work per added item.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import time
from array import array
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ...checks import positive_int
from ...errors import InvalidInputError, MRLError
from ...mrl import normalize
from ..defaults import MIN_CALIBRATED_LIVE
from ..effort import Calibration, EffortPolicy, Measured, ScoredRows, check_target
from .manifest import calibrates
from .search import fold_top_k
from . import kernel
from .kernel import to_float32, unit_prefixes

if TYPE_CHECKING:  # pragma: no cover
    from .state import StoreState

log = logging.getLogger("mrl_retrievers.store")

# Shortlists a policy may climb. At 10M x 1024, prefix 96, the true top-10 of a loose query sits
# beyond the 768th prefix rank so often that a ladder ending there reaches 0.99 only through the
# exact scan (85% of the probes; 22% with the ladder to 16384: docs/benchmarks.md, "10M x 1024").
# The deep levels (past ``CACHED_ROWS``) are climbed only by stores large enough for them to be
# cheaper than the scan (``ladder``), and their rows are scored afresh, block by block, so the
# trace's memory stays bounded whatever the ladder's depth.
LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
          1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768, 49152, 65536)
# A deep level is on the ladder while it costs less than an exact scan (cost model: a policy that
# reaches a dearer one pays more than the scan that is sure to find everything) and reads at most
# 1/DEEP_FRACTION of the store: measured, 8192 of 60k rows (256 dims) took 10 ms against 37 ms for
# the scan, 16384 took 20 ms; with the levels below it, a climb past live/8 costs about what the
# scan does, and tracing such levels made a 20k-passage calibration take 174 s instead of ~20.
DEEP_FRACTION = 8
# Rows per probe and ratio whose full scores the trace keeps between levels (each is read once);
# deeper levels re-read theirs (at most ~3x the top level's rows: the ladder grows by 1.33-1.5x).
CACHED_ROWS = 768
EF_RATIOS = (1, 2)
STRIDES = (1, 2, 3)
# Weights of the k-th full score in the confidence tried by the calibration (z alone: 0). z ranges
# over ~0-10, a k-th score over ~0.3-0.9: 10 gives both a say.
WEIGHTS = (0.0, 5.0, 10.0, 20.0, 40.0)
TARGETS = (0.9, 0.95, 0.98, 0.99, 0.995)
# Probes a calibration takes by default (``default_probes``): at most DEFAULT_PROBES. With 512, the
# policy recorded for 0.99 at 200k x 768 (prefix 192) depended on which probes were drawn: over four
# probe seeds its cost on 2,048 independent probes spanned 2.1k to 7.0k us a query (at the cost
# model below; ``bench adaptive-seeds``), because a policy passes only if each stratum's bound holds
# on each half (~85 probes) and one loose probe whose neighbours no cheap climb reaches sinks a
# half's bound; only the exact rung or a deep first level then passes. With 1536, every seed chose a
# climb: 0.6k to 1.8k us, recall on the independent probes >= 0.9926 (docs/benchmarks.md, "How many
# probes").
DEFAULT_PROBES = 1536
# Small stores take fewer (one per PER_PROBE live items, at least MIN_PROBES): their searches are
# cheap whatever effort is chosen, and the looser bound only makes the policy more careful, while a
# full calibration would cost a 3,000-item store seconds at every ``GROWTH``.
MIN_PROBES = 128
PER_PROBE = 32
# Large stores take fewer too: a calibration's work grows with probes x live rows (the exact truth
# pass reads every row for every probe), so at most PROBE_BUDGET // live probes: 1536 up to 1M rows
# (~50 s at 1M x 1024 here), 153 at 10M (the 10M run's calibration took 22 min with 192).
PROBE_BUDGET = 1536 * 1_000_000
DEFAULT_CONFIDENCE = 0.95
# Probe distances (norm of the noise): from a paraphrase (0.3: cosine ~0.96 to the row it came
# from) to a loose question (1.5: ~0.55), uniformly. Real text queries sit at 0.5-0.87 from their
# nearest passage (pydoc, man pages). Tried and dropped: the store's own reach (as far as items'
# 10th neighbours, 0.8 on the synthetic spectra): cheaper there, but queries at noise 1.0 then fell
# to 0.92 where the old fixed defaults gave 0.99.
NOISE = (0.3, 1.5)
STRATA = 3  # equal-width bands of noise: near, middle and far probes
# A write recalibrates when the live count has grown (or shrunk) by this factor since the last
# calibration. Between calibrations the policy's levels grow with the store (``effort.growth``), which
# recovers most of what growth costs, not all: at 1M x 768 (prefix 192) the 600k policy, widened
# x1.67, gave 0.9883 on mixed queries against 0.9955 measured at 1M; at 2x it was 0.9828 unwidened.
# 1.5 costs ~1.5x the calibration work of doubling over a store's growth (sum of a geometric series).
GROWTH = 1.5
K = 10
MIN_LIVE = MIN_CALIBRATED_LIVE  # stores this small are never calibrated
_THRESHOLDS = np.linspace(0.02, 0.98, 25)
# Candidates confirmed by ``_measure`` per target, cheapest first: a guard, as every candidate that
# reaches it already holds on the second half by the vectorized bound (``_Candidates.check``).
_MAX_CHECKS = 5000
# Bytes of float32 rows one step of the exact pass holds: bounded memory at any size (a 10M-row
# store's calibration must not hold more than a batch of an ingestion does).
_BLOCK_BYTES = 2 << 20
_QUERY_CHUNK = 32
# Bytes of the truth pass's scores (probes x live float32) kept for the trace when they fit.
_TABLE_BYTES = 64 << 20
# Coarse answers (row, similarity) one chunk of probes may hold: deep levels ask in smaller chunks.
_COARSE_ROWS = 1 << 17
# Bytes the trace may keep between levels: each probe's scored rows (``ScoredRows``, up to
# CACHED_ROWS rows of 12 bytes: read once, shared by the levels) and the 1x answers the 2x ratio
# reuses (``_Coarse``). Past them (more probes than ~680), rows are scored afresh at each level and
# the 2x ratio asks hnswlib itself: the same numbers, more reads (1536 probes kept ~20 MB
# otherwise, past bulk_add's memory bound).
_SCORED_BYTES = 8 << 20
_KEPT_BYTES = 4 << 20
_UNPAID = 2  # deep levels in a row that do not pay stop a ratio's climb (``trace``)

# Cost model (CPU microseconds per query): hnswlib's work grows with ef and the prefix width, the
# rerank's with the rows it reads and the full width; each extra level pays another coarse call and
# the confidence. Only ratios matter (every policy pays the same fixed part). Fitted with
# ``python -m mrl_retrievers.bench cost-model STORE ...`` (steady-state CPU time of fixed searches and
# exact scans; docs/benchmarks.md, "The cost model, measured again") on 200k x 768 (prefix 192) and
# 100k x 1024 (prefix 64) after the compiled rerank: a reranked row costs 0.78 us per 1024 dims
# (1.9 before it) and a scanned row 0.40-0.45 (4.5 at 1024 dims before: the scan was a numpy
# gather and conversion then), so the old model priced the exact rung ~9x too high against a level.
COST_PER_EF = 0.76  # at a 128-wide prefix
COST_PER_ROW = 0.78  # at 1024 dims
COST_PER_LEVEL = 40.0  # not refitted: another coarse call and confidence, about the fixed part of a level
# An exact scan lists the live rows in SQLite, then reads and scores every one of them in place
# (memory-bound: 0.40 us a row at 768 dims, 0.39 at 1024 on the fit's stores).
COST_PER_SCANNED_ROW = (0.05, 0.40)  # base + per 1024 dims


def level_cost(shortlist: int, ef: int, prefix_dim: int, full_dim: int) -> float:
    return COST_PER_EF * max(ef, shortlist) * (prefix_dim + 32) / 160 + COST_PER_ROW * shortlist * full_dim / 1024


def scan_cost(live: int, full_dim: int) -> float:
    return live * (COST_PER_SCANNED_ROW[0] + COST_PER_SCANNED_ROW[1] * full_dim / 1024)


def needs_calibration(state: "StoreState") -> bool:
    """Whether the store should (re)calibrate: a target is set, the store is past its exact-scan
    size, and it has no calibration for its current width and size (within a factor ``GROWTH``)."""
    m = state.manifest
    live = state.ann.live
    if not calibrates(m, live):
        return False
    cal = m.calibration
    return (cal is None or cal.prefix_dim != m.prefix_dim or cal.target_recall != m.target_recall
            or not cal.live / GROWTH < live < cal.live * GROWTH)


@contextlib.contextmanager
def paused(state: "StoreState") -> Iterator[bool]:
    """Writes inside do not recalibrate (a load calibrates once at its end); yields whether they
    did before, which is restored after."""
    calibrating, state.auto_calibrate = state.auto_calibrate, False
    try:
        yield calibrating
    finally:
        state.auto_calibrate = calibrating


def due(state: "StoreState") -> bool:
    """Whether the store should recalibrate after a write (``needs_calibration``, unless a load
    or ``tune`` has paused it). The store measures under its read lock and records under its write
    lock (``MRLStore._calibrate_if_due``), so searches keep running while it measures."""
    return state.auto_calibrate and needs_calibration(state)


def calibrate(state: "StoreState", *, target_recall: float, probes: int | None = None, seed: int = 0,
              queries: np.ndarray | None = None, confidence_level: float = DEFAULT_CONFIDENCE,
              targets: Sequence[float] = TARGETS, source: str = "calibrate") -> Calibration:
    """Measure the store and return its ``Calibration`` (nothing is written: ``MRLStore`` records it).

    ``probes`` (default ``default_probes(live)``): held-out-style probes, or how many of ``queries`` to use.
    """
    started = time.perf_counter()
    m = state.manifest
    live = state.docs.live_rows()
    probes = default_probes(len(live)) if probes is None else probes
    _check(target_recall, probes, confidence_level)
    rng = np.random.default_rng(seed)
    if queries is not None:
        vectors = normalize(sample_queries(queries, probes, seed))
        own = np.full(len(vectors), -1, dtype=np.int64)
        strata = np.zeros(len(vectors), dtype=np.int64)
    else:
        own, vectors, strata = draw_probes(state, live, probes, rng)
    # The truth pass scores every live row for every probe: when those scores fit ``_TABLE_BYTES``
    # (stores up to ~32k rows at 512 probes), the trace looks its rows up there instead of reading
    # and scoring them again (at 16k x 1024 that was a third of the calibration).
    table = np.empty((len(vectors), len(live)), np.float32) if len(vectors) * len(live) * 4 <= _TABLE_BYTES else None
    truth = exact_top_rows(state, live, own, vectors, K, table)
    exact_cost = scan_cost(len(live), m.full_dim)
    shortlists = ladder(len(live), m.prefix_dim, m.full_dim)
    wanted = sorted(set(targets) | {target_recall})
    # Above a level whose mean recall leaves a quarter of the strictest target's misses, no policy
    # needs anything higher (it would meet every target there already).
    costs = np.array([[level_cost(s, r * s, m.prefix_dim, m.full_dim) for s in shortlists] for r in EF_RATIOS])
    recall, conf = trace(state, vectors, own, truth, shortlists, enough=1 - (1 - max(wanted)) / 4,
                         paying=(costs + COST_PER_LEVEL, exact_cost), table=None if table is None else (live, table))
    del table, truth
    probes = len(vectors)
    del vectors  # not needed to choose: the memory goes to the candidates
    depth = recall.shape[2]  # levels no ratio measured (their climbs stopped paying) are not candidates
    shortlists, costs = shortlists[:depth], costs[:, :depth]
    z = statistics.NormalDist().inv_cdf(confidence_level)
    chosen, fixed = choose(recall, conf, costs, exact_cost, shortlists, wanted, z, target_recall, strata)
    return Calibration(target_recall, K, len(live), m.prefix_dim, probes, seed, confidence_level, source,
                       time.perf_counter() - started, chosen, fixed, "probes" if queries is None else "given")


def sample_queries(queries: np.ndarray, probes: int, seed: int) -> np.ndarray:
    """The rows of ``queries`` a calibration with ``probes`` and ``seed`` measures on (float32, as
    given, in their order): what the store keeps to measure on again (``query_sample``). A sample
    of a sample of the same size is itself, so measuring again on it measures the same vectors."""
    queries = np.asarray(queries, dtype=np.float32)
    rng = np.random.default_rng(seed)
    return queries[np.sort(rng.choice(len(queries), size=min(probes, len(queries)), replace=False))]


def ladder(live: int, prefix_dim: int, full_dim: int) -> list[int]:
    """The shortlists a store of ``live`` rows calibrates: ``LADDER`` up to ``CACHED_ROWS``, and the
    deeper levels that cost less than an exact scan and read at most ``live / DEEP_FRACTION`` rows."""
    exact_cost = scan_cost(live, full_dim)

    def deep_ok(s: int) -> bool:
        return s <= live / DEEP_FRACTION and level_cost(s, s, prefix_dim, full_dim) < exact_cost

    shortlists = [s for s in LADDER if s < live - 1 and (s <= CACHED_ROWS or deep_ok(s))]
    return shortlists or [max(K, live - 2)]


def default_probes(live: int) -> int:
    """Probes a calibration takes by default: ``DEFAULT_PROBES``, fewer for small and for very large
    stores (one per ``PER_PROBE`` live items; ``PROBE_BUDGET`` probe-rows), never fewer than ``MIN_PROBES``."""
    return min(DEFAULT_PROBES, max(MIN_PROBES, min(live // PER_PROBE, PROBE_BUDGET // max(live, 1))))


def draw_probes(state: "StoreState", live: np.ndarray, probes: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(own rows ascending, probe vectors, strata): ``probes`` sampled live rows moved off their
    nodes (``off_node``); fewer when the store holds too few rows to leave each its top-``K``."""
    own = np.sort(rng.choice(live, size=min(probes, len(live) - K - 1), replace=False))
    vectors, strata = off_node(normalize(to_float32(state.vectors.gather(own))), rng)
    return own, vectors, strata


def off_node(vectors: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Move each unit row by Gaussian noise shaped like the sample's per-dimension spread, of a norm
    drawn uniformly from ``NOISE``, and renormalize. Returns (probes, stratum 0..STRATA-1: equal
    bands of that range, near to far)."""
    shape = vectors.std(axis=0)
    shape = shape / max(float(np.linalg.norm(shape)), 1e-12)
    norms = rng.uniform(*NOISE, size=(len(vectors), 1)).astype(np.float32)
    moved = vectors + norms * rng.standard_normal(vectors.shape).astype(np.float32) * shape
    bands = np.linspace(*NOISE, STRATA + 1)[1:-1]
    return normalize(moved.astype(np.float32)), np.digitize(norms[:, 0], bands).astype(np.int64)


def exact_top_rows(state: "StoreState", live: np.ndarray, own: np.ndarray, queries: np.ndarray, k: int,
                   table: np.ndarray | None = None) -> np.ndarray:
    """Exact full-width top-``k`` live rows of each query, never its ``own`` row (-1: none); one pass.
    ``table`` (queries, live): filled with every score on the way."""
    nq = len(queries)
    best = (np.full((nq, 0), -1, dtype=np.int64), np.full((nq, 0), -np.inf, dtype=np.float32))
    qt = np.ascontiguousarray(queries.T)
    block = max(256, _BLOCK_BYTES // (4 * (state.manifest.full_dim + 2 * nq)))  # rows, and their scores (folded twice)
    for start in range(0, len(live), block):
        part = live[start : start + block]
        scores = to_float32(state.vectors.gather(part)) @ qt  # (block, nq)
        if table is not None:
            table[:, start : start + len(part)] = scores.T
        pos = np.searchsorted(part, own)
        inside = (pos < len(part)) & (part[np.minimum(pos, len(part) - 1)] == own)
        scores[pos[inside], np.flatnonzero(inside)] = -np.inf
        best = fold_top_k(best, part, scores, k)
    return best[0]


def trace(state: "StoreState", queries: np.ndarray, own: np.ndarray, truth: np.ndarray,
          shortlists: Sequence[int], enough: float = 1.0,
          paying: tuple[np.ndarray, float] | None = None,
          table: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Recall of each level's own top-k, and the parts of the query's confidence there: (probes,
    ratios, levels) and (probes, ratios, levels, 2) arrays, up to the deepest level a ratio
    measured. A ratio stops above a level whose mean recall is ``enough``: its levels above are not
    queried (recall 1, confidence +inf there: a policy stops at the first level it reaches above it).

    ``paying`` (each level's cost per ratio, the exact scan's): a ratio also stops climbing the deep
    levels (past ``CACHED_ROWS``) after ``_UNPAID`` in a row that did not pay for themselves even
    for a policy that knew which probes they complete: the probes a level completes (recall 1) would
    have cost the exact scan, the probes still incomplete below it all pay for the level. On data
    whose neighbours no shortlist reaches (uniform noise), the climb stops at ~1.5k instead of
    querying hnswlib at ef 32k for every probe; on MRL-like data the deep levels keep paying.

    ``table`` (the live rows, ascending; every probe's full score of each): scores are looked up
    there instead of read and computed.

    Each ef ratio climbs its levels in order; a probe's rows scored on the way are shared by the
    ratios (up to ``CACHED_ROWS``); the ratios take turns, the 2x ratio right behind the 1x one, so a
    1x answer it can reuse (``_Coarse``) is held for one level.
    """
    m = state.manifest
    nq, nl = len(queries), len(shortlists)
    recall = np.ones((nq, len(EF_RATIOS), nl))
    conf = np.full((nq, len(EF_RATIOS), nl, 2), np.inf)  # (z, k-th score)
    pq = unit_prefixes(queries, m.prefix_dim)  # the bits a search walks with
    truth_sets = [set(t[t >= 0].tolist()) for t in truth]
    coarse = _Coarse(state, pq, shortlists)
    if table is not None:  # each live row's column in the table (rows are never negative)
        live, table_scores = table
        column = np.zeros(int(live[-1]) + 1 if len(live) else 0, dtype=np.int64)
        column[live] = np.arange(len(live))
    # Each probe's rows scored so far, shared by every ratio's levels up to CACHED_ROWS (a row's full
    # score is the same whichever search found it; one cache for both ratios holds ~half the rows two
    # did: 1536 probes kept ~28 MB in two, past bulk_add's memory bound). Dropped once no ratio will
    # climb a cached level again.
    scored: list[ScoredRows] | None = [ScoredRows() for _ in range(nq)] if nq * CACHED_ROWS * 12 <= _SCORED_BYTES else None
    climbing_ratios = [True] * len(EF_RATIOS)
    following = [0] * len(EF_RATIOS)  # each ratio's next level
    unpaid = [0] * len(EF_RATIOS)  # deep levels in a row that did not pay, per ratio

    def pays(b: int, level: int) -> bool:
        if paying is None or shortlists[level] <= CACHED_ROWS or level == 0:
            return True
        costs, scan = paying
        before, now = (float((recall[:, b, j] < 1).mean()) for j in (level - 1, level))
        return (before - now) * scan > before * float(costs[b, level])

    def climb_one(b: int) -> None:
        ratio, level = EF_RATIOS[b], following[b]
        shortlist, rows_of = shortlists[level], scored
        deep = shortlist > CACHED_ROWS
        asked = np.arange(nq)
        if deep and level > 0:
            # A probe whose top-k the level below already held is not asked again: it holds it here
            # too (hnswlib at a wider ef finds what it found at a narrower one: no exception in
            # ~16k probe x level pairs traced at 100k x 768), and its confidence is taken as the
            # one below (it grows with the shortlist, so the policies' modeled cost errs high, never
            # their recall). 95% of the probes are complete by 768 on MRL-like data: the deep
            # levels' coarse queries and reads, most of a large store's calibration, shrink ~20x.
            done = recall[:, b, level - 1] >= 1
            recall[done, b, level] = 1.0
            conf[done, b, level] = conf[done, b, level - 1]
            asked = np.flatnonzero(~done)
        chunk = coarse.chunk(ratio * shortlist + 1)
        for at in range(0, len(asked), chunk):  # the coarse queries in chunks: bounded memory at the top levels
            which = asked[at : at + chunk]
            rows, sims = coarse(which, shortlist + 1, ratio * shortlist + 1)
            for j, i in enumerate(which.tolist()):
                keep = rows[j] != own[i]
                r, s = rows[j][keep][:shortlist], sims[j][keep][:shortlist]
                if table is not None:
                    f = table_scores[i, column[r]]
                elif deep or rows_of is None:  # scored afresh: the rows of every probe at this depth would not fit the bound
                    f = _scores(state, r, queries[i])
                else:
                    f = rows_of[i].scores(r, lambda fresh, q=queries[i]: state.vectors.scores_of(fresh, q))
                top = kernel.best_scored(r, f, K)[0]  # the search's own answer at this level (ties: the lower row)
                recall[i, b, level] = len(truth_sets[i].intersection(top.tolist())) / max(1, len(truth_sets[i]))
                conf[i, b, level] = kernel.confidence_parts(s, f, K)
        following[b] += 1
        unpaid[b] = 0 if pays(b, level) else unpaid[b] + 1
        if unpaid[b] == _UNPAID and following[b] < nl:
            # Levels left unmeasured: a probe that reaches one stops there with nothing found, so
            # no policy that lets a probe get there can be chosen.
            recall[:, b, following[b]:] = 0.0
        if recall[:, b, level].mean() >= enough or following[b] == nl or unpaid[b] == _UNPAID:
            climbing_ratios[b] = False  # every target is met here already: higher levels would never be chosen
            coarse.stopped(ratio)
        release_cache()

    def release_cache() -> None:
        nonlocal scored
        if all(not climbing(a) or following[a] >= nl or shortlists[following[a]] > CACHED_ROWS for a in range(len(EF_RATIOS))):
            scored = None

    def climbing(b: int) -> bool:
        return climbing_ratios[b]

    while any(climbing(b) for b in range(len(EF_RATIOS))):
        for b in range(len(EF_RATIOS)):
            # A ratio waits while a ratio before it is still to ask the search it can reuse.
            while climbing(b) and not any(climbing(a) and coarse.waits_for(EF_RATIOS[b], shortlists[following[b]],
                                                                            EF_RATIOS[a], following[a])
                                          for a in range(b)):
                climb_one(b)
                if b == 0:
                    break  # the first ratio one level at a time: the others catch up behind it
    depth = max(following)
    return recall[:, :, :depth], conf[:, :, :depth]


def _scores(state: "StoreState", rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Full scores of ``rows`` (any order), read in row order, ``_BLOCK_BYTES`` of float32 at a time."""
    order = np.argsort(rows)
    out = np.empty(len(rows), dtype=np.float32)
    block = max(256, _BLOCK_BYTES // (4 * state.manifest.full_dim))
    for start in range(0, len(rows), block):
        part = order[start : start + block]
        out[part] = state.vectors.scores_of(rows[part], query)
    return out


class _Coarse:
    """The trace's coarse queries, each asked of hnswlib once.

    hnswlib searches the graph with ``max(ef, k)`` candidates and keeps the ``k`` nearest, so two
    queries with the same ef and a smaller k agree on their first columns: the ef-2x level of
    shortlist ``s`` (k = s + 1, ef = 2s + 1) is the first s + 1 columns of the ef-1x level of
    shortlist 2s (k = ef = 2s + 1). That answer is kept (its first s + 1 columns, until the 2x level
    asks, right after: ``trace`` runs the 2x ratio one step behind) when it was hnswlib's first
    search over one segment (merging segments breaks ties by position): then the columns are
    identical, not merely close, and so is the calibration.
    """

    def __init__(self, state: "StoreState", pq: np.ndarray, shortlists: Sequence[int]) -> None:
        self.state, self.pq = state, pq
        self.levels = list(shortlists)
        # Searches worth keeping: ef of an ef-1x level that an ef-2x level will ask again -> columns
        # it needs. Not the deep levels: they ask only the probes still incomplete (``trace``).
        self.wanted = ({2 * s + 1: s + 1 for s in shortlists
                        if 2 * s in self.levels and 2 * s <= CACHED_ROWS and len(pq) * (s + 1) * 12 <= _KEPT_BYTES}
                       if 1 in EF_RATIOS and 2 in EF_RATIOS else {})
        self.kept: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def waits_for(self, ratio: int, shortlist: int, other: int, other_level: int) -> bool:
        """Whether the ``ratio`` level at ``shortlist`` should wait for ratio ``other``, whose next level
        is ``other_level``: it reuses a search that ratio has yet to ask."""
        if ratio != 2 or other != 1 or 2 * shortlist + 1 not in self.wanted:
            return False
        return self.levels.index(2 * shortlist) >= other_level

    def stopped(self, ratio: int) -> None:
        if ratio == 2:  # nobody will ask again: keep nothing more
            self.wanted = {}
            self.kept.clear()

    @staticmethod
    def chunk(ef: int) -> int:
        """Probes asked at once at this ef (a function of ef alone: a kept answer has the same chunks)."""
        return max(1, min(_QUERY_CHUNK, _COARSE_ROWS // ef))

    def __call__(self, which: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """The coarse answers of probes ``which`` (a chunk of at most ``chunk(ef)``; a kept answer
        only ever serves the same whole chunk: the levels that keep ask every probe)."""
        start = int(which[0])
        chunk = self.pq[which]
        kept = self.kept.pop((start, ef), None)
        if kept is not None and kept[0].shape[1] == k:
            return kept
        ann = self.state.ann
        if k == ef and ef in self.wanted and len(ann.segments) == 1:
            try:
                rows, sims = ann.query(chunk, k, ef, num_threads=-1, attempts=1)
            except LookupError:
                pass  # fewer than k found at this ef: the plain query below widens it
            else:
                if rows.shape[1] == k:
                    cols = self.wanted[ef]
                    self.kept[(start, ef)] = (rows[:, :cols].copy(), sims[:, :cols].copy())
                return rows, sims
        return ann.query(chunk, k, ef, num_threads=-1)


def choose(recall: np.ndarray, conf: np.ndarray, costs: np.ndarray, exact_cost: float, shortlists: Sequence[int],
           targets: Sequence[float], z: float, store_target: float,
           strata: np.ndarray | None = None) -> tuple[dict[float, Measured], Measured | None]:
    """The cheapest policy per target: ranked on the first half of the probes, recorded with the
    figures of the first candidate whose bound also holds on the second half. A policy meets a
    target when the lower confidence bound of its recall over all probes does, and the bound of each
    stratum (near, middle and far probes) does too, so it holds for a mix of such queries."""
    nq = recall.shape[0]
    recall = np.ascontiguousarray(recall)  # the trace's is a slice: copied once, not at each of thousands of simulations
    strata = np.zeros(nq, dtype=np.int64) if strata is None else np.asarray(strata)
    half = np.arange(nq) % 2 == 0  # interleaved: the probe sample is sorted by row
    table = _Candidates(_candidates(recall, conf, costs, exact_cost, shortlists, half, z, strata))

    def first_that_holds(mask: np.ndarray, target: float, **order) -> Measured | None:
        # Only candidates whose second-half bound holds too (``check``, computed for all at once;
        # _measure's figures are recorded). Checking the first-half ranking one by one instead
        # gave up after _MAX_CHECKS: at 600k x 1024 the first to hold was the 20,966th, so the
        # store recorded no 0.99 policy and searched at the fixed 200/400 (0.9866 at 1M).
        mask = mask & (table.check >= target - 1e-9)
        for i in table.ranked(mask, **order)[:_MAX_CHECKS].tolist():
            measured = _measure(recall, conf, costs, exact_cost, shortlists, ~half, z, strata, *table.key(i))
            if measured.recall_low >= target - 1e-12:
                return measured
        return None

    chosen: dict[float, Measured] = {}
    for target in targets:
        found = first_that_holds(table.low >= target - 1e-12, target, levels_last=True)
        if found is not None:
            chosen[target] = found
    one_level = (table.levels == 1) & ~table.exact & (table.low >= store_target - 1e-12)
    fixed = first_that_holds(one_level, store_target)
    return chosen, fixed


class _Candidates:
    """Every candidate policy's first-half figures (and second-half bound) as flat arrays (up to
    hundreds of thousands of them: tuples would cost ~20 MB at each checkpoint's calibration), with
    the key that rebuilds each policy."""

    def __init__(self, groups) -> None:
        self._groups: list[tuple] = []
        # Packed as they come (a list of ~100k small arrays per figure cost ~10 MB of object headers,
        # the peak of a calibration's memory): bytes only, turned into arrays once.
        packed = {name: array(code) for name, code in (("cost", "d"), ("mean", "d"), ("low", "d"), ("check", "d"),
                                                     ("tau", "d"), ("levels", "h"), ("group", "i"))}
        for key, taus, c, m, lo, ch, n in groups:
            figures = {"cost": c, "mean": m, "low": lo, "check": ch, "tau": taus,
                       "levels": np.full(len(taus), n), "group": np.full(len(taus), len(self._groups))}
            for name, values in figures.items():
                packed[name].frombytes(np.asarray(values, dtype=packed[name].typecode).tobytes())
            self._groups.append(key)
        arrays = {name: np.frombuffer(values, dtype=values.typecode) for name, values in packed.items()}
        self.cost, self.mean, self.low = arrays["cost"], arrays["mean"], arrays["low"]
        self.check = arrays["check"]  # the lower bound on the other half of the probes
        self.levels, self.group, self.tau = arrays["levels"], arrays["group"], arrays["tau"]
        self.exact = np.array([key[2] for key in self._groups], dtype=bool)[self.group]

    def ranked(self, mask: np.ndarray, levels_last: bool = False) -> np.ndarray:
        """Indexes under ``mask``: cheapest first, then the higher mean (then fewer levels)."""
        idx = np.flatnonzero(mask)
        keys = (self.levels[idx],) if levels_last else ()
        return idx[np.lexsort((*keys, -self.mean[idx], self.cost[idx]))]

    def key(self, i: int) -> tuple:
        b, visited, exact, weight = self._groups[int(self.group[i])]
        return b, visited, float(self.tau[i]), exact, weight


def _combined(conf: np.ndarray, weight: float) -> np.ndarray:
    """The confidence ``effort.confidence`` computes, from its recorded parts (..., 2)."""
    z, kth = conf[..., 0], conf[..., 1]
    return np.where(np.isinf(z), np.inf, z + weight * np.where(np.isinf(kth), 0.0, kth))


def _candidates(recall, conf, costs, exact_cost, shortlists, rows, z, strata):
    """Per policy shape on the probes ``rows``: ((ratio, levels, exact, weight), thresholds, mean
    cost, mean recall and its lower bound (the lowest of the strata's) per threshold, the same
    bound on the other probes, level count). Thresholds come from the ``rows`` probes' confidences."""
    nl = len(shortlists)
    other = ~rows
    groups, other_groups = _groups(strata[rows]), _groups(strata[other])
    for weight in WEIGHTS:
        cf = _combined(conf, weight)
        cf_rows = cf[rows]
        for b in range(len(EF_RATIOS)):
            for start in range(nl):
                plans = [list(range(start, last + 1, stride)) for stride in STRIDES for last in range(start + stride, nl, stride)]
                if weight == WEIGHTS[0]:
                    plans.insert(0, [start])  # a single level judges nothing: once is enough
                for visited, exact in ((v, e) for v in plans for e in (False, True)):
                    judged = visited if exact else visited[:-1]
                    taus = np.array(_thresholds(cf_rows[:, b, judged]) if judged else [np.inf])
                    cost, got, _ = _simulate(recall, cf, costs, exact_cost, b, visited, exact, taus)
                    yield ((b, tuple(visited), exact, weight), taus, cost[rows].mean(axis=0), got[rows].mean(axis=0),
                           _bound(got[rows], groups, z), _bound(got[other], other_groups, z), len(visited) + exact)


def _thresholds(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return [float("inf")]
    return sorted(set(_quantiles(finite, _THRESHOLDS).tolist()))


def _quantiles(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(values, q)`` (its default, linear method), to the bit, in a fraction of its
    time: ``choose`` asks it for thousands of small arrays."""
    v = np.sort(values)
    virtual = q * (len(v) - 1)
    below = np.floor(virtual).astype(np.intp)
    t = virtual - below
    a, b = v[below], v[np.minimum(below + 1, len(v) - 1)]
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)  # numpy's _lerp


def _simulate(recall, conf, costs, exact_cost, b, visited, exact, taus):
    """Per probe and threshold: modeled cost, recall where it stops, and the stop (len(visited):
    the exact scan), for one ladder; (probes, thresholds) arrays."""
    levels = np.array(visited)
    # The first level whose confidence passes; past the last: the exact scan (which finds all), or
    # (none) the last level, which stops everyone.
    last = len(levels) if exact else len(levels) - 1
    cumulative = np.cumsum(costs[b, levels] + COST_PER_LEVEL) - COST_PER_LEVEL
    cumulative = np.append(cumulative, cumulative[-1] + COST_PER_LEVEL + exact_cost)
    return kernel.simulate(recall, conf, b, levels, last, cumulative, taus)


def replay(policy: EffortPolicy, recall: np.ndarray, conf: np.ndarray, shortlists: Sequence[int], prefix_dim: int,
           full_dim: int, live: int) -> tuple[np.ndarray, np.ndarray]:
    """(modeled cost, recall) per probe of ``policy`` run on a trace (``trace``'s arrays over
    ``shortlists``): the simulation ``choose`` ranks policies by, for a policy chosen elsewhere."""
    visited = [list(shortlists).index(s) for s, _ in policy.levels]
    b = EF_RATIOS.index(policy.levels[0][1] // policy.levels[0][0])
    costs = np.array([[level_cost(s, r * s, prefix_dim, full_dim) for s in shortlists] for r in EF_RATIOS])
    cost, got, _ = _simulate(recall, _combined(conf, policy.weight), costs, scan_cost(live, full_dim), b, visited,
                             policy.exact, [policy.threshold])
    return cost[:, 0], got[:, 0]


def _measure(recall, conf, costs, exact_cost, shortlists, rows, z, strata, b, visited, tau, exact, weight) -> Measured:
    cf = _combined(conf[rows], weight)
    cost, rec, stop = (a[:, 0] for a in _simulate(recall[rows], cf, costs, exact_cost, b, visited, exact, [tau]))
    ratio = EF_RATIOS[b]
    policy = EffortPolicy(tuple((shortlists[v], ratio * shortlists[v]) for v in visited), float(tau), exact, float(weight))
    worst = np.sort(rec)[: max(1, len(rec) // 10)]
    low = float(_bound(rec[:, None], _groups(strata[rows]), z)[0])
    return Measured(policy, float(rec.mean()), low, float(worst.mean()), float(cost.mean()),
                    tuple(int(x) for x in np.bincount(stop, minlength=len(visited) + exact)))


def _bound(values: np.ndarray, groups: np.ndarray, z: float) -> np.ndarray:
    """Per column of ``values`` (probes, n): the lowest of the lower confidence bounds of the mean
    over all probes and of each stratum's mean. A stratum's plain mean was not enough: at 1M x 768,
    prefix 192, the near stratum of the chosen 0.99 policy passed on ~85 probes a half while
    paraphrase queries (noise 0.5) got 0.985 (a stratum truly below the target passes a plain mean
    often, and the cheap policies the ranking flatters are the ones that do). Each stratum's own
    bound costs effort (+30% modeled there); with it, a policy measured at 1M gave >= 0.993 on
    every query kind tried.
    ``groups``: ``_groups`` of the probes' strata (built once for the many candidates): every
    group's sums come from one product, not a numpy call per group and column."""
    counts = groups.sum(axis=1)[:, None]
    means = (groups @ values) / counts
    squares = np.maximum(groups @ (values * values) - counts * means * means, 0.0)
    spread = np.sqrt(squares / np.maximum(counts - 1, 1) / counts)  # standard error, ddof=1
    lows = np.where(counts > 1, means - z * spread, means)
    return lows.min(axis=0)


def _groups(strata: np.ndarray) -> np.ndarray:
    """(groups, probes) 0/1 rows: all probes, then each stratum present."""
    present = np.unique(strata)
    return np.vstack([np.ones(len(strata)), (strata[None, :] == present[:, None]).astype(np.float64)])


def _check(target_recall, probes, confidence_level) -> None:
    check_target(target_recall)
    positive_int("probes", probes, minimum=4)
    if not 0.5 <= confidence_level < 1:
        raise InvalidInputError(f"confidence must lie in [0.5, 1), got {confidence_level!r}")


__all__ = ["DEFAULT_PROBES", "LADDER", "default_probes", "draw_probes", "ladder", "TARGETS", "due", "calibrate", "exact_top_rows", "replay",
           "level_cost", "needs_calibration", "off_node", "sample_queries"]
