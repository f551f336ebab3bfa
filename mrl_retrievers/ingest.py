"""Turn files, folders and JSONL into chunks with stable ids, and index them idempotently.

A chunk's id is ``<source>#<position>``; its metadata carries the source, the position and a hash
of its content. Re-indexing a source embeds only the chunks whose content changed, and deletes the
chunks past its new end, so running ``index`` twice on the same folder embeds nothing the second
time, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import InvalidInputError

TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py", ".html", ".htm", ".csv", ".json", ".toml", ".yaml", ".yml"}
DEFAULT_CHUNK_CHARS = 1000


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


def read_sources(paths: Iterable[str | Path], max_chars: int = DEFAULT_CHUNK_CHARS) -> Iterator[tuple[str, list[Chunk]]]:
    """Yield (source, chunks) for every file under ``paths``: text files, and JSONL files whose
    lines are ``{"text": ..., "id"?: ..., "metadata"?: {...}}`` (one source per line)."""
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InvalidInputError(f"no such file or folder: {path}")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.suffix == ".jsonl":
                yield from _read_jsonl(file, max_chars)
            elif file.suffix.lower() in TEXT_SUFFIXES or file == path:
                text = _read_text(file)
                if text is not None:
                    yield str(file), chunk_document(str(file), text, max_chars=max_chars)


def _read_text(file: Path) -> str | None:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # binary or another encoding: skipped, not guessed


def _read_jsonl(file: Path, max_chars: int) -> Iterator[tuple[str, list[Chunk]]]:
    with file.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
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
            yield source, chunk_document(source, record["text"], metadata, max_chars)


@dataclass
class IndexReport:
    sources: int = 0
    chunks: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0


def index_sources(index: Any, sources: Iterable[tuple[str, list[Chunk]]], *, progress=None) -> IndexReport:
    """Upsert changed chunks of each source into ``index`` (an MRLIndex) and drop stale ones."""
    report = IndexReport()
    for source, chunks in sources:
        report.sources += 1
        report.chunks += len(chunks)
        known = {r.id: r.metadata.get("content_hash") for r in index.get([c.id for c in chunks])}
        todo = [c for c in chunks if known.get(c.id) != c.metadata["content_hash"]]
        report.unchanged += len(chunks) - len(todo)
        if todo:
            index.add_texts([c.text for c in todo], [c.metadata for c in todo], [c.id for c in todo])
            report.embedded += len(todo)
        end = max((c.metadata["chunk"] for c in chunks), default=-1) + 1  # positions may have gaps
        report.deleted += _drop_stale(index, source, end)
        if progress:
            progress(report)
    return report


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
