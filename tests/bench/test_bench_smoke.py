"""A 10k smoke of ``mrl-retrievers bench``: every peer that applies at 10k, few queries.

It proves the command runs each method in its own subprocess and produces the table, the JSON and
the PNG with sane recall figures. Timings are printed, never asserted (the machine is shared).
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from mrl_retrievers.bench.cli import main
from mrl_retrievers.bench.peer_base import ADAPTIVE_TARGETS

N = 10_000
EXPECTED = ["ours", "ours-numpy", "ours-ro", "numpy", "hnswlib", "faiss-hnsw", "faiss-refine", "langchain", "llamaindex", "qdrant-local"]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "out"
    argv = [
        "bench", "--n", str(N), "--queries", "30", "--cache", str(tmp / "cache"), "--out", str(out),
        "--budget-s", "2", "--qps-seconds", "0.2", "--cold-queries", "10", "--timeout", "600",
        # cheaper graphs and a smaller tuning sample keep the smoke near a minute on 2 shared cores
        "--ef-construction", "64", "--tune-sample", "40", "--tune-prefix-dims", "64",
        # the compiled engines have their own smoke (test_native_peers.py)
        "--methods", ",".join(EXPECTED),
    ]
    assert main(argv) == 0
    return out, json.loads((out / "results.json").read_text()), tmp / "cache"


def test_outputs_are_written(bench_run, capsys):
    out, report, _cache = bench_run
    assert (out / "table.md").read_text().startswith("| method |")
    png = (out / "recall_latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert [r["method"] for r in report["results"]] == EXPECTED
    assert report["dataset"]["n"] == N and report["machine"]["cpus"] >= 1


def test_every_applicable_peer_ran_with_sane_recall(bench_run):
    _, report, _cache = bench_run
    by = {r["method"]: r for r in report["results"]}
    for method, result in by.items():
        optional = {"faiss-hnsw": "faiss", "faiss-refine": "faiss", "langchain": "langchain_core",
                    "llamaindex": "llama_index.core", "qdrant-local": "qdrant_client"}.get(method)
        if optional and importlib.util.find_spec(optional) is None:
            assert result["status"] == "skipped" and "pip install" in result["reason"]
            continue
        assert result["status"] == "ok", result
        for point in result["points"]:
            assert 0.0 <= point["recall"] <= 1.0 and point["p50_ms"] > 0
        assert result["headline"]["qps_2_threads"] > 0
    # exact methods are exact; the approximate ones are far above chance at their best setting
    assert by["numpy"]["headline"]["recall"] == 1.0
    for method in ("ours", "hnswlib"):
        assert max(p["recall"] for p in by[method]["points"]) >= 0.95
    # ours: tuned defaults recorded, a cold measurement that really read from storage
    ours = by["ours"]
    assert ours["build"]["tune"]["applied"] is True
    # its headline is its default search (the calibrated policy for the store's target); its sweep
    # holds the fixed default tune recorded and its own knob, the target recall
    manifest, swept = ours["extra"]["manifest"], [p["setting"] for p in ours["points"]]
    assert manifest["calibrated"] and ours["headline"]["setting"] == {"target_recall": manifest["target_recall"]}
    assert {"shortlist": manifest["shortlist"], "ef": manifest["ef"]} in swept
    assert all({"target_recall": t} in swept for t in ADAPTIVE_TARGETS)
    assert ours["headline"]["cold_queries"] == 10 and "rerank_cold_p50_ms" in ours["extra"]
    assert ours["memory"]["index_mb"] > 0 and ours["disk_mb"] > 0
    # ours-numpy: the same store, scored by numpy instead of the compiled kernel: the same recall
    twin = {tuple(p["setting"].items()): p["recall"] for p in by["ours-numpy"]["points"]}
    compiled = {tuple(p["setting"].items()): p["recall"] for p in ours["points"]}
    assert twin.keys() == compiled.keys() and all(abs(twin[s] - compiled[s]) <= 0.005 for s in twin), (twin, compiled)
    # ours-ro: the same store through a read-only handle: the same answers, so the same recall
    read_only = {tuple(p["setting"].items()): p["recall"] for p in by["ours-ro"]["points"]}
    assert read_only == compiled


def test_targets_are_reported_as_ratios(bench_run):
    _, report, _cache = bench_run
    names = [t["target"] for t in report["targets"]]
    assert names[0] == "recall@10 at the tuned defaults"
    assert any(name.startswith("speed vs numpy") for name in names)
    assert any(name.startswith("RAM vs hnswlib") for name in names)


def test_skips_are_reported_not_silent(tmp_path):
    # Qdrant local mode is a functional peer only: above its size limit it is skipped, with the reason.
    out = tmp_path / "out"
    argv = ["bench", "--n", "3000", "--queries", "20", "--cache", str(tmp_path / "cache"), "--out", str(out),
            "--methods", "numpy,qdrant-local", "--qdrant-max-n", "2000", "--budget-s", "2", "--qps-seconds", "0.1"]
    assert main(argv) == 0
    report = json.loads((out / "results.json").read_text())
    qdrant = report["results"][1]
    assert qdrant["status"] == "skipped" and "2,000" in qdrant["reason"]
    assert "skipped" in (out / "table.md").read_text()


def test_profile_search_times_every_stage_in_one_and_two_threads(bench_run, capsys):
    from mrl_retrievers.bench import profile_search

    _, _, cache = bench_run
    (dataset,) = [d for d in cache.iterdir() if list(d.glob("ours-*/store"))]
    assert profile_search.main([str(dataset), "--shortlist", "20", "--ef", "40", "--threads", "1", "2", "--seconds", "0.1"]) == 0
    table = capsys.readouterr().out
    for name in profile_search.NAMES:
        assert f"| {name} |" in table
    for row in ("| searches per second (the stages above, stepwise) |", "| `store.search` per second (fused where it applies) |"):
        line = table.split(row)[1].splitlines()[0]
        counts = [float(x) for x in line.replace("|", " ").replace("/", " ").split()]
        assert len(counts) == 4 and all(c > 0 for c in counts), row


def test_profile_search_warms_with_whole_passes_over_the_queries(bench_run, capsys, monkeypatch):
    from mrl_retrievers.bench import profile_search
    from mrl_retrievers.store import MRLStore

    _, _, cache = bench_run
    (dataset,) = [d for d in cache.iterdir() if list(d.glob("ours-*/store"))]
    queries = np.load(sorted(dataset.glob("queries-*.npy"))[0])
    calls = []
    real = MRLStore.search
    monkeypatch.setattr(MRLStore, "search", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    monkeypatch.setattr(profile_search, "threaded", lambda *a, **kw: None)  # count the warm-up only
    assert profile_search.main([str(dataset), "--shortlist", "20", "--ef", "40", "--threads", "1", "--warm", "2"]) == 0
    assert len(calls) == 2 * len(queries)
