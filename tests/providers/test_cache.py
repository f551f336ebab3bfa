"""The embedding cache: hits cost nothing, each batch is durable when done, a killed run resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mrl_retrievers.cache import EmbeddingCache, spec_id, text_hash
from mrl_retrievers.errors import ConfigError, InvalidInputError, ProviderConnectionError
from mrl_retrievers.providers import get_provider
from mrl_retrievers.providers.cached import CachedProvider
from mrl_retrievers.providers.fake import FakeProvider
from mrl_retrievers.types import EmbeddingSpec

SPEC = EmbeddingSpec(provider="fake", model="fake-mrl-v1", dim=4)
TEXTS = [f"text {i} of the corpus" for i in range(300)]


def unit_rows(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# --- EmbeddingCache ------------------------------------------------------------------------------


def test_round_trip_misses_and_counts(tmp_path):
    vecs = unit_rows(3)
    with EmbeddingCache(tmp_path / "c.sqlite") as cache:
        cache.put_many(SPEC, "document", ["a", "b", "c"], vecs)
        got = cache.get_many(SPEC, "document", ["c", "x", "a", "a"])
        assert np.array_equal(got[0], vecs[2]) and got[1] is None and np.array_equal(got[2], vecs[0])
        assert np.array_equal(got[3], vecs[0])
        assert cache.count() == 3 and cache.count(SPEC, "query") == 0 and len(cache) == 3
        assert cache.specs() == [SPEC]
    with EmbeddingCache(tmp_path / "c.sqlite") as again:  # durable across reopen
        assert np.array_equal(again.get_many(SPEC, "document", ["b"])[0], vecs[1])


def test_keys_separate_spec_and_side():
    cache = EmbeddingCache()
    cache.put_many(SPEC, "document", ["a"], unit_rows(1))
    other = EmbeddingSpec(provider="fake", model="fake-mrl-v1", dim=4, query_prompt="q: ")
    assert cache.get_many(other, "document", ["a"]) == [None]
    assert cache.get_many(SPEC, "query", ["a"]) == [None]
    assert spec_id(SPEC) != spec_id(other)
    assert cache.clear(SPEC) == 1 and cache.count() == 0


def test_put_validates_shape_and_values():
    cache = EmbeddingCache()
    with pytest.raises(InvalidInputError, match="shape"):
        cache.put_many(SPEC, "document", ["a", "b"], unit_rows(1))
    with pytest.raises(InvalidInputError, match="NaN"):
        cache.put_many(SPEC, "document", ["a"], np.full((1, 4), np.nan))
    with pytest.raises(InvalidInputError, match="kind"):
        cache.get_many(SPEC, "passage", ["a"])


def test_a_damaged_row_is_a_miss(tmp_path):
    path = tmp_path / "c.sqlite"
    with EmbeddingCache(path) as cache:
        cache.put_many(SPEC, "document", ["a", "b"], unit_rows(2))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE vectors SET vector = x'00ff' WHERE text_hash = ?", (text_hash("a"),))
    with EmbeddingCache(path) as cache:
        got = cache.get_many(SPEC, "document", ["a", "b"])
        assert got[0] is None and got[1] is not None


def test_not_a_database_is_a_config_error(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"definitely not sqlite" * 100)
    with pytest.raises(ConfigError, match="delete the file"):
        EmbeddingCache(path)
    with pytest.raises(ConfigError, match="directory"):
        EmbeddingCache(tmp_path)


def test_texts_with_lone_surrogates_have_keys():
    cache = EmbeddingCache()
    cache.put_many(SPEC, "query", ["\ud800x"], unit_rows(1))
    assert cache.get_many(SPEC, "query", ["\ud800x"])[0] is not None


# --- CachedProvider ------------------------------------------------------------------------------


def test_hits_do_not_call_the_provider():
    inner = FakeProvider(dim=16, batch_size=50)
    emb = CachedProvider(inner, EmbeddingCache())
    first = emb.embed_documents(TEXTS[:200])
    assert inner.texts_embedded == 200
    again = emb.embed_documents(TEXTS)  # 200 hits, 100 misses
    assert inner.texts_embedded == 300 and emb.hits == 200
    assert np.array_equal(again[:200], first)
    assert np.allclose(again, FakeProvider(dim=16).embed_documents(TEXTS), atol=1e-6)
    emb.embed_query(TEXTS[0])  # queries are a separate side: one miss...
    emb.embed_query(TEXTS[0])  # ...then a hit
    assert inner.texts_embedded == 301
    assert emb.spec == inner.spec and emb.dim == 16 and "FakeProvider" in repr(emb)


def test_duplicates_are_embedded_once_and_order_is_kept():
    inner = FakeProvider(dim=8, batch_size=3)
    emb = CachedProvider(inner, EmbeddingCache())
    texts = ["a", "b", "a", "c", "b", "a"]
    out = emb.embed_documents(texts)
    assert inner.texts_embedded == 3
    assert np.allclose(out, FakeProvider(dim=8).embed_documents(texts), atol=1e-6)


def test_async_path_matches_and_uses_the_cache():
    inner = FakeProvider(dim=8, batch_size=20, max_concurrency=3)
    emb = CachedProvider(inner, EmbeddingCache())
    a = asyncio.run(emb.aembed_documents(TEXTS[:100]))
    b = emb.embed_documents(TEXTS[:100])
    assert np.array_equal(a, b) and inner.texts_embedded == 100
    assert np.array_equal(asyncio.run(emb.aembed_query("q")), emb.embed_query("q"))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failure_keeps_the_batches_already_done(mode):
    def fail(texts, kind, call):
        if call == 4:
            raise ProviderConnectionError("gone", provider="fake", model="fake-mrl-v1")

    cache = EmbeddingCache()
    emb = CachedProvider(FakeProvider(dim=8, batch_size=25, fail=fail), cache)
    with pytest.raises(ProviderConnectionError):
        if mode == "sync":
            emb.embed_documents(TEXTS[:100])
        else:
            asyncio.run(emb.aembed_documents(TEXTS[:100]))
    assert cache.count() == 75
    inner = FakeProvider(dim=8, batch_size=25)
    out = CachedProvider(inner, cache).embed_documents(TEXTS[:100])
    assert inner.texts_embedded == 25
    assert np.allclose(out, FakeProvider(dim=8).embed_documents(TEXTS[:100]), atol=1e-6)


def test_registry_cache_path_persists_across_instances(tmp_path):
    path = tmp_path / "cache.sqlite"
    emb = get_provider("fake", dim=8, cache=path)
    emb.embed_documents(TEXTS[:10])
    emb.close()
    emb2 = get_provider("fake", dim=8, cache=str(path))
    emb2.embed_documents(TEXTS[:10])
    assert emb2.inner.texts_embedded == 0 and emb2.hits == 10
    emb2.close()


# --- killed half-way, re-run pays only for the rest ----------------------------------------------

_WORKER = textwrap.dedent(
    """
    import sys
    from mrl_retrievers.providers.fake import FakeProvider
    from mrl_retrievers.providers.cached import CachedProvider
    cache_path, n = sys.argv[1], int(sys.argv[2])
    texts = [f"document {i} for the kill test" for i in range(n)]
    inner = FakeProvider(dim=32, batch_size=50, delay=0.03)
    CachedProvider(inner, cache_path).embed_documents(texts)
    print("finished", flush=True)
    """
)


def _cached_rows(path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _run_and_kill(args: list[str], cache_path, at_least: int, env: dict[str, str] | None = None) -> None:
    proc = subprocess.Popen([sys.executable, "-c", *args], env=env or {**os.environ, "PYTHONPATH": ":".join(sys.path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _cached_rows(cache_path) < at_least:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_half_way_then_rerun_embeds_only_the_rest(tmp_path):
    n, batch = 2000, 50
    cache_path = tmp_path / "cache.sqlite"
    _run_and_kill([_WORKER, str(cache_path), str(n)], cache_path, at_least=600)
    done = _cached_rows(cache_path)
    assert 600 <= done < n, f"the kill did not land half-way ({done} of {n} cached)"
    assert done % batch == 0, "a partial batch was committed"

    texts = [f"document {i} for the kill test" for i in range(n)]
    inner = FakeProvider(dim=32, batch_size=batch)
    out = CachedProvider(inner, cache_path).embed_documents(texts)
    assert inner.texts_embedded == n - done
    assert np.allclose(out, FakeProvider(dim=32).embed_documents(texts), atol=1e-6)


_HOSTED_WORKER = textwrap.dedent(
    """
    import sys
    from mrl_retrievers.providers import get_provider
    base_url, cache_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    texts = [f"document {i} for the kill test" for i in range(n)]
    emb = get_provider("openai", model="text-embedding-3-small", dim=64, api_key="kill-test-key",
                       base_url=base_url, batch_size=40, max_concurrency=2, cache=cache_path)
    emb.embed_documents(texts)
    print("finished", flush=True)
    """
)


def test_sigkill_counted_at_the_loopback_server(tmp_path):
    """The issue's criterion: texts re-requested after a kill are counted at the server."""
    pytest.importorskip("openai")
    from mrl_retrievers.emulators import OpenAIServer

    n = 1200
    cache_path = tmp_path / "cache.sqlite"
    texts = [f"document {i} for the kill test" for i in range(n)]
    with OpenAIServer(api_key="kill-test-key", latency_ms=40) as server:
        _run_and_kill([_HOSTED_WORKER, server.base_url, str(cache_path), str(n)], cache_path, at_least=400)
        done = _cached_rows(cache_path)
        assert 400 <= done < n
        paid_before = len(server.texts_received())
        assert paid_before >= done  # in-flight batches were paid for but lost: at most those
        server.clear()
        emb = get_provider("openai", model="text-embedding-3-small", dim=64, api_key="kill-test-key",
                           base_url=server.base_url, batch_size=40, cache=cache_path)
        out = emb.embed_documents(texts)
        emb.close()
        resent = server.texts_received()
    assert len(resent) == n - done
    assert len(set(resent)) == len(resent)
    assert out.shape == (n, 64) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
