"""The coarse index in segments (store/local/coarse.py, store/local/checkpoints.py): a checkpoint rewrites only
the segments that grew, searches over several segments keep their recall, deletions in sealed
segments survive reopen without a rewrite, and indexes written as one file (format 1) still load."""

from __future__ import annotations

import json

import numpy as np

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.synthetic import dataset, queries_near, recall_at_k

DIM = 48


def _files(path):
    return {s["file"]: (path / s["file"]).stat().st_mtime_ns
            for s in json.loads((path / "manifest.json").read_text())["ann"]["segments"] if s}


def test_checkpoints_rewrite_only_the_segments_that_grew(tmp_path):
    data = dataset(6000, DIM, seed=3)
    path = tmp_path / "s"
    with MRLStore.create(path, full_dim=DIM, prefix_dim=16, exact_below=0, segment_rows=1000) as store:
        store.add([f"d{i}" for i in range(5500)], data[:5500])
        store.checkpoint()
        before = _files(path)
        assert len(before) == 6  # five full segments and one open one
        store.add([f"d{i}" for i in range(5500, 5800)], data[5500:5800])
        store.delete([f"d{i}" for i in range(0, 300)])  # deletions in a sealed segment: not saved into it
        store.checkpoint()
        after = _files(path)
    kept = set(before) & set(after)
    assert len(kept) == 5 and all(before[f] == after[f] for f in kept), "a sealed segment was rewritten"
    assert len(set(after) - set(before)) == 1
    with MRLStore.open(path) as store:
        assert store._s.ann_note is None, store._s.ann_note  # every segment loaded from its file
        assert len(store) == 5500 and len(store._s.ann.segments) == 6
        assert store.search(data[5], k=1)[0].id != "d5"  # deleted in a sealed segment, still deleted
        assert store.search(data[700], k=1)[0].id == "d700"


def test_an_upsert_whose_old_rows_span_segments_out_of_order_tombstones_each_in_its_own_segment(tmp_path):
    """Seen in CI (the state machine): with 5-row segments, replacing rows 0, 5 and 2 (in the order
    the ids came) left row 5 live in segment 1 -- the routing took a batch whose first and last rows
    share a segment for a one-segment batch -- so ``len`` said 7 for 6 items."""
    rng = np.random.default_rng(0)
    first = rng.standard_normal((6, 16)).astype(np.float32)
    with MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=4, exact_below=0, segment_rows=5) as store:
        store.add(["id0", "id1", "id3", "id4", "id5", "id2"], first)  # rows 0-4 in segment 0, row 5 in segment 1
        store.add(["id0", "id2", "id3"], rng.standard_normal((3, 16)).astype(np.float32))  # old rows 0, 5, 2
        assert len(store) == 6 and store._s.ann.live == 6
    with MRLStore.open(tmp_path / "s") as store:
        assert len(store) == 6


def test_one_query_asks_its_segments_at_once_with_the_same_answer(tmp_path, monkeypatch):
    """A search of a store in several segments asked them one after another: at 10M (three 4M-row
    graphs) its latency was three graphs' on a machine with cores to spare. Now a search at ef >=
    ``_PARALLEL_EF`` asks each segment on its own thread (hnswlib releases the GIL): every
    segment's query is in flight at once (a barrier that sequential queries would never pass), and
    the merged answer is the one the sequential path gives. A cheap search stays on its thread."""
    import threading  # noqa: PLC0415

    from mrl_retrievers.store.local import coarse as coarse_module  # noqa: PLC0415
    from mrl_retrievers.store.local.ann import AnnIndex  # noqa: PLC0415

    data = dataset(3000, DIM, seed=6)
    ef = coarse_module._PARALLEL_EF
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=16, exact_below=0, segment_rows=1000) as store:
        store.add([f"d{i}" for i in range(3000)], data)
        coarse = store._s.ann
        assert len(coarse.segments) == 3
        query = np.ascontiguousarray(data[:1, :16])
        sequential = coarse.query(query, 10, ef, num_threads=2)  # a batch path: segment after segment
        barrier, real, threads = threading.Barrier(3, timeout=10), AnnIndex.query, []

        def together(self, *args, **kwargs):
            threads.append(threading.current_thread())
            if kwargs.get("num_threads", 1) == 1 and args[2] >= ef:
                barrier.wait()  # raises BrokenBarrierError unless all three segments are asked at once
            return real(self, *args, **kwargs)

        monkeypatch.setattr(AnnIndex, "query", together)
        rows, sims = coarse.query(query, 10, ef)
        np.testing.assert_array_equal(rows, sequential[0])
        np.testing.assert_array_equal(sims, sequential[1])
        threads.clear()
        coarse.query(query, 10, ef // 4)
        assert threads == [threading.current_thread()] * 3  # cheap: one after another, no handoff
        monkeypatch.setattr(AnnIndex, "query", real)
        assert [h.id for h in store.search(data[7], k=3)][0] == "d7"


def test_search_over_segments_keeps_recall(tmp_path):
    data = dataset(8000, DIM, seed=4)
    queries = queries_near(data, 200, seed=5)
    ids = [f"d{i}" for i in range(len(data))]
    found = {}
    for segment_rows in (1500, 1 << 22):
        with MRLStore.create(tmp_path / f"s{segment_rows}", full_dim=DIM, prefix_dim=16, exact_below=0,
                             segment_rows=segment_rows) as store:
            store.add(ids, data)
            truth = [[h.id for h in store.search_exact(q, k=10)] for q in queries]
            found[segment_rows] = recall_at_k([[h.id for h in store.search(q, k=10)] for q in queries], truth, 10)
            batch = store.search_batch(queries[:20], k=10)
            assert [[h.id for h in hs] for hs in batch] == [[h.id for h in store.search(q, k=10)] for q in queries[:20]]
    # Each segment is searched at full effort, so several segments do no worse than one graph.
    assert found[1500] >= found[1 << 22] - 0.005 and found[1 << 22] >= 0.95, found


def test_reader_follows_a_writer_across_segments(tmp_path):
    data = dataset(4000, DIM, seed=6)
    path = tmp_path / "s"
    MRLStore.create(path, full_dim=DIM, prefix_dim=16, exact_below=0, segment_rows=700).close()
    reader = MRLStore.open(path, read_only=True)
    with MRLStore.open(path) as writer:
        for start in range(0, 4000, 800):
            writer.add([f"d{i}" for i in range(start, start + 800)], data[start : start + 800])
            assert len(reader) == start + 800
            assert reader.search(data[start + 3], k=1)[0].id == f"d{start + 3}"
        writer.compact()
        assert reader.search(data[3999], k=1)[0].id == "d3999"
    reader.close()


def test_an_index_written_as_one_file_still_loads(tmp_path):
    """A format-1 manifest names one index file ({file, watermark, size, crc32}): it loads as one
    unbounded segment, and the next checkpoint writes the new layout."""
    data = dataset(3000, DIM, seed=7)
    path = tmp_path / "s"
    with MRLStore.create(path, full_dim=DIM, prefix_dim=16, exact_below=0) as store:
        store.add([f"d{i}" for i in range(3000)], data)
    manifest = json.loads((path / "manifest.json").read_text())
    segment = manifest["ann"]["segments"][0]
    manifest["ann"] = {"file": segment["file"], "epoch": 0, "watermark": segment["watermark"], "prefix_dim": 16,
                       "size": segment["size"], "crc32": segment["crc32"]}
    manifest["format_version"] = 1
    del manifest["checksum"], manifest["segment_rows"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with MRLStore.open(path) as store:
        assert store._s.ann_note is None and store._s.ann.segment_rows == 0
        assert store.search(data[42], k=1)[0].id == "d42"
        store.add(["new"], data[:1] * -1)
        store.checkpoint()
    upgraded = json.loads((path / "manifest.json").read_text())
    assert upgraded["format_version"] == 2 and upgraded["ann"]["segment_rows"] == 0 and len(upgraded["ann"]["segments"]) == 1
    with MRLStore.open(path) as store:
        assert store._s.ann_note is None and len(store) == 3001
