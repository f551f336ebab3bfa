"""The rerank's read skips the page-cache probe only while gathers stay warm; a cold file is probed
(and prefetched) again: after an eviction, a remap, a slow copy, and every _PROBE_EVERY-th gather.
The same holds for the reads that score rows in place (``best_of``, ``scores_of``)."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers.store.local import kernel, vectors
from mrl_retrievers.store.local.vectors import VectorFile


@pytest.fixture
def vf(tmp_path):
    f = VectorFile(tmp_path / "v.f16", dim=64, dtype="float16", writable=True)
    data = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float16)
    f.append(0, data)
    f.ensure_mapped(500)
    yield f, data
    f.close()


QUERY = np.random.default_rng(1).standard_normal(64).astype(np.float32)

# Each read, and whether what it returned is right for the stored ``data``.
READS = {
    "gather": lambda f, rows, data: np.array_equal(f.gather(rows), data[rows]),
    "scores_of": lambda f, rows, data: np.allclose(f.scores_of(rows, QUERY), kernel.dot(data[rows], QUERY), atol=1e-4),
    "best_of": lambda f, rows, data: np.allclose(f.best_of(rows, QUERY, 5)[1], np.sort(kernel.dot(data[rows], QUERY))[::-1][:5], atol=1e-4),
}


@pytest.mark.parametrize("how", sorted(READS))
def test_probes_follow_warmth(vf, monkeypatch, how):
    f, data = vf
    read = READS[how]
    if vectors._mincore is None:
        pytest.skip("no mincore here: every gather prefetches")
    probes = []
    real = VectorFile._prefetch
    monkeypatch.setattr(VectorFile, "_prefetch", lambda self, rows: (probes.append(len(rows)), real(self, rows)))
    rows = np.arange(0, 500, 7)
    for _ in range(3 * vectors._PROBE_EVERY):
        assert read(f, rows, data)  # the same answer whichever way it went
    assert 2 <= len(probes) <= 4  # warm: about one probe per _PROBE_EVERY gathers
    probes.clear()
    f.drop_page_cache()
    read(f, rows, data)
    assert probes, "the first gather after an eviction must probe (and prefetch what is cold)"
    f.ensure_mapped(500)
    f._remap(500)
    probes.clear()
    read(f, rows, data)
    assert probes, "a new map starts with a probe"
    read(f, rows, data)  # warm again
    probes.clear()
    clock = iter(range(0, 10**12, 10**9))  # every reading of the clock one second later: a slow copy
    monkeypatch.setattr(vectors.time, "perf_counter_ns", lambda: next(clock))
    read(f, rows, data)
    read(f, rows, data)
    assert probes, "a slow copy (pages read from disk) makes the next gather probe"
