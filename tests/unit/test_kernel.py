"""The compiled scoring kernel (store/local/_kernel.c) against its numpy twin: the same winners, the
same scores to float32 rounding, the same bits on every CPU path; rows outside the map refused; the
GIL released while it scores; the install builds it, and the package still works where it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mrl_retrievers.store.local import kernel

ROOT = Path(__file__).resolve().parents[2]
compiled_only = pytest.mark.skipif(not kernel.compiled(), reason="the compiled kernel is not in use here")


def twin(monkeypatch) -> None:
    monkeypatch.setattr(kernel, "_compiled", None)


def unit_rows(rng, n: int, dim: int, dtype) -> np.ndarray:
    rows = rng.standard_normal((n, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(dtype)


@pytest.mark.skipif(os.environ.get("MRL_RETRIEVERS_KERNEL", "").lower() == "numpy", reason="numpy asked for")
def test_the_install_built_the_compiled_kernel():
    # The README's install compiles it (hatch_build.py); a silent fallback would halve thread scaling.
    assert kernel.compiled(), "the compiled scoring kernel is missing: reinstall with a C compiler (see README)"


@compiled_only
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("dim", [7, 16, 100, 1024])
@pytest.mark.parametrize(("n", "k"), [(1, 10), (5, 5), (50, 10), (3000, 100), (3000, 1)])
def test_best_of_agrees_with_the_numpy_twin(rng, monkeypatch, dtype, dim, n, k):
    matrix = unit_rows(rng, 4000, dim, dtype)
    rows = rng.choice(4000, n, replace=False).astype(np.int64)
    query = unit_rows(rng, 1, dim, np.float32)[0]
    got_rows, got_scores = kernel.best_of(matrix, rows, query, k)
    exact = matrix[rows].astype(np.float64) @ query.astype(np.float64)  # every candidate, in float64
    ranked = np.sort(exact)[::-1]
    assert len(got_rows) == min(k, n) and len(set(got_rows.tolist())) == len(got_rows)
    np.testing.assert_allclose(got_scores, matrix[got_rows].astype(np.float64) @ query, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got_scores, ranked[: len(got_rows)], rtol=0, atol=2e-6)  # the true k best
    assert list(got_scores) == sorted(got_scores, reverse=True)
    twin(monkeypatch)
    want_rows, want_scores = kernel.best_of(matrix, rows, query, k)
    np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=2e-6)
    # The same rows in the same order, unless two of the first k + 1 are within rounding of each other.
    head = ranked[: min(k + 1, n)]
    if len(head) < 2 or np.min(head[:-1] - head[1:]) > 1e-5:
        assert np.array_equal(got_rows, want_rows)


@compiled_only
def test_ties_rank_by_row_and_a_row_listed_twice_counts_once(rng):
    base = unit_rows(rng, 1, 64, np.float16)[0]
    matrix = np.tile(base, (10, 1))  # ten equal rows: every score ties
    query = base.astype(np.float32)
    rows, scores = kernel.best_of(matrix, np.array([7, 3, 9, 1, 5], dtype=np.int64), query, 3)
    assert rows.tolist() == [1, 3, 5] and len(set(scores.tolist())) == 1
    rows, _ = kernel.best_of(matrix, np.array([4, 4, 2, 2, 8], dtype=np.int64), query, 3)
    assert rows.tolist() == [2, 4, 8]


@compiled_only
def test_every_finite_float16_is_scored_exactly_on_both_cpu_paths():
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves)]
    matrix = np.zeros((len(halves), 16), dtype=np.float16)
    matrix[:, 3] = halves
    query = np.zeros(16, dtype=np.float32)
    query[3] = 1.0
    rows = np.arange(len(halves), dtype=np.int64)
    detected = kernel._compiled.uses_f16c()
    try:
        results = []
        for allow in (True, False):
            kernel._compiled.uses_f16c(allow)
            results.append(kernel.scores_of(matrix, rows, query))
        for got in results:
            assert np.array_equal(got, halves.astype(np.float32))
    finally:
        kernel._compiled.uses_f16c(detected)


@compiled_only
def test_the_cpu_paths_sum_alike_to_the_bit(rng):
    # Determinism across machines: a CPU without F16C runs the portable loop; same sums, same order.
    matrix = (rng.standard_normal((2000, 1000)) * rng.uniform(1e-6, 1, (2000, 1000))).astype(np.float16)
    query = rng.standard_normal(1000).astype(np.float32)
    rows = rng.permutation(2000).astype(np.int64)
    detected = kernel._compiled.uses_f16c()
    try:
        kernel._compiled.uses_f16c(True)
        fast = kernel.scores_of(matrix, rows, query)
        kernel._compiled.uses_f16c(False)
        portable = kernel.scores_of(matrix, rows, query)
    finally:
        kernel._compiled.uses_f16c(detected)
    assert np.array_equal(fast.view(np.int32), portable.view(np.int32))


@pytest.mark.parametrize("path", ["compiled", "twin"])
@pytest.mark.parametrize("bad", [10, 11, -1])
def test_a_row_outside_the_matrix_is_refused(rng, monkeypatch, path, bad):
    if path == "twin":
        twin(monkeypatch)
    elif not kernel.compiled():
        pytest.skip("the compiled kernel is not in use here")
    matrix = unit_rows(rng, 10, 32, np.float16)
    rows = np.array([0, bad, 2], dtype=np.int64)
    query = unit_rows(rng, 1, 32, np.float32)[0]
    if bad == -1 and path == "twin":
        pytest.skip("numpy reads -1 as the last row; the store never passes a negative row")
    with pytest.raises(IndexError):
        kernel.best_of(matrix, rows, query, 2)
    with pytest.raises(IndexError):
        kernel.scores_of(matrix, rows, query)


@compiled_only
def test_wrong_arrays_are_type_errors_not_crashes(rng):
    matrix = unit_rows(rng, 10, 32, np.float16)
    query = unit_rows(rng, 1, 32, np.float32)[0]
    rows = np.arange(3, dtype=np.int64)
    out_rows, out_scores = np.empty(2, np.int64), np.empty(2, np.float32)
    with pytest.raises(TypeError):
        kernel._compiled.top_k(matrix, rows.astype(np.int32), query, out_rows, out_scores)
    with pytest.raises(TypeError):
        kernel._compiled.top_k(matrix, rows, query.astype(np.float64), out_rows, out_scores)
    with pytest.raises(ValueError, match="contiguous"):
        kernel._compiled.top_k(matrix[:, ::2], rows, query[:16], out_rows, out_scores)
    with pytest.raises(ValueError):
        kernel._compiled.top_k(matrix, rows, query[:16], out_rows, out_scores)
    with pytest.raises(ValueError, match="contiguous"):
        kernel._compiled.scores(matrix, rows, query, np.empty(6, np.float32)[::2])
    with pytest.raises(ValueError, match="read-only|writable"):
        kernel._compiled.scores(matrix, rows, query, np.frombuffer(bytes(12), dtype=np.float32))



@compiled_only
def test_the_calibrations_simulation_refuses_arrays_it_would_read_past():
    """``simulate`` indexes the trace by the ladder's levels and writes (probes, thresholds) outputs:
    every shape, ratio, level and ``last`` is checked before it reads or writes a byte."""
    conf, recall = np.zeros((4, 2, 5)), np.ones((4, 2, 5))
    taus = np.array([0.5, 1.0])

    def call(conf=conf, recall=recall, b=0, ladder=np.array([0, 2]), last=1, cumulative=np.zeros(3), out=(4, 2)):
        outs = np.empty(out), np.empty(out), np.empty(out, np.int64)
        return kernel._compiled.simulate(conf, recall, b, ladder, last, cumulative, taus, *outs)

    assert call() == 0
    for bad in ({"b": 2}, {"b": -1}, {"ladder": np.array([0, 5])}, {"ladder": np.array([-1, 2])}, {"last": 3}, {"last": -1},
                {"cumulative": np.zeros(2)}, {"recall": np.ones((4, 2, 4))}, {"out": (3, 2)}, {"out": (4, 3)}):
        with pytest.raises(ValueError):
            call(**bad)
    with pytest.raises(TypeError):
        call(conf=conf.astype(np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        call(recall=np.ones((4, 2, 10))[:, :, ::2])

@compiled_only
def test_scoring_releases_the_gil(rng):
    """A thread that wakes every millisecond gets to run Python while a long scoring call is in C
    (with the GIL held it could not: C code never yields it); counts, not times, are asserted."""
    matrix = unit_rows(rng, 64, 1024, np.float16)
    rows = np.tile(np.arange(64, dtype=np.int64), 40_000)  # 2.56M rows from cache: a long call
    query = unit_rows(rng, 1, 1024, np.float32)[0]
    ticks, stop = [0], threading.Event()

    def ticker():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    thread = threading.Thread(target=ticker)
    thread.start()
    try:
        time.sleep(0.01)
        before = ticks[0]
        started = time.perf_counter()
        kernel.scores_of(matrix, rows, query)
        elapsed = time.perf_counter() - started
        during = ticks[0] - before
    finally:
        stop.set()
        thread.join()
    if elapsed < 0.05:
        pytest.skip(f"the call took {elapsed * 1000:.0f} ms: too short to tell")
    assert during >= 10, f"{during} ticks in a {elapsed * 1000:.0f} ms call: the GIL was held"


def test_the_package_runs_on_the_numpy_twin_when_asked(tmp_path):
    code = (
        "import numpy as np\n"
        "from mrl_retrievers import MRLStore\n"
        "from mrl_retrievers.store.local import kernel\n"
        "assert not kernel.compiled()\n"
        "rng = np.random.default_rng(0)\n"
        "data = rng.standard_normal((3000, 64)).astype(np.float32)\n"
        f"with MRLStore.create({str(tmp_path / 's')!r}, full_dim=64, prefix_dim=16, exact_below=100) as s:\n"
        "    s.add([str(i) for i in range(3000)], data)\n"
        "    hits = s.search(data[7], k=3, shortlist=50, ef=50)\n"
        "    assert hits[0].id == '7', hits\n"
        "print('ok')\n"
    )
    env = {**os.environ, "MRL_RETRIEVERS_KERNEL": "numpy"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_the_build_hook_reports_a_missing_compiler_instead_of_failing(tmp_path, monkeypatch):
    pytest.importorskip("hatchling")  # a dev dependency: the hook runs inside pip's build environment
    sys.path.insert(0, str(ROOT))
    try:
        import hatch_build
    finally:
        sys.path.remove(str(ROOT))
    monkeypatch.setenv("CC", "false")
    problem = hatch_build.compile_extension(ROOT, tmp_path / hatch_build.KERNEL.name)
    assert problem is not None and "false" in problem
    monkeypatch.setenv("CC", "cc")
    out = tmp_path / hatch_build.KERNEL.name
    assert hatch_build.compile_extension(ROOT, out) is None and out.stat().st_size > 0
    # The graph (C++) the same way, with its own compiler variable.
    monkeypatch.setenv("CXX", "false")
    problem = hatch_build.compile_extension(ROOT, tmp_path / hatch_build.GRAPH.name, hatch_build.GRAPH)
    assert problem is not None and "false" in problem


@pytest.mark.parametrize("path", ["compiled", "twin"])
def test_queries_are_normalized_alike_by_every_search_entry_point(rng, monkeypatch, path):
    """``search``/``search_exact`` normalize through ``unit_query``, the batch calls through
    ``unit_queries``: one query must get the same bits from both, and unit length."""
    from mrl_retrievers.mrl import unit_vector

    if path == "twin":
        twin(monkeypatch)
    elif not kernel.compiled():
        pytest.skip("the compiled kernel is not in use here")
    queries = rng.standard_normal((50, 384)).astype(np.float32) * rng.uniform(1e-3, 1e3, (50, 1)).astype(np.float32)
    queries[0] = 1e30  # its squares overflow float32: the checks' float64 path
    batch = kernel.unit_queries(queries, 384)
    for row, unit in zip(queries, batch):
        single = kernel.unit_query(row, 384)
        assert np.array_equal(single.view(np.int32), unit.view(np.int32))
        np.testing.assert_allclose(single, unit_vector(row, 384), rtol=0, atol=1e-7)
        assert abs(float(np.linalg.norm(single.astype(np.float64))) - 1.0) < 1e-6
    as_list = kernel.unit_query(queries[3].astype(np.float64).tolist(), 384)  # any input the checks accept
    assert np.array_equal(as_list, kernel.unit_query(queries[3], 384))


@pytest.mark.parametrize("path", ["compiled", "twin"])
def test_a_bad_query_gets_the_same_typed_error_on_both(monkeypatch, path):
    from mrl_retrievers.errors import DimensionMismatchError, InvalidVectorError

    if path == "twin":
        twin(monkeypatch)
    elif not kernel.compiled():
        pytest.skip("the compiled kernel is not in use here")
    bad = np.ones(8, dtype=np.float32)
    for vector, error in ((np.zeros(8, np.float32), InvalidVectorError), (np.full(8, np.nan, np.float32), InvalidVectorError),
                          (np.full(8, np.inf, np.float32), InvalidVectorError), (np.ones(9, np.float32), DimensionMismatchError),
                          ("text", InvalidVectorError)):
        with pytest.raises(error):
            kernel.unit_query(vector, 8)
    with pytest.raises(InvalidVectorError):
        kernel.unit_queries(np.stack([bad, bad * 0]), 8)


@pytest.mark.parametrize("path", ["compiled", "twin"])
def test_a_querys_prefix_gets_the_same_bits_alone_and_in_a_batch(rng, monkeypatch, path):
    """A search walks the coarse graph with ``unit_prefix``, a batch and a calibration with
    ``unit_prefixes``: the same query must walk with the same bits (the tests that compare batch
    and single searches rely on it), each prefix ``mrl.prefix``'s to float32 rounding."""
    from mrl_retrievers.errors import InvalidInputError
    from mrl_retrievers.mrl import prefix

    if path == "twin":
        twin(monkeypatch)
    elif not kernel.compiled():
        pytest.skip("the compiled kernel is not in use here")
    queries = kernel.unit_queries(rng.standard_normal((40, 96)).astype(np.float32), 96)
    queries[1, :16] = 0.0  # a prefix of zeros: prefix()'s rule (zeros), not a division by zero
    for width in (1, 7, 16, 64, 96):
        batch = kernel.unit_prefixes(queries, width)
        assert batch.shape == (40, width) and batch.dtype == np.float32
        for row, got in zip(queries, batch):
            single = kernel.unit_prefix(row, width)
            assert single.shape == (width,) and np.array_equal(single.view(np.int32), got.view(np.int32))
            np.testing.assert_allclose(single, prefix(row, width), rtol=0, atol=1e-7)
    assert not kernel.unit_prefix(queries[1], 16).any()
    with pytest.raises(InvalidInputError):
        kernel.unit_prefix(queries[0], 97)
