"""Per-query effort: how much coarse search and rerank one query gets, from its own evidence.

A query climbs a *ladder* of (shortlist, ef) levels. At each level the coarse index returns the
shortlist in prefix order; the rows not scored yet are reranked at full width; then the query's
``confidence`` says whether a wider shortlist could still change its top-k. A confident query stops,
the others go up one level; the last level stops everyone. The answer is the exact top-k of every row
scored on the way (so climbing never loses a neighbour found lower down).

The confidence (see ``confidence``): the shortlist's lower half, in prefix order, shows how full scores
fall off with prefix scores for *this* query; extrapolated to the shortlist's end, it says how far
below the k-th full score an item just past the shortlist would land, in units of that half's own
scatter. A query whose top-k stands far above that line is done; one whose top-k is barely above it
has neighbours the prefix ranks too low, and needs a wider shortlist. Measured against exact truth in
``bench/adaptive.py`` (docs/benchmarks.md, "Adaptive effort").

Which levels, and the threshold, come from ``calibration.py`` (measured per store, recorded in its
manifest); this module is the runtime half and stays pure (numpy only), so it is deterministic for
a given store state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError

# A filtered query still unsure at the last level scans its matching rows exactly when there are at
# most this many times the last level's shortlist of them (an exact scan reads every matching row).
EXACT_FALLBACK = 50

# Uncalibrated stores scale their recorded (shortlist, ef) by this rule for a per-call target: the
# miss rate of a fixed shortlist falls roughly with the square root of its growth in our
# measurements, so asking for 10x fewer misses than the 0.99 the defaults were chosen for costs ~3x.
DEFAULTS_TARGET = 0.99
_MIN_SCALE, _MAX_SCALE = 0.5, 8.0


# A policy is measured on the store as it was, and searched until the next calibration (a checkpoint
# past ``calibration.GROWTH`` x the rows): the rows a true neighbour must outrank in the prefix grow
# with the rows there are, so its shortlists and efs grow with the store (1M x 768, prefix 192, decay
# 0.5: the policy measured at 600k gave 0.9878 on noise-0.5 queries at 1M, 0.9940 with its levels
# x1.67; a policy measured at 1M gave 0.9962). Rounded up to 1/_GROWTH_STEPS, so a growing store
# resolves a handful of distinct plans; at most _MAX_GROWTH (a store whose recalibration is paused
# keeps a bounded plan).
_GROWTH_STEPS = 16
_MAX_GROWTH = 4.0


def growth(calibrated: int, live: int | None) -> float:
    """How much a policy measured on ``calibrated`` rows widens on ``live`` rows (1.0: not at all)."""
    if live is None or live <= calibrated or calibrated <= 0:
        return 1.0
    return min(_MAX_GROWTH, math.ceil(live / calibrated * _GROWTH_STEPS) / _GROWTH_STEPS)  # every search asks: no numpy


@dataclass(frozen=True)
class EffortPolicy:
    """One calibrated way to spend effort: climb ``levels`` until ``confidence >= threshold``.

    ``levels``: (shortlist, ef) pairs, cheapest first. ``threshold``: +inf climbs every level (a
    fixed search at the last one when there is a single level). ``exact``: a query still unsure
    after the last level is answered by an exact scan (of the rows its filter allows, or of all).
    ``weight``: how much the k-th full score adds to the confidence (fitted per store).
    """

    levels: tuple[tuple[int, int], ...]
    threshold: float
    exact: bool = False
    weight: float = 0.0  # of the k-th full score in the confidence (``confidence``)

    def to_dict(self) -> dict[str, Any]:
        return {"levels": [list(level) for level in self.levels],
                "threshold": None if np.isinf(self.threshold) else float(self.threshold), "exact": self.exact,
                "weight": self.weight}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EffortPolicy":
        levels = tuple((int(s), int(e)) for s, e in data["levels"])
        if not levels or any(s < 1 or e < 1 for s, e in levels):
            raise ValueError(f"bad effort levels {data['levels']!r}")
        threshold = data.get("threshold")
        return cls(levels, float("inf") if threshold is None else float(threshold), bool(data.get("exact", False)),
                   float(data.get("weight", 0.0)))


def confidence_parts(sims: np.ndarray, scores: np.ndarray, k: int) -> tuple[float, float]:
    """(z, k-th best full score) of a shortlist (``sims``: prefix similarities, descending;
    ``scores``: full-width scores of the same rows). Higher is safer for both.

    z = (k-th best full score - line(last prefix score)) / scatter, where line and scatter are the
    least-squares fit of full on prefix scores over the shortlist's lower half: how far above what
    an item just past the shortlist would score the query's top-k stands. The k-th score itself
    says how far the query sits from its neighbours: a loose query has a flat crowd of them, which
    the prefix orders badly. (Sums, not numpy's fitting helpers: this runs once per query and
    level, and each numpy call costs ~1 us.)
    """
    n = len(scores)
    if n <= k:
        return float("inf"), float("inf")  # everything the coarse index could return was scored
    kth = float(np.partition(scores, n - k)[n - k])
    x = sims[n // 2 :].astype(np.float64)
    y = scores[n // 2 :].astype(np.float64)
    m = len(x)
    sx, sy, sxx, sxy, syy = float(x.sum()), float(y.sum()), float(x @ x), float(x @ y), float(y @ y)
    vx = sxx - sx * sx / m
    slope = (sxy - sx * sy / m) / vx if vx > 1e-12 else 0.0
    resid = max(syy - sy * sy / m - slope * (sxy - sx * sy / m), 0.0)  # residual sum of squares
    scatter = float(np.sqrt(resid / m)) + 1e-6
    line = sy / m + slope * (float(sims[-1]) - sx / m)
    return (kth - line) / scatter, kth


Parts = Callable[[np.ndarray, np.ndarray, int], "tuple[float, float]"]


def confidence(sims: np.ndarray, scores: np.ndarray, k: int, weight: float = 0.0, parts: Parts = confidence_parts) -> float:
    """z + ``weight`` x k-th score (``parts``: ``confidence_parts``, or the store's compiled one,
    ``kernel.confidence_parts``): how safely the shortlist already holds its top-``k``. Comparable
    across queries of one store; the weight is fitted per store."""
    z, kth = parts(sims, scores, k)
    return z + weight * kth


@dataclass(frozen=True)
class Measured:
    """A policy chosen for one target and what it measured on the calibration probes."""

    policy: EffortPolicy
    recall: float  # mean recall@k over the probes
    recall_low: float  # one-sided lower confidence bound of ``recall``
    worst_decile: float  # mean recall of the probes' worst 10%
    cost: float  # modeled mean cost per query (microseconds at the cost model's constants)
    stops: tuple[int, ...]  # probes that stopped at each level

    def to_dict(self) -> dict[str, Any]:
        return {**self.policy.to_dict(), "recall": round(self.recall, 6), "recall_low": round(self.recall_low, 6),
                "worst_decile": round(self.worst_decile, 6), "cost": round(self.cost, 2), "stops": list(self.stops)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Measured":
        return cls(EffortPolicy.from_dict(data), float(data["recall"]), float(data["recall_low"]),
                   float(data["worst_decile"]), float(data["cost"]), tuple(int(x) for x in data["stops"]))


@dataclass(frozen=True)
class Calibration:
    """What the store measured about its own effort needs (recorded in the manifest).

    ``policies`` maps each target recall that some policy met (lower confidence bound >= target) to
    the cheapest such policy; targets no policy met are absent. ``fixed``: the cheapest single
    (shortlist, ef) meeting the store's target on the same probes, for comparison (or None).
    """

    target_recall: float
    k: int
    live: int
    prefix_dim: int
    probes: int
    seed: int
    confidence: float
    source: str  # "checkpoint" | "tune" | "calibrate"
    seconds: float
    policies: dict[float, Measured]
    fixed: Measured | None = None
    queries: str = "probes"  # "probes": stored vectors moved off their nodes; "given": real queries
    # "given": the CRC-32 of the sample measured on, kept beside the manifest (``local/query_sample.py``)
    queries_crc: int | None = None

    def policy_for(self, target: float, k: int, widen: float = 1.0) -> EffortPolicy | None:
        """The cheapest recorded policy meeting ``target``, or None; its levels scaled for a larger
        ``k`` and by ``widen`` (``growth``: the rows the store has gained since it was measured)."""
        met = [t for t in self.policies if t >= target - 1e-12]
        if not met:
            return None
        policy = self.policies[min(met)].policy
        grow = max(1.0, k / self.k) * widen  # a deeper top-k needs a deeper shortlist
        if grow == 1.0:
            return policy
        return EffortPolicy(tuple((int(np.ceil(s * grow)), int(np.ceil(e * grow))) for s, e in policy.levels),
                            policy.threshold, policy.exact, policy.weight)

    def to_dict(self) -> dict[str, Any]:
        return {"target_recall": self.target_recall, "k": self.k, "live": self.live, "prefix_dim": self.prefix_dim,
                "probes": self.probes, "seed": self.seed, "confidence": self.confidence, "source": self.source,
                "queries": self.queries, "seconds": round(self.seconds, 3),
                "policies": {f"{t:g}": m.to_dict() for t, m in sorted(self.policies.items())},
                "fixed": None if self.fixed is None else self.fixed.to_dict(),
                **({} if self.queries_crc is None else {"queries_crc": self.queries_crc})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        return cls(float(data["target_recall"]), int(data["k"]), int(data["live"]), int(data["prefix_dim"]),
                   int(data["probes"]), int(data["seed"]), float(data["confidence"]), str(data["source"]),
                   float(data["seconds"]), {float(t): Measured.from_dict(m) for t, m in data["policies"].items()},
                   None if data.get("fixed") is None else Measured.from_dict(data["fixed"]),
                   str(data.get("queries", "probes")), None if data.get("queries_crc") is None else int(data["queries_crc"]))


Coarse = Callable[[int, int], "tuple[np.ndarray, np.ndarray] | None"]
Score = Callable[[np.ndarray], np.ndarray]


class ScoredRows:
    """Rows scored at full width so far (sorted by row, but for a first level ``start`` took) and
    their scores: each row is read once."""

    def __init__(self) -> None:
        self.rows = np.empty(0, np.int64)
        self.values = np.empty(0, np.float32)
        self._unsorted = False  # ``start`` took rows in prefix order

    def start(self, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Take the first level's ``rows`` (unique, any order) with their full scores, computed by the
        caller (the fused first level, ``coarse.CoarseIndex.search_scored``); returns ``values``. They
        are sorted only if a next level asks (most queries stop at the first)."""
        self.rows, self.values, self._unsorted = rows, values, True
        return values

    def scores(self, rows: np.ndarray, score: Score) -> np.ndarray:
        """Full scores of ``rows`` (unique, any order); ``score(sorted rows)`` reads the new ones."""
        if self._unsorted:
            order = np.argsort(self.rows)
            self.rows, self.values, self._unsorted = self.rows[order], self.values[order], False
        seen = self.rows
        if not len(seen):  # the first level: everything is new
            order = np.argsort(rows)
            self.rows = rows[order]
            self.values = score(self.rows)
            out = np.empty(len(rows), dtype=self.values.dtype)
            out[order] = self.values
            return out
        pos = np.searchsorted(seen, rows)
        known = seen[np.minimum(pos, len(seen) - 1)] == rows
        if not known.all():
            fresh = np.sort(rows[~known])
            merged = np.concatenate([seen, fresh])
            order = np.argsort(merged, kind="stable")
            self.rows = merged[order]
            self.values = np.concatenate([self.values, score(fresh)])[order]
            pos = np.searchsorted(self.rows, rows)
        return self.values[pos]


def climb(policy: EffortPolicy, k: int, coarse: Coarse, score: Score,
          parts: Parts = confidence_parts) -> tuple[np.ndarray, np.ndarray, int, bool] | None:
    """Run ``policy`` for one query. ``coarse(shortlist, ef)`` returns (rows, prefix sims) in prefix
    order (None: the coarse index cannot answer); ``score(sorted unique rows)`` their full scores.
    ``coarse`` may also return (rows, prefix sims, full scores) when it scored the rows itself (the
    search's fused first level): the same numbers ``score`` would give. ``parts``: how a level's
    shortlist is judged (``confidence_parts``, or the compiled one the store calibrated with).

    Returns (every scored row, their full scores, the level index it stopped at, whether it stopped
    confident), or None when the coarse index could not answer. The rows are ascending, but in
    prefix order when the climb stopped at a first level ``coarse`` scored itself.
    """
    seen = ScoredRows()
    last = len(policy.levels) - 1
    for level, (shortlist, ef) in enumerate(policy.levels):
        found = coarse(shortlist, ef)
        if found is None:
            return None
        rows, sims = found[0], found[1]
        full = seen.scores(rows, score) if len(found) == 2 else seen.start(rows, found[2])
        if level == last and policy.threshold == float("inf") and not policy.exact:
            return seen.rows, seen.values, level, True  # a fixed plan: nothing to judge
        if confidence(sims, full, k, policy.weight, parts) >= policy.threshold:
            return seen.rows, seen.values, level, True
        if level == last:
            return seen.rows, seen.values, level, False
    raise AssertionError("unreachable: the last level returns")  # pragma: no cover


def check_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not 0 < target <= 1:
        raise InvalidInputError(f"target_recall must be a number in (0, 1], got {target!r}")
    return float(target)


def resolve(target: float | None, calibration: "Calibration | None", k: int, shortlist: int, ef: int,
            funnel_dim: int | None, prefix_dim: int, widen: float = 1.0) -> tuple[EffortPolicy | None, int, int]:
    """(policy, shortlist, ef) for a search aiming at ``target``: the calibrated policy when there is
    one for it (shortlist/ef: its last level; levels scaled by ``widen``, the store's ``growth`` since
    the calibration), else a fixed search at ``scaled_effort``. Stores with a funnel keep the fixed path (the confidence needs every candidate's full score), and a calibration
    of another prefix width is not used (a reindex recalibrates when it is done)."""
    if target is None:
        return None, shortlist, ef
    usable = calibration is not None and funnel_dim is None and calibration.prefix_dim == prefix_dim
    policy = calibration.policy_for(target, k, widen) if usable else None
    if policy is None:
        return None, *scaled_effort(target, shortlist, ef)
    return policy, *policy.levels[-1]


def scaled_effort(target: float, shortlist: int, ef: int) -> tuple[int, int]:
    """(shortlist, ef) for ``target`` on a store without a calibration for it (and on Qdrant):
    the recorded defaults (chosen for 0.99), scaled by sqrt((1 - 0.99) / (1 - target)), 0.5x..8x."""
    if target >= 1:
        scale = _MAX_SCALE
    else:
        scale = min(_MAX_SCALE, max(_MIN_SCALE, float(np.sqrt((1 - DEFAULTS_TARGET) / (1 - target)))))
    return max(1, int(round(shortlist * scale))), max(1, int(round(ef * scale)))


__all__ = ["Calibration", "EffortPolicy", "Measured", "ScoredRows", "check_target", "climb", "confidence", "confidence_parts", "growth", "resolve", "scaled_effort"]
