"""``bench scale``: build and measure one store of N synthetic MRL-like vectors (ours only), at any N
up to what the disk holds: the 10M-vector scenario and the growth curve 100k -> 1M -> 10M.

* **Build**: ``MRLStore.bulk_add`` from a seekable generator (``synthetic.mrl_like_from``): bounded
  memory, resumable after a kill (run the same command again). Each run appends to
  ``build-log.jsonl`` in the output folder: rows it committed, seconds, peak anonymous RSS, and on a
  resumed run the seconds the reopen spent catching the coarse index up (work redone after a kill).
* **Truth**: exact top-k of held-out-style queries (stored rows moved off their node by
  spectrum-shaped noise) over the whole vector file, one pass, out of core
  (``MRLStore.search_exact_batch``); cached in the output folder.
* **Measure** at the store's own default effort (or a fixed ``--shortlist``/``--ef``): recall@k (mean and worst decile), p50/p99 latency
  after ``--warm`` other queries, cold latency (the vector file evicted from the page cache before
  each query; the coarse index stays in RAM), QPS at 1 and 2 threads, anonymous RSS while serving,
  bytes on disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic import mrl_like_from, recall_at_k, spectrum


def add_scale_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("scale", help="build and measure one large store (ours only): the 10M scenario, growth curve",
                              description="Build (resumable: run again after a kill) and measure a store of N synthetic "
                                          "MRL-like vectors; write scale.json and build-log.jsonl to --out.")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--prefix-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--decay", type=float, default=0.5)
    p.add_argument("--store", type=Path, required=True, help="store directory (created, or resumed)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--warm", type=int, default=10_000, help="queries run before the timed ones")
    p.add_argument("--cold", type=int, default=200, help="queries timed with the vector file evicted first")
    p.add_argument("--qps-seconds", type=float, default=10.0)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--batch-rows", type=int, default=65_536)
    p.add_argument("--build-only", action="store_true")
    p.add_argument("--shortlist", type=int, help="fixed effort for the measured searches (default: the store's own)")
    p.add_argument("--ef", type=int, help="fixed coarse ef for the measured searches (with --shortlist)")
    p.add_argument("--measure-only", action="store_true", help="measure the store as it is (no build or resume step)")
    p.set_defaults(func=cmd_scale)
    return p


class PeakRss:
    """Samples this process's anonymous resident memory (RssAnon) in a thread; ``peak`` in bytes."""

    def __init__(self, every: float = 0.25) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(every)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def build(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    from ..store import MRLStore  # noqa: PLC0415

    name = f"synthetic:n={args.n}:dim={args.dim}:seed={args.seed}:decay={args.decay}"
    with PeakRss() as rss:
        started = time.perf_counter()
        if (args.store / "manifest.json").exists():
            store = MRLStore.open(args.store)
        else:
            store = MRLStore.create(args.store, full_dim=args.dim, prefix_dim=args.prefix_dim)
        opened = time.perf_counter() - started
        with store:
            report = store.bulk_add(lambda start: mrl_like_from(args.n, args.dim, start, seed=args.seed, decay=args.decay),
                                    name=name, total=args.n, batch_rows=args.batch_rows, progress=True)
            checkpoint_started = time.perf_counter()
            store.checkpoint()
            checkpoint_s = time.perf_counter() - checkpoint_started
    entry = {"resumed_from": report.resumed_from, "rows": report.rows, "seconds": time.perf_counter() - started,
             "open_s": opened, "final_checkpoint_s": checkpoint_s, "peak_rss_anon_bytes": rss.peak,
             "rows_per_s": report.rows_per_second}
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "build-log.jsonl", "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    log(f"build: {entry}")
    return entry


def _queries(store, n: int, nq: int, dim: int, decay: float, seed: int, noise: float = 0.5) -> np.ndarray:
    """Held-out-style queries: stored vectors moved off their node by spectrum-shaped noise."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(n, size=nq, replace=False)
    base = np.stack([r.vector for r in store.get([str(i) for i in picked], include_vectors=True)])
    scale = spectrum(dim, decay).astype(np.float32)
    q = base + noise * rng.standard_normal(base.shape).astype(np.float32) * scale / np.linalg.norm(scale)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def _evict(store) -> None:
    """Drop the vector file from the page cache (our own map first: mapped pages survive fadvise)."""
    store.diagnostics.evict_vector_file()


def measure(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    from ..store import MRLStore  # noqa: PLC0415

    out: dict[str, Any] = {"n": args.n, "dim": args.dim, "k": args.k}
    effort = {name: value for name, value in (("shortlist", args.shortlist), ("ef", args.ef)) if value is not None}
    out["effort"] = effort or "the store's default"
    with PeakRss() as rss, MRLStore.open(args.store, read_only=True) as store:
        out["open_read_only_s"] = None
        m = store.manifest
        out["store"] = {"prefix_dim": m.prefix_dim, "shortlist": m.shortlist, "ef": m.ef, "segment_rows": m.segment_rows,
                        "segments": store.stats()["segments"], "count": len(store), "target_recall": m.target_recall,
                        "calibration": m.calibration.to_dict() if m.calibration else None}
        queries = _queries(store, args.n, args.queries, args.dim, args.decay, seed=args.seed + 1)
        truth_path = args.out / f"truth-{args.queries}-k{args.k}.json"
        if truth_path.exists():
            truth = json.loads(truth_path.read_text())
        else:
            started = time.perf_counter()
            truth = [[h.id for h in hits] for hits in store.search_exact_batch(queries, k=args.k)]
            out["truth_s"] = time.perf_counter() - started
            truth_path.write_text(json.dumps(truth))
            log(f"truth: {out['truth_s']:.0f} s")
        warm = _queries(store, args.n, args.warm, args.dim, args.decay, seed=args.seed + 2) if args.warm else queries[:0]
        started = time.perf_counter()
        for q in warm:
            store.search(q, k=args.k, **effort)
        out["warm_s"] = time.perf_counter() - started
        log(f"warm: {len(warm)} queries in {out['warm_s']:.0f} s")
        found, times = [], []
        for q in queries:
            t0 = time.perf_counter()
            hits = store.search(q, k=args.k, **effort)
            times.append(time.perf_counter() - t0)
            found.append([h.id for h in hits])
        per_query = [len(set(f) & set(t)) / max(1, len(t)) for f, t in zip(found, truth)]
        out["recall"] = recall_at_k(found, truth, args.k)
        out["recall_worst_decile"] = float(np.mean(sorted(per_query)[: max(1, len(per_query) // 10)]))
        out["p50_ms"], out["p99_ms"] = float(np.median(times)) * 1e3, float(np.percentile(times, 99)) * 1e3
        log(f"timed: recall {out['recall']:.4f}, p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms")
        # QPS on the warm cache, before the cold phase evicts the vector file (measured after it, the
        # 10M run's QPS was its cold latency: 1 query/s against 4/s warm).
        for threads in (1, 2):
            out[f"qps_{threads}_threads"] = _qps(store, queries, args.k, threads, args.qps_seconds, effort)
        cold = []
        for q in queries[: args.cold]:
            _evict(store)
            t0 = time.perf_counter()
            store.search(q, k=args.k, **effort)
            cold.append(time.perf_counter() - t0)
        if cold:
            out["cold_p50_ms"], out["cold_p99_ms"] = float(np.median(cold)) * 1e3, float(np.percentile(cold, 99)) * 1e3
            log(f"cold: p50 {out['cold_p50_ms']:.2f} ms, p99 {out['cold_p99_ms']:.2f} ms")
        out["disk_bytes"] = sum(p.stat().st_size for p in args.store.iterdir() if p.is_file())
    out["serving_rss_anon_bytes"] = rss.peak
    out["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def _qps(store, queries: np.ndarray, k: int, threads: int, seconds: float, effort: dict[str, int]) -> float:
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        j = i
        while time.perf_counter() < stop:
            store.search(queries[j % len(queries)], k=k, **effort)
            counts[i] += 1
            j += threads

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return sum(counts) / (time.perf_counter() - started)


def cmd_scale(args: argparse.Namespace) -> int:
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    entry = None if args.measure_only else build(args, log)
    if args.build_only:
        return 0
    result = measure(args, log)
    runs = args.out / "build-log.jsonl"  # absent when a store built elsewhere is measured into a new --out
    result["build_runs"] = [json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else []
    result["last_build"] = entry  # None with --measure-only
    result["command"] = " ".join(["python -m mrl_retrievers.bench", *sys.argv[1:]])
    (args.out / "scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


__all__ = ["add_scale_parser", "cmd_scale"]
