"""Command-line entries of the benchmark: ``bench``, ``tune``, ``ingest``, ``tune-check`` and the
``adaptive-*`` measurements (``adaptive.py``).

``add_bench_parser`` / ``add_tune_parser`` plug into ``mrl-retrievers``'s subparsers; the same
parsers back ``python -m mrl_retrievers.bench``. Each sets ``func(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..store.defaults import DEFAULT_EF_CONSTRUCTION
from .data import DEFAULT_CACHE



def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    from .peers import DEFAULT_METHODS  # noqa: PLC0415

    p = subparsers.add_parser("bench", help="compare the store with numpy, hnswlib, faiss, LangChain, LlamaIndex and Qdrant",
                              description="Measure every method on one dataset, each in its own subprocess; print a table, "
                                          "write results.json, table.md and recall_latency.png.")
    src = p.add_argument_group("dataset (default: seeded synthetic MRL-like vectors)")
    src.add_argument("--n", type=int, default=100_000, help="synthetic: number of vectors")
    src.add_argument("--dim", type=int, default=1024, help="synthetic: width")
    src.add_argument("--seed", type=int, default=0, help="synthetic: random seed")
    src.add_argument("--decay", type=float, default=0.5, help="synthetic: per-dimension spectrum (1+i)^-decay")
    src.add_argument("--clusters", type=int, default=256, help="synthetic: cluster centres the vectors gather around")
    src.add_argument("--spread", type=float, default=0.6, help="synthetic: spread of the vectors around their centre")
    src.add_argument("--npy", help="benchmark your own (n, dim) vectors from a .npy file instead")
    src.add_argument("--queries-npy", help="with --npy: query vectors (.npy); default: near stored rows")
    src.add_argument("--from-store", help="benchmark the vectors of an existing store instead")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated subset of {','.join(DEFAULT_METHODS)}")
    p.add_argument("--queries", type=int, default=1000, help="query count (slow methods use fewer within --budget-s)")
    p.add_argument("-k", type=int, default=10, help="results per query (recall@k)")
    p.add_argument("--target-recall", type=float, default=0.99, help="recall@k each method is compared at")
    p.add_argument("--prefix-dim", type=int, default=128, help="ours and faiss-refine: coarse width before tuning")
    p.add_argument("--no-tune", action="store_true", help="ours: keep the store's defaults instead of running tune")
    p.add_argument("--tune-sample", type=int, default=200, help="ours: stored vectors tune samples as queries")
    p.add_argument("--tune-prefix-dims", type=int, nargs="+", default=None, help="ours: widths tune tries (default 64 128 256)")
    p.add_argument("--M", type=int, default=16, help="HNSW graph degree for every HNSW-based method")
    p.add_argument("--ef-construction", type=int, default=200,
                   help="HNSW build effort of the peers' graphs (hnswlib, faiss); 200 as in hnswlib's examples")
    p.add_argument("--ours-ef-construction", type=int, default=None,
                   help=f"ours: build effort of the coarse graph (default: the store's default, {DEFAULT_EF_CONSTRUCTION})")
    p.add_argument("--no-frameworks", action="store_true", help="skip the LangChain/LlamaIndex wrapper-overhead measurement")
    p.add_argument("--framework-max-n", type=int, default=100_000, help="LangChain/LlamaIndex in-memory stores above this size are skipped")
    p.add_argument("--qdrant-max-n", type=int, default=20_000, help="Qdrant local mode above this size is skipped")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="datasets and built indexes (reused across runs)")
    p.add_argument("--rebuild", action="store_true", help="ignore cached indexes")
    p.add_argument("--build-only", action="store_true", help="only build and cache the indexes (for a later measuring run)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default ./bench-results/<dataset>)")
    p.add_argument("--budget-s", type=float, default=60.0, help="per setting: slow methods stop after this many seconds")
    p.add_argument("--cold-queries", type=int, default=200, help="queries measured with a cold page cache")
    p.add_argument("--qps-seconds", type=float, default=2.0, help="seconds of the throughput measurement per method")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="per method, seconds")
    p.set_defaults(func=cmd_bench)
    return p


def add_tune_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune", help="measure prefix width x shortlist x ef on a store's vectors and record the fastest setting meeting a recall target",
                              description="Samples stored vectors as queries (each query's own row excluded from its truth), "
                                          "rebuilds the coarse index at each prefix width, calibrates the per-query effort there, keeps "
                                          "the narrowest width whose calibrated policy for the target is modeled within 1.5x of the cheapest "
                                          "(what a search with no knobs runs) "
                                          "and records the fastest setting reaching the target at that width as the store's fixed default. Exit 1 if nothing is recorded: no setting reaches "
                                          "the target, or the store is small enough to be searched exactly (tune pays from a few thousand items).")
    p.add_argument("path", help="store directory (opened for writing)")
    p.add_argument("--target-recall", type=float, default=0.99, help="recall@k the chosen setting must reach (default: 0.99)")
    p.add_argument("--sample", type=int, default=200, help="stored vectors used as queries")
    p.add_argument("--prefix-dims", type=int, nargs="+", default=None, help="default: 64 128 256 and the current width (narrow it to bound the coarse index's RAM)")
    p.add_argument("--shortlists", type=int, nargs="+", default=None, help="default: 25 50 100 200 400")
    p.add_argument("--efs", type=int, nargs="+", default=None, help="default: 1x, 2x and 3x each shortlist")
    p.add_argument("--seed", type=int, default=0, help="seed of the query sample")
    p.add_argument("-k", type=int, default=10, help="results per query the recall is measured on (default: 10)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="a setting meets the target when this one-sided confidence bound of its sampled recall does")
    p.add_argument("--query-noise", type=float, default=0.5,
                   help="norm of the spectrum-shaped noise that moves each sampled vector off its graph node (0: none)")
    p.add_argument("--queries-npy", help="tune on these real query vectors (n, full_dim) instead of sampled stored vectors")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines and no summary")
    p.set_defaults(func=cmd_tune)
    return p


def add_ingest_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("ingest", help="ingestion throughput against a rate-limited loopback OpenAI server")
    p.add_argument("--texts", type=int, default=20_000)
    p.add_argument("--latency-ms", type=float, default=100.0)
    p.add_argument("--rpm", type=int, default=3_000, help="requests per minute before 429 (OpenAI tier 1: 3000)")
    p.add_argument("--tpm", type=int, default=1_000_000, help="tokens per minute before 429 (OpenAI tier 1: 1M)")
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--clients", default=None,
                   help="comma-separated, in order (default: ours,ours-concurrent,langchain); also ours-fixed: a fixed "
                        "search effort, so the store does not calibrate itself; sdk: a plain OpenAI-SDK loop")
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    p.set_defaults(func=cmd_ingest)
    return p


def add_tune_check_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tune-check", help="does tune pick a setting that holds on held-out queries? (synthetic spectra)")
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--decays", type=float, nargs="+", default=[0.5, 0.25])
    p.add_argument("--target-recall", type=float, default=0.99)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.set_defaults(func=cmd_tune_check)
    return p


# --- commands -----------------------------------------------------------------------------------------


def dataset_from_args(args: argparse.Namespace):
    from . import data  # noqa: PLC0415

    if args.npy:
        return data.from_npy(args.npy, cache=args.cache, nq=args.queries, k=args.k, queries=args.queries_npy)
    if args.from_store:
        return data.from_store(args.from_store, cache=args.cache, nq=args.queries, k=args.k)
    return data.synthetic(args.n, args.dim, cache=args.cache, nq=args.queries, k=args.k, seed=args.seed,
                          clusters=args.clusters, decay=args.decay, spread=args.spread)


def cmd_bench(args: argparse.Namespace) -> int:
    from . import report as rep  # noqa: PLC0415
    from .peers import PEERS  # noqa: PLC0415
    from .runner import run_bench  # noqa: PLC0415

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in PEERS]
    if unknown:
        print(f"error: unknown methods {unknown}; choose from {', '.join(PEERS)}", file=sys.stderr)
        return 2
    print(f"preparing dataset in {args.cache} ...", file=sys.stderr)
    ds = dataset_from_args(args)
    options: dict[str, Any] = {
        "prefix_dim": args.prefix_dim, "tune": not args.no_tune, "frameworks": not args.no_frameworks,
        "tune_sample": args.tune_sample, "tune_prefix_dims": args.tune_prefix_dims, "M": args.M,
        "ef_construction": args.ef_construction, "ours_ef_construction": args.ours_ef_construction,
        "rebuild": args.rebuild, "langchain_max_n": args.framework_max_n, "llamaindex_max_n": args.framework_max_n,
        "qdrant-local_max_n": args.qdrant_max_n,
    }
    report = run_bench(ds, methods, cache=args.cache, nq=args.queries, k=args.k, target_recall=args.target_recall,
                       options=options, timeout=args.timeout, budget_s=args.budget_s, cold_queries=args.cold_queries,
                       qps_seconds=args.qps_seconds, build_only=args.build_only,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    if args.build_only:
        return 0 if all(r.get("status") in ("ok", "skipped") for r in report["results"]) else 1
    report["command"] = " ".join(["mrl-retrievers", *sys.argv[1:]]) if sys.argv else ""
    out = args.out or Path("bench-results") / ds.name
    paths = rep.save(report, out)
    print(rep.text_table(report))
    print()
    print(rep.targets_table(report))
    print(f"\nwrote {paths['json']}, {paths['table']}, {paths['plot']}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ..store import MRLStore  # noqa: PLC0415
    from ..store.local.tuning import tune  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    say = None if args.quiet or args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    queries = np.load(args.queries_npy) if args.queries_npy else None
    with MRLStore.open(args.path) as store:
        result = tune(store, target_recall=args.target_recall, sample=args.sample, prefix_dims=args.prefix_dims,
                      shortlists=args.shortlists, efs=args.efs, seed=args.seed, k=args.k,
                      queries=queries, query_noise=args.query_noise, confidence=args.confidence, progress=say)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif not result.sample:  # nothing was measured (a store small enough to be searched exactly)
        print(f"nothing recorded: {result.note}", file=sys.stderr)
    elif not args.quiet:
        state = "recorded as the store's default" if result.applied else "NOT recorded (target not reached)"
        print(f"prefix_dim={result.prefix_dim} shortlist={result.shortlist} ef={result.ef}: "
              f"recall@{result.k} {result.recall:.4f} (>= {result.recall_low:.4f} at {result.confidence:.0%} confidence) on {result.sample} sampled queries, p50 {result.p50_ms:.3f} ms; {state}"
              + (f"\nnote: {result.note}" if result.note else ""))
    return 0 if result.applied else 1  # exit 1 whenever nothing was recorded, as the help says


def cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest import format_result, run_ingest  # noqa: PLC0415

    clients = tuple(c.strip() for c in args.clients.split(",") if c.strip()) if args.clients else None
    result = run_ingest(n_texts=args.texts, latency_ms=args.latency_ms, rpm=args.rpm, tpm=args.tpm, dim=args.dim, clients=clients,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_result(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def cmd_tune_check(args: argparse.Namespace) -> int:
    from .tune import check_tune, format_check  # noqa: PLC0415

    rows = check_tune(n=args.n, dim=args.dim, decays=args.decays, target_recall=args.target_recall, nq=args.queries,
                      cache=args.cache, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_check(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mrl_retrievers.bench", description="mrl-retrievers benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_bench_parser(sub)
    add_tune_parser(sub)
    add_ingest_parser(sub)
    add_tune_check_parser(sub)
    from .scale import add_scale_parser  # noqa: PLC0415

    add_scale_parser(sub)
    from .adaptive import add_parsers as add_adaptive_parsers  # noqa: PLC0415 - argparse only; heavy work runs inside
    from .adaptive_compare import add_parser as add_adaptive_compare_parser  # noqa: PLC0415
    from .adaptive_probes import add_parser as add_adaptive_probes_parser  # noqa: PLC0415
    from .adaptive_seeds import add_parser as add_adaptive_seeds_parser  # noqa: PLC0415
    from .cost_model import add_parser as add_cost_model_parser  # noqa: PLC0415

    add_adaptive_parsers(sub)
    add_adaptive_compare_parser(sub)
    add_adaptive_probes_parser(sub)
    add_adaptive_seeds_parser(sub)
    add_cost_model_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


__all__ = ["add_bench_parser", "add_ingest_parser", "add_tune_check_parser", "add_tune_parser", "build_parser", "main"]
