"""``bench scale`` at a tiny size: build, resume (nothing left to load), measure, report."""

from __future__ import annotations

import json

from mrl_retrievers.bench.cli import main


def test_scale_builds_resumes_and_measures(tmp_path, capsys):
    argv = ["scale", "--n", "3000", "--dim", "64", "--prefix-dim", "16", "--store", str(tmp_path / "s"),
            "--out", str(tmp_path / "out"), "--queries", "50", "--warm", "100", "--cold", "5", "--qps-seconds", "0.2",
            "--batch-rows", "1000"]
    assert main([*argv, "--build-only"]) == 0
    assert main(argv) == 0
    result = json.loads((tmp_path / "out" / "scale.json").read_text())
    runs = result["build_runs"]
    assert [r["rows"] for r in runs] == [3000, 0] and runs[1]["resumed_from"] == 3000
    assert result["store"]["count"] == 3000 and 0.0 <= result["recall"] <= 1.0
    assert result["p50_ms"] > 0 and result["qps_2_threads"] > 0 and result["serving_rss_anon_bytes"] > 0
    assert (tmp_path / "out" / "truth-50-k10.json").exists()
    assert main([*argv, "--measure-only"]) == 0  # no third build entry: the store is measured as it is
    again = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert len(again["build_runs"]) == 2 and again["last_build"] is None and again["recall"] == result["recall"]
    assert main([*argv, "--measure-only", "--shortlist", "40", "--ef", "80"]) == 0  # the expert's fixed effort
    fixed = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert fixed["effort"] == {"shortlist": 40, "ef": 80} and again["effort"] == "the store's default"
    # A store built elsewhere, measured into a new --out (it crashed at the end: no build log there).
    elsewhere = [*argv[:argv.index("--out")], "--out", str(tmp_path / "other"), *argv[argv.index("--out") + 2 :]]
    assert main([*elsewhere, "--measure-only"]) == 0
    other = json.loads((tmp_path / "other" / "scale.json").read_text())
    assert other["build_runs"] == [] and other["recall"] == again["recall"]
