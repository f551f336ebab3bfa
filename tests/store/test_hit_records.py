"""A search's hits take their ids, texts and metadata from SQLite once per handle
(``store/local/records.py``): later searches serve them from memory, and nothing a write changes
(an upsert, a delete, a compaction's new row numbers, another process's compaction) is ever served
from the old copy."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.errors import CorruptStoreError
from mrl_retrievers.store.local import records
from mrl_retrievers.store.local.docstore import DocStore

DIM = 16


def _data(rng, n):
    return rng.standard_normal((n, DIM)).astype(np.float32)


def _count_sqlite_reads(monkeypatch) -> list[list[int]]:
    calls: list[list[int]] = []
    real = DocStore.hit_records
    monkeypatch.setattr(DocStore, "hit_records", lambda self, rows: calls.append(list(rows)) or real(self, rows))
    return calls


@pytest.mark.parametrize("exact_below", [0, 10_000])
def test_a_hit_record_is_read_from_sqlite_once_per_handle(tmp_path, rng, monkeypatch, exact_below):
    data = _data(rng, 400)
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4, exact_below=exact_below) as s:
        s.add([f"d{i}" for i in range(400)], data, texts=[f"text {i}" for i in range(400)],
              metadatas=[{"i": i} for i in range(400)])
        calls = _count_sqlite_reads(monkeypatch)
        first = s.search(data[7], k=5)
        assert first[0].id == "d7" and len(calls) == 1 and len(calls[0]) == 5
        again = s.search(data[7], k=5)
        assert again == first and len(calls) == 1  # all five served from memory
        s.search(data[7], k=8)
        assert len(calls) == 2 and len(calls[1]) == 3  # only the three it had not read


def test_a_hit_record_is_checked_before_it_is_kept(tmp_path, rng):
    import sqlite3

    path = tmp_path / "s"
    data = _data(rng, 50)
    with MRLStore.create(path, full_dim=DIM, prefix_dim=4) as s:
        s.add([f"d{i}" for i in range(50)], data, texts=[f"text {i}" for i in range(50)])
    conn = sqlite3.connect(path / "docs.sqlite")
    conn.execute("UPDATE docs SET text = 'text 9!' WHERE id = 'd9'")
    conn.commit()
    conn.close()
    with MRLStore.open(path, read_only=True) as s:
        for _ in range(2):  # never kept: the second search fails like the first
            with pytest.raises(CorruptStoreError, match="d9"):
                s.search(data[9], k=3)
        assert len(s._s.records) == 0
        assert s.search(data[10], k=1)[0].text == "text 10"


def test_a_changed_metadata_dict_does_not_leak_into_later_hits(tmp_path, rng):
    data = _data(rng, 30)
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4) as s:
        s.add([f"d{i}" for i in range(30)], data, metadatas=[{"tags": ["a"], "i": i} for i in range(30)])
        hit = s.search(data[3], k=1)[0]
        hit.metadata["tags"].append("changed by the caller")
        hit.metadata["new"] = 1
        assert s.search(data[3], k=1)[0].metadata == {"tags": ["a"], "i": 3}


@pytest.mark.parametrize("exact_below", [0, 10_000])
def test_upserts_deletes_and_compaction_are_never_answered_from_the_old_records(tmp_path, rng, exact_below):
    n = 300
    data = _data(rng, n)
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4, exact_below=exact_below) as s:
        s.add([f"d{i}" for i in range(n)], data, texts=[f"text {i}" for i in range(n)])
        for q in data:
            s.search(q, k=3)  # every record read once
        s.add(["d5"], data[5:6], texts=["text 5, new"])
        assert s.search(data[5], k=1)[0].text == "text 5, new"
        s.delete([f"d{i}" for i in range(0, 100)] + ["d150"])
        assert all(h.id != "d150" for h in s.search(data[150], k=5))
        assert s.compact() == 102  # rows renumbered: row r now holds another item
        for i in (120, 200, 299):
            top = s.search(data[i], k=1)[0]
            assert (top.id, top.text) == (f"d{i}", f"text {i}")
            exact = s.search_exact(data[i], k=5)
            assert [h.text for h in exact] == [f"text {h.id[1:]}" for h in exact]


def test_a_read_only_handle_drops_its_records_when_the_writer_compacts(tmp_path, rng):
    n = 3000
    data = _data(rng, n)
    path = tmp_path / "s"
    MRLStore.create(path, full_dim=DIM, prefix_dim=8, exact_below=0).close()
    reader = MRLStore.open(path, read_only=True)  # first: a separate read-only open store
    with MRLStore.open(path) as writer:
        writer.add([f"d{i}" for i in range(n)], data, texts=[f"text {i}" for i in range(n)])
        for i in range(1000, 3000, 7):
            assert reader.search(data[i], k=1)[0].text == f"text {i}"
        writer.delete([f"d{i}" for i in range(1000)])
        assert all(not h.id.startswith("d9") or int(h.id[1:]) >= 1000 for h in reader.search(data[900], k=5))
        writer.compact()  # old row r + 1000 is row r now
        for i in range(2000, 3000):  # each lands on a row number whose old record the reader read
            top = reader.search(data[i], k=1)[0]
            assert (top.id, top.text) == (f"d{i}", f"text {i}")
    reader.close()


def test_records_are_bounded_by_their_budget_oldest_first(tmp_path, rng, monkeypatch):
    data = _data(rng, 500)
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4) as s:
        s.add([f"d{i:03d}" for i in range(500)], data, texts=["x" * 1000 for _ in range(500)])
        kept = s._s.records
        kept.budget = 20 * (1000 + 4 + 2 + records._OVERHEAD) + 10  # room for 20 records of 1000-char texts
        for q in data:
            assert len(s.search(q, k=3)) == 3
            assert kept.bytes <= kept.budget and len(kept) <= 20
        assert len(kept) == 20
        assert (s.stats()["records_in_memory"], s.stats()["records_in_memory_bytes"]) == (20, kept.bytes)
        calls = _count_sqlite_reads(monkeypatch)
        s.search(data[0], k=1)  # read long ago: left
        assert len(calls) == 1


def test_records_read_inside_a_writers_open_transaction_are_not_kept(tmp_path, rng):
    """Its rows may still roll back, and the next add would number its own rows the same."""
    data = _data(rng, 10)
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4) as s:
        s.add([f"d{i}" for i in range(10)], data, texts=[f"text {i}" for i in range(10)])
        docs, kept = s._s.docs, s._s.records
        docs.conn.execute("BEGIN IMMEDIATE")
        try:
            assert kept.get(docs, [1, 2])[1][1] == "text 2"
            assert len(kept) == 0
        finally:
            docs.conn.execute("ROLLBACK")
        kept.get(docs, [1, 2])
        assert len(kept) == 2


def test_a_write_that_fails_after_its_commit_leaves_no_old_version_to_serve(tmp_path, rng, monkeypatch):
    """The upsert committed in SQLite, then the coarse index failed: the old row was never marked
    deleted there, so a search may still rank it; its record must not come back from memory."""
    data = _data(rng, 200)
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=4, exact_below=0) as s:
        s.add([f"d{i}" for i in range(200)], data, texts=[f"text {i}" for i in range(200)])
        assert s.search(data[5], k=1)[0].text == "text 5"  # read once: kept
        coarse = s._s.ann

        def fail(*args, **kwargs):
            raise RuntimeError("the coarse index failed after the commit")

        monkeypatch.setattr(coarse, "add", fail)
        with pytest.raises(RuntimeError):
            s.add(["d5"], data[6:7], texts=["text 5, new"])
        assert all(h.text != "text 5" for h in s.search(data[5], k=5))


def test_a_read_only_handle_beside_a_rebuild_that_cut_rows_answers_from_the_new_rows(tmp_path, rng):
    """``rebuild`` of a short vector file drops the items whose rows are gone and lowers the committed
    row count, so the writer's next adds reuse those row numbers. A read-only handle open across
    that caught up incrementally (rows only grew since it looked) and kept its index entries, checked
    flags and records of the old rows: it returned a dropped item's id and text for a new item's
    vector. Cutting rows is now a new row epoch, which makes every follower reload."""
    path, n, cut = tmp_path / "s", 600, 100
    old = _data(rng, n)
    with MRLStore.create(path, full_dim=DIM, prefix_dim=4, exact_below=0) as s:
        s.add([f"old{i}" for i in range(n)], old, texts=[f"old text {i}" for i in range(n)])
    reader = MRLStore.open(path, read_only=True)
    try:
        for i in range(n - cut, n):  # the rows to be cut: read, checked and their records kept
            assert reader.search(old[i], k=1)[0].id == f"old{i}"
        vector_file = next(path.glob("vectors.*"))
        with open(vector_file, "r+b") as fh:  # the last `cut` rows lost (float16 rows of DIM numbers)
            fh.truncate((n - cut) * DIM * 2)
        report = MRLStore.rebuild(path)
        assert report.damaged_ids == sorted(f"old{i}" for i in range(n - cut, n))
        new = _data(rng, cut)
        with MRLStore.open(path) as s:
            s.add([f"new{j}" for j in range(cut)], new, texts=[f"new text {j}" for j in range(cut)])
        for j in range(cut):
            hit = reader.search(new[j], k=1)[0]
            assert (hit.id, hit.text) == (f"new{j}", f"new text {j}")
        assert reader.search(old[3], k=1)[0].id == "old3"
        assert len(reader) == n
    finally:
        reader.close()


def _statements_of_this_thread(store) -> list[str]:
    """Every SQL statement this thread's read connection of a read-only handle runs from now on."""
    seen: list[str] = []
    store._s.docs._thread_reader().set_trace_callback(seen.append)
    return seen


def test_a_warm_read_only_search_opens_no_transaction_while_nothing_was_committed(tmp_path, rng):
    # Observed on main (2026-12-05): every search of a read-only handle ran BEGIN, a read of the
    # committed state and COMMIT (~40 us of a ~110 us search at 100k) even when its hits' records
    # were in memory and nothing had been committed since the last search.
    data = _data(rng, 3000)
    path = tmp_path / "s"
    with MRLStore.create(path, full_dim=DIM, prefix_dim=8, exact_below=0) as s:
        s.add([f"d{i}" for i in range(3000)], data, texts=[f"text {i}" for i in range(3000)])
    with MRLStore.open(path, read_only=True) as reader:
        first = reader.search(data[5], k=5)
        statements = _statements_of_this_thread(reader)
        assert reader.search(data[5], k=5) == first
        assert statements == ["PRAGMA data_version"]  # one look at the database: nothing changed since


def test_a_commit_between_the_freshness_check_and_the_records_read_is_never_mixed_in(tmp_path, rng, monkeypatch):
    """The warm read-only search runs without a transaction; when it needs SQLite (records it has
    not read yet) and a writer committed in between, it must not read the new state's rows for the
    old state's ranking: a compaction renumbers rows, so row r would name another item."""
    n = 3000
    data = _data(rng, n)
    path = tmp_path / "s"
    MRLStore.create(path, full_dim=DIM, prefix_dim=8, exact_below=0).close()
    reader = MRLStore.open(path, read_only=True)
    with MRLStore.open(path) as writer:
        writer.add([f"d{i}" for i in range(n)], data, texts=[f"text {i}" for i in range(n)])
        reader.search_exact(data[2999], k=1)  # caught up, every row's checksum checked: only records left to read
        calls = []
        real = DocStore.hit_records

        def compact_first(self, rows):
            if not calls:  # the first records read of the search below: the writer compacts just before it
                writer.delete([f"d{i}" for i in range(1000)])
                writer.compact()  # old row r + 1000 is row r now
            calls.append(list(rows))
            return real(self, rows)

        monkeypatch.setattr(DocStore, "hit_records", compact_first)
        hits = reader.search(data[2500], k=5)
        reads = len(calls)
        assert all(h.text == f"text {h.id[1:]}" for h in hits)
        assert [h.id for h in hits] == [h.id for h in writer.search(data[2500], k=5)]
        assert reads == 2  # the first read saw a newer state than the ranking's and was retried
    reader.close()
