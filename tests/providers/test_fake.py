"""FakeProvider: the deterministic stand-in every other test in the project relies on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import numpy as np
import pytest

from mrl_retrievers.errors import EmbeddingResponseError, ProviderConnectionError
from mrl_retrievers.providers.fake import FakeProvider

TEXTS = [f"passage {i} about {'cats' if i % 2 else 'ships'} and {i % 7} things" for i in range(100)]


def test_shape_dtype_unit_rows_and_order():
    emb = FakeProvider(dim=48)
    out = emb.embed_documents(TEXTS)
    assert out.shape == (100, 48) and out.dtype == np.float32 and out.flags.c_contiguous
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    for i in (0, 17, 99):  # each row is its own text's vector, whatever the batching
        assert np.allclose(out[i], emb.embed_query(TEXTS[i]), atol=1e-6)


def test_deterministic_across_instances_and_processes():
    here = FakeProvider(dim=32).embed_documents(["stable text", "another one"])
    code = (
        "import numpy as np; from mrl_retrievers.providers.fake import FakeProvider;"
        "print(FakeProvider(dim=32).embed_documents(['stable text', 'another one']).tobytes().hex())"
    )
    # PYTHONHASHSEED differs per process: the vectors must not depend on it.
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": seed, "PYTHONPATH": ":".join(sys.path)})
        assert out.stdout.strip() == here.tobytes().hex()


def test_prefixes_are_consistent_across_widths_like_mrl():
    wide = FakeProvider(dim=256).embed_documents(TEXTS[:10])
    narrow = FakeProvider(dim=64).embed_documents(TEXTS[:10])
    prefix = wide[:, :64] / np.linalg.norm(wide[:, :64], axis=1, keepdims=True)
    assert np.allclose(prefix, narrow, atol=1e-5)


def test_energy_is_front_loaded():
    out = FakeProvider(dim=256).embed_documents(TEXTS)
    first_quarter = (out[:, :64] ** 2).sum(axis=1)
    assert first_quarter.mean() > 0.5  # a flat spectrum would give 0.25


def test_prefix_ranking_agrees_with_full_ranking():
    emb = FakeProvider(dim=256)
    docs = emb.embed_documents(TEXTS)
    full = docs @ docs[:10].T
    pre = (docs[:, :64] / np.linalg.norm(docs[:, :64], axis=1, keepdims=True))
    short = pre @ pre[:10].T
    top_full = np.argsort(-full, axis=0)[:10]
    top_short = np.argsort(-short, axis=0)[:30]
    recall = np.mean([len(set(top_full[:, q]) & set(top_short[:, q])) / 10 for q in range(10)])
    assert recall >= 0.9


def test_shared_words_mean_similar_vectors():
    a, b, c = FakeProvider(dim=128).embed_documents(
        ["the red apple pie recipe", "a red apple pie", "quantum chromodynamics lecture"]
    )
    assert a @ b > 0.5 > a @ c
    # Reordered words are close but not identical (the whole-text component differs).
    x, y = FakeProvider(dim=64).embed_documents(["dog bites man", "man bites dog"])
    assert 0.8 < x @ y < 0.9999


def test_seed_changes_vectors_and_spec():
    a, b = FakeProvider(dim=16), FakeProvider(dim=16, seed=3)
    assert not np.allclose(a.embed_query("x"), b.embed_query("x"))
    assert a.spec != b.spec and dict(b.spec.extra) == {"seed": "3"}
    assert a.spec.provider == "fake" and a.spec.dim == 16 and a.spec.normalized


def test_empty_and_odd_texts_embed():
    out = FakeProvider(dim=8).embed_documents(["", "   ", "\ud800 lone surrogate", "emoji 🎉", "x" * 100_000])
    assert np.isfinite(out).all() and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_counters_and_batches():
    emb = FakeProvider(dim=8, batch_size=30)
    emb.embed_documents(TEXTS)
    emb.embed_query("q")
    assert emb.calls == 5 and emb.texts_embedded == 101 and emb.batch_sizes == [30, 30, 30, 10, 1]
    emb.reset_counts()
    assert (emb.calls, emb.texts_embedded, emb.batch_sizes) == (0, 0, [])


def test_failure_injection_hook():
    def fail(texts, kind, call):
        if call == 2:
            raise ProviderConnectionError("injected", provider="fake", model="fake-mrl-v1")

    emb = FakeProvider(dim=8, batch_size=10, fail=fail)
    with pytest.raises(ProviderConnectionError, match="injected"):
        emb.embed_documents(TEXTS[:30])
    assert emb.calls == 2


def test_corrupt_hook_is_caught_by_response_checks():
    emb = FakeProvider(dim=8, corrupt=lambda raw: raw * np.nan)
    with pytest.raises(EmbeddingResponseError, match="NaN"):
        emb.embed_documents(["a"])


def test_sync_and_async_identical_with_concurrency():
    emb = FakeProvider(dim=32, batch_size=7, max_concurrency=3, delay=0.001)
    sync = emb.embed_documents(TEXTS)
    asyn = asyncio.run(emb.aembed_documents(TEXTS))
    assert np.array_equal(sync, asyn)
    assert np.array_equal(emb.embed_query("q"), asyncio.run(emb.aembed_query("q")))


def test_fast_enough_for_every_test_suite():
    texts = [f"document number {i} with a few ordinary words in it" for i in range(5000)]
    start = time.perf_counter()
    FakeProvider(dim=256).embed_documents(texts)
    assert time.perf_counter() - start < 5.0
