"""Every search path gives the same answers on the compiled scoring kernel and on its numpy twin
(``store/local/kernel.py``): the same ids in the same order, scores equal to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.errors import CorruptStoreError
from mrl_retrievers.store.local import kernel

pytestmark = pytest.mark.skipif(not kernel.compiled(), reason="the compiled kernel is not in use here")

N, DIM, PREFIX = 6000, 96, 16


def answers(s: MRLStore, queries: np.ndarray) -> list[list[tuple[str, float]]]:
    out = []
    for q in queries:
        for kwargs in ({}, {"shortlist": 50, "ef": 50}, {"shortlist": 300, "ef": 600}, {"k": 1}, {"k": 40},
                       {"target_recall": 0.9}, {"filter": {"parity": "odd"}}, {"filter": {"bucket": 3}}):
            out.append([(h.id, h.score) for h in s.search(q, **{"k": 10, **kwargs})])
        out.append([(h.id, h.score) for h in s.search_exact(q, k=10)])
    for hits in s.search_batch(queries, k=10, shortlist=60, ef=60):
        out.append([(h.id, h.score) for h in hits])
    return out


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("funnel", [None, 48])
def test_every_search_path_answers_alike_on_both(tmp_path, rng, monkeypatch, dtype, funnel):
    data = rng.standard_normal((N, DIM)).astype(np.float32) * (1 + np.arange(DIM)) ** -0.5
    queries = data[rng.choice(N, 25, replace=False)] + 0.3 * rng.standard_normal((25, DIM)).astype(np.float32) * (1 + np.arange(DIM)) ** -0.5
    meta = [{"parity": "odd" if i % 2 else "even", "bucket": i % 40} for i in range(N)]
    with MRLStore.create(tmp_path / "s", full_dim=DIM, prefix_dim=PREFIX, dtype=dtype, exact_below=200, funnel_dim=funnel) as s:
        s.add([f"d{i}" for i in range(N)], data, metadatas=meta)
        s.calibrate(probes=64, seed=1)
        compiled = answers(s, queries)
        monkeypatch.setattr(kernel, "_compiled", None)
        s._s.checked.reset()  # the twin checks every row again, as a fresh handle would
        twin = answers(s, queries)
    assert len(compiled) == len(twin)
    for got, want in zip(compiled, twin):
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([sc for _, sc in got], [sc for _, sc in want], rtol=0, atol=2e-6)


def test_a_damaged_row_is_caught_before_the_kernel_scores_it(tmp_path, rng):
    data = rng.standard_normal((3000, 64)).astype(np.float32)
    path = tmp_path / "s"
    with MRLStore.create(path, full_dim=64, prefix_dim=16, exact_below=100) as s:
        s.add([str(i) for i in range(3000)], data)
    vector_file = next(path.glob("vectors.*"))
    raw = bytearray(vector_file.read_bytes())
    raw[7 * 64 * 2 + 10] ^= 0x40  # one bit of row 7 (float16 rows of 64 numbers)
    vector_file.write_bytes(bytes(raw))
    with MRLStore.open(path, read_only=True) as s, pytest.raises(CorruptStoreError, match="row 7"):
        s.search(data[7], k=5, shortlist=50, ef=50)


TRICKY = ["plain", "", None, "nul \x00 inside", "quotes \" and \\ backslash", "emoji \U0001F600 and \u2028 separator",
          "ctrl \x01\x1f\t\n\r", "é" * 5000]


def test_hit_records_are_the_rows_own_columns_exactly(tmp_path, rng):
    """The search reads its hits' records as one JSON array (one SQLite step): every text, id and
    metadata must come back exactly as ``by_rows`` reads the columns."""
    n = len(TRICKY)
    data = rng.standard_normal((n, 16)).astype(np.float32)
    # (metadata strings may not hold NUL: the store refuses them, since older SQLite JSON truncates at it;
    # texts may, and older SQLite would truncate them in the JSON copy: the checksum then re-reads the row)
    metas = [{"k": t.replace("\x00", ""), "n": [1, 2.5, None], "big": 2**53 + 1} if t is not None else {} for t in TRICKY]
    with MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=4) as s:
        s.add([f"id-{i}-\u00e9\U0001F600" for i in range(n)], data, texts=TRICKY, metadatas=metas)
        docs = s._s.docs
        rows = list(range(n))
        assert docs.hit_records(rows) == docs.by_rows(rows)
        for i in range(n):
            hit = s.search(data[i], k=1, target_recall=1.0)[0]
            assert (hit.id, hit.text, hit.metadata) == (f"id-{i}-\u00e9\U0001F600", TRICKY[i], metas[i])


def test_a_record_whose_json_copy_disagrees_is_read_again_not_called_damaged(tmp_path, rng, monkeypatch):
    data = rng.standard_normal((3, 16)).astype(np.float32)
    with MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=4) as s:
        s.add(["a", "b", "c"], data, texts=["alpha", "beta", "gamma"])
        docs = type(s._s.docs)
        real = docs.hit_records
        monkeypatch.setattr(docs, "hit_records", lambda self, rows: {r: (i, (t or "") + "!", m, c, rc) for r, (i, t, m, c, rc) in real(self, rows).items()})
        assert [h.text for h in s.search(data[1], k=3, target_recall=1.0)][0] == "beta"


def test_each_hit_is_checksummed_once(tmp_path, rng, monkeypatch):
    """A hit's record is checked once; only a record failing it is read again and checked again
    (the check ran twice for every hit until 2026-12-05: ~5 us of each 100k search)."""
    from mrl_retrievers.store.local import docstore, records

    data = rng.standard_normal((40, 16)).astype(np.float32)
    with MRLStore.create(tmp_path / "s", full_dim=16, prefix_dim=4) as s:
        s.add([f"d{i}" for i in range(40)], data, texts=[f"text {i}" for i in range(40)])
        calls = []
        monkeypatch.setattr(records, "damaged_record", lambda *a: calls.append(a) or docstore.damaged_record(*a))
        hits = s.search(data[3], k=5, target_recall=1.0)
        assert [h.id for h in hits][0] == "d3"
        assert len(calls) == 5
