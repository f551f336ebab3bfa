"""`mrl-retrievers demo`: a real corpus, a real local model, offline; about a minute on 2 idle cores.

Indexes the Python language reference that ships with CPython (``pydoc_data.topics``, 632 passages)
with the packaged all-MiniLM-L6-v2 model into an on-disk store, then answers a few questions twice:
with the coarse-to-fine search (a 128-wide prefix index, shortlist reranked at full width) and with
the exact full-width scan. all-MiniLM-L6-v2 was not trained with MRL, so the demo fits an orthogonal
PCA rotation on the passages' own vectors (no extra encoding) to make prefixes meaningful; the store
keeps it, so ``mrl-retrievers query --store mrl-demo/store "..."`` works afterwards with no config.

At 632 vectors an exact scan is cheap and usually wins: the demo says so, and measures where
coarse-to-fine starts to pay on synthetic vectors of the same width, with the memory footprint at
1M vectors beside it. A second run reuses the store and embeds nothing.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .ingest import Chunk, chunk_document

QUESTIONS = [
    "How do I give a function parameter a default value?",
    "What does the with statement do with a context manager?",
    "How are exceptions raised and caught?",
    "What is the difference between a list comprehension and a generator expression?",
    "How do I declare that a variable inside a function refers to a global one?",
    "How does Python decide the truth value of an object?",
]
NEXT_QUESTION = "How are decorators applied to a function?"

PREFIX_DIM, SHORTLIST, K = 128, 100, 5
M = 16  # the store's default HNSW degree, for the footprint estimates
# all-MiniLM-L6-v2 on one CPU core, measured here on this corpus's passages (~180 tokens each; short
# sentences go ~10x faster): what the up-front estimate assumes. The end of the run reports the real rate.
PASSAGES_PER_CORE_SECOND = 10
ENCODE_BATCH = 32
SCALE_N = 20_000  # synthetic vectors for "where coarse-to-fine pays" (a few seconds to build)
SCALE_QUERIES, SCALE_REPEATS = 10, 5  # an exact scan of SCALE_N costs ~10 ms: keep this part short
TIMING_REPEATS = 15

Say = Callable[..., None]


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


def run_demo(workdir: Path, *, limit: int | None = None, quiet: bool = False) -> int:
    from .index import MRLIndex

    say: Say = (lambda *a: None) if quiet else print
    started = time.perf_counter()
    chunks = [c for _, cs in corpus() for c in cs][:limit]
    store_path = workdir / "store"
    if (store_path / "manifest.json").is_file():
        index = MRLIndex.open(store_path)
        missing = _missing(index, chunks)
        if missing:
            say(f"embedding {len(missing)} passages missing from {store_path} ...")
            _add(index, missing, index.embedder, quiet)
        else:
            say(f"reused {store_path}: {len(chunks)} passages already stored, nothing embedded")
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        index = _build(store_path, chunks, say, quiet)
    with index:
        say(f"ready in {time.perf_counter() - started:.0f}s\n")
        _answer(index, say)
        say("")
        _where_it_pays(index, say)
        say("")
        _footprint(index, say)
        say(f"\nfiles: {store_path}/ (manifest.json, docs.sqlite, the vector file, the coarse index, rotation.npy)")
        say(f"next: mrl-retrievers query --store {shlex.quote(str(store_path))} {shlex.quote(NEXT_QUESTION)}")
    return 0


# --- indexing ----------------------------------------------------------------------------------------


def _build(store_path: Path, chunks: list[Chunk], say: Say, quiet: bool):
    """Embed every passage once at full width, fit the rotation on those vectors, store them rotated."""
    from .index import MRLIndex
    from .providers import get_provider
    from .providers.rotation import fit_rotation

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    estimate = len(chunks) / (PASSAGES_PER_CORE_SECOND * cores)
    say(f"indexing {len(chunks)} passages of the Python language reference with all-MiniLM-L6-v2 on this CPU: "
        f"about {estimate:.0f}s of encoding on {cores} idle core{'s' if cores > 1 else ''} "
        f"(~{PASSAGES_PER_CORE_SECOND} passages/s per core), plus ~10s to load the model; longer on a busy machine")
    provider = get_provider("local")
    t0 = time.perf_counter()
    raw = _encode(provider, [c.text for c in chunks], quiet)
    took = time.perf_counter() - t0
    say(f"embedded {len(chunks)} passages in {took:.0f}s ({len(chunks) / took:.1f} passages/s on this machine now)")
    # PCA on the passages' own vectors: all-MiniLM-L6-v2 is not MRL-trained, so its first
    # dimensions are not its most informative ones until rotated (FACTS.md: "Local").
    rotation = fit_rotation(raw)
    provider.set_rotation(rotation)
    vectors = raw @ rotation
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = MRLIndex(provider, store_path, prefix_dim=PREFIX_DIM, exact_below=0, shortlist=SHORTLIST)
    try:
        index.store.add([c.id for c in chunks], vectors, texts=[c.text for c in chunks], metadatas=[c.metadata for c in chunks])
    except BaseException:
        index.close()
        raise
    say(f"indexed {len(chunks)} passages into {store_path} (the PCA rotation was fitted on them; the store keeps it)")
    return index


def _encode(provider: Any, texts: list[str], quiet: bool) -> np.ndarray:
    from .progress import bar

    out = np.empty((len(texts), provider.dim), dtype=np.float32)
    # Similar lengths in a batch: less padding for the model to compute (~10% here).
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with bar(len(texts), unit="passage", desc="embedding", quiet=quiet) as progress:
        for start in range(0, len(texts), ENCODE_BATCH):
            batch = order[start:start + ENCODE_BATCH]
            out[batch] = provider.embed_documents([texts[i] for i in batch])
            progress.update(len(batch))
    return out


def _missing(index: Any, chunks: list[Chunk]) -> list[Chunk]:
    known = {r.id: r.metadata.get("content_hash") for r in index.get([c.id for c in chunks])}
    return [c for c in chunks if known.get(c.id) != c.metadata["content_hash"]]


def _add(index: Any, chunks: list[Chunk], provider: Any, quiet: bool) -> None:
    vectors = _encode(provider, [c.text for c in chunks], quiet)
    index.store.add([c.id for c in chunks], vectors, texts=[c.text for c in chunks], metadatas=[c.metadata for c in chunks])


# --- answers -----------------------------------------------------------------------------------------


def _answer(index: Any, say: Say) -> None:
    store = index.store
    agreements, coarse_ms, exact_ms = [], [], []
    for question in QUESTIONS:
        vector = index.embed_query(question)
        coarse, coarse_t = _timed(lambda: store.search(vector, k=K))
        exact, exact_t = _timed(lambda: store.search_exact(vector, k=K))
        agreements.append(_agreement(coarse, exact))
        coarse_ms.append(coarse_t)
        exact_ms.append(exact_t)
        say(f"Q: {question}")
        say(f"   coarse-to-fine: {_describe(coarse[0]) if coarse else '-'}")
        if not coarse or not exact or coarse[0].id != exact[0].id:
            say(f"   exact:          {_describe(exact[0]) if exact else '-'}")
        say(f"   top-{K} agreement with the exact answer {agreements[-1]:.0%}")
    say(f"\nover {len(QUESTIONS)} questions at {len(store)} passages: mean top-{K} agreement {np.mean(agreements):.0%}; "
        f"median search time coarse-to-fine {np.median(coarse_ms):.2f} ms, exact scan {np.median(exact_ms):.2f} ms")


def _timed(search: Callable[[], list], repeats: int = TIMING_REPEATS) -> tuple[list, float]:
    """The result and the median time of ``repeats`` runs, in ms (one run is too noisy)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = search()
        times.append((time.perf_counter() - t0) * 1e3)
    return result, float(np.median(times))


def _agreement(coarse, exact) -> float:
    """Share of the exact top-k that the coarse-to-fine answer found (equal scores count as found)."""
    if not exact:
        return 1.0
    kth = exact[-1].score - 1e-6
    return min(1.0, sum(h.score >= kth for h in coarse) / len(exact))


def _describe(hit) -> str:
    first = " ".join((hit.text or "").split())[:64]
    return f"{hit.score:.3f} {hit.id:<24} {first}"


# --- the trade-off -------------------------------------------------------------------------------------


def _where_it_pays(index: Any, say: Say) -> None:
    """Exact vs coarse-to-fine at this corpus's size and at SCALE_N synthetic vectors of its width."""
    from .store import MRLStore

    dim, n = index.store.full_dim, len(index.store)
    say(f"Why exact search keeps up here: scanning {n} vectors is {n * dim:,} multiply-adds, a fraction of a "
        "millisecond, so at this size the coarse index saves next to nothing (stores below 2,048 items are searched "
        "exactly by default). "
        "Coarse-to-fine pays as the collection grows, because the exact scan grows with it and the coarse index "
        f"hardly does. Measured now on synthetic MRL-like vectors of the same width ({dim} dims), prefix {PREFIX_DIM}, "
        f"shortlist {SHORTLIST}, top-10:")
    rng = np.random.default_rng(0)
    data, queries = _synthetic(rng, SCALE_N, dim, SCALE_QUERIES)
    say(f"   {'vectors':>9}  {'exact scan':>11}  {'coarse-to-fine':>15}  {'agreement':>9}")
    for n in (len(index.store), SCALE_N):
        with MRLStore.create(None, full_dim=dim, prefix_dim=PREFIX_DIM, exact_below=0, shortlist=SHORTLIST) as store:
            for start in range(0, n, 5000):
                store.add([str(i) for i in range(start, min(n, start + 5000))], data[start:min(n, start + 5000)])
            coarse_t, exact_t, agree = [], [], []
            for q in queries:
                coarse, ct = _timed(lambda: store.search(q, k=10), SCALE_REPEATS)
                exact, et = _timed(lambda: store.search_exact(q, k=10), SCALE_REPEATS)
                coarse_t.append(ct)
                exact_t.append(et)
                agree.append(_agreement(coarse, exact))
        say(f"   {n:>9,}  {np.median(exact_t):>8.2f} ms  {np.median(coarse_t):>12.2f} ms  {np.mean(agree):>9.0%}")
    say("   The gap widens with size: measurements at 100k and 1M vectors are in docs/benchmarks.md.")


def _synthetic(rng: np.random.Generator, n: int, dim: int, n_queries: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors whose variance decays along the dimensions, like MRL embeddings."""
    scale = (1.0 + np.arange(dim)) ** -0.5
    centres = rng.standard_normal((64, dim))
    data = (centres[rng.integers(0, 64, n)] + 0.6 * rng.standard_normal((n, dim))) * scale
    queries = data[rng.integers(0, n, n_queries)] + 0.3 * rng.standard_normal((n_queries, dim)) * scale
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(data), unit(queries)


def _footprint(index: Any, say: Say) -> None:
    """What each design keeps where, from sizes: the coarse index as the store estimates its own
    (``stats()``; float16 or float32 prefixes, as this machine builds them), a full-width hnswlib
    index by the same formula at 4 bytes a component (``ann.estimated_ram_bytes``)."""
    from .store.local.ann import estimated_ram_bytes

    stats = index.store.stats()
    rows = [(f"this demo ({stats['count']} x {stats['full_dim']})", stats["count"], stats["full_dim"],
             stats["estimated_ram_bytes"]),
            ("1M x 1024 (e.g. text-embedding-3)", 1_000_000, 1024, estimated_ram_bytes(1_000_000, stats["prefix_dim"], M))]
    say("Memory and disk footprint, estimated from sizes:")
    say(f"   {'':<36}{'vectors on disk':>16}{'coarse index in RAM':>21}{'full-width HNSW in RAM':>24}")
    for label, n, dim, coarse in rows:
        full_width = estimated_ram_bytes(n, dim, M, half=False)  # hnswlib's float32 graph over the full vectors
        say(f"   {label:<36}{_size(n * dim * 2):>16}{_size(coarse):>21}{_size(full_width):>24}")
    say("   The full vectors stay on disk (float16, memory-mapped); only the prefix index lives in RAM.")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
