"""Ingestion benchmark smoke: a few hundred texts through the loopback OpenAI emulator, ours vs the
baseline (LangChain's OpenAIEmbeddings when langchain-openai is installed, else a plain SDK loop)."""

from __future__ import annotations

import importlib.util

import pytest

from mrl_retrievers.bench.ingest import format_result, make_texts, run_ingest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("openai") is None, reason="needs the openai SDK")


def test_texts_are_seeded_and_distinct():
    assert make_texts(50) == make_texts(50)
    assert len(set(make_texts(200))) == 200


def test_ingest_smoke():
    result = run_ingest(n_texts=300, latency_ms=10, rpm=3_000, tpm=1_000_000, dim=256, log=lambda _: None)
    runs = result["runs"]
    baseline = "langchain" if importlib.util.find_spec("langchain_openai") else "sdk"
    assert list(runs) == ["ours", "ours-concurrent", baseline]
    for kind, run in runs.items():
        assert run["error"] is None, (kind, run)
        assert run["stored"] == 300 and run["texts_per_s"] > 0
        assert run["status"].get("200", 0) >= 1 and run["requests"] >= 1
    assert set(result["ratios"]) == {"ours", "ours-concurrent"} and all(r > 0 for r in result["ratios"].values())
    assert "texts/s" in format_result(result)
