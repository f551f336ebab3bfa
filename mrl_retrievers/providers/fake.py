"""A deterministic, dependency-free provider for tests: MRL-like, fast, stable across processes.

Each word maps to a fixed pseudo-random vector drawn from SHAKE-256 of (seed, word) (never Python's
``hash()``, which changes per process); a text is the sum of its words' vectors plus a smaller
vector of the whole text (so reordered words still differ), scaled by a decaying spectrum so the
first dimensions carry most of the energy, like a Matryoshka model. Texts sharing words are similar.
The stream does not depend on ``dim``, so a 64-wide vector is the renormalized prefix of the
128-wide one of the same text, exactly as with a real MRL model.

Images are embedded from their bytes, offline: a vector drawn from the sha256 of the bytes (of the
URL, for a URL image), plus the words of a PNG's caption text chunks (``Title``, ``Description``,
``Caption``, ``Comment``, ``Keywords``) the way a text's words are. So a captioned chart is found by
a text query sharing its words (text-to-image search that tests and notebooks can predict), and an
image without a caption is near only itself. An interleaved input is the sum of its parts.

Example:
    >>> emb = FakeProvider(dim=16)
    >>> a, b = emb.embed_documents(["red apple pie", "red apple tart"])
    >>> float(a @ b) > 0.5
    True
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import threading
import time
from typing import Any, Callable, ClassVar

import numpy as np

from ..media import Content, Image
from .base import Kind, Provider

_WORD = re.compile(r"\w+", re.UNICODE)
# Weight of the whole-text component against the sum of word vectors.
_TEXT_WEIGHT = 0.35
# PNG text chunks read as an image's caption (the standard keywords that describe the picture).
_CAPTION_KEYS = ("title", "description", "caption", "comment", "keywords")


@functools.lru_cache(maxsize=8192)
def _stream(seed: int, token: str, dim: int) -> np.ndarray:
    """``dim`` uniform numbers in [-1, 1) fixed by (seed, token); prefix-stable in ``dim``."""
    digest = hashlib.shake_256(f"{seed}\x00{token}".encode("utf-8", "surrogatepass")).digest(4 * dim)
    values = np.frombuffer(digest, dtype="<u4").astype(np.float64)
    out = values / 2.0**31 - 1.0
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=64)
def _spectrum(dim: int, decay: float) -> np.ndarray:
    """Per-dimension scale: dimension i weighs (1 + i/8) ** -decay (front-loaded energy)."""
    return (1.0 + np.arange(dim) / 8.0) ** -decay


class FakeProvider(Provider):
    """Deterministic MRL-like embeddings, with call counters and failure hooks for tests.

    Args:
        model: a name for the spec (different names are different specs).
        dim: width of the vectors (any positive integer).
        seed: changes every vector; recorded in the spec when not 0.
        decay: how fast energy falls over dimensions (0 = flat, not MRL-like).
        batch_size / max_concurrency: as for any provider (exercise batching code paths).
        delay: seconds each batch takes (sleeps; the async path awaits).
        fail: called as ``fail(texts, kind, call_number)`` before each batch; raise from it to
            inject a failure (call numbers start at 1).
        corrupt: called on each batch's raw array; return a damaged one to test response checks.

    Attributes:
        calls: batches embedded; ``texts_embedded``: texts embedded; ``batch_sizes``: per batch.
    """

    name: ClassVar[str] = "fake"
    modalities = ("image", "text")
    interleaved = True
    image_urls = True  # embedded from the URL itself: nothing is fetched

    def __init__(
        self,
        *,
        model: str = "fake-mrl-v1",
        dim: int = 64,
        seed: int = 0,
        decay: float = 0.75,
        batch_size: int = 64,
        max_concurrency: int = 1,
        delay: float = 0.0,
        fail: Callable[[list[str], str, int], None] | None = None,
        corrupt: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        super().__init__(model=model, dim=dim, batch_size=batch_size, max_concurrency=max_concurrency)
        self.seed = int(seed)
        self.decay = float(decay)
        self.delay = float(delay)
        self.fail = fail
        self.corrupt = corrupt
        self._lock = threading.Lock()
        self.reset_counts()

    def reset_counts(self) -> None:
        """Zero ``calls``, ``texts_embedded`` and ``batch_sizes``."""
        with self._lock:
            self.calls = 0
            self.texts_embedded = 0
            self.batch_sizes: list[int] = []

    def vector(self, text: str | Image | Content) -> np.ndarray:
        """The raw (unnormalized) vector of one input; pure function of (seed, decay, dim, input)."""
        if isinstance(text, Image):
            return self._image_vector(text)
        if isinstance(text, Content):
            return np.sum([self.vector(part) for part in text.parts], axis=0)
        acc = np.zeros(self.dim, dtype=np.float64)
        for word in _WORD.findall(text.lower()):
            acc += _stream(self.seed, "w:" + word, self.dim)
        acc += _TEXT_WEIGHT * _stream(self.seed, "t:" + text, self.dim)
        return acc * _spectrum(self.dim, self.decay)

    def _image_vector(self, image: Image) -> np.ndarray:
        acc = np.zeros(self.dim, dtype=np.float64)
        chunks = {k.lower(): v for k, v in image.text_chunks().items()}
        for word in _WORD.findall(" ".join(chunks.get(k, "") for k in _CAPTION_KEYS).lower()):
            acc += _stream(self.seed, "w:" + word, self.dim)
        acc += _TEXT_WEIGHT * _stream(self.seed, "i:" + image.digest(), self.dim)
        return acc * _spectrum(self.dim, self.decay)

    def _count(self, texts: list[str], kind: str) -> None:
        with self._lock:
            self.calls += 1
            call_number = self.calls
            self.texts_embedded += len(texts)
            self.batch_sizes.append(len(texts))
        if self.fail is not None:
            self.fail(texts, kind, call_number)

    def _compute(self, texts: list[str]) -> Any:
        raw = np.stack([self.vector(t) for t in texts]) if texts else np.empty((0, self.dim))
        return self.corrupt(raw) if self.corrupt is not None else raw

    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        self._count(texts, kind)
        if self.delay:
            time.sleep(self.delay)
        return self._compute(texts)

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        self._count(texts, kind)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._compute(texts)

    def _spec_extra(self) -> dict[str, str]:
        extra = {}
        if self.seed:
            extra["seed"] = str(self.seed)
        if self.decay != 0.75:
            extra["decay"] = repr(self.decay)
        return extra


__all__ = ["FakeProvider"]
