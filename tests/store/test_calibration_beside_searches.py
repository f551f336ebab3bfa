"""A checkpoint's self-calibration beside searches (issue 16's ingestion profile found it held the
write lock: ~10 s at 20k items, minutes at 1M, during which every search of the process waited)."""

from __future__ import annotations

import threading
import time

import numpy as np

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset
from mrl_retrievers.store.local import calibration
from mrl_retrievers.store.local.ann import AnnIndex

N, DIM, PREFIX = 3000, 64, 8


def _hold_calibrations(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Calibrations signal ``measuring`` when they start, then wait for ``release``."""
    measuring, release = threading.Event(), threading.Event()
    real = calibration.calibrate

    def slow_calibrate(state, **kw):
        measuring.set()
        release.wait(timeout=30)
        return real(state, **kw)

    monkeypatch.setattr(calibration, "calibrate", slow_calibrate)
    return measuring, release


def _search_beside(store, vector) -> list:
    """One search on another thread, given 10 s: its hits, or nothing if it waited longer."""
    answered = []
    searching = threading.Thread(target=lambda: answered.append(store.search(vector, k=3)))
    searching.start()
    searching.join(timeout=10)
    return answered


def test_searches_run_while_a_checkpoint_calibrates(tmp_path, monkeypatch):
    data = dataset(N, DIM, seed=7, decay=0.5)
    store = MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=PREFIX)
    store._s.auto_calibrate = False  # the add below would calibrate (test_searches_run_while_an_add_calibrates)
    store.add([str(i) for i in range(N)], data)
    store._s.auto_calibrate = True
    measuring, release = _hold_calibrations(monkeypatch)
    checkpointing = threading.Thread(target=store.checkpoint)
    checkpointing.start()
    try:
        assert measuring.wait(timeout=30), "the checkpoint did not calibrate"
        answered = _search_beside(store, data[5])
        assert answered and answered[0][0].id == "5", "a search waited for the calibration"
    finally:
        release.set()
        checkpointing.join(timeout=60)
    assert store.manifest.calibration is not None and store.manifest.calibration.source == "checkpoint"
    assert store.manifest.calibration.live == N
    store.close()


def test_searches_run_while_an_add_calibrates(tmp_path, monkeypatch):
    """The add that takes the store past ``exact_below`` calibrates it before returning (under the
    read lock): another thread's searches answer meanwhile, by an exact scan (no calibration yet)."""
    data = dataset(N, DIM, seed=7, decay=0.5)
    store = MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=PREFIX)
    store.add([str(i) for i in range(1000)], data[:1000])  # below exact_below: no calibration
    measuring, release = _hold_calibrations(monkeypatch)
    adding = threading.Thread(target=store.add, args=([str(i) for i in range(1000, N)], data[1000:]))
    adding.start()
    try:
        assert measuring.wait(timeout=30), "the add did not calibrate"
        answered = _search_beside(store, data[2500])
        assert answered and answered[0][0].id == "2500", "a search waited for the calibration"
        assert store.manifest.calibration is None and store._searcher.plan(10, None, None).exact_below >= N
    finally:
        release.set()
        adding.join(timeout=60)
    assert store.manifest.calibration is not None and store.manifest.calibration.live == N
    store.close()


class _RecordingIndex:
    """Stands in for hnswlib: records the ef in force when each query starts and ends."""

    def __init__(self) -> None:
        self.ef = None
        self.seen: list[tuple[int, int]] = []
        self.inside, self.go_on = threading.Event(), threading.Event()

    def set_ef(self, ef: int) -> None:
        self.ef = ef

    def knn_query(self, data, k, num_threads=1):
        start = self.ef
        if start == 400:
            self.inside.set()
            self.go_on.wait(timeout=5)
        self.seen.append((start, self.ef))
        return np.zeros((len(data), k), dtype=np.uint64), np.zeros((len(data), k), dtype=np.float32)


def test_a_search_runs_at_its_own_ef_while_another_thread_asks_for_another(monkeypatch):
    """hnswlib's ef is one setting of the index: a search that set 400 ran at another thread's 16."""
    fake = _RecordingIndex()
    index = AnnIndex(fake, 4)
    monkeypatch.setattr(AnnIndex, "live", property(lambda self: 100))
    wide = threading.Thread(target=index.query, args=(np.zeros((1, 4), np.float32), 10, 400))
    wide.start()
    assert fake.inside.wait(timeout=5)
    narrow = threading.Thread(target=index.query, args=(np.zeros((1, 4), np.float32), 10, 16))
    narrow.start()
    time.sleep(0.3)  # the narrow search asks for its ef while the wide one runs
    fake.go_on.set()
    wide.join(timeout=5)
    narrow.join(timeout=5)
    assert sorted(fake.seen) == [(16, 16), (400, 400)]


def test_a_different_ef_is_not_starved_by_a_stream_of_searches(monkeypatch):
    """Searches at one ef kept joining those in flight, so a calibration waiting for another ef
    waited as long as any search was running: with four threads searching it never got in
    (tests/reliability/test_concurrency.py hung once searches got fast). Now a search arriving
    while another ef waits queues behind it."""
    from mrl_retrievers.store.local.ann import _EfGate

    class Fake:
        ef = None

        def set_ef(self, ef):
            self.ef = ef

    gate, order = _EfGate(Fake()), []
    gate.enter(50)  # a search at 50 in flight

    def search(ef, name):
        gate.enter(ef)
        order.append(name)
        gate.leave()

    calibrating = threading.Thread(target=search, args=(800, "calibration at 800"))
    calibrating.start()
    time.sleep(0.3)  # it waits for the search in flight
    later = threading.Thread(target=search, args=(50, "a later search at 50"))
    later.start()
    time.sleep(0.3)
    gate.leave()  # the first search ends
    calibrating.join(timeout=5)
    later.join(timeout=5)
    assert order == ["calibration at 800", "a later search at 50"]


def test_a_writer_waiting_behind_a_calibration_does_not_stop_searches(tmp_path, monkeypatch):
    """Writers are preferred (a waiting writer stops new readers, so searches cannot starve an
    ingest). Observed after e965a05: while an add's calibration held the read lock for seconds, a
    second add waiting for the write lock stopped every new search until the calibration ended. A
    calibration is a long read: new searches may pass a waiting writer while one runs, and the writer
    still goes as soon as it ends and the searches in flight finish."""
    data = dataset(N, DIM, seed=7, decay=0.5)
    store = MRLStore.create(tmp_path / "w", full_dim=DIM, prefix_dim=PREFIX)
    store.add([str(i) for i in range(1000)], data[:1000])
    measuring, release = _hold_calibrations(monkeypatch)
    adding = threading.Thread(target=store.add, args=([str(i) for i in range(1000, N)], data[1000:]))
    adding.start()
    more = threading.Thread(target=store.add, args=(["extra"], data[:1]))
    try:
        assert measuring.wait(timeout=30), "the add did not calibrate"
        more.start()
        deadline = time.monotonic() + 10
        while store._rw._writers_waiting == 0 and time.monotonic() < deadline:  # the second add queues
            time.sleep(0.01)
        assert store._rw._writers_waiting == 1
        answered = _search_beside(store, data[2500])
        assert answered and answered[0][0].id == "2500", "a search waited behind the writer waiting for the calibration"
        assert more.is_alive()  # the writer still waits for the calibration
    finally:
        release.set()
        adding.join(timeout=60)
        more.join(timeout=60)
    assert len(store) == N + 1 and store.manifest.calibration is not None
    store.close()
