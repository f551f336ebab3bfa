"""`mrl-retrievers demo`: a real corpus, a real local model, offline, in under a minute.

Indexes the Python language reference that ships with CPython (``pydoc_data.topics``) with the
packaged all-MiniLM-L6-v2 model into an on-disk store, then answers a few questions twice: with the
coarse-to-fine search (a 128-wide prefix index, shortlist reranked at full width) and with the exact
full-width scan, and prints their agreement, latency and footprint. all-MiniLM-L6-v2 was not trained
with MRL, so the demo fits an orthogonal PCA rotation first (saved beside the store, named in its
spec) to make prefixes meaningful. A second run reuses the store and the embedding cache: nothing is
embedded again.
"""

from __future__ import annotations

import time
from pathlib import Path

from .ingest import Chunk, chunk_document, index_sources

QUESTIONS = [
    "How do I give a function parameter a default value?",
    "What does the with statement do with a context manager?",
    "How are exceptions raised and caught?",
    "What is the difference between a list comprehension and a generator expression?",
    "How do I declare that a variable inside a function refers to a global one?",
    "How does Python decide the truth value of an object?",
]

PREFIX_DIM, SHORTLIST, K = 128, 100, 5


def corpus(max_chars: int = 800) -> list[tuple[str, list[Chunk]]]:
    from pydoc_data.topics import topics  # ships with CPython: present on every machine

    # Several topics repeat whole sections of others; keep each passage once.
    seen: set[str] = set()
    out = []
    for name, text in sorted(topics.items()):
        chunks = [c for c in chunk_document(f"pydoc:{name}", text, max_chars=max_chars) if c.metadata["content_hash"] not in seen]
        seen.update(c.metadata["content_hash"] for c in chunks)
        out.append((f"pydoc:{name}", chunks))
    return out


def _provider(workdir: Path, sample: list[str], say):
    from .providers import get_provider
    from .providers.cached import CachedProvider

    inner = get_provider("local")
    rotation = workdir / "rotation.npy"
    if rotation.exists():
        inner.set_rotation(rotation)
    else:
        say(f"fitting a PCA rotation on {len(sample)} passages (all-MiniLM-L6-v2 is not MRL-trained)...")
        inner.fit_rotation(sample, rotation)
    return CachedProvider(inner, workdir / "embeddings.sqlite")


def run_demo(workdir: Path, *, limit: int | None = None, quiet: bool = False) -> int:
    from .index import MRLIndex

    say = (lambda *a: None) if quiet else print
    workdir.mkdir(parents=True, exist_ok=True)
    sources = corpus()
    if limit is not None:
        sources = _limit(sources, limit)
    texts = [c.text for _, chunks in sources for c in chunks]
    started = time.perf_counter()
    # ~150 passages fit a 128-wide rotation well and cost a quarter of the corpus in extra encodes.
    provider = _provider(workdir, texts[:: max(1, len(texts) // 150)], say)
    with MRLIndex(provider, str(workdir / "store"), exact_below=0, shortlist=SHORTLIST) as index:
        report = index_sources(index, sources)
        took = time.perf_counter() - started
        if report.embedded:
            say(f"indexed {report.chunks} passages of the Python language reference in {took:.1f}s ({report.embedded} embedded)")
        else:
            say(f"reused {workdir / 'store'}: {report.chunks} passages, nothing embedded ({took:.1f}s)")
        _answer(index, say)
        _footprint(index, say)
    return 0


def _limit(sources, limit):
    out, left = [], limit
    for source, chunks in sources:
        if left <= 0:
            break
        out.append((source, chunks[:left]))
        left -= len(chunks[:left])
    return out


def _answer(index, say) -> None:
    store = index.store
    agree_total, coarse_ms, exact_ms = 0.0, [], []
    for question in QUESTIONS:
        vector = index.embed_query(question)
        t0 = time.perf_counter()
        coarse = store.search(vector, k=K)
        t1 = time.perf_counter()
        exact = store.search_exact(vector, k=K)
        t2 = time.perf_counter()
        coarse_ms.append((t1 - t0) * 1e3)
        exact_ms.append((t2 - t1) * 1e3)
        agreement = _agreement(coarse, exact)
        agree_total += agreement
        say(f"\nQ: {question}")
        say(f"   coarse-to-fine: {_describe(coarse[0]) if coarse else '-'}")
        say(f"   exact:          {_describe(exact[0]) if exact else '-'}")
        say(f"   top-{K} agreement {agreement:.0%}; {coarse_ms[-1]:.2f} ms vs {exact_ms[-1]:.2f} ms")
    n = len(QUESTIONS)
    say(f"\nmean top-{K} agreement {agree_total / n:.0%}; mean latency coarse-to-fine {sum(coarse_ms) / n:.2f} ms, exact {sum(exact_ms) / n:.2f} ms")


def _agreement(coarse, exact) -> float:
    """Share of the exact top-k that the coarse-to-fine answer found (equal scores count as found)."""
    if not exact:
        return 1.0
    kth = exact[-1].score - 1e-6
    return min(1.0, sum(h.score >= kth for h in coarse) / len(exact))


def _describe(hit) -> str:
    first = " ".join((hit.text or "").split())[:70]
    return f"{hit.score:.3f} {hit.id:<28} {first}"


def _footprint(index, say) -> None:
    stats = index.store.stats()
    n, full, prefix = stats["count"], stats["full_dim"], stats["prefix_dim"]
    say(
        f"footprint: {n} vectors x {full} dims; disk {stats['disk_bytes'] / 2**20:.1f} MiB; "
        f"coarse index in RAM ~{stats['estimated_ram_bytes'] / 2**20:.2f} MiB (prefix {prefix}) "
        f"vs ~{n * (4 * full + 8 * 16 + 110) / 2**20:.2f} MiB for a full-width HNSW index"
    )
