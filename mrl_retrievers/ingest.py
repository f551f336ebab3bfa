"""Turn files, folders and JSONL into chunks with stable ids, and index them idempotently.

A chunk's id is ``<source>#<position>``; its metadata carries the source, the file it was read from
(``path``), the position and a hash of its content. Re-indexing embeds only the chunks whose content
changed and deletes the chunks past a source's new end, so running ``index`` twice on the same
folder embeds nothing the second time, and an interrupted run resumes where it stopped. A folder is
kept in sync: the chunks of files that are gone from it are removed (``remove_missing=False`` keeps
them). Every file that is not indexed is counted by reason; gzip'd text is read.

Which files are text is decided as git and ripgrep decide it: known binary formats are skipped by
their suffix, anything else is read and kept if it is UTF-8 without NUL bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import InvalidInputError

DEFAULT_CHUNK_CHARS = 1000
# Larger files (after decompression) are skipped: a chunked multi-GB log is rarely what was meant.
MAX_FILE_BYTES = 64 * 2**20
# Chunks embedded per add_texts call when many small files are indexed (one provider round each).
FLUSH_CHUNKS = 256
# Formats that are not text: skipped by name, never read.
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .psd .pdf .doc .docx .xls .xlsx .ppt .pptx .odt .ods "
    ".zip .tar .tgz .bz2 .xz .zst .7z .rar .jar .whl .egg .deb .rpm .so .dylib .dll .exe .bin .o .a .pyc .pyo "
    ".class .npy .npz .pkl .pickle .parquet .feather .arrow .sqlite .db .hnsw .f16 .f32 .mp3 .mp4 .wav .flac "
    ".ogg .avi .mov .mkv .webm .woff .woff2 .ttf .otf .eot".split()
)

# Reasons a file is skipped, as the summary prints them.
SKIP_HIDDEN = "hidden"
SKIP_BINARY_TYPE = "binary format"
SKIP_BINARY = "binary content"
SKIP_ENCODING = "not UTF-8 text"
SKIP_EMPTY = "empty"
SKIP_LARGE = f"larger than {MAX_FILE_BYTES // 2**20} MiB"
SKIP_UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    metadata: dict[str, Any]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def split_text(text: str, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """Pack paragraphs into chunks of at most ``max_chars`` (a longer paragraph is cut at spaces)."""
    pieces: list[str] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        while len(paragraph) > max_chars:
            cut = paragraph.rfind(" ", 0, max_chars)
            cut = cut if cut > max_chars // 2 else max_chars
            pieces.append(paragraph[:cut].strip())
            paragraph = paragraph[cut:].strip()
        if paragraph:
            pieces.append(paragraph)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 2 + len(piece) <= max_chars:
            chunks[-1] += "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def chunk_document(source: str, text: str, metadata: dict[str, Any] | None = None, max_chars: int = DEFAULT_CHUNK_CHARS) -> list[Chunk]:
    base = dict(metadata or {})
    return [
        Chunk(f"{source}#{i}", piece, {**base, "source": source, "chunk": i, "content_hash": content_hash(piece)})
        for i, piece in enumerate(split_text(text, max_chars))
    ]


# --- what to read ------------------------------------------------------------------------------


@dataclass
class Plan:
    """The files an ``index`` run reads, the folders it keeps in sync, and what it skipped by name."""

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    skipped_types: Counter = field(default_factory=Counter)  # suffix -> files skipped as a binary format


def plan_files(paths: Iterable[str | os.PathLike[str]]) -> Plan:
    """List the files under ``paths`` (files and folders), checking every path exists first.

    Hidden files and folders (``.git``...) inside a folder are skipped; a path given explicitly is
    always read. Symlinked folders are not followed.
    """
    given = [Path(p) for p in paths]
    missing = [str(p) for p in given if not p.exists()]
    if missing:
        raise InvalidInputError(f"no such file or folder: {', '.join(missing)}")
    plan = Plan()
    for path in given:
        if not path.is_dir():
            plan.files.append(path)
            continue
        plan.folders.append(path)
        for root, dirs, names in os.walk(path):
            hidden = [d for d in dirs if d.startswith(".")]
            plan.skipped[SKIP_HIDDEN] += len(hidden)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                file = Path(root) / name
                if name.startswith("."):
                    plan.skipped[SKIP_HIDDEN] += 1
                elif _inner_suffix(file) in BINARY_SUFFIXES:
                    plan.skipped[SKIP_BINARY_TYPE] += 1
                    plan.skipped_types[_inner_suffix(file)] += 1
                elif file.is_file():
                    plan.files.append(file)
    return plan


def _inner_suffix(file: Path) -> str:
    """The suffix of what the file holds: ``notes.md.gz`` -> ``.md``."""
    name = file.name[:-3] if file.name.lower().endswith(".gz") else file.name
    return Path(name).suffix.lower()


def read_file(file: Path, max_chars: int = DEFAULT_CHUNK_CHARS) -> tuple[list[tuple[str, list[Chunk]]], str | None]:
    """``(sources, None)`` for a file that is indexed, ``([], reason)`` for one that is skipped.

    A ``.jsonl`` file gives one source per line (``{"text": ..., "id"?: ..., "metadata"?: {...}}``);
    any other text file is one source named by its path. ``.gz`` files are decompressed first.
    """
    raw, reason = _read_bytes(file)
    if raw is None:
        return [], reason
    if b"\x00" in raw[:8192]:
        return [], SKIP_BINARY
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [], SKIP_ENCODING
    if not text.strip():
        return [], SKIP_EMPTY
    if _inner_suffix(file) == ".jsonl":
        return list(_jsonl_sources(file, text, max_chars)), None
    return [(str(file), chunk_document(str(file), text, {"path": str(file)}, max_chars))], None


def _read_bytes(file: Path) -> tuple[bytes | None, str | None]:
    try:
        if file.name.lower().endswith(".gz"):
            with gzip.open(file, "rb") as fh:
                raw = fh.read(MAX_FILE_BYTES + 1)
        else:
            if file.stat().st_size > MAX_FILE_BYTES:
                return None, SKIP_LARGE
            raw = file.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error):
        return None, SKIP_BINARY  # named .gz but not (whole) gzip data
    except OSError:
        return None, SKIP_UNREADABLE
    if len(raw) > MAX_FILE_BYTES:
        return None, SKIP_LARGE
    return raw, None


def _jsonl_sources(file: Path, text: str, max_chars: int) -> Iterator[tuple[str, list[Chunk]]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{file}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InvalidInputError(f'{file}:{number}: each line must be an object with a "text" string')
        source = str(record.get("id") or f"{file}:{number}")
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InvalidInputError(f"{file}:{number}: metadata must be an object")
        yield source, chunk_document(source, record["text"], {**metadata, "path": str(file)}, max_chars)


def read_sources(paths: Iterable[str | Path], max_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[tuple[str, list[Chunk]]]:
    """Yield ``(source, chunks)`` for every file under ``paths`` that is indexed (see ``read_file``)."""
    for file in plan_files(paths).files:
        yield from read_file(file, max_chars)[0]


# --- indexing ----------------------------------------------------------------------------------


@dataclass
class IndexReport:
    files: int = 0  # files read and indexed
    sources: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0  # chunks past the new end of a source that got shorter
    removed_sources: int = 0  # sources gone from a synced folder (deleted files, removed JSONL lines)
    removed_chunks: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> files
    skipped_types: Counter = field(default_factory=Counter)

    def skipped_summary(self) -> str:
        """E.g. ``3 files skipped: 2 binary format (.png 2), 1 not UTF-8 text``; '' if none."""
        total = sum(self.skipped.values())
        if not total:
            return ""
        parts = []
        for reason, count in self.skipped.most_common():
            if reason == SKIP_BINARY_TYPE and self.skipped_types:
                kinds = ", ".join(f"{suffix or '?'} {n}" for suffix, n in self.skipped_types.most_common(4))
                more = ", ..." if len(self.skipped_types) > 4 else ""
                parts.append(f"{count} {reason} ({kinds}{more})")
            else:
                parts.append(f"{count} {reason}")
        return f"{total} file{'s' if total != 1 else ''} skipped: {', '.join(parts)}"


FileProgress = Callable[[IndexReport, Path], None]


def index_files(index: Any, plan: Plan, *, max_chars: int = DEFAULT_CHUNK_CHARS, remove_missing: bool = True,
                progress: FileProgress | None = None) -> IndexReport:
    """Index the files of ``plan`` into ``index`` (an MRLIndex); keep its folders in sync.

    ``progress(report, file)`` is called after each file. With ``remove_missing``, the chunks of
    every source stored from one of the plan's folders that this run did not produce (a deleted
    file, a file now skipped, a line gone from a JSONL file) are deleted at the end.
    """
    report = IndexReport(skipped=Counter(plan.skipped), skipped_types=Counter(plan.skipped_types))
    writer = _Batcher(index, report)
    for file in plan.files:
        sources, reason = read_file(file, max_chars)
        if reason is None:
            report.files += 1
            for source, chunks in sources:
                writer.put(source, chunks)
        else:
            report.skipped[reason] += 1
        if progress:
            progress(report, file)
    writer.flush()
    if remove_missing:
        for folder in plan.folders:
            _remove_missing(index, folder, writer.seen, report)
    return report


def index_sources(index: Any, sources: Iterable[tuple[str, list[Chunk]]], *, progress=None) -> IndexReport:
    """Upsert changed chunks of each source into ``index`` (an MRLIndex) and drop stale ones.

    ``progress(report)`` is called after each source is read (its chunks may wait in a batch).
    """
    report = IndexReport()
    writer = _Batcher(index, report)
    for source, chunks in sources:
        writer.put(source, chunks)
        if progress:
            progress(report)
    writer.flush()
    return report


class _Batcher:
    """Collects the changed chunks of many small sources into one ``add_texts`` call per
    ``FLUSH_CHUNKS`` (one provider round instead of one per file)."""

    def __init__(self, index: Any, report: IndexReport) -> None:
        self.index, self.report = index, report
        self.pending: list[Chunk] = []
        self.pending_ids: set[str] = set()
        self.seen: set[str] = set()

    def put(self, source: str, chunks: list[Chunk]) -> None:
        report = self.report
        report.sources += 1
        report.chunks += len(chunks)
        self.seen.add(source)
        known = {r.id: r.metadata.get("content_hash") for r in self.index.get([c.id for c in chunks])}
        todo = [c for c in chunks if known.get(c.id) != c.metadata["content_hash"]]
        report.unchanged += len(chunks) - len(todo)
        if any(c.id in self.pending_ids for c in todo):
            self.flush()  # the same source twice (e.g. a repeated JSONL id): the later one wins, as before
        self.pending.extend(todo)
        self.pending_ids.update(c.id for c in todo)
        end = max((c.metadata["chunk"] for c in chunks), default=-1) + 1  # positions may have gaps
        report.deleted += _drop_stale(self.index, source, end)
        if len(self.pending) >= FLUSH_CHUNKS:
            self.flush()

    def flush(self) -> None:
        todo, self.pending = self.pending, []
        self.pending_ids.clear()
        if todo:
            self.index.add_texts([c.text for c in todo], [c.metadata for c in todo], [c.id for c in todo])
            self.report.embedded += len(todo)


def _drop_stale(index: Any, source: str, count: int, probe: int = 64) -> int:
    """Delete ``source#count``, ``source#count+1``... (the source got shorter).

    Probes in runs of ``probe`` ids and stops at the first run with none stored.
    """
    deleted = 0
    while True:
        ids = [f"{source}#{i}" for i in range(count + deleted, count + deleted + probe)]
        found = [r.id for r in index.get(ids)]
        if not found:
            return deleted
        index.delete(found)
        deleted += len(found)


def _remove_missing(index: Any, folder: Path, seen: set[str], report: IndexReport) -> None:
    """Delete the chunks of sources read from files under ``folder`` that this run did not produce."""
    if str(folder) == ".":  # paths under the working directory are stored relative, without "./"
        candidates_filter: dict[str, Any] = {"path": {"$exists": True}}

        def under(path: str) -> bool:
            return not os.path.isabs(path) and not path.startswith(".." + os.sep)
    else:
        prefix = str(folder) + os.sep
        candidates_filter = {"path": {"$text": prefix}}

        def under(path: str) -> bool:
            return path.startswith(prefix)
    candidates = [i for i in index.ids(filter=candidates_filter) if i.rpartition("#")[0] not in seen]
    gone = [r for r in index.get(candidates) if under(str(r.metadata.get("path", "")))]
    if gone:
        report.removed_chunks += index.delete([r.id for r in gone])
        report.removed_sources += len({r.metadata.get("source") for r in gone})


__all__ = ["Chunk", "IndexReport", "Plan", "chunk_document", "index_files", "index_sources", "plan_files",
           "read_file", "read_sources", "split_text"]
