"""The bench's issue-16 speed rows compare ours at a recall at least the peer's (no flattering)."""

from mrl_retrievers.bench.report import targets_16


def result(method, points, headline=None):
    points = [{"setting": {"s": i}, "recall": r, "p50_ms": ms} for i, (r, ms) in enumerate(points)]
    out = {"method": method, "status": "ok", "points": points, "memory": {"index_mb": 100.0}}
    if headline is not None:
        out["headline"] = {**points[headline], "qps_threads": {}}
    return out


def speed_rows(ours, *peers):
    report = {"dataset": {"n": 100_000}, "results": [ours, *peers]}
    return {t["target"]: t for t in targets_16(report) if "speed" in t["target"]}


def test_ours_is_matched_at_the_peers_recall_not_at_its_own_lower_headline():
    """Observed (2026-12-05, 100k): "[16] speed vs faiss-hnsw at equal or better recall: 1.108, met"
    with ours at 0.9886 against faiss-hnsw at 0.9956; at >= 0.9956 ours was slower (0.88x)."""
    ours = result("ours", [(0.9886, 0.20), (0.9953, 0.24), (0.9990, 0.40)], headline=0)
    peer = result("faiss-hnsw", [(0.9956, 0.22), (0.9990, 0.30)])
    row = speed_rows(ours, peer)["[16] speed vs faiss-hnsw at equal or better recall"]
    assert row["measured"] == 0.22 / 0.40 and row["met"] is False
    assert "0.9990" in row["detail"]


def test_a_peer_below_the_goal_recall_is_matched_at_its_best():
    ours = result("ours", [(0.9950, 0.20), (0.9990, 0.40)], headline=0)
    peer = result("hnswlib", [(0.97, 0.10), (0.98, 0.15)])
    row = speed_rows(ours, peer)["[16] speed vs hnswlib at equal or better recall"]
    assert row["measured"] == 0.15 / 0.20 and row["met"] is False


def test_ours_faster_at_a_higher_recall_is_met():
    ours = result("ours", [(0.9920, 0.10), (0.9960, 0.15)], headline=0)
    peer = result("faiss-refine", [(0.9910, 0.12), (0.9950, 0.20)])
    row = speed_rows(ours, peer)["[16] speed vs faiss-refine at equal or better recall"]
    # the peer's cheapest point at >= 0.99 (0.9910) against ours' cheapest at >= 0.9910 (0.9920)
    assert row["measured"] == 0.12 / 0.10 and row["met"] is True


def test_ours_never_reaching_the_peers_recall_is_not_met():
    ours = result("ours", [(0.9900, 0.10)], headline=0)
    peer = result("hnswlib", [(0.9950, 0.30)])
    row = speed_rows(ours, peer)["[16] speed vs hnswlib at equal or better recall"]
    assert row["met"] is False and "never reaches" in row["detail"]
