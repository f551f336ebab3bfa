"""Does a PCA rotation make a non-MRL model's prefix usable? A measurement on real passages.

Passages: the paragraphs of CPython's ``pydoc_data.topics`` (present on every machine), one in
``--query-every`` held out as queries. Model: the packaged all-MiniLM-L6-v2 (384 dims, not trained
with MRL). The rotation is fitted on the corpus. For each query the oracle is the exact top-k at full
width; a configuration is (prefix width, shortlist): rank by the renormalized prefix, keep the
shortlist, rerank it at full width, and count how many of the exact top-k come back.

Run:
    python -m mrl_retrievers.bench.rotation_recall
    python -m mrl_retrievers.bench.rotation_recall --widths 64 128 --shortlists 50 100 200
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Sequence

import numpy as np


def load_passages(min_words: int = 12) -> list[str]:
    """Unique paragraphs of ``pydoc_data.topics`` with at least ``min_words`` words, in a fixed order."""
    from pydoc_data.topics import topics  # noqa: PLC0415 - stdlib data, only needed here

    seen: dict[str, None] = {}
    for key in sorted(topics):
        for para in re.split(r"\n\s*\n", topics[key]):
            text = " ".join(para.split())
            if len(text.split()) >= min_words:
                seen.setdefault(text, None)
    return list(seen)


def recall_at_k(full_docs: np.ndarray, full_queries: np.ndarray, coarse_docs: np.ndarray,
                coarse_queries: np.ndarray, *, width: int, shortlist: int, k: int) -> float:
    """Mean recall@k of prefix(width) -> shortlist -> full rerank, against the exact full ranking."""
    exact = np.argsort(-(full_queries @ full_docs.T), axis=1)[:, :k]
    docs = _unit(coarse_docs[:, :width])
    queries = _unit(coarse_queries[:, :width])
    candidates = np.argsort(-(queries @ docs.T), axis=1)[:, :shortlist]
    hits = 0
    for q in range(len(full_queries)):
        cand = candidates[q]
        rerank = cand[np.argsort(-(full_docs[cand] @ full_queries[q]))[:k]]
        hits += len(set(rerank.tolist()) & set(exact[q].tolist()))
    return hits / (k * len(full_queries))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def run(widths: Sequence[int], shortlists: Sequence[int], *, k: int = 10, query_every: int = 6,
        max_passages: int | None = None, out=sys.stdout) -> dict[tuple[str, int, int], float]:
    """Embed, fit the rotation, print a table; return {(variant, width, shortlist): recall}."""
    from ..providers.local import LocalProvider  # noqa: PLC0415 - heavy import, only when run
    from ..providers.rotation import fit_rotation  # noqa: PLC0415

    passages = load_passages()[:max_passages]
    queries = passages[::query_every]
    corpus = [p for i, p in enumerate(passages) if i % query_every]
    started = time.perf_counter()
    emb = LocalProvider(device="cpu")
    docs = emb.embed_documents(corpus)
    qs = np.stack([emb.embed_query(q) for q in queries])
    # Same as emb.fit_rotation(corpus) (the sample a user would take), without encoding twice:
    # at full width and without a rotation, the documents' vectors are exactly its input.
    emb.set_rotation(fit_rotation(docs))
    rotation = emb.rotation
    elapsed = time.perf_counter() - started
    print(f"model {emb.model} ({emb.native_dim} dims), {len(corpus)} passages, {len(queries)} queries, "
          f"k={k}, embedded+fitted in {elapsed:.1f}s", file=out)
    print(f"rotation {emb.spec.rotation}", file=out)
    results: dict[tuple[str, int, int], float] = {}
    header = "variant  width " + " ".join(f"short={s:<4d}" for s in shortlists)
    print(header, file=out)
    for variant, cd, cq in (("raw", docs, qs), ("rotated", docs @ rotation, qs @ rotation)):
        for width in widths:
            row = []
            for s in shortlists:
                r = recall_at_k(docs, qs, cd, cq, width=width, shortlist=min(s, len(corpus)), k=k)
                results[(variant, width, s)] = r
                row.append(f"{r:10.4f}")
            print(f"{variant:8s} {width:5d} " + " ".join(row), file=out)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mrl_retrievers.bench.rotation_recall",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 192])
    parser.add_argument("--shortlists", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--query-every", type=int, default=6)
    parser.add_argument("--max-passages", type=int, default=None)
    args = parser.parse_args(argv)
    results = run(args.widths, args.shortlists, k=args.k, query_every=args.query_every,
                  max_passages=args.max_passages)
    if (key := ("rotated", 128, 100)) in results:
        print(f"\nrecall@{args.k}, 128-wide rotated prefix, shortlist 100, vs exact 384-wide: "
              f"{results[key]:.4f} (raw prefix: {results[('raw', 128, 100)]:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
