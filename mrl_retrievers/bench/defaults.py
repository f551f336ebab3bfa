"""Measure the store's default shortlist and ef (the figures behind manifest.DEFAULT_*).

Run: ``python -m mrl_retrievers.bench.defaults [--n 50000] [--dim 1024] [--prefix-dim 128]``.
It builds one store per synthetic spectrum (a mild and a steep decay of information over the
dimensions), measures recall@10 against the exact oracle and latency over a grid of shortlist x ef,
and prints a table. The default is the cheapest setting that reaches recall@10 >= 0.99 on every
spectrum with margin (FACTS.md: ef ~ 2 x shortlist was needed after a prefix change).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ..store import MRLStore
from .synthetic import dataset, queries_near, recall_at_k

GRID = [(50, 100), (100, 100), (100, 200), (200, 200), (200, 400), (400, 800)]


def measure(n: int, dim: int, prefix_dim: int, decay: float, nq: int, workdir: Path) -> list[tuple[int, int, float, float]]:
    data = dataset(n, dim, seed=0, decay=decay)
    queries = queries_near(data, nq, seed=1, decay=decay)
    store = MRLStore.create(workdir / f"decay-{decay}", full_dim=dim, prefix_dim=prefix_dim, exact_below=0)
    for start in range(0, n, 20_000):
        store.add([str(i) for i in range(start, min(n, start + 20_000))], data[start : start + 20_000])
    truth = [[h.id for h in store.search_exact(q, k=10)] for q in queries]
    rows = []
    for shortlist, ef in GRID:
        store.search(queries[0], k=10, shortlist=shortlist, ef=ef)  # warm
        started = time.perf_counter()
        found = [[h.id for h in store.search(q, k=10, shortlist=shortlist, ef=ef)] for q in queries]
        latency = (time.perf_counter() - started) / nq
        rows.append((shortlist, ef, recall_at_k(found, truth, 10), latency))
    store.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--prefix-dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"n={args.n} dim={args.dim} prefix={args.prefix_dim} queries={args.queries} (1 thread, warm cache)")
        print(f"{'decay':>6} {'shortlist':>9} {'ef':>5} {'recall@10':>10} {'ms/query':>9}")
        for decay in (0.5, 0.25):
            for shortlist, ef, recall, latency in measure(args.n, args.dim, args.prefix_dim, decay, args.queries, Path(tmp)):
                print(f"{decay:>6} {shortlist:>9} {ef:>5} {recall:>10.4f} {latency * 1e3:>9.2f}")


if __name__ == "__main__":
    main()
