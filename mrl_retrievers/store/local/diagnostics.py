"""``MRLStore.diagnostics``: what benchmarks and profiling need of a store, and nothing more.

For benchmarks and profiling; not a stable API. The bench times single stages of the search
(``bench/framework.py``'s cold rerank, ``bench/adaptive.py``'s effort levels and signals,
``bench/profile_search.py``), evicts the vector file from the page cache between cold queries
(``bench/peers.py``, ``bench/scale.py``), compares calibrations in memory
(``bench/adaptive_compare.py``), calibrates without recording and traces independent probes
(``bench/adaptive_seeds.py``). Each of those is one method here, so nothing outside the store
package reaches into the store's private parts (``tests/unit/test_architecture.py`` checks it).

``SearchStages`` runs the very functions ``search.py`` runs, on the store's parts, only inside
``Diagnostics.search_stages``'s callback: under the store's read lock, in one committed state.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from ...types import Hit
from ..effort import Calibration
from . import calibration, follow
from .handles import SharedStore
from .search import SearchPlan, coarse_ranked, exact_scores, rerank, to_hits
from .state import StoreState

T = TypeVar("T")


class SearchStages:
    """The stages of this store's search, one call each (valid only inside ``search_stages``' callback).

    ``plan`` is the resolved plan (``search.SearchPlan``: k, shortlist, ef, prefix/funnel widths and
    the adaptive policy, if any). Queries are unit vectors at full width; rows are vector-file rows.
    """

    def __init__(self, state: StoreState, plan: SearchPlan) -> None:
        self.plan = plan
        self._state = state

    def coarse(self, query: np.ndarray, shortlist: int | None = None, ef: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, prefix similarities) of the coarse shortlist (the plan's shortlist/ef unless given),
        best first, or None when the search would scan exactly instead. No filter."""
        plan = self.plan
        return coarse_ranked(self._state.ann, query, plan, None, shortlist or plan.shortlist, ef or plan.ef)

    def rerank(self, query: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The plan's ``k`` best of ``rows`` by full-width cosine (funnel, gather, checksum check, score)."""
        s = self._state
        return rerank(s.vectors, s.docs, s.checked, rows, query, self.plan.k, self.plan.funnel_dim)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows (ascending ``rows``) in the file's dtype, copied out and unchecked (the bench's signal study)."""
        return self._state.vectors.gather(rows)

    def ensure_checked(self, rows: np.ndarray) -> None:
        """The rerank's first step: check the rows (any order) this handle has not checked yet."""
        s = self._state
        s.checked.ensure(s.vectors, s.docs, rows)

    def best_of(self, query: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rerank's second step: the plan's ``k`` best of checked ``rows``, scored in place."""
        return self._state.vectors.best_of(rows, query, self.plan.k)

    def exact_scores(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Full-width cosine of ``query`` against ``rows`` (ascending), checked: the adaptive climb's scorer."""
        s = self._state
        return exact_scores(s.vectors, s.docs, s.checked, rows, query)

    def hits(self, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        """Ids, texts and metadata for ranked rows: the search's last stage."""
        return to_hits(self._state.docs, self._state.records, rows, scores)


@dataclasses.dataclass(frozen=True)
class ProbeTrace:
    """``Diagnostics.trace_probes``: per probe, ef ratio and level, the level's recall and the
    confidence's parts; each probe's stratum (near, middle, far); the ladder and the store's shape."""

    recall: np.ndarray
    conf: np.ndarray
    strata: np.ndarray
    shortlists: list[int]
    live: int
    prefix_dim: int
    full_dim: int

    def replay(self, policy) -> tuple[np.ndarray, np.ndarray]:
        """(modeled cost, recall) per probe of ``policy`` on this trace (``calibration.replay``)."""
        return calibration.replay(policy, self.recall, self.conf, self.shortlists, self.prefix_dim, self.full_dim, self.live)


class Diagnostics:
    """For benchmarks and profiling; not a stable API (see the module docstring)."""

    def __init__(self, shared: SharedStore, check_open: Callable[[], None]) -> None:
        self._shared = shared
        self._check_open = check_open

    def _read(self, fn: Callable[[], T]) -> T:
        self._check_open()
        return follow.read(self._shared, fn)

    @property
    def vector_file(self) -> Path:
        """The vector file this handle reads now (a compaction moves it to a new file)."""
        return self._shared.state.vectors.path

    def evict_vector_file(self) -> None:
        """Drop the vector file from the page cache, this handle's mapped pages first (cold-read
        benchmarks). Takes the read lock: not from inside ``search_stages``' callback."""
        self._read(lambda: self._shared.state.vectors.drop_page_cache())

    def search_stages(self, fn: Callable[[SearchStages], T], *, k: int = 10, shortlist: int | None = None,
                      ef: int | None = None, target_recall: float | None = None) -> T:
        """Run ``fn(stages)`` under the read lock, in one committed state, and return its result.
        ``stages`` carries the plan ``search`` would resolve for these arguments (same validation)."""
        searcher = self._shared.searcher
        searcher.plan(k, shortlist, ef, target_recall)  # bad arguments fail before any lock is taken
        return self._read(lambda: fn(SearchStages(self._shared.state, searcher.plan(k, shortlist, ef, target_recall))))

    def measure_calibration(self, target_recall: float, *, probes: int | None = None, seed: int = 0) -> Calibration:
        """What a calibration with these probes and seed would record (``calibration.calibrate``),
        under the read lock; nothing is recorded."""
        return self._read(lambda: calibration.calibrate(self._shared.state, target_recall=target_recall, probes=probes, seed=seed))

    def trace_probes(self, probes: int, seed: int) -> ProbeTrace:
        """Every level of the calibration's ladder for ``probes`` probes drawn with ``seed`` (the
        calibration's own generator; no level skipped for cost, none cut short): what any policy
        on this ladder would do with them (``calibration.replay``). Under the read lock."""
        def run() -> ProbeTrace:
            state, m = self._shared.state, self._shared.state.manifest
            live = state.docs.live_rows()
            own, vectors, strata = calibration.draw_probes(state, live, probes, np.random.default_rng(seed))
            truth = calibration.exact_top_rows(state, live, own, vectors, calibration.K)
            shortlists = calibration.ladder(len(live), m.prefix_dim, m.full_dim)
            recall, conf = calibration.trace(state, vectors, own, truth, shortlists, enough=1.0)
            return ProbeTrace(recall, conf, strata, shortlists[: recall.shape[2]], len(live), m.prefix_dim, m.full_dim)

        return self._read(run)

    @contextmanager
    def calibration_override(self, recorded: Calibration | None) -> Iterator[None]:
        """Searches of every handle on this store use ``recorded`` inside the block (None: the
        store's own); the store's is put back after it. In memory only: nothing is saved (unless
        something inside the block writes the manifest, which would save the override)."""
        if recorded is None:
            yield
            return
        state = self._shared.state
        with self._shared.rw.write():
            self._check_open()
            saved = state.manifest.calibration
            state.manifest = dataclasses.replace(state.manifest, calibration=recorded)
        try:
            yield
        finally:
            with self._shared.rw.write():
                state.manifest = dataclasses.replace(state.manifest, calibration=saved)


__all__ = ["Diagnostics", "ProbeTrace", "SearchStages"]
