"""MRLStore behaviour: lifecycle, upsert, delete, get, search semantics, handles and locks."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mrl_retrievers import EmbeddingSpec, MRLStore
from mrl_retrievers.errors import (
    ReadOnlyStoreError,
    SpecMismatchError,
    StoreClosedError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
)
from mrl_retrievers.bench.synthetic import dataset, queries_near
from tests.helpers import unit_rows


def ids(n, start=0):
    return [f"doc-{i}" for i in range(start, start + n)]


@pytest.mark.parametrize("exact_below", [0, 10_000])
def test_add_search_get_delete_roundtrip(make_store, rng, exact_below):
    store = make_store(exact_below=exact_below)
    vectors = unit_rows(rng, 300, 32)
    metas = [{"i": i, "tag": ["a", "b"][i % 2]} for i in range(300)]
    assert store.add(ids(300), vectors, texts=[f"t{i}" for i in range(300)], metadatas=metas) == ids(300)
    assert len(store) == 300

    hits = store.search(vectors[7], k=5)
    assert hits[0].id == "doc-7" and hits[0].text == "t7" and hits[0].metadata == {"i": 7, "tag": "b"}
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    record = store.get(["doc-7", "missing", "doc-1"], include_vectors=True)
    assert [r.id for r in record] == ["doc-7", "doc-1"]
    np.testing.assert_allclose(record[0].vector, vectors[7], atol=1e-3)

    assert store.delete(["doc-7", "missing"]) == 1
    assert len(store) == 299
    assert all(h.id != "doc-7" for h in store.search(vectors[7], k=50))
    assert store.get(["doc-7"]) == []


def test_upsert_replaces_vector_text_and_metadata(make_store, rng):
    store = make_store(exact_below=0)
    vectors = unit_rows(rng, 50, 32)
    store.add(ids(50), vectors, metadatas=[{"v": 1}] * 50)
    new = unit_rows(rng, 1, 32)
    store.add(["doc-3"], new, texts=["fresh"], metadatas=[{"v": 2}])
    assert len(store) == 50
    (record,) = store.get(["doc-3"], include_vectors=True)
    assert record.text == "fresh" and record.metadata == {"v": 2}
    np.testing.assert_allclose(record.vector, new[0], atol=1e-3)
    assert store.search(new[0], k=1)[0].id == "doc-3"
    assert store.search(vectors[3], k=1)[0].id != "doc-3" or store.search(vectors[3], k=1)[0].score < 0.99


def test_k_is_clamped_and_small_results_are_shorter(make_store, rng):
    store = make_store(exact_below=0)
    assert store.search(unit_rows(rng, 1, 32)[0], k=5) == []
    store.add(ids(3), unit_rows(rng, 3, 32))
    assert len(store.search(unit_rows(rng, 1, 32)[0], k=10)) == 3
    assert len(store.search(unit_rows(rng, 1, 32)[0], k=10, filter={"missing": 1})) == 0
    store.delete(ids(2))
    assert [h.id for h in store.search(unit_rows(rng, 1, 32)[0], k=10)] == ["doc-2"]


def test_search_batch_matches_single_searches(make_store, rng):
    store = make_store(exact_below=0, full_dim=64, prefix_dim=16)
    data = unit_rows(rng, 3000, 64)
    store.add(ids(3000), data)
    queries = unit_rows(rng, 20, 64)
    batch = store.search_batch(queries, k=5)
    single = [store.search(q, k=5) for q in queries]
    assert [[h.id for h in hs] for hs in batch] == [[h.id for h in hs] for hs in single]


def test_filtered_search_agrees_with_exact(make_store, rng):
    store = make_store(exact_below=0, full_dim=128, prefix_dim=32)
    data = dataset(4000, 128, seed=5)
    store.add(ids(4000), data, metadatas=[{"bucket": i % 10, "big": i >= 2000} for i in range(4000)])
    for flt in ({"bucket": 3}, {"big": True}, {"bucket": {"$in": [1, 2, 3, 4, 5, 6, 7]}}):
        for q in queries_near(data, 5, seed=6):
            got = store.search(q, k=10, filter=flt)
            exact = store.search_exact(q, k=10, filter=flt)
            assert len(got) == 10
            assert len({h.id for h in got} & {h.id for h in exact}) >= 9
            assert all(_match(h.metadata, flt) for h in got)


def _match(md, flt):
    from mrl_retrievers.filters import matches

    return matches(flt, md)


def test_persistence_and_same_handle(tmp_path, rng):
    data = unit_rows(rng, 100, 32)
    with MRLStore.create(tmp_path / "s", full_dim=32, prefix_dim=8) as store:
        store.add(ids(100), data, texts=ids(100))
        again = MRLStore.open(tmp_path / "s")  # a second handle on the same open store
        assert again is not store and again._shared is store._shared
        again.close()  # closes only that handle
        assert len(store) == 100 and store.search(data[7], k=1)[0].id == "doc-7"
        with pytest.raises(StoreClosedError):
            again.search(data[0])
    reopened = MRLStore.open(tmp_path / "s")
    assert reopened is not store and len(reopened) == 100
    assert reopened.search(data[42], k=1)[0].id == "doc-42"
    reopened.close()
    with pytest.raises(StoreClosedError):
        reopened.search(data[0])


def test_spec_is_recorded_and_enforced(tmp_path):
    spec = EmbeddingSpec(provider="fake", model="m1", dim=16)
    MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=4, spec=spec).close()
    assert MRLStore.open(tmp_path / "s", spec=spec).spec == spec
    MRLStore.open(tmp_path / "s").close()
    with pytest.raises(SpecMismatchError, match="model"):
        MRLStore.open(tmp_path / "s", spec=EmbeddingSpec(provider="fake", model="m2", dim=16))


def test_create_refuses_existing_store_and_non_empty_dir(tmp_path):
    MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4).close()
    with pytest.raises(StoreExistsError):
        MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreExistsError):
        MRLStore.create(tmp_path / "other", full_dim=8, prefix_dim=4)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_open_errors_name_the_problem(tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        MRLStore.open(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreNotFoundError, match="is a file"):
        MRLStore.open(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreNotFoundError, match="not an mrl-retrievers store"):
        MRLStore.open(tmp_path / "dir")


def test_temporary_store_is_removed_on_close():
    store = MRLStore.create(None, full_dim=8, prefix_dim=4)
    path = store.path
    assert path.exists()
    store.close()
    assert not path.exists()


def test_read_only_handle_refuses_writes(tmp_path, rng):
    MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4).close()
    ro = MRLStore.open(tmp_path / "s", read_only=True)
    with pytest.raises(ReadOnlyStoreError):
        ro.add(["a"], unit_rows(rng, 1, 8))
    # A writer may open beside a read-only handle of the same process, and the reader follows it.
    with MRLStore.open(tmp_path / "s") as writer:
        writer.add(["a"], unit_rows(rng, 1, 8))
        assert len(ro) == 1 and [r.id for r in ro.get(["a"])] == ["a"]
        with pytest.raises(ReadOnlyStoreError):
            MRLStore.open(tmp_path / "s", read_only=True).add(["b"], unit_rows(rng, 1, 8))
    ro.close()


_HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from mrl_retrievers import MRLStore
    store = MRLStore.open(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
    """
)

_TRY_OPEN = textwrap.dedent(
    """
    import sys
    from mrl_retrievers import MRLStore
    from mrl_retrievers.errors import StoreLockedError
    try:
        MRLStore.open(sys.argv[1])
    except StoreLockedError:
        print("locked"); sys.exit(3)
    print("opened")
    """
)


def test_second_writer_process_gets_store_locked_and_lock_dies_with_holder(tmp_path):
    MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4).close()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path / "s")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run([sys.executable, "-c", _TRY_OPEN, str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
        assert second.returncode == 3, second.stderr
        # Read-only handles in other processes are fine beside the writer.
        reader = subprocess.run(
            [sys.executable, "-c", f"from mrl_retrievers import MRLStore; print(len(MRLStore.open({str(tmp_path / 's')!r}, read_only=True)))"],
            capture_output=True, text=True, timeout=60,
        )
        assert reader.returncode == 0 and reader.stdout.strip() == "0", reader.stderr
    finally:
        holder.kill()
        holder.wait()
    again = subprocess.run([sys.executable, "-c", _TRY_OPEN, str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "opened" in again.stdout


def test_lock_is_released_when_store_is_garbage_collected(tmp_path):
    MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4).close()
    store = MRLStore.open(tmp_path / "s")
    del store
    gc.collect()
    result = subprocess.run([sys.executable, "-c", _TRY_OPEN, str(tmp_path / "s")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_reader_process_sees_committed_data_after_reopen(tmp_path, rng):
    store = MRLStore.create(tmp_path / "s", full_dim=8, prefix_dim=4)
    store.add(ids(5), unit_rows(rng, 5, 8))
    script = f"from mrl_retrievers import MRLStore; print(len(MRLStore.open({str(tmp_path / 's')!r}, read_only=True)))"
    first = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    store.add(ids(5, start=5), unit_rows(rng, 5, 8))
    second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (first.stdout.strip(), second.stdout.strip()) == ("5", "10"), first.stderr + second.stderr
    store.close()


def test_compact_reclaims_rows_and_keeps_answers(make_store, rng):
    store = make_store(exact_below=0)
    data = unit_rows(rng, 500, 32)
    store.add(ids(500), data, texts=ids(500))
    store.delete(ids(100))
    store.add(ids(50, start=100), data[100:150])  # overwrite: 50 more dead rows
    before = [[h.id for h in store.search_exact(q, k=5)] for q in data[200:220]]
    assert store.compact() == 150
    assert store.stats()["rows"] == 400 and len(store) == 400
    assert [[h.id for h in store.search_exact(q, k=5)] for q in data[200:220]] == before
    assert store.search(data[300], k=1)[0].id == "doc-300"
    assert store.compact() == 0


def test_funnel_stage_keeps_recall(make_store, rng):
    store = make_store(exact_below=0, full_dim=128, prefix_dim=32, funnel_dim=64, shortlist=100)
    data = dataset(2000, 128, seed=7)
    store.add(ids(2000), data)
    for qi in queries_near(data, 20, seed=8):
        assert store.search(qi, k=1)[0].id == store.search_exact(qi, k=1)[0].id


def test_ids_lists_live_ids_by_filter_in_insertion_order(make_store, rng):
    store = make_store()
    store.add(ids(6), unit_rows(rng, 6, 32), metadatas=[{"even": i % 2 == 0} for i in range(6)])
    store.delete(["doc-2"])
    store.add(["doc-0"], unit_rows(rng, 1, 32), metadatas=[{"even": True}])  # upsert moves it last
    assert store.ids() == ["doc-1", "doc-3", "doc-4", "doc-5", "doc-0"]
    assert store.ids({"even": True}) == ["doc-4", "doc-0"]


def test_open_store_create_options_and_unknown_width(tmp_path):
    from mrl_retrievers import open_store

    store = open_store(tmp_path / "s", full_dim=16, prefix_dim=4, dtype="float32", exact_below=0)
    assert (store.prefix_dim, store.dtype, store.manifest.exact_below) == (4, "float32", 0)
    store.close()
    assert open_store(tmp_path / "s", full_dim=None).full_dim == 16  # width read from the manifest
    with pytest.raises(StoreNotFoundError):
        open_store(tmp_path / "absent", full_dim=None)
    assert open_store(None, full_dim=6).prefix_dim == 6  # the configured 128 is clamped


def test_search_exact_batch_is_search_exact_for_each_query(tmp_path, rng):
    data = unit_rows(rng, 3000, 32)
    with MRLStore.create(tmp_path / "s", full_dim=32, prefix_dim=8) as store:
        store.add(ids(3000), data, metadatas=[{"even": i % 2 == 0} for i in range(3000)])
        queries = unit_rows(rng, 7, 32)
        for flt in (None, {"even": True}):
            batch = store.search_exact_batch(queries, k=5, filter=flt)
            single = [store.search_exact(q, k=5, filter=flt) for q in queries]
            assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in single]
            assert np.allclose([[h.score for h in hits] for hits in batch], [[h.score for h in hits] for hits in single], atol=1e-5)



@pytest.mark.parametrize("exact_below", [None, 0])  # the small-store cache, and the scan of the vector file
def test_exact_search_alone_and_in_a_batch_return_the_same_copies_of_a_duplicate(tmp_path, rng, exact_below):
    """Each of 50 vectors stored 40 times (a text ingested twice is a vector stored twice): every
    copy ties, and both exact searches return the lowest rows among them, the same ids. Before,
    each kept an arbitrary few of the tied copies at the cut: 0 of 8 queries agreed."""
    base = unit_rows(rng, 50, 64)
    data = np.repeat(base, 40, axis=0)[rng.permutation(2000)]
    options = {} if exact_below is None else {"exact_below": exact_below}
    with MRLStore.create(tmp_path / "s", full_dim=64, prefix_dim=16, **options) as store:
        store.add(ids(2000), data)
        queries = base[:8] + 0.01 * unit_rows(rng, 8, 64)
        batch = [[h.id for h in hits] for hits in store.search_exact_batch(queries, k=10)]
        single = [[h.id for h in store.search_exact(q, k=10)] for q in queries]
        assert batch == single
        for q, found in enumerate(single):
            copies = np.flatnonzero(np.all(data == base[q], axis=1))
            assert found == [ids(2000)[row] for row in copies[:10]]

@pytest.mark.parametrize("folder", ["notes #2", "what?", "100%", "a b"])
def test_a_store_in_a_folder_whose_name_is_special_in_a_uri_searches_and_opens_read_only(tmp_path, rng, folder):
    """SQLite read-only connections are opened by URI: an unescaped '#' or '?' in a folder name ended
    the path there ("no such table: docs" on a healthy store), '%' started an escape. Seen when the
    writer's searches moved onto per-thread read-only connections (issue 16); read-only opens had
    the same bug before."""
    path = tmp_path / folder / "s"
    vectors = unit_rows(rng, 60, 16)
    with MRLStore.create(path, full_dim=16, prefix_dim=4, exact_below=0) as store:
        store.add([str(i) for i in range(60)], vectors)
        assert store.search(vectors[7], k=1)[0].id == "7"
    with MRLStore.open(path, read_only=True) as reader:
        assert len(reader) == 60
        assert reader.search(vectors[9], k=1)[0].id == "9"
