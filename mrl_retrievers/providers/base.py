"""The provider contract, and the machinery every hosted provider shares.

Contract (stable; changes are additive only, flagged ``# CONTRACT CHANGE:`` here):

``Provider`` (every provider, hosted or local)
    * ``name`` (class var, the registry name), ``model``, ``dim`` (width of returned vectors),
      ``spec`` -> ``EmbeddingSpec``.
    * ``embed_documents(texts) -> (n, dim) float32``, unit rows, input order; ``embed_query(text)
      -> (dim,)``; ``aembed_documents`` / ``aembed_query`` are real async twins giving identical
      results. ``iter_embed`` / ``aiter_embed`` yield ``(positions, vectors)`` per finished batch
      (what the embedding cache uses to save each batch as soon as it is paid for).
    * Subclasses implement ``_embed_batch(texts, kind)`` (one request, sync, raw vectors in order,
      ``response_dim`` wide) and may override ``_aembed_batch`` (default: the sync one in a worker
      thread). Everything else is shared: input checks, batching, response checks (count, width,
      finite, non-zero), truncation to ``dim`` and renormalization.
    * ``__repr__`` shows class, model and dim, never a key.
    * CONTRACT CHANGE (issue 19, additive): images. ``modalities`` / ``interleaved`` /
      ``image_types`` / ``image_urls`` / ``max_images_per_input`` say what the model takes (default:
      text only); ``embed_images(images)``, ``embed_inputs(inputs)`` (texts, images or interleaved
      parts, one vector each), their async twins and ``iter_embed_inputs`` / ``aiter_embed_inputs``
      check inputs before any request (``providers/multimodal.py``) and share the text machinery.
      A multimodal adapter's ``_embed_batch(items, kind)`` gets ``str``, ``Image`` and ``Content``
      items; the spec records ``modalities``.

``HostedProvider(Provider)`` (in ``hosted.py``, which builds on this module) adds, for API-backed
providers:
    * batching by count (``batch_size``) and by estimated tokens (``max_batch_tokens``; override
      ``_estimate_tokens`` for a better count);
    * bounded concurrency (``max_concurrency`` batches in flight: threads on the sync path, tasks
      under a semaphore on the async path);
    * one retry policy (``RetryPolicy``) for all providers: exponential backoff with jitter; a
      ``Retry-After`` the server sent is honoured (we wait at least that long) the same way for every
      SDK; a Retry-After above ``RetryPolicy.max_retry_after`` gives up at once. Subclasses must
      disable their SDK's own retries (``max_retries=0`` or equivalent) so ours is the only policy,
      and pass ``self.timeout`` (seconds) to the SDK in its own unit;
    * error classification: any exception from ``_embed_batch``/``_aembed_batch`` that is not
      already a ``ProviderError`` goes through ``_classify(exc)``, which returns a typed
      ``ProviderError`` carrying ``.retryable: bool`` and ``.retry_after: float | None`` (seconds).
      Build those with ``make_error`` / ``error_for_status`` / ``parse_retry_after`` from this
      module; ``HostedProvider._classify`` already maps builtin timeouts and connection errors, so
      subclasses handle their SDK's exceptions and defer to ``super()._classify(exc)`` otherwise.
      When retries are spent the last error is raised, its message naming provider, model, status
      and the number of attempts.
    * keys: ``self._api_key`` is a ``Secret`` (or None); ``resolve_api_key`` reads the provider's
      usual env vars when none is given. A key never reaches repr, logs, specs or error messages
      (messages are scrubbed of the key value before they are raised).

Registry class names (``providers/__init__.py``): ``openai:OpenAIProvider``,
``gemini:GeminiProvider``, ``voyage:VoyageProvider``, ``local:LocalProvider``, ``fake:FakeProvider``.
Constructors take keyword arguments ``model``, ``dim``, ``api_key``, ``base_url`` plus options, and
should pass ``timeout``/``max_retries``/``max_concurrency``/``batch_size``/``max_batch_tokens`` on
to ``HostedProvider.__init__``.

Example:
    >>> from mrl_retrievers.providers.fake import FakeProvider
    >>> emb = FakeProvider(dim=32)
    >>> emb.embed_documents(["a cat", "a dog"]).shape
    (2, 32)
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import importlib
import logging
import os
from typing import Any, AsyncIterator, ClassVar, Iterator, Literal, Sequence

import numpy as np

from ..checks import positive_int
from ..config import Secret
from ..media import MEDIA_TYPES
from ..errors import (
    ConfigError,
    EmbeddingResponseError,
    InvalidInputError,
    MissingDependencyError,
    ProviderError,
)
from ..types import EmbeddingSpec
# Re-exported: adapters import the whole contract from this module.
from ._retry import RetryPolicy, error_for_status, make_error, parse_retry_after  # noqa: F401
from . import multimodal

logger = logging.getLogger("mrl_retrievers.providers")

Kind = Literal["query", "document"]
KINDS: tuple[str, ...] = ("query", "document")

# Rows shorter than this have no direction; a provider returning one is broken.
_MIN_NORM = 1e-12


# --- helpers shared by adapters ------------------------------------------------------------------


def require(module: str, *, package: str, extra: str, purpose: str = "") -> Any:
    """Import an optional SDK, or raise ``MissingDependencyError`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, extra, purpose) from exc


def resolve_api_key(api_key: str | Secret | None, env_vars: Sequence[str]) -> Secret | None:
    """The key given, else the first non-empty env var of ``env_vars``, as a ``Secret`` (or None)."""
    if isinstance(api_key, Secret):
        return api_key if api_key else None
    if api_key is not None:
        if not isinstance(api_key, str):
            raise ConfigError(f"api_key must be a string or Secret, got {type(api_key).__name__}")
        return Secret(api_key) if api_key else None
    for var in env_vars:
        value = os.environ.get(var)
        if value:
            return Secret(value)
    return None


# --- the contract ------------------------------------------------------------------------------


class Provider(abc.ABC):
    """Turns texts into unit-length float32 vectors of width ``dim``.

    Thread-safety: embedding calls may run from several threads at once; subclasses keep per-call
    state local.
    """

    name: ClassVar[str] = ""
    #: raise InvalidInputError for empty/whitespace-only texts before any request (APIs reject them)
    reject_empty: ClassVar[bool] = False
    # What the model takes (multimodal adapters set these per model: multimodal.apply_capabilities).
    modalities: tuple[str, ...] = ("text",)
    interleaved: bool = False  # texts and images mixed in one input, one vector
    image_types: tuple[str, ...] = MEDIA_TYPES
    image_urls: bool = False  # the API fetches http(s) image URLs itself
    max_images_per_input: int | None = None

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        response_dim: int | None = None,
        batch_size: int = 64,
        max_concurrency: int = 1,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
    ) -> None:
        """Args:
            model: model name or path.
            dim: width of the vectors returned to the caller.
            response_dim: width ``_embed_batch`` returns (>= dim; wider rows are truncated). None
                accepts any width >= dim (unknown models).
            batch_size: most texts per ``_embed_batch`` call.
            max_concurrency: most batches in flight at once.
            query_prompt / document_prompt: how each side is marked, recorded in the spec.
        """
        dim = positive_int("dim", dim, error=ConfigError)
        batch_size = positive_int("batch_size", batch_size, error=ConfigError)
        max_concurrency = positive_int("max_concurrency", max_concurrency, error=ConfigError)
        if response_dim is not None and response_dim < dim:
            raise ConfigError(f"response_dim {response_dim} is smaller than dim {dim}")
        self.model = model
        self.dim = int(dim)
        self.response_dim = response_dim
        self.batch_size = int(batch_size)
        self.max_concurrency = int(max_concurrency)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt

    def __deepcopy__(self, memo: dict[int, Any]) -> "Provider":
        """Itself: a provider stands for one model account (its clients, connection pools, locks and
        rate-limit state), so deep copies of what holds it (a LangChain or LlamaIndex object, a
        pydantic model, a config) share it, as they would share a connection."""
        return self

    # -- what subclasses implement --

    @abc.abstractmethod
    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """One request: raw vectors for ``texts`` in order, ``response_dim`` wide."""

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        """Async twin of ``_embed_batch``; the default runs the sync one in a worker thread."""
        return await asyncio.to_thread(self._embed_batch, texts, kind)

    def _spec_extra(self) -> dict[str, str]:
        """Anything else that changes the vectors, recorded in ``EmbeddingSpec.extra``."""
        return {}

    def _rotation_id(self) -> str | None:
        return None

    # -- the public API --

    @property
    def spec(self) -> EmbeddingSpec:
        """What produced these vectors: a store refuses vectors from any other spec."""
        return EmbeddingSpec(
            provider=self.name,
            model=self.model,
            dim=self.dim,
            normalized=True,
            rotation=self._rotation_id(),
            query_prompt=self.query_prompt,
            document_prompt=self.document_prompt,
            extra=tuple(sorted(self._spec_extra().items())),
            modalities=tuple(self.modalities),
        )

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents: ``(len(texts), dim)`` float32, unit rows, input order."""
        items = _check_texts(texts, self.reject_empty)
        return self._collect(len(items), self.iter_embed(items, "document"))

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: ``(dim,)`` float32, unit length."""
        if not isinstance(text, str):
            raise InvalidInputError(f"a query must be a string, got {type(text).__name__}")
        return self._collect(1, self.iter_embed([text], "query"))[0]

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Async ``embed_documents``; same results."""
        items = _check_texts(texts, self.reject_empty)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        async for positions, vectors in self.aiter_embed(items, "document"):
            out[positions] = vectors
        return out

    async def aembed_query(self, text: str) -> np.ndarray:
        """Async ``embed_query``; same result."""
        if not isinstance(text, str):
            raise InvalidInputError(f"a query must be a string, got {type(text).__name__}")
        async for _positions, vectors in self.aiter_embed([text], "query"):
            return vectors[0]
        raise AssertionError("unreachable: one text yields one batch")  # pragma: no cover

    def iter_embed(self, texts: Sequence[str], kind: Kind = "document") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(positions, vectors)`` for each batch as it finishes (completion order).

        ``positions`` index into ``texts``. Up to ``max_concurrency`` batches run at once.
        """
        yield from self._iter_items(_check_texts(texts, self.reject_empty), kind)

    async def aiter_embed(
        self, texts: Sequence[str], kind: Kind = "document"
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """Async ``iter_embed``: batches run as tasks, at most ``max_concurrency`` at once."""
        async for done in self._aiter_items(_check_texts(texts, self.reject_empty), kind):
            yield done

    # -- images (inputs are checked in multimodal.py; the batches run as texts do) --

    def embed_images(self, images: Sequence[Any], kind: Kind = "document") -> np.ndarray:
        """Embed images (paths, http(s) URLs where the API takes them, bytes, file objects, PIL
        images or ``Image``): ``(len(images), dim)`` float32, unit rows, input order.

        ``kind="query"`` embeds them as queries (image-to-image search). Raises
        ``UnsupportedModalityError`` on a text-only model and ``InvalidImageError`` on an image
        that cannot be read or sent, before any request.
        """
        return self.embed_inputs(multimodal.check_inputs(self, images, images=True), kind)

    def embed_inputs(self, inputs: Sequence[Any], kind: Kind = "document") -> np.ndarray:
        """Embed texts, images and interleaved inputs (a list of parts: its ``str`` items are text,
        the rest images) into one space: one unit row per input, input order."""
        items = multimodal.check_inputs(self, inputs)
        return self._collect(len(items), self.iter_embed_inputs(items, kind))

    async def aembed_images(self, images: Sequence[Any], kind: Kind = "document") -> np.ndarray:
        """Async ``embed_images``; same results."""
        return await self.aembed_inputs(multimodal.check_inputs(self, images, images=True), kind)

    async def aembed_inputs(self, inputs: Sequence[Any], kind: Kind = "document") -> np.ndarray:
        """Async ``embed_inputs``; same results."""
        items = multimodal.check_inputs(self, inputs)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        async for positions, vectors in self.aiter_embed_inputs(items, kind):
            out[positions] = vectors
        return out

    def iter_embed_inputs(self, inputs: Sequence[Any], kind: Kind = "document") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``iter_embed`` for texts, images and interleaved inputs."""
        yield from self._iter_items(multimodal.check_inputs(self, inputs), kind)

    async def aiter_embed_inputs(
        self, inputs: Sequence[Any], kind: Kind = "document"
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """Async ``iter_embed_inputs``."""
        async for done in self._aiter_items(multimodal.check_inputs(self, inputs), kind):
            yield done

    def _iter_items(self, texts: list[Any], kind: Kind) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        _check_kind(kind)
        batches = self._split(texts)
        logger.debug("%s: embedding %d %s inputs in %d batches", self._label(), len(texts), kind, len(batches))
        if self.max_concurrency == 1 or len(batches) <= 1:
            for positions in batches:
                yield positions, self._finish(self._run_batch([texts[i] for i in positions], kind), len(positions))
            return
        yield from self._iter_threaded(texts, kind, batches)

    async def _aiter_items(self, texts: list[Any], kind: Kind) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        _check_kind(kind)
        batches = self._split(texts)
        if self.max_concurrency == 1 or len(batches) <= 1:
            for positions in batches:
                raw = await self._arun_batch([texts[i] for i in positions], kind)
                yield positions, self._finish(raw, len(positions))
            return
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            async with gate:
                raw = await self._arun_batch([texts[i] for i in positions], kind)
            return positions, self._finish(raw, len(positions))

        tasks = [asyncio.ensure_future(one(p)) for p in batches]
        try:
            for next_done in asyncio.as_completed(tasks):
                yield await next_done
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        """Release clients and connections (idempotent)."""

    async def aclose(self) -> None:
        """Async ``close``."""
        self.close()

    def __enter__(self) -> "Provider":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, dim={self.dim})"

    __str__ = __repr__

    # -- shared machinery --

    def _split(self, texts: list[str]) -> list[np.ndarray]:
        """Contiguous batches of positions; by count here, also by tokens in HostedProvider."""
        return [np.arange(i, min(i + self.batch_size, len(texts))) for i in range(0, len(texts), self.batch_size)]

    def _run_batch(self, texts: list[str], kind: Kind) -> Any:
        return self._embed_batch(texts, kind)

    async def _arun_batch(self, texts: list[str], kind: Kind) -> Any:
        return await self._aembed_batch(texts, kind)

    def _iter_threaded(
        self, texts: list[str], kind: Kind, batches: list[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(batches)), thread_name_prefix=f"mrl-{self.name}"
        )
        try:
            futures = {pool.submit(self._run_batch, [texts[i] for i in p], kind): p for p in batches}
            for future in concurrent.futures.as_completed(futures):
                positions = futures[future]
                yield positions, self._finish(future.result(), len(positions))
        finally:
            # On error or an abandoned generator: drop queued batches, let in-flight ones end.
            pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self, raw: Any, expected: int) -> np.ndarray:
        """Check a batch's raw vectors, truncate to ``dim``, renormalize; float32 C-contiguous."""
        try:
            arr = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise self._response_error(f"vectors are not a numeric matrix ({exc})") from None
        if arr.ndim != 2 or arr.shape[0] != expected:
            raise self._response_error(f"expected {expected} vectors, got an array of shape {arr.shape}")
        width = arr.shape[1]
        wanted = self.response_dim
        if (wanted is not None and width != wanted) or width < self.dim:
            raise self._response_error(
                f"vectors are {width} wide, expected {wanted if wanted is not None else f'>= {self.dim}'}"
            )
        arr = arr[:, : self.dim]
        if not np.isfinite(arr).all():
            bad = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
            raise self._response_error(f"vector {bad} of the batch contains NaN or infinity")
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if (norms < _MIN_NORM).any():
            bad = int(np.flatnonzero(norms[:, 0] < _MIN_NORM)[0])
            raise self._response_error(f"vector {bad} of the batch is all zeros at width {self.dim}")
        return np.ascontiguousarray(arr / norms, dtype=np.float32)

    def _collect(self, n: int, batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for positions, vectors in batches:
            out[positions] = vectors
        return out

    def _response_error(self, message: str) -> ProviderError:
        return make_error(EmbeddingResponseError, message, provider=self.name, model=self.model)

    def _label(self) -> str:
        return f"{self.name}/{self.model}"


# --- input checks --------------------------------------------------------------------------------


def _check_texts(texts: Sequence[str], reject_empty: bool) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("texts must be a list of strings, not one string (use embed_query for one)")
    try:
        items = list(texts)
    except TypeError:
        raise InvalidInputError(f"texts must be a sequence of strings, got {type(texts).__name__}") from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a string, got {type(text).__name__}")
        if reject_empty and not text.strip():
            raise InvalidInputError(
                f"texts[{i}] is empty or whitespace-only; the provider rejects those (drop or fill them)"
            )
    return items


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {KINDS}, got {kind!r}")


__all__ = [
    "KINDS",
    "Kind",
    "Provider",
    "RetryPolicy",
    "error_for_status",
    "make_error",
    "parse_retry_after",
    "require",
    "resolve_api_key",
]
