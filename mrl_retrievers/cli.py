"""The `mrl-retrievers` command line.

User mistakes (missing file, bad config, unknown provider, mismatched store) print one line on
stderr and exit 2; a damaged store found by ``verify`` exits 3; tracebacks are for bugs only.
Settings come from ``--config`` (default ``./mrl.toml`` when present), then ``MRL_*`` environment
variables, then the flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import MRLError

EXIT_USER_ERROR = 2
EXIT_DAMAGED = 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="index the Python language reference offline and compare coarse-to-fine with exact search")
    demo.add_argument("--workdir", default="mrl-demo", help="folder for the demo's store, rotation and cache (reused)")
    demo.add_argument("--limit", type=int, default=None, help="index at most this many chunks")
    demo.add_argument("--quiet", "-q", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    index = _with_config(sub.add_parser("index", help="chunk and index files, folders or JSONL (idempotent, resumable)"))
    index.add_argument("paths", nargs="+")
    index.add_argument("--chunk-chars", type=int, default=1000)
    index.set_defaults(func=_cmd_index)

    query = _with_config(sub.add_parser("query", help="ask the index a question"))
    query.add_argument("text")
    query.add_argument("-k", type=int, default=5)
    query.add_argument("--shortlist", type=int, help="fix the candidates reranked (the expert override)")
    query.add_argument("--target-recall", type=float, help="recall@10 to aim for (default: the store's; 1.0 = exact)")
    query.add_argument("--filter", help='a JSON filter, e.g. \'{"source": {"$text": "guide"}}\'')
    query.add_argument("--json", action="store_true")
    query.set_defaults(func=_cmd_query)

    info = sub.add_parser("info", help="count, widths, dtype, disk, estimated RAM and provider spec of a store")
    info.add_argument("path")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    verify = sub.add_parser("verify", help="check every file and vector checksum of a store (read-only)")
    verify.add_argument("path")
    verify.set_defaults(func=_cmd_verify)

    rebuild = sub.add_parser("rebuild", help="repair a store from its source of truth (drops items with damaged vectors)")
    rebuild.add_argument("path")
    rebuild.set_defaults(func=_cmd_rebuild)

    reindex = sub.add_parser("reindex", help="rebuild the coarse index at a new prefix width (no re-embedding)")
    reindex.add_argument("path")
    reindex.add_argument("--prefix-dim", type=int, required=True)
    reindex.set_defaults(func=_cmd_reindex)

    compact = sub.add_parser("compact", help="reclaim the rows of deleted and overwritten items")
    compact.add_argument("path")
    compact.set_defaults(func=_cmd_compact)

    migrate = sub.add_parser("migrate", help="copy a store to another backend (local <-> Qdrant) from its stored vectors")
    migrate.add_argument("src", help="a local store path, qdrant://host[:port]/collection or qdrant+path://folder?collection=name")
    migrate.add_argument("dst", help="same forms as SRC; created if missing (key from QDRANT_API_KEY)")
    migrate.add_argument("--prefix-dim", type=int, help="coarse width of a new destination (default: the source's)")
    migrate.add_argument("--batch-size", type=int, default=1000)
    migrate.set_defaults(func=_cmd_migrate)

    from .bench.cli import add_bench_parser, add_tune_parser  # argparse only; heavy imports run inside

    add_bench_parser(sub)
    add_tune_parser(sub)
    return parser


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help="TOML config (default: ./mrl.toml if it exists)")
    parser.add_argument("--store", help="store path (overrides [store] path)")
    parser.add_argument("--provider", help="embedding provider (overrides [embedder] provider)")
    parser.add_argument("--model", help="embedding model (overrides [embedder] model)")
    parser.add_argument("--dim", type=int, help="embedding width (overrides [embedder] dim)")
    parser.add_argument("--quiet", "-q", action="store_true")
    return parser


def _open_index(args: argparse.Namespace):
    from .config import load_config
    from .errors import ConfigError
    from .index import MRLIndex

    config = args.config or ("mrl.toml" if Path("mrl.toml").is_file() else None)
    embedder = {k: v for k, v in {"provider": args.provider, "model": args.model, "dim": args.dim}.items() if v is not None}
    if args.provider and not args.model:
        embedder["model"] = None  # another provider must not inherit the configured model name
    settings = load_config(config, overrides={"embedder": embedder, "store": {"path": args.store} if args.store else {}})
    if settings.store.backend == "local" and not settings.store.path:
        raise ConfigError("no store path: pass --store PATH or set [store] path in the config")
    return MRLIndex.from_config(settings)


def _progress(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None

    def show(report: Any) -> None:
        print(f"\r{report.sources} sources, {report.chunks} chunks, {report.embedded} embedded", end="", file=sys.stderr, flush=True)

    return show


def _cmd_index(args: argparse.Namespace) -> int:
    from .ingest import index_sources, read_sources

    with _open_index(args) as index:
        report = index_sources(index, read_sources(args.paths, args.chunk_chars), progress=_progress(args.quiet))
        if not args.quiet:
            print(
                f"\nindexed {report.sources} sources: {report.chunks} chunks, {report.embedded} embedded, "
                f"{report.unchanged} unchanged, {report.deleted} removed; store holds {len(index)}"
            )
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .errors import InvalidInputError

    try:
        flt = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--filter is not valid JSON: {exc.msg}") from None
    with _open_index(args) as index:
        hits = index.query(args.text, k=args.k, shortlist=args.shortlist, filter=flt, target_recall=args.target_recall)
    if args.json:
        print(json.dumps([{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in hits], indent=2))
    else:
        for h in hits:
            first_line = (h.text or "").strip().splitlines()[0][:100] if h.text else ""
            print(f"{h.score:.3f}  {h.id}  {first_line}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.workdir), limit=args.limit, quiet=args.quiet)


def _cmd_info(args: argparse.Namespace) -> int:
    from .store import MRLStore

    with MRLStore.open(args.path, read_only=True) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for key in ("path", "count", "rows", "tombstones", "full_dim", "prefix_dim", "funnel_dim", "dtype",
                    "shortlist", "ef", "target_recall", "exact_below", "disk_bytes", "estimated_ram_bytes", "spec"):
            print(f"{key:>20}: {stats[key]}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from .store import MRLStore

    report = MRLStore.verify(args.path)
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.damaged_ids:
        print(f"damaged items: {', '.join(report.damaged_ids[:20])}{' ...' if len(report.damaged_ids) > 20 else ''}")
    if report.ok:
        print(f"ok: {args.path}")
        return 0
    print(f"run `mrl-retrievers rebuild {args.path}` to repair what the source of truth still holds")
    return EXIT_DAMAGED


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from .store import MRLStore

    report = MRLStore.rebuild(args.path)
    if report.damaged_ids:
        print(f"dropped {len(report.damaged_ids)} items with damaged vectors (re-add them): {', '.join(report.damaged_ids[:20])}")
    print(f"rebuilt {args.path}")
    return 0


def _cmd_reindex(args: argparse.Namespace) -> int:
    from .store import MRLStore

    with MRLStore.open(args.path) as store:
        store.reindex(prefix_dim=args.prefix_dim)
        print(f"reindexed {args.path} at prefix_dim={store.prefix_dim} (no embedding calls)")
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    from .store import MRLStore

    with MRLStore.open(args.path) as store:
        print(f"reclaimed {store.compact()} rows")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from .store.migrate import migrate_uris

    report = migrate_uris(args.src, args.dst, prefix_dim=args.prefix_dim, batch_size=args.batch_size)
    print(f"copied {report.copied} items ({report.source_count} in source, {report.destination_count} in destination); "
          "nothing was re-embedded")
    return 0 if report.source_count == report.destination_count else EXIT_DAMAGED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
