"""The compiled graph (store/local/_graph.cpp: hnswlib's HNSW, vendored) against the hnswlib package,
and the fused search (graph walk + checksum look-up + rerank in one call) against the stepwise one.

Why it exists: at 100k a search held the GIL ~50-60 us between hnswlib's call and the kernel's, and
two searching threads did 0.85-1.06x one thread's searches (docs/benchmarks.md, "One call from the
query to the ranked rows"). Wall-clock is not asserted here; what is: the store's fixed-effort
search is one graph call that returns the ranked rows (no `knn` + rerank round trip through Python),
its answers equal the stepwise path's to the bit, the files are hnswlib's own, and a row whose
checksum this handle never verified cannot rank through the fused call.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import hnswlib
import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.errors import CorruptStoreError
from mrl_retrievers.store import effort
from mrl_retrievers.store.effort import Calibration, EffortPolicy, Measured
from mrl_retrievers.store.local import ann, coarse, kernel
from mrl_retrievers.store.local.ann import AnnIndex
from mrl_retrievers.store.local.fs import file_crc32

pytestmark = pytest.mark.skipif(not ann.compiled(), reason="the compiled graph is not in use here")

DIM = 32


def unit_rows(rng, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def package_index(data: np.ndarray) -> hnswlib.Index:
    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data) + 16, M=16, ef_construction=100, random_seed=100)
    index.add_items(data, np.arange(len(data)), num_threads=1)
    return index


def test_the_graph_writes_and_reads_the_hnswlib_packages_files(tmp_path, rng):
    """Same construction, same file bytes; each loads the other's file and answers alike: a store
    checkpointed by either opens with the other. (The float32 graph, ``MRL_RETRIEVERS_GRAPH=float32``;
    the float16 one writes the same format: the float16 tests below.)"""
    data = unit_rows(rng, 3000)
    ours = AnnIndex.empty(DIM, M=16, ef_construction=100, capacity=len(data) + 16, half=False)
    ours.add(data, np.arange(len(data)))
    ours.save(tmp_path / "ours.bin")
    package_index(data).save_index(str(tmp_path / "package.bin"))
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "package.bin").read_bytes()

    queries = unit_rows(rng, 50)
    theirs = hnswlib.Index(space="ip", dim=DIM)
    theirs.load_index(str(tmp_path / "ours.bin"))
    theirs.set_ef(64)
    want_rows, want_dist = theirs.knn_query(queries, k=20)
    size, crc = (tmp_path / "package.bin").stat().st_size, file_crc32(tmp_path / "package.bin")
    loaded = AnnIndex.load(tmp_path / "package.bin", dim=DIM, size=size, crc32=crc, half=False)
    assert loaded.fused
    rows, sims = loaded.query(queries, 20, 64)
    assert (rows == want_rows.astype(np.int64)).all()
    np.testing.assert_array_equal(sims, np.float32(1) - want_dist)


half_only = pytest.mark.skipif(not ann._HALF, reason="float16 prefixes need the graph built with the CPU's F16C")


@half_only
def test_float16_prefixes_keep_hnswlibs_float32_files(tmp_path, rng):
    """The float16 graph (the default) writes hnswlib's float32 file, which the package loads and
    answers from exactly as our float32 graph does from it; loading it back and saving again gives
    the same bytes (float16 -> float32 -> float16 is exact); it holds each prefix rounded to float16."""
    data = unit_rows(rng, 3000)
    ours = AnnIndex.empty(DIM, M=16, ef_construction=100, capacity=len(data) + 16)
    assert ours._graph.is_half()
    ours.add(data, np.arange(len(data)))
    size, crc = ours.save(tmp_path / "half.bin")
    np.testing.assert_array_equal(ours.vectors_of(np.arange(100)), data[:100].astype(np.float16).astype(np.float32))

    queries = unit_rows(rng, 50)
    package = hnswlib.Index(space="ip", dim=DIM)
    package.load_index(str(tmp_path / "half.bin"))
    package.set_ef(64)
    want_rows, want_dist = package.knn_query(queries, k=20)
    as_float32 = AnnIndex.load(tmp_path / "half.bin", dim=DIM, size=size, crc32=crc, half=False)
    rows, sims = as_float32.query(queries, 20, 64)
    assert (rows == want_rows.astype(np.int64)).all()
    np.testing.assert_array_equal(sims, np.float32(1) - want_dist)

    again = AnnIndex.load(tmp_path / "half.bin", dim=DIM, size=size, crc32=crc)
    assert again._graph.is_half()
    again.save(tmp_path / "again.bin")
    assert (tmp_path / "again.bin").read_bytes() == (tmp_path / "half.bin").read_bytes()


@half_only
def test_float16_prefixes_search_as_float32_ones_but_for_near_ties(tmp_path, rng):
    """The package's file loaded as float16: the same graph, distances from rounded prefixes. The
    neighbours found are the float32 graph's but where two similarities lie within float16's rounding;
    the similarities agree to that rounding."""
    data = unit_rows(rng, 5000)
    package_index(data).save_index(str(tmp_path / "package.bin"))
    size, crc = (tmp_path / "package.bin").stat().st_size, file_crc32(tmp_path / "package.bin")
    full = AnnIndex.load(tmp_path / "package.bin", dim=DIM, size=size, crc32=crc, half=False)
    half = AnnIndex.load(tmp_path / "package.bin", dim=DIM, size=size, crc32=crc, half=True)
    queries = unit_rows(rng, 200)
    want_rows, want_sims = full.query(queries, 20, 100)
    rows, sims = half.query(queries, 20, 100)
    same = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(rows, want_rows)])
    assert same >= 0.99, same
    np.testing.assert_allclose(sims, want_sims, atol=2e-3)


@pytest.mark.parametrize("half", [pytest.param(True, marks=half_only), False], ids=["float16", "float32"])
def test_a_loaded_graph_takes_deletions_and_adds(tmp_path, rng, half):
    """A loaded graph allocates hnswlib's write locks (per element slot, and per label operation)
    only at its first write, so a handle that only searches never holds them: a deletion, an add
    past the loaded capacity and another deletion after a load work as before, and read the
    vectors back."""
    data = unit_rows(rng, 2000)
    first = AnnIndex.empty(DIM, M=16, ef_construction=100, capacity=1000, half=half)
    first.add(data[:1000], np.arange(1000))
    size, crc = first.save(tmp_path / "g.bin")
    loaded = AnnIndex.load(tmp_path / "g.bin", dim=DIM, size=size, crc32=crc, half=half)
    assert loaded.vectors_of(np.array([3, 999])) is not None
    loaded.mark_deleted([5])  # the first write after the load
    loaded.add(data[1000:], np.arange(1000, 2000), num_threads=2)  # grows past the loaded capacity
    loaded.mark_deleted([1500])
    rows, _ = loaded.query(data[[5, 7, 1500, 1600]], 1, 64)
    assert rows[:, 0].tolist()[1::2] == [7, 1600] and 5 not in rows and 1500 not in rows
    assert loaded.vectors_of(np.array([5])) is None and loaded.vectors_of(np.array([1500])) is None
    np.testing.assert_allclose(loaded.vectors_of(np.array([7, 1600])), data[[7, 1600]], atol=1e-3)


@half_only
def test_float16_prefixes_halve_the_graphs_memory(tmp_path):
    """RAM a loaded graph adds to its process (resident, measured in a fresh interpreter for each):
    float16 prefixes take half the float32 ones' bytes (the links stay as they were), and the
    estimate ``mrl-retrievers info`` shows (``AnnIndex.ram_bytes``) follows the precision."""
    import subprocess
    import sys

    dim, n = 256, 20000
    data = unit_rows(np.random.default_rng(3), n, dim)
    index = AnnIndex.empty(dim, M=8, ef_construction=32, capacity=n)
    index.add(data, np.arange(n), num_threads=2)
    size, crc = index.save(tmp_path / "g.bin")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from mrl_retrievers.store.local.ann import AnnIndex\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
        "before = rss()\n"
        f"g = AnnIndex.load(Path(sys.argv[1]), dim={dim}, size={size}, crc32={crc}, half=sys.argv[2] == 'half')\n"
        "print(rss() - before)\n"
    )
    grown = {kind: int(subprocess.run([sys.executable, "-c", script, str(tmp_path / "g.bin"), kind], check=True,
                                      capture_output=True, text=True).stdout) for kind in ("half", "full")}
    prefixes = n * dim * 4
    assert grown["full"] - grown["half"] >= 0.4 * prefixes, (grown, prefixes)
    estimate = {kind: AnnIndex.load(tmp_path / "g.bin", dim=dim, size=size, crc32=crc, half=kind == "half").ram_bytes(8)
                for kind in ("half", "full")}
    for kind in ("half", "full"):  # the estimate counts write locks a loaded graph takes at its first write
        assert 0.75 * estimate[kind] <= grown[kind] <= 1.25 * estimate[kind], (kind, grown, estimate)


def test_the_stats_estimate_the_coarse_index_ram_in_its_precision(tmp_path, rng):
    """``stats()["estimated_ram_bytes"]`` (``mrl-retrievers info``) counts 2 bytes a prefix component
    where the graph holds float16, 4 where it holds float32."""
    store, _ = make_store(tmp_path / "s", rng, n=2000)
    graph = store._s.ann.segments[0]
    width = 2 if graph.half else 4
    assert graph.half == ann._HALF
    assert store.stats()["estimated_ram_bytes"] == 2000 * (width * 16 + 8 * store._s.manifest.M + 110)
    store.close()


def test_searches_at_different_breadths_run_side_by_side(rng):
    """The package's breadth is one setting of the index (searches at another ef wait: ``_EfGate``);
    the graph takes it per call: threads at 16 and at 400 each get their own breadth's answers."""
    data = unit_rows(rng, 4000)
    index = AnnIndex.empty(DIM, M=8, ef_construction=64, capacity=len(data))
    index.add(data, np.arange(len(data)))
    queries = unit_rows(rng, 200)
    want = {ef: index.query(queries, 10, ef)[0] for ef in (16, 400)}
    assert not (want[16] == want[400]).all()  # the breadths differ in what they find
    got, failures = {16: [], 400: []}, []

    def search(ef: int) -> None:
        try:
            for _ in range(3):  # long enough for the two threads' searches to interleave
                got[ef].append(np.vstack([index.query(q[None, :], 10, ef)[0] for q in queries]))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=search, args=(ef,)) for ef in (16, 400)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    for ef in (16, 400):
        assert len(got[ef]) == 3 and all((rows == want[ef]).all() for rows in got[ef])


def make_store(path, rng, *, n=5000, dim=64, dtype="float16", delete=0):
    data = rng.standard_normal((n, dim)).astype(np.float32) * (1 + np.arange(dim)) ** -0.5
    store = MRLStore.create(path, full_dim=dim, prefix_dim=16, dtype=dtype, exact_below=100)
    store.add([f"d{i}" for i in range(n)], data)
    if delete:
        store.delete([f"d{i}" for i in range(0, n, n // delete)])
    return store, data


def stepwise(monkeypatch) -> None:
    monkeypatch.setattr(coarse.CoarseIndex, "search_best_of", lambda self, *a, **kw: None)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_fused_search_answers_as_the_stepwise_one(tmp_path, rng, monkeypatch, dtype):
    store, data = make_store(tmp_path / "s", rng, dtype=dtype, delete=200)
    queries = data[rng.choice(len(data), 40, replace=False)] + 0.3 * rng.standard_normal((40, data.shape[1])).astype(np.float32)
    efforts = [{"shortlist": 50, "ef": 50}, {"shortlist": 10, "ef": 10, "k": 10}, {"shortlist": 300, "ef": 100, "k": 25}]
    calls = {"fused": 0}
    real = coarse.CoarseIndex.search_best_of

    def counting(self, *a, **kw):
        calls["fused"] += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(coarse.CoarseIndex, "search_best_of", counting)
    for q in queries[:5]:
        store.search(q, shortlist=50, ef=50)  # warm: every candidate checked, the cache probed warm
    fused = [[(h.id, h.score) for h in store.search(q, **{"k": 10, **e})] for q in queries for e in efforts]
    assert calls["fused"] >= len(fused) * 0.9, calls  # (every 32nd read of the map probes the cache first)
    stepwise(monkeypatch)
    steps = [[(h.id, h.score) for h in store.search(q, **{"k": 10, **e})] for q in queries for e in efforts]
    assert fused == steps  # same rows, same order, same float32 scores
    store.close()


def test_a_warm_search_is_one_graph_call(tmp_path, rng, monkeypatch):
    """The fixed-effort search's coarse walk and rerank are one call into the graph: no `knn` (the
    stepwise path's hnswlib query) and no kernel rerank from Python once the cache is warm and the
    candidates checked (but every 32nd read of the map, which probes the page cache first)."""
    store, data = make_store(tmp_path / "s", rng)
    queries = data[50:90]
    for q in queries:  # every candidate checked once
        store.search(q, shortlist=40, ef=40)
    seen = []
    real_query, real_best_of = AnnIndex.query, kernel.best_of
    monkeypatch.setattr(AnnIndex, "query", lambda self, *a, **kw: seen.append("knn") or real_query(self, *a, **kw))
    monkeypatch.setattr(kernel, "best_of", lambda *a, **kw: seen.append("rerank") or real_best_of(*a, **kw))
    hits = [store.search(q, shortlist=40, ef=40)[0].id for q in queries]
    assert hits == [f"d{i}" for i in range(50, 90)]
    assert seen.count("knn") <= 2 and seen.count("rerank") <= 2, seen
    store.close()


def test_a_row_never_checked_cannot_rank_through_the_fused_call(tmp_path, rng):
    """A damaged row that this handle has not checked yet, found by a warm fused search, raises
    (the call hands the shortlist back unranked; the stepwise rerank checks it first)."""
    path = tmp_path / "s"
    store, data = make_store(path, rng, dtype="float32")
    store.close()
    with MRLStore.open(path, read_only=True) as s:
        for q in data[:300]:  # warm: the cache probed warm, rows of these 300 neighbourhoods checked
            s.search(q, k=5, shortlist=20, ef=20)
        unchecked = [r for r in range(len(data)) if not (r < len(s._s.checked.bitmap) and s._s.checked.bitmap[r])]
        victim = unchecked[len(unchecked) // 2]
        vector_file = next(path.glob("vectors.*"))
        with open(vector_file, "r+b") as fh:  # the map is shared: the handle sees the flipped bit
            fh.seek(victim * 64 * 4 + 8)
            byte = fh.read(1)
            fh.seek(victim * 64 * 4 + 8)
            fh.write(bytes([byte[0] ^ 0x10]))
        with pytest.raises(CorruptStoreError, match=f"row {victim}"):
            s.search(data[victim], k=5, shortlist=20, ef=20)


def test_the_package_serves_where_the_graph_is_not_built(tmp_path, monkeypatch):
    """The hnswlib package (as on a machine without a C++ compiler, or with
    ``MRL_RETRIEVERS_GRAPH=hnswlib``): it opens the compiled graph's checkpoint and answers alike
    (file identity: the first test)."""
    store, data = make_store(tmp_path / "compiled", np.random.default_rng(5), n=3000)
    queries = data[:30] + 0.2 * np.random.default_rng(6).standard_normal((30, data.shape[1])).astype(np.float32)
    want = [[(h.id, h.score) for h in store.search(q, shortlist=30, ef=30)] for q in queries]
    store.close()
    monkeypatch.setattr(ann, "_graph", None)  # restored after the test (later tests use the compiled graph)
    monkeypatch.setattr(ann, "_WHY_NOT", "the hnswlib package (this test)")
    with MRLStore.open(tmp_path / "compiled") as s:
        assert not s._s.ann.segments[0].fused and s.stats()["coarse_index"].startswith("the hnswlib package")
        assert [[(h.id, h.score) for h in s.search(q, shortlist=30, ef=30)] for q in queries] == want


def test_the_numpy_twin_asked_for_turns_the_fused_call_off(tmp_path, rng, monkeypatch):
    """``kernel.use_numpy()`` (the bench's ``ours-numpy`` ablation, ``MRL_RETRIEVERS_KERNEL=numpy``)
    means no compiled scoring anywhere: the fused call scores with the same compiled code as the
    kernel, so it steps aside and numpy reranks what the graph found."""
    store, data = make_store(tmp_path / "s", rng)
    for q in data[:40]:
        store.search(q, shortlist=40, ef=40)
    monkeypatch.setattr(kernel, "_compiled", None)
    fused = []
    real = coarse.CoarseIndex.search_best_of
    monkeypatch.setattr(coarse.CoarseIndex, "search_best_of", lambda self, *a, **kw: fused.append(1) or real(self, *a, **kw))
    assert [store.search(q, shortlist=40, ef=40)[0].id for q in data[:40]] == [f"d{i}" for i in range(40)]
    assert not fused
    store.close()


# --- the adaptive climb's first level in one call ----------------------------------------------------
#
# Observed on main (2026-12-06, 100k x 1024, the bench store): the store's default search (adaptive,
# target 0.99) cost 0.153 ms a query against 0.118 ms for a fixed search at its first level's effort,
# though 99.4% of the queries stopped there: the climb ran its first level step by step in Python
# (hnswlib query, checksum look-up, scoring, ~10 numpy calls to judge the shortlist) where the fixed
# search is one graph call. Now the first level is one call too (``search_scored``).


def test_search_scored_gives_the_numbers_of_knn_then_the_kernels_scores(rng):
    """Rows and prefix similarities as ``query`` gives them, full scores as ``kernel.scores_of`` does,
    bit for bit, in prefix order; None where the stepwise path must answer (a row never checked,
    fewer live items than the shortlist)."""
    full = unit_rows(rng, 2000, 96)
    prefixes = full[:, :DIM] / np.linalg.norm(full[:, :DIM], axis=1, keepdims=True)
    index = AnnIndex.empty(DIM, M=16, ef_construction=100, capacity=len(full))
    index.add(prefixes, np.arange(len(full)))
    for dtype in (np.float16, np.float32):
        matrix = full.astype(dtype)
        checked = np.ones(len(full), dtype=np.uint8)
        for q in unit_rows(rng, 20, 96):
            prefix = kernel.unit_prefix(q, DIM)
            for shortlist, ef in ((16, 32), (40, 40), (100, 300)):
                rows, sims, scores = index.search_scored(prefix, shortlist, ef, matrix, checked, q)
                want_rows, want_sims = index.query(prefix[None, :], shortlist, ef)
                assert (rows == want_rows[0]).all() and (sims == want_sims[0]).all()
                assert (scores == kernel.scores_of(matrix, rows, q)).all()
        checked[rows[3]] = 0
        assert index.search_scored(prefix, 100, 300, matrix, checked, q) is None
        assert index.search_scored(prefix, len(full) + 1, 300, matrix, np.ones(len(full), np.uint8), q) is None


def _two_level_store(path, rng, dtype):
    """A store whose policy climbs from (16, 32) to (48, 96) for about half of ``queries``: its
    threshold is the median of their first-level confidence."""
    store, data = make_store(path, rng, dtype=dtype)
    queries = data[rng.choice(len(data), 40, replace=False)] + 0.4 * rng.standard_normal((40, data.shape[1])).astype(np.float32)
    for q in queries:  # warm: the cache probed, the shortlists' rows checked
        store.search(q, shortlist=48, ef=96)
    judged = []
    real = kernel.confidence_parts

    def policy(threshold: float) -> None:
        level = Measured(EffortPolicy(((16, 32), (48, 96)), threshold), 1.0, 1.0, 1.0, 1.0, (1, 1))
        with store._rw.write():
            store._s.set_manifest(replace(store._s.manifest, target_recall=0.99,
                                          calibration=Calibration(0.99, 10, len(data), 16, 1, 0, 0.95, "test", 0.0, {0.99: level})))

    policy(float("1e9"))  # never sure: every query is judged at its first level, then climbs
    kernel.confidence_parts = lambda sims, scores, k: judged.append(real(sims, scores, k)) or judged[-1]
    try:
        for q in queries:
            store.search(q)
    finally:
        kernel.confidence_parts = real
    first = [z for z, _kth in judged[::2]]
    policy(float(np.median(first)))
    return store, queries


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_the_climbs_first_level_is_one_graph_call_and_answers_as_the_stepwise_climb(tmp_path, rng, monkeypatch, dtype):
    store, queries = _two_level_store(tmp_path / "s", rng, dtype)
    calls, stops = [], []
    real_scored, real_query, real_climb = coarse.CoarseIndex.search_scored, AnnIndex.query, effort.climb
    monkeypatch.setattr(coarse.CoarseIndex, "search_scored", lambda self, *a, **kw: calls.append("scored") or real_scored(self, *a, **kw))
    monkeypatch.setattr(AnnIndex, "query", lambda self, *a, **kw: calls.append("knn") or real_query(self, *a, **kw))
    monkeypatch.setattr(effort, "climb", lambda *a, **kw: (lambda found: stops.append(found[2]) or found)(real_climb(*a, **kw)))
    fused = [[(h.id, h.score) for h in store.search(q)] for q in queries]
    fused_stops, climbed = stops[:], stops.count(1)
    assert calls.count("scored") >= len(queries) - 2, calls  # (every 32nd read of the map probes the cache first)
    assert 0.2 * len(queries) <= climbed <= 0.8 * len(queries), stops
    assert calls.count("knn") <= climbed + 2, calls  # only the second level, and a first level at a cache probe
    monkeypatch.setattr(coarse.CoarseIndex, "search_scored", lambda self, *a, **kw: None)
    stops.clear()
    steps = [[(h.id, h.score) for h in store.search(q)] for q in queries]
    assert stops == fused_stops  # the same queries climbed
    assert fused == steps  # same rows, same order, same float32 scores
    store.close()


def test_the_climbs_answer_ranks_ties_by_row_as_the_fixed_search_does(rng):
    """``kernel.best_scored`` (the climb's top-k, compiled): score descending, then row ascending,
    ties at the k-th place included (numpy's partition keeps an arbitrary one of them)."""
    for n in (3, 10, 24, 200):
        for trial in range(30):
            rows = rng.choice(100_000, n, replace=False).astype(np.int64)
            scores = rng.random(n).astype(np.float32)
            if trial % 2:
                scores[: n // 2 + 1] = scores[0]  # a tie across the k-th place
            order = np.lexsort((rows, -scores))[:10]
            got_rows, got_scores = kernel.best_scored(rows, scores, 10)
            assert (got_rows == rows[order]).all() and (got_scores == scores[order]).all()
    twice = np.array([7, 3, 7, 9], dtype=np.int64)  # a row listed twice counts once, as in best_of
    got_rows, got_scores = kernel.best_scored(twice, np.array([0.9, 0.5, 0.9, 0.1], dtype=np.float32), 3)
    assert got_rows.tolist() == [7, 3, 9] and got_scores.tolist() == [np.float32(0.9), np.float32(0.5), np.float32(0.1)]


def test_the_calibration_and_the_search_judge_a_shortlist_with_the_same_arithmetic(tmp_path, rng, monkeypatch):
    """A threshold the calibration recorded is compared with values of the arithmetic it was
    measured with: both call ``kernel.confidence_parts`` (compiled here; numpy's sums differ in the
    last bits), which agrees with ``effort.confidence_parts`` to 1e-9 and on the k-th score exactly."""
    for n in (11, 24, 25, 50, 200, 513, 1200):
        for trial in range(20):
            sims = np.sort(rng.random(n).astype(np.float32))[::-1].copy()
            scores = (sims * rng.uniform(0.5, 1.5) + rng.normal(0, 0.05, n)).astype(np.float32)
            if trial % 3 == 0:
                scores[: n // 2] = scores[n // 2]  # ties at the k-th place
            z, kth = kernel.confidence_parts(sims, scores, 10)
            want_z, want_kth = effort.confidence_parts(sims, scores, 10)
            assert kth == want_kth and abs(z - want_z) <= 1e-9 * max(1.0, abs(want_z))
    assert kernel.confidence_parts(sims.astype(np.float64), scores, 10) == effort.confidence_parts(sims.astype(np.float64), scores, 10)
    assert kernel.confidence_parts(sims[:10], scores[:10], 10) == (float("inf"), float("inf"))

    store, data = make_store(tmp_path / "s", rng)
    judged = []
    real = kernel.confidence_parts
    monkeypatch.setattr(kernel, "confidence_parts", lambda *a: judged.append(1) or real(*a))
    store.calibrate(probes=48, seed=1)
    assert judged
    judged.clear()
    for q in data[:20]:
        store.search(q)
    assert len(judged) >= 20
    store.close()


@half_only
def test_the_float16_loader_refuses_a_cut_or_foreign_file(tmp_path, rng):
    """The float16 graph reads hnswlib's file with its own loader (narrowing as it reads): a file cut
    short, or written for another width, is refused with an error, never half-loaded. (The store
    checks size, CRC and header before loading: this is the loader's own guard.)"""
    data = unit_rows(rng, 500)
    package_index(data).save_index(str(tmp_path / "g.bin"))
    whole = (tmp_path / "g.bin").read_bytes()
    for cut in (len(whole) - 3, len(whole) // 2, 200):
        (tmp_path / "cut.bin").write_bytes(whole[:cut])
        with pytest.raises(RuntimeError, match="corrupted"):
            ann._graph.Graph(DIM, half=True).load(str(tmp_path / "cut.bin"), 0)
    with pytest.raises(RuntimeError, match="corrupted"):
        ann._graph.Graph(DIM * 2, half=True).load(str(tmp_path / "g.bin"), 0)
    (tmp_path / "long.bin").write_bytes(whole + b"\0" * 8)
    with pytest.raises(RuntimeError, match="corrupted"):
        ann._graph.Graph(DIM, half=True).load(str(tmp_path / "long.bin"), 0)
    graph = ann._graph.Graph(DIM, half=True)
    graph.load(str(tmp_path / "g.bin"), 0)
    assert graph.count() == 500
