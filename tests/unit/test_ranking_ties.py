"""One ranking rule everywhere: score descending, then the lower row. Ties are not rare in a store:
a text stored twice is a vector stored twice, with the same score for every query. Before this
file, three rankings chose among tied rows at the top-k cut in their own ways (a partition keeps an
arbitrary few of the tied): the compiled kernel and its numpy twin returned different copies of a
duplicate (35 of 50 draws below), and the exact search alone and in a batch (the calibration's and
``tune``'s truth) did too, so a search could be scored a miss for returning another copy."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers.store.local import kernel
from mrl_retrievers.store.local.search import fold_top_k


def reference(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def tied_scores(rng, n: int, columns: int) -> np.ndarray:
    """Scores on a coarse grid: most of them tie with others, the k-th one included."""
    scores = np.round(rng.standard_normal((n, columns)) * 3).astype(np.float32)
    scores[rng.random((n, columns)) < 0.05] = -np.inf  # a query's own row is scored -inf
    return scores


def test_top_k_keeps_the_lower_rows_of_a_tie_at_the_cut(rng):
    for _ in range(200):
        n, k = int(rng.integers(1, 300)), int(rng.integers(1, 40))
        rows = rng.permutation(10 * n)[:n].astype(np.int64)  # any order
        scores = tied_scores(rng, n, 1)[:, 0]
        got, want = kernel.top_k(rows, scores, k), reference(rows, scores, k)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


@pytest.mark.parametrize("path", ["compiled", "numpy twin"])
def test_the_rerank_returns_the_lower_rows_of_a_stored_duplicate(rng, monkeypatch, path):
    """``best_of`` (the rerank) over a matrix holding each of 5 vectors 30 times: the copies tie
    exactly; both paths return the lowest rows among them."""
    if path == "compiled" and not kernel.compiled():
        pytest.skip("the compiled kernel is not in use here")
    if path == "numpy twin":
        monkeypatch.setattr(kernel, "_compiled", None)
    base = rng.standard_normal((5, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    matrix = np.repeat(base, 30, axis=0)[rng.permutation(150)].astype(np.float16)
    for _ in range(50):
        rows = rng.choice(150, 100, replace=False).astype(np.int64)
        got_rows, got_scores = kernel.best_of(matrix, rows, base[0], 7)
        copies = np.sort(rows[np.all(matrix[rows] == matrix[got_rows[0]], axis=1)])
        assert np.array_equal(got_rows, copies[:7]), "the lowest rows among the tied copies"
        assert len(set(got_scores.tolist())) == 1


@pytest.mark.parametrize("block", [1, 7, 64, 1000])
def test_folding_blocks_gives_the_top_k_of_all_of_them(rng, block):
    """``fold_top_k`` (exact scans of many queries, block by block, rows ascending) against the
    ranking of every score at once: the same rows and scores, ties to the lower row, for block
    sizes below, around and above k, and k above the row count."""
    for _ in range(60):
        n, nq, k = int(rng.integers(1, 300)), int(rng.integers(1, 6)), int(rng.integers(1, 40))
        rows = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int64)
        scores = tied_scores(rng, n, nq)
        best = (np.full((nq, 0), -1, np.int64), np.full((nq, 0), -np.inf, np.float32))
        for start in range(0, n, block):
            best = fold_top_k(best, rows[start : start + block], scores[start : start + block], k)
        for q in range(nq):
            want_rows, want_scores = reference(rows, scores[:, q], k)
            assert np.array_equal(best[0][q], want_rows) and np.array_equal(best[1][q], want_scores)
