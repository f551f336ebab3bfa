"""Where a search's time goes: ``MRLStore.search``'s steps one by one, a timestamp between them.

Run: ``OPENBLAS_NUM_THREADS=1 python -m mrl_retrievers.bench.profile_search DATASET_DIR [--read-only]
[--shortlist S --ef E] [--threads 1 2] [--warm PASSES]`` where DATASET_DIR is a bench dataset folder whose
store ``ours-*/store`` was built by ``bench`` (``--store`` when it holds several). The stages add up to the whole call
(a timestamp costs ~0.1 us); tight loop over the 1000 queries, 3 passes, medians, beside a plain
``store.search`` loop. ``--threads 1 2``: the same stages timed in N threads searching side by side
for ``--seconds`` each (alternating, twice): which stages swell when threads share the GIL, and
plain ``store.search`` calls in N threads beside them. The stages are the store's own
(``MRLStore.diagnostics.search_stages``, under its read lock); what is spelled out here is the
stepwise fixed-effort path of ``search.Searcher.one`` and ``search.rerank`` without a funnel (pass
``--shortlist``/``--ef`` on a calibrated store): when that path changes, this copy must follow it.
``store.search`` itself takes the fused path where it applies (the graph walk and the rerank in one
compiled call, ``search.Searcher._fused``): the plain ``store.search`` rows time that.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from mrl_retrievers.store import MRLStore
from mrl_retrievers.store.local import kernel

NAMES = ["validate + normalize query", "plan + read lock enter (+ catch-up check)",
         "coarse: prefix + hnswlib knn_query (all segments)", "rerank: CRC bitmap check",
         "rerank: score + top-k (kernel.best_of)", "to_hits: records (SQLite at a first read) + Hit objects", "read lock exit"]
ns = time.perf_counter_ns
T = TypeVar("T")


def stage_times(store: MRLStore, vector: np.ndarray, effort: dict, k: int = 10) -> list[int]:
    """Nanoseconds of each of ``NAMES`` for one search (``search``'s fixed-effort path, inlined)."""
    t = [ns()]
    query = kernel.unit_query(vector, store.full_dim)
    t.append(ns())

    def run(st):
        t.append(ns())
        rows, _sims = st.coarse(query)
        t.append(ns())
        st.ensure_checked(rows)
        t.append(ns())
        best, best_scores = st.best_of(query, rows)
        t.append(ns())
        hits = st.hits(best, best_scores)
        t.append(ns())
        return hits

    store.diagnostics.search_stages(run, k=k, **effort)
    t.append(ns())
    return [b - a for a, b in zip(t, t[1:])]


def one_thread(store: MRLStore, queries: np.ndarray, effort: dict) -> None:
    stages: list[list[int]] = [[] for _ in NAMES]
    whole, whole_inlined = [], []
    for _ in range(3):
        for q in queries:
            t0 = ns()
            store.search(q, k=10, **effort)
            whole.append(ns() - t0)
        for q in queries:
            times = stage_times(store, q, effort)
            whole_inlined.append(sum(times))
            for column, value in zip(stages, times):
                column.append(value)
    med = lambda xs: statistics.median(xs) / 1000  # noqa: E731
    print(f"store.search p50 (tight loop, 3 x {len(queries)} queries): {med(whole):.1f} us; inlined copy p50: "
          f"{med(whole_inlined):.1f} us; mean {statistics.mean(whole) / 1000:.1f} / {statistics.mean(whole_inlined) / 1000:.1f}")
    print("| stage | p50 us | mean us |\n|---|---|---|")
    for name, column in zip(NAMES, stages):
        print(f"| {name} | {med(column):.1f} | {statistics.mean(column) / 1000:.1f} |")


def in_threads(threads: int, seconds: float, call: Callable[[int], T]) -> tuple[float, list[T]]:
    """(calls per second, every call's result) with ``threads`` threads calling ``call(j)`` for
    ``seconds``, each thread on its own walk ``j`` through the queries."""
    results: list[list[T]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        j = i * 331
        while time.perf_counter() < stop:
            results[i].append(call(j))
            j += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done = [r for per_thread in results for r in per_thread]
    return len(done) / (time.perf_counter() - started), done


def side_by_side(store: MRLStore, queries: np.ndarray, effort: dict, threads: int, seconds: float) -> tuple[float, np.ndarray]:
    """(searches per second, mean ns of each stage) with ``threads`` threads searching at once."""
    rate, rows = in_threads(threads, seconds, lambda j: stage_times(store, queries[j % len(queries)], effort))
    return rate, np.array(rows, dtype=np.float64).mean(axis=0)


def whole_searches(store: MRLStore, queries: np.ndarray, effort: dict, threads: int, seconds: float) -> float:
    """Plain ``store.search`` calls per second (the fused path where it applies) in ``threads`` threads."""
    return in_threads(threads, seconds, lambda j: store.search(queries[j % len(queries)], k=10, **effort))[0]


def threaded(store: MRLStore, queries: np.ndarray, effort: dict, counts: list[int], seconds: float) -> None:
    measured = {n: [] for n in counts}
    searches = {n: [] for n in counts}
    for _ in range(2):  # alternate the thread counts, twice (a machine's load drifts)
        for n in counts:
            measured[n].append(side_by_side(store, queries, effort, n, seconds))
            searches[n].append(whole_searches(store, queries, effort, n, seconds))
    print("| stage | " + " | ".join(f"{n} thr mean us" for n in counts) + " |\n" + "|---" * (len(counts) + 1) + "|")
    for i, name in enumerate(NAMES):
        print(f"| {name} | " + " | ".join(" / ".join(f"{m[1][i] / 1000:.0f}" for m in measured[n]) for n in counts) + " |")
    print("| searches per second (the stages above, stepwise) | "
          + " | ".join(" / ".join(f"{m[0]:.0f}" for m in measured[n]) for n in counts) + " |")
    print("| `store.search` per second (fused where it applies) | "
          + " | ".join(" / ".join(f"{q:.0f}" for q in searches[n]) for n in counts) + " |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mrl_retrievers.bench.profile_search", description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path, help="a bench dataset folder (queries-1000.npy, its ours-*/store)")
    p.add_argument("--store", type=Path, default=None, help="the store (default: the dataset's only ours-*/store)")
    p.add_argument("--read-only", action="store_true", help="open the store read-only")
    p.add_argument("--shortlist", type=int, default=None)
    p.add_argument("--ef", type=int, default=None)
    p.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts to compare (e.g. 1 2)")
    p.add_argument("--seconds", type=float, default=3.0, help="per thread count and round (--threads)")
    p.add_argument("--warm", type=int, default=0,
                   help="whole passes over the queries before timing (default: the first 300 queries once); at "
                        "1M a pass checks each new candidate row's CRC and reads it from disk once")
    args = p.parse_args(argv)
    queries = np.load(sorted(args.dataset.glob("queries-*.npy"))[0])
    found = sorted(args.dataset.glob("ours-*/store"))
    if args.store is None and len(found) != 1:
        p.error(f"pass --store: {len(found)} stores under {args.dataset}")
    store = MRLStore.open(args.store or found[0], read_only=args.read_only)
    effort = {name: value for name, value in (("shortlist", args.shortlist), ("ef", args.ef)) if value is not None}
    try:
        for q in queries[:300] if args.warm == 0 else np.tile(queries, (args.warm, 1)):  # warm: page cache, plan cache, SQLite's
            store.search(q, k=10, **effort)
        print(f"prefix {store.prefix_dim}, effort {effort or 'the store default'}, "
              f"scoring: {'compiled kernel' if kernel.compiled() else 'numpy twin'}")
        if args.threads:
            threaded(store, queries, effort, args.threads, args.seconds)
        else:
            one_thread(store, queries, effort)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
