"""``python -m mrl_retrievers.bench.default_search``: the default search's recall against a dataset's
stored truth, and its latency, on a read-only handle unless asked."""

from __future__ import annotations

import json

import numpy as np

from mrl_retrievers import MRLStore
from mrl_retrievers.bench import default_search


def test_it_reports_the_default_searchs_recall_against_the_stored_truth(tmp_path, rng, capsys):
    data = rng.standard_normal((3000, 64)).astype(np.float32) * (1 + np.arange(64)) ** -0.5
    queries = data[:40] + 0.2 * rng.standard_normal((40, 64)).astype(np.float32) * (1 + np.arange(64)) ** -0.5
    with MRLStore.create(tmp_path / "s", full_dim=64, prefix_dim=16, exact_below=100) as store:
        store.add([str(i) for i in range(len(data))], data)
        truth = np.array([[int(h.id) for h in store.search_exact(q, k=10)] for q in queries])
    np.save(tmp_path / "queries-1000.npy", queries)
    wrong = truth.copy()
    wrong[:20] = -1  # half the queries' truth names no stored item: recall 0.5 at best
    np.save(tmp_path / "truth-1000-k10.npy", wrong)
    assert default_search.main([str(tmp_path / "s"), str(tmp_path), "--passes", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["handle"] == "read-only" and out["prefix"] == 16
    assert 0.45 <= out["recall"] <= 0.5 and out["p50_ms"] > 0
    np.save(tmp_path / "truth-1000-k10.npy", truth)
    assert default_search.main([str(tmp_path / "s"), str(tmp_path), "--writer", "--passes", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["handle"] == "writer" and out["recall"] >= 0.95
