"""Recall@10 and latency of a store's default search (``store.search(q, k=10)``, no knobs) on a bench
dataset's queries: what a user gets, measured the same way under two checkouts of the code.

Run: ``OPENBLAS_NUM_THREADS=1 python -m mrl_retrievers.bench.default_search STORE DATASET_DIR
[--writer] [--passes 3]`` where DATASET_DIR holds ``queries-1000.npy`` and ``truth-1000-k10.npy``
(a ``bench`` or ``adaptive-grid`` dataset folder). Prints one JSON line: recall, and the p50 / mean /
p99 latency of the pass with the lowest median (the first pass also warms the caches). To compare
two versions of the code on one store, run it alternately with each checkout first on
``PYTHONPATH`` (read-only by default, so the runs cannot change the store).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import mrl_retrievers
from mrl_retrievers.bench import data
from mrl_retrievers.store import MRLStore

K = 10


def measure(store: MRLStore, queries: np.ndarray, truth: np.ndarray, passes: int = 3) -> dict[str, float]:
    best: dict[str, float] | None = None
    for _ in range(passes):
        found, times = [], []
        for q in queries:
            started = time.perf_counter()
            hits = store.search(q, k=K)
            times.append(time.perf_counter() - started)
            found.append([int(h.id) for h in hits])
        recall = data.recall(found, truth, K)
        run = {"recall": round(recall, 4), "p50_ms": round(float(np.median(times)) * 1e3, 4),
               "mean_ms": round(float(np.mean(times)) * 1e3, 4), "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 4)}
        if best is None or run["p50_ms"] < best["p50_ms"]:
            best = run
    assert best is not None
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("dataset", type=Path, help="folder with queries-1000.npy and truth-1000-k10.npy")
    parser.add_argument("--writer", action="store_true", help="open the store writable (default: read-only)")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args(argv)
    queries = np.load(args.dataset / "queries-1000.npy").astype(np.float32)
    truth = np.load(args.dataset / "truth-1000-k10.npy")
    with MRLStore.open(args.store, read_only=not args.writer) as store:
        result = measure(store, queries, truth, args.passes)
        print(json.dumps({"code": str(Path(mrl_retrievers.__file__).resolve().parents[1]), "store": str(args.store),
                          "prefix": store.prefix_dim, "handle": "writer" if args.writer else "read-only", **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
