"""The rerank's read skips the page-cache probe only while gathers stay warm; a cold file is probed
(and prefetched) again: after an eviction, a remap, a slow copy, and every _PROBE_EVERY-th gather."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers.store.local import vectors
from mrl_retrievers.store.local.vectors import VectorFile


@pytest.fixture
def vf(tmp_path):
    f = VectorFile(tmp_path / "v.f16", dim=64, dtype="float16", writable=True)
    data = np.random.default_rng(0).standard_normal((500, 64)).astype(np.float16)
    f.append(0, data)
    f.ensure_mapped(500)
    yield f, data
    f.close()


def test_probes_follow_warmth(vf, monkeypatch):
    f, data = vf
    if vectors._mincore is None:
        pytest.skip("no mincore here: every gather prefetches")
    probes = []
    real = VectorFile._prefetch
    monkeypatch.setattr(VectorFile, "_prefetch", lambda self, rows: (probes.append(len(rows)), real(self, rows)))
    rows = np.arange(0, 500, 7)
    for _ in range(3 * vectors._PROBE_EVERY):
        assert np.array_equal(f.gather(rows), data[rows])  # same bytes whichever way it went
    assert 2 <= len(probes) <= 4  # warm: about one probe per _PROBE_EVERY gathers
    probes.clear()
    f.drop_page_cache()
    f.gather(rows)
    assert probes, "the first gather after an eviction must probe (and prefetch what is cold)"
    f.ensure_mapped(500)
    f._remap(500)
    probes.clear()
    f.gather(rows)
    assert probes, "a new map starts with a probe"
    f.gather(rows)  # warm again
    probes.clear()
    clock = iter(range(0, 10**12, 10**9))  # every reading of the clock one second later: a slow copy
    monkeypatch.setattr(vectors.time, "perf_counter_ns", lambda: next(clock))
    f.gather(rows)
    f.gather(rows)
    assert probes, "a slow copy (pages read from disk) makes the next gather probe"
