"""A store searched while it is open and growing keeps its recall promise (issue 16, found on main).

Observed on main: the store calibrated its search effort only at checkpoints (every 20,000 added
rows, and on close). A store between ``exact_below`` (2,048) and its first checkpoint, i.e. most
RAG collections in a running process that added their documents and did not close, was never
calibrated and searched at the fixed 200/400 defaults: recall@10 0.61 at 4,000 x 96 (prefix 6,
a flat spectrum) where the calibrated search gives 0.9995, 0.95 at 15,000 x 384 (prefix 24).

Oracle: ``search_exact`` on seeded synthetic vectors, held-out paraphrase queries.
"""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset, queries_near
from mrl_retrievers.store.local import calibration, search
from mrl_retrievers.store.local.manifest import load_manifest

N, DIM, PREFIX = 4000, 96, 6  # a narrow prefix of a flat spectrum: the fixed defaults miss a lot here


@pytest.fixture(scope="module")
def corpus():
    data = dataset(N, DIM, seed=3, decay=0.0)
    return data, queries_near(data, 120, seed=4, decay=0.0, noise=(0.3, 0.9))


def _recall(store, queries) -> float:
    found = [{h.id for h in store.search(q, k=10)} for q in queries]
    truth = [{h.id for h in store.search_exact(q, k=10)} for q in queries]
    return float(np.mean([len(f & t) / 10 for f, t in zip(found, truth)]))


def _add_in_steps(store, data, step: int, start: int = 0) -> list:
    """Add ``data[start:]`` in ``step``-row batches; the store's calibration after each add."""
    seen = []
    for lo in range(start, len(data), step):
        store.add([str(i) for i in range(lo, min(len(data), lo + step))], data[lo : lo + step])
        seen.append(store.manifest.calibration)
    return seen


def test_a_store_filled_by_adds_and_left_open_searches_at_its_target(tmp_path, corpus):
    data, queries = corpus
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=PREFIX) as s:
        _add_in_steps(s, data, 1000)  # 4,000 rows: far below the first checkpoint, no close
        assert _recall(s, queries) >= 0.99
        assert s.manifest.calibration is not None and N / calibration.GROWTH < s.manifest.calibration.live <= N


def test_an_add_that_grows_the_store_past_its_calibration_recalibrates_it(tmp_path, corpus, monkeypatch):
    """The same growth rule as the checkpoints' (``calibration.GROWTH``), now at the add that crosses
    it: the first calibration past ``exact_below``, the next at 1.5x that size, none in between."""
    data, _ = corpus
    monkeypatch.setattr(calibration, "DEFAULT_PROBES", 64)
    with MRLStore.create(tmp_path / "g", full_dim=DIM, prefix_dim=PREFIX) as s:
        seen = _add_in_steps(s, data, 500)
    sizes = [None if c is None else c.live for c in seen]
    # 500 .. 2000 rows: scanned exactly (exact_below 2048), no calibration; 2500 the first; 3000 and
    # 3500 are within 1.5x of 2500; 4000 is 1.6x: recalibrated.
    assert sizes == [None, None, None, None, 2500, 2500, 2500, 4000]
    assert all(c.source == "checkpoint" for c in seen if c is not None)  # "checkpoint": the store's own


def test_without_a_calibration_a_store_past_its_exact_size_scans_exactly(tmp_path, corpus, monkeypatch):
    """While a store that needs a calibration has none (a load or ``tune`` paused it, it failed, or
    another process is measuring it), its searches scan exactly (up to ``search.EXACT_UNCALIBRATED``
    values), not at the fixed defaults, which miss the target silently; above that bound they run
    at the defaults (an exact scan per search would cost more than the calibration)."""
    data, queries = corpus
    with MRLStore.create(tmp_path / "p", full_dim=DIM, prefix_dim=PREFIX) as s:
        s._s.auto_calibrate = False  # as a bulk load or tune does while it works
        _add_in_steps(s, data, 1000)
        assert s.manifest.calibration is None
        plan = s._searcher.plan(10, None, None)
        assert plan.policy is None and plan.exact_below >= N
        assert _recall(s, queries) == 1.0
        monkeypatch.setattr(search, "EXACT_UNCALIBRATED", N * DIM - 1)
        plan = s._searcher.plan(10, None, None)
        assert plan.exact_below < N and (plan.shortlist, plan.ef) == (s.manifest.shortlist, s.manifest.ef)
        strict = s._searcher.plan(10, None, None, 0.999)  # the defaults scaled for a stricter target
        assert strict.exact_below < N and strict.shortlist > s.manifest.shortlist
        # An expert's fixed effort is never replaced by a scan.
        assert s._searcher.plan(10, 50, None).exact_below == s.manifest.exact_below


def test_a_read_only_handle_searches_with_the_calibration_its_writer_records(tmp_path, corpus):
    """Observed on main: a read-only handle re-read the manifest only when the writer compacted, so a
    serving process opened beside an ingesting one never used the writer's calibrations (it searched
    at the fixed defaults for ever). It now picks up the calibration (and the search settings ``tune``
    records) at its next search after the writer recorded them."""
    data, queries = corpus
    path = tmp_path / "r"
    MRLStore.create(path, full_dim=DIM, prefix_dim=PREFIX).close()
    reader = MRLStore.open(path, read_only=True)
    try:
        with MRLStore.open(path) as writer:
            writer._s.auto_calibrate = False  # the rows first; the reader catches up with them uncalibrated
            _add_in_steps(writer, data, 1000)
            assert _recall(reader, queries[:20]) == 1.0  # no calibration yet: scanned exactly
            assert reader.manifest.calibration is None
            writer.calibrate(probes=64)
            reader.search(queries[0], k=10)
            recorded = load_manifest(path).calibration  # as the file holds it (seconds rounded)
            assert recorded is not None and reader.manifest.calibration == recorded
            policy = reader._searcher.plan(10, None, None).policy
            assert policy is not None and policy == recorded.policy_for(0.99, 10)
            assert _recall(reader, queries) >= 0.99
    finally:
        reader.close()
