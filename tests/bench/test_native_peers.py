"""A small smoke of the compiled peers (DiskANN, usearch, Qdrant's engine in-process, LanceDB).

Each runs in its own subprocess like every other method, on 2,000 vectors with cheap graphs: the
point is that the adapters build, cache, sweep and report (QPS at 1/2/4 threads, RAM, disk) with
sane recall, and that a missing package is reported as a skip with the reason. Timings are never
asserted (the machine is shared).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from mrl_retrievers.bench.cli import main
from mrl_retrievers.bench.peers import PEERS
from mrl_retrievers.bench.peers_native import PEERS_NATIVE
from mrl_retrievers.bench.report import markdown_table, targets

NATIVE = [cls.name for cls in PEERS_NATIVE]
# Nine builds (three DiskANN graphs, LanceDB's IVF-PQ training) take ~4-5 minutes on 2 shared cores.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def native_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("native")
    out = tmp / "out"
    argv = ["bench", "--n", "2000", "--queries", "20", "--cache", str(tmp / "cache"), "--out", str(out),
            "--budget-s", "1", "--qps-seconds", "0.1", "--cold-queries", "5", "--timeout", "900", "--no-frameworks",
            "--ef-construction", "48", "--no-tune", "--methods", ",".join(["ours", *NATIVE])]
    assert main(argv) == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_native_peer_is_registered_and_in_the_default_run():
    from mrl_retrievers.bench.peers import DEFAULT_METHODS

    assert set(NATIVE) <= set(PEERS) and set(NATIVE) <= set(DEFAULT_METHODS)


@pytest.mark.slow
def test_native_peers_run_with_sane_recall(native_run):
    _, report = native_run
    by = {r["method"]: r for r in report["results"]}
    assert list(by) == ["ours", *NATIVE]
    for method in NATIVE:
        result = by[method]
        module = PEERS[method].requires[0]
        if importlib.util.find_spec(module) is None:
            assert result["status"] == "skipped" and "pip install" in result["reason"]
            continue
        assert result["status"] == "ok", result
        assert max(p["recall"] for p in result["points"]) >= 0.9, (method, result["points"])
        head = result["headline"]
        assert set(head["qps_threads"]) == {"1", "2", "4"} and all(v > 0 for v in head["qps_threads"].values())
        assert result["disk_mb"] > 0 and "mapped_mb" in result["memory"]
    # ours also reports QPS through its async API (MRLIndex.aquery), and nobody else claims one
    assert set(by["ours"]["headline"]["qps_async"]) == {"1", "2", "4"}
    assert all("qps_async" not in by[m].get("headline", {}) for m in NATIVE)


@pytest.mark.slow
def test_report_has_the_issue_16_rows(native_run):
    _, report = native_run
    names = [t["target"] for t in targets(report)]
    ok = {r["method"] for r in report["results"] if r["status"] == "ok"}
    for method in ok - {"ours"}:
        assert f"[16] speed vs {method} at equal or better recall" in names
    if ok & {"diskann-mem", "diskann-disk", "diskann-disk-lean"}:
        assert "[16] DiskANN at matched RAM: its latency / ours" in names
    assert any(n.startswith("[16] QPS 2 threads / 1 thread") for n in names)
    assert "ours (async aquery)" in markdown_table(report)
