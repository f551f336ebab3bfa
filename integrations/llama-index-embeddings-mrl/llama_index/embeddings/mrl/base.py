"""MRLEmbedding: any mrl-retrievers provider (OpenAI, Gemini, Voyage, Jina, local, fake) as a LlamaIndex
``MultiModalEmbedding``, with the provider's real async path."""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageType
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.callbacks import CallbackManager

from mrl_retrievers import EmbeddingSpec, Provider, Settings, get_provider
from mrl_retrievers.config import EmbedderSettings
from mrl_retrievers.errors import ConfigError

__all__ = ["MRLEmbedding", "with_signature"]

ConfigSource = Settings | EmbedderSettings | Mapping[str, Any] | str | os.PathLike

_F = TypeVar("_F", bound=Callable[..., Any])


def with_signature(fn: _F) -> _F:
    """Give ``fn`` its ``__signature__`` once. LlamaIndex wraps our ``_get_*_embedding`` and
    ``_retrieve`` methods in instrumentation spans that call ``inspect.signature`` on every call
    (~7 us each); with ``__signature__`` set, inspect returns it instead of rebuilding it."""
    fn.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return fn


class MRLEmbedding(MultiModalEmbedding):
    """A LlamaIndex embedding model backed by an mrl-retrievers ``Provider``.

    Queries and documents are embedded with the provider's own query / document prompt or task
    type; vectors are unit length and ``dim`` wide. The async methods call the provider's real
    async path (``aembed_query`` / ``aembed_documents``).

    It is a ``MultiModalEmbedding``: with a multimodal model (voyage-multimodal-3.5,
    gemini-embedding-2, jina-embeddings-v4, or fake offline) ``get_image_embedding`` /
    ``aget_image_embedding`` embed an image (a path, a URL where the API takes one, or the
    ``BytesIO`` LlamaIndex hands over) into the space of the texts, so it serves as both
    ``embed_model`` and ``image_embed_model`` of a ``MultiModalVectorStoreIndex``. Images are
    embedded on the document side, for indexing and image queries alike (LlamaIndex has one image
    method for both). A text-only model raises ``UnsupportedModalityError``.

    Args:
        provider: a ``Provider``, or a registry name ("openai", "gemini", "voyage", "local",
            "fake"); None builds one from ``config`` (or from environment variables alone).
        config: a ``Settings``, an ``[embedder]`` block, a mapping or a TOML path (``provider``
            must then be None); the keyword arguments below override it.
        model / dim / api_key / base_url / **options: as for ``mrl_retrievers.get_provider``.
        embed_batch_size: texts LlamaIndex hands over per call (the provider batches them again
            by its API's limits and runs up to its ``max_concurrency`` requests at once).

    Pickling (``IngestionPipeline(num_workers=2)`` sends the model to worker processes) keeps how
    to build the provider, never its clients or a key: the copy rebuilds the provider, and reads
    its key from the provider's environment variable. An object built with ``api_key=`` or from a
    ready ``Provider`` refuses to pickle, saying what to do instead.

    Example:
        >>> embed = MRLEmbedding("fake", dim=16)
        >>> len(embed.get_query_embedding("hello"))
        16
        >>> embed.spec.provider
        'fake'
    """

    _provider: Provider = PrivateAttr()
    _recipe: dict | None = PrivateAttr(default=None)  # how to build the provider again (None: cannot)
    _keyed: bool = PrivateAttr(default=False)  # an api_key was given: never pickled
    _last_query: threading.local = PrivateAttr(default_factory=threading.local)  # see ``query_array``

    def __init__(
        self,
        provider: Provider | str | None = None,
        *,
        config: ConfigSource | None = None,
        model: str | None = None,
        dim: int | None = None,
        api_key: Any = None,
        base_url: str | None = None,
        embed_batch_size: int = 256,
        callback_manager: CallbackManager | None = None,
        **options: Any,
    ) -> None:
        built = _build_provider(provider, config, model=model, dim=dim, api_key=api_key, base_url=base_url, **options)
        super().__init__(model_name=built.model, embed_batch_size=embed_batch_size, callback_manager=callback_manager)
        self._provider = built
        if not isinstance(provider, Provider):
            self._recipe = {"provider": provider, "config": config, "model": model, "dim": dim, "base_url": base_url,
                            "embed_batch_size": embed_batch_size, **options}  # fmt: skip
        self._keyed = api_key is not None or _holds_key(config)

    def __getstate__(self) -> dict[str, Any]:
        if self._recipe is None:
            raise TypeError(
                "an MRLEmbedding built from a ready Provider cannot be pickled (a worker process must build its own); "
                "build it by name, e.g. MRLEmbedding('openai', model=..., dim=...)"
            )
        if self._keyed:
            raise TypeError(
                "an MRLEmbedding given an API key cannot be pickled: keys never leave the process. Set the "
                "provider's environment variable (e.g. OPENAI_API_KEY) instead, so worker processes read it"
            )
        return {"recipe": self._recipe}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["recipe"])  # type: ignore[misc] - a new provider, built as the original was

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> MRLEmbedding:
        """A copy (``copy.deepcopy``, ``model_copy(deep=True)``) that shares the provider: its
        clients, connection pools and rate-limit state stand for one API account, and copying them
        would split one rate limit in two. The copy has its own per-thread query cache."""
        clone = self.model_copy()  # shallow: the provider is shared
        clone._last_query = threading.local()
        if memo is not None:  # pydantic's model_copy(deep=True) passes none
            memo[id(self)] = clone
        return clone

    @classmethod
    def from_config(cls, source: ConfigSource | None = None, **overrides: Any) -> MRLEmbedding:
        """Build from a config's ``[embedder]`` block; keyword arguments override it."""
        return cls(None, config=source, **overrides)

    @classmethod
    def class_name(cls) -> str:
        return "MRLEmbedding"

    @property
    def provider(self) -> Provider:
        """The underlying provider."""
        return self._provider

    @property
    def spec(self) -> EmbeddingSpec:
        """The ``EmbeddingSpec`` to give ``MRLVectorStore(spec=...)`` so stores refuse other vectors."""
        return self._provider.spec

    @property
    def dim(self) -> int:
        return self._provider.dim

    # --- BaseEmbedding ------------------------------------------------------------------------------

    @with_signature
    def _get_query_embedding(self, query: str) -> Embedding:
        return self._listed(self._provider.embed_query(query))

    @with_signature
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return self._listed(await self._provider.aembed_query(query))

    def query_array(self, embedding: Embedding) -> np.ndarray | None:
        """The float32 vector this thread's last query embedding was listed from, when ``embedding``
        is that very list (else None). LlamaIndex hands embeddings around as lists of Python floats;
        ``MRLRetriever`` passes this array to the store instead of converting the list back (~30 us
        at 1024 dims). Identity, not equality: any other list is converted as usual."""
        last = getattr(self._last_query, "pair", None)
        return last[1] if last is not None and last[0] is embedding else None

    def _listed(self, vector: np.ndarray) -> Embedding:
        listed = vector.tolist()
        self._last_query.pair = (listed, vector)
        return listed

    @with_signature
    def _get_text_embedding(self, text: str) -> Embedding:
        return self._provider.embed_documents([text])[0].tolist()

    @with_signature
    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._provider.aembed_documents([text]))[0].tolist()

    @with_signature
    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._provider.embed_documents(texts).tolist()

    @with_signature
    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return (await self._provider.aembed_documents(texts)).tolist()

    # --- MultiModalEmbedding ----------------------------------------------------------------------------

    @with_signature
    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._provider.embed_images([img_file_path])[0].tolist()

    @with_signature
    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return (await self._provider.aembed_images([img_file_path]))[0].tolist()

    @with_signature
    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self._provider.embed_images(list(img_file_paths)).tolist() if img_file_paths else []

    @with_signature
    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return (await self._provider.aembed_images(list(img_file_paths))).tolist() if img_file_paths else []


def _holds_key(config: Any) -> bool:
    """Whether a config source carries an API key itself (a mapping or settings object; a TOML path
    is read again by the copy, and keys belong in the environment anyway)."""
    if isinstance(config, Settings):
        config = config.embedder
    if isinstance(config, EmbedderSettings):
        return config.api_key is not None
    if isinstance(config, Mapping):
        return any(k == "api_key" and v is not None or _holds_key(v) for k, v in config.items())
    return False


def _build_provider(provider: Provider | str | None, config: ConfigSource | None, **kwargs: Any) -> Provider:
    given = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(provider, Provider):
        if config is not None or given:
            raise ConfigError(f"got a ready Provider and also settings for it ({sorted(given) or 'config'}); pass one")
        return provider
    if provider is not None and config is not None:
        raise ConfigError("pass a provider name or a config, not both (override config values with keywords)")
    if isinstance(provider, str):
        return get_provider(provider, **given)
    if provider is not None:
        raise ConfigError(f"provider must be a Provider or a registry name, got {type(provider).__name__}")
    from mrl_retrievers.providers import from_config

    return from_config(config, **given)
