import numpy as np
from mrl_retrievers import MRLStore
from mrl_retrievers.bench.peers import Ours
from mrl_retrievers import index as index_mod

def test_ours_async_qps_times_the_measured_setting_not_the_store_default(tmp_path, monkeypatch):
    """On a calibrated store the default search is the adaptive policy: the bench's async rows must
    time the same shortlist and ef as its sync rows (observed: 892-1397 async QPS against 4278 sync)."""
    rng = np.random.default_rng(0)
    data = rng.standard_normal((300, 16)).astype(np.float32)
    calls = []

    async def aquery(self, text, k=5, shortlist=None, filter=None, *, ef=None, target_recall=None):
        calls.append((shortlist, ef))
        return []

    monkeypatch.setattr(index_mod.MRLIndex, "aquery", aquery)
    with MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=4) as store:
        store.add([str(i) for i in range(300)], data)
        peer = Ours.__new__(Ours)
        peer.store, peer.setting = store, {"shortlist": 37, "ef": 74}
        assert peer.async_qps(data[:5], k=10, seconds=0.05, concurrency=2) > 0
    assert calls and set(calls) == {(37, 74)}
