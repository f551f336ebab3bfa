"""Real text for the recall measurements: passages, held-out queries and cached embeddings.

Two corpora found on every machine this runs on:

* ``pydoc``: the demo's corpus (``demo.corpus``: CPython's ``pydoc_data.topics`` in 800-character
  chunks);
* ``man``: the English manual pages under ``/usr/share/man`` (troff markup stripped, same chunking),
  a seeded sample of pages until the passage budget is reached.

Queries are held out: every ``query_every``-th passage is *not* stored; it is a query twice, as the
whole passage ("passage" queries: a paraphrase-like neighbour) and as its first sentence ("sentence"
queries: short, question-like). The model is the packaged all-MiniLM-L6-v2 (384 dims, not MRL-trained),
made truncatable by a PCA rotation fitted on the stored passages (as the demo does). It encodes ~50
passages/s per core, so raw embeddings are cached as ``.npy`` under ``cache``; the rotation is
recomputed from them (cheap and deterministic).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAN_ROOT = Path("/usr/share/man")
MAN_SECTIONS = ("man1", "man2", "man3", "man5", "man7", "man8")
CHUNK_CHARS = 800

_DROP = {"TH", "so", "de", "ds", "nr", "if", "ie", "el", "ta", "tr", "ft", "ps", "vs", "in", "ti", "ll", "ne", "sp",
         "br", "na", "ad", "hy", "nh", "nf", "fi", "RS", "RE", "ig", "cc", "ec", "eo", "ev", "rm", "als", "mso", "Dd",
         "Dt", "Os", "Bl", "El", "Bd", "Ed", "UC", "Sh_", "PD", "EX", "EE", "YS", "SY", "UR", "UE", "MT", "ME", "ll"}
_BREAK = {"PP", "LP", "P", "TP", "IP", "HP", "SH", "SS", "Sh", "Ss", "Pp", "It"}
_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # strings
    (re.compile(r"\\\((..)"), " "),  # special characters
    (re.compile(r"\\\[[^\]]*\]"), " "),
    (re.compile(r"\\[&|^%c:]"), ""),
    (re.compile(r"\\[- ]"), lambda m: m.group(0)[1]),
    (re.compile(r"\\e"), "\\\\"),
]


def strip_troff(source: str) -> str:
    """Readable text of a man page: macros dropped or replaced by their text, paragraphs kept."""
    out: list[str] = []
    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"", "\\\"")):
            continue
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            macro, args = parts[0], (parts[1] if len(parts) > 1 else "")
            if macro in _DROP:
                continue
            if macro in _BREAK:
                out.append("")
            line = args.replace('"', "")
        for pattern, repl in _ESCAPES:
            line = pattern.sub(repl, line)
        out.append(line.strip())
    text = "\n".join(out)
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def man_passages(budget: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """(source, passage) pairs from a seeded sample of English man pages, ``budget`` of them at most."""
    from ..ingest import split_text  # noqa: PLC0415

    pages = sorted(p for s in MAN_SECTIONS if (MAN_ROOT / s).is_dir() for p in (MAN_ROOT / s).iterdir() if p.is_file())
    order = sorted(pages, key=lambda p: hashlib.sha256(f"{seed}:{p.name}".encode()).hexdigest())
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    per_family: dict[str, int] = {}
    for page in order:
        # 16k of the 18k pages in man1 here are gcloud's near-identical command pages: no family
        # (the name up to its first _ . or -) may fill more than a tenth of the corpus.
        family = re.split(r"[_.-]", page.name, maxsplit=1)[0]
        if per_family.get(family, 0) >= budget // 10:
            continue
        try:
            raw = gzip.decompress(page.read_bytes()).decode("utf-8", "replace") if page.suffix == ".gz" else page.read_text("utf-8", "replace")
        except (OSError, EOFError):
            continue
        if raw.lstrip().startswith(".so "):
            continue  # a redirect to another page
        for piece in split_text(strip_troff(raw), CHUNK_CHARS):
            text = " ".join(piece.split())
            if len(text.split()) >= 12 and text not in seen:
                seen.add(text)
                out.append((page.name, text))
                per_family[family] = per_family.get(family, 0) + 1
                if len(out) >= budget:
                    return out
    return out


def pydoc_passages() -> list[tuple[str, str]]:
    """The demo's passages (``demo.corpus``), in its order."""
    from ..demo import corpus  # noqa: PLC0415

    return [(source, chunk.text) for source, chunks in corpus() for chunk in chunks]


def first_sentence(text: str, min_words: int = 5) -> str:
    """The first sentence of ``text`` with at least ``min_words`` words (else the first 30 words)."""
    words = 0
    for match in re.finditer(r"[.!?:](\s|$)", text):
        head = text[: match.start() + 1]
        if len(head.split()) >= min_words:
            return head.strip()
        words = len(head.split())
    del words
    return " ".join(text.split()[:30])


@dataclass(frozen=True)
class TextCorpus:
    """Stored passages, held-out queries, and their (raw, unit, 384-wide) embeddings."""

    name: str
    docs: np.ndarray  # (n, 384) float32 unit, raw model output
    passage_queries: np.ndarray
    sentence_queries: np.ndarray
    texts: list[str]

    def rotated(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(docs, passage queries, sentence queries) after the PCA rotation fitted on the docs."""
        from ..providers.rotation import fit_rotation  # noqa: PLC0415

        r = fit_rotation(self.docs)
        return _unit(self.docs @ r), _unit(self.passage_queries @ r), _unit(self.sentence_queries @ r)


def load(name: str, *, cache: Path, budget: int = 24_000, query_every: int = 6, log=print) -> TextCorpus:
    """The corpus ``name`` ("pydoc" or "man"), embedded once and cached under ``cache/text-<name>``."""
    if name == "pydoc":
        passages = pydoc_passages()
    elif name == "man":
        passages = man_passages(budget)
    else:
        raise ValueError(f"unknown corpus {name!r}; choose pydoc or man")
    held = [p for i, p in enumerate(passages) if i % query_every == 0]
    stored = [p for i, p in enumerate(passages) if i % query_every]
    texts = [t for _, t in stored]
    sentences = [first_sentence(t) for _, t in held]
    key = hashlib.sha256(json.dumps([texts, [t for _, t in held]]).encode()).hexdigest()[:10]
    folder = Path(cache) / f"text-{name}-{len(texts)}-{key}"
    arrays = {"docs": texts, "passage_queries": [t for _, t in held], "sentence_queries": sentences}
    out = {}
    provider = None
    for part, items in arrays.items():
        path = folder / f"{part}.npy"
        if not path.exists():
            if provider is None:
                from ..providers.local import LocalProvider  # noqa: PLC0415

                provider = LocalProvider(device="cpu")
            log(f"{name}: embedding {len(items)} {part} (~50 texts/s per core) ...")
            vectors = np.empty((len(items), provider.dim), dtype=np.float32)
            for positions, batch in provider.iter_embed(items, "document" if part == "docs" else "query"):
                vectors[positions] = batch
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{part}.tmp.npy"
            np.save(tmp, np.asarray(vectors, dtype=np.float32))
            os.replace(tmp, path)
        out[part] = np.load(path)
    return TextCorpus(name, out["docs"], out["passage_queries"], out["sentence_queries"], texts)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


__all__ = ["TextCorpus", "first_sentence", "load", "man_passages", "pydoc_passages", "strip_troff"]
