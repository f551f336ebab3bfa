"""The `mrl-retrievers` command line.

User mistakes (missing path, corrupt store, bad arguments) print one line on stderr and exit with a
non-zero code; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MRLError
from .store import MRLStore

EXIT_USER_ERROR = 2
EXIT_DAMAGED = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return args.func(args)
    except MRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mrl-retrievers", description="Coarse-to-fine retrieval over MRL embeddings.")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="build a store of synthetic MRL-like vectors and compare coarse-to-fine with exact search")
    demo.add_argument("--path", default="mrl-demo-store", help="store directory (reused if it exists)")
    demo.add_argument("--n", type=int, default=20_000, help="vectors to store")
    demo.add_argument("--dim", type=int, default=1024, help="full width")
    demo.add_argument("--prefix-dim", type=int, default=128, help="coarse width")
    demo.add_argument("--queries", type=int, default=100)
    demo.set_defaults(func=_cmd_demo)

    info = sub.add_parser("info", help="count, widths, dtype, disk and estimated RAM of a store")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    verify = sub.add_parser("verify", help="check every file and every vector checksum of a store")
    verify.add_argument("path")
    verify.set_defaults(func=_cmd_verify)

    reindex = sub.add_parser("reindex", help="rebuild the coarse index at a new prefix width (no re-embedding)")
    reindex.add_argument("path")
    reindex.add_argument("--prefix-dim", type=int, required=True)
    reindex.set_defaults(func=_cmd_reindex)

    compact = sub.add_parser("compact", help="reclaim the rows of deleted and overwritten items")
    compact.add_argument("path")
    compact.set_defaults(func=_cmd_compact)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    from .bench.synthetic import dataset, queries_near, recall_at_k

    path = Path(args.path)
    data = dataset(args.n, args.dim, seed=0)
    if (path / "manifest.json").exists():
        store = MRLStore.open(path)
        print(f"reusing {path}: {len(store)} vectors, nothing to add")
    else:
        store = MRLStore.create(path, full_dim=args.dim, prefix_dim=args.prefix_dim, exact_below=0)
        started = time.perf_counter()
        for start in range(0, args.n, 10_000):
            stop = min(args.n, start + 10_000)
            store.add([f"v{i}" for i in range(start, stop)], data[start:stop])
        print(f"stored {len(store)} x {args.dim} vectors (prefix {store.prefix_dim}) in {time.perf_counter() - started:.1f}s")
    queries = queries_near(data, args.queries, seed=1)
    coarse, exact = _timed(store.search, queries), _timed(store.search_exact, queries)
    recall = recall_at_k([[h.id for h in r] for r in coarse[0]], [[h.id for h in r] for r in exact[0]], 10)
    stats = store.stats()
    print(f"recall@10 coarse-to-fine vs exact: {recall:.3f}")
    print(f"latency per query: coarse-to-fine {coarse[1] * 1e3:.2f} ms, exact {exact[1] * 1e3:.2f} ms ({exact[1] / coarse[1]:.0f}x)")
    print(f"disk {stats['disk_bytes'] / 2**20:.1f} MiB; coarse index RAM ~{stats['estimated_ram_bytes'] / 2**20:.1f} MiB")
    store.close()
    return 0


def _timed(search, queries: np.ndarray):
    started = time.perf_counter()
    results = [search(q, k=10) for q in queries]
    return results, (time.perf_counter() - started) / max(1, len(queries))


def _cmd_info(args: argparse.Namespace) -> int:
    with MRLStore.open(args.path, read_only=True) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for key in ("path", "count", "rows", "tombstones", "full_dim", "prefix_dim", "funnel_dim", "dtype", "shortlist", "ef", "disk_bytes", "estimated_ram_bytes", "spec"):
            print(f"{key:>20}: {stats[key]}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    report = MRLStore.verify(args.path)
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.ok:
        print(f"ok: {args.path}")
        return 0
    return EXIT_DAMAGED


def _cmd_reindex(args: argparse.Namespace) -> int:
    with MRLStore.open(args.path) as store:
        store.reindex(prefix_dim=args.prefix_dim)
        print(f"reindexed {args.path} at prefix_dim={store.prefix_dim}")
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    with MRLStore.open(args.path) as store:
        print(f"reclaimed {store.compact()} rows")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
