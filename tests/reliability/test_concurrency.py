"""Readers and a writer in one process: searches run beside adds, deletes, index resizes and
checkpoints (hnswlib would crash without the store's readers-writer lock)."""

from __future__ import annotations

import threading
import time

import numpy as np

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset, queries_near, recall_at_k

DIM = 64


def test_readers_beside_a_writer(tmp_path):
    data = dataset(6000, DIM, seed=21)
    store = MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=32, exact_below=0)
    store.add([f"d{i}" for i in range(1000)], data[:1000])
    committed = {f"d{i}" for i in range(1000)}  # every id ever acknowledged
    committed_lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[str] = set()
    queries = queries_near(data, 64, seed=22)

    def reader(offset: int) -> None:
        i = offset
        while not stop.is_set():
            try:
                hits = store.search(queries[i % len(queries)], k=10)
                batch = store.search_batch(queries[i % 8 : i % 8 + 4], k=5)
                seen.update(h.id for h in hits)
                seen.update(h.id for hs in batch for h in hs)
            except BaseException as exc:  # noqa: BLE001 - any error fails the test
                errors.append(exc)
                return
            i += 1

    def writer() -> None:
        try:
            for start in range(1000, 6000, 250):
                ids = [f"d{i}" for i in range(start, start + 250)]
                with committed_lock:
                    committed.update(ids)  # ids become visible only after add() commits
                store.add(ids, data[start : start + 250])
                store.delete([f"d{i}" for i in range(start - 1000, start - 900)])
                if start % 1000 == 0:
                    store.checkpoint()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors
    assert seen <= committed

    # Once writes stop, the coarse path meets the recall bar against the exact oracle.
    truth = [[h.id for h in store.search_exact(q, k=10)] for q in queries]
    found = [[h.id for h in store.search(q, k=10)] for q in queries]
    assert recall_at_k(found, truth, 10) >= 0.99
    live = {r.id for r in store.get([f"d{i}" for i in range(6000)])}
    assert all(h.id in live for hits in (store.search(q, k=10) for q in queries) for h in hits)
    store.close()
