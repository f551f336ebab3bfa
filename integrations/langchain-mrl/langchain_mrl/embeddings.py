"""``MRLEmbeddings``: any mrl-retrievers provider as a LangChain ``Embeddings``.

The provider does the work (batching, retries, truncation to ``dim``, unit vectors); this class only
converts its numpy arrays to the lists of Python floats LangChain expects, and keeps the async
methods truly async (they await the provider's own ``aembed_*``, never a thread around the sync one).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from langchain_core.embeddings import Embeddings

from mrl_retrievers import EmbeddingSpec, Provider, Settings, get_provider
from mrl_retrievers.errors import ConfigError


class MRLEmbeddings(Embeddings):
    """LangChain embeddings backed by a provider of the mrl-retrievers registry.

    Args:
        provider: a registry name ("openai", "gemini", "voyage", "local", "fake"...) or a ready
            ``Provider`` (then no other argument may be given).
        model: the model name (None: the provider's default).
        dim: the width of the returned vectors (None: the model's native width). MRL models are
            asked for this width directly when their API allows it, else truncated.
        api_key: a string or ``Secret``; None reads the provider's usual env var.
        base_url: a compatible endpoint or proxy (hosted providers only).
        **options: provider options (timeout, max_retries, max_concurrency, batch_size, cache...).

    Thread-safety: safe to call from several threads and tasks at once. Cost: one provider request
    per batch of texts (the provider's batch limit, e.g. 2048 texts for OpenAI).

    Example:
        >>> emb = MRLEmbeddings("fake", dim=8)
        >>> len(emb.embed_query("hello"))
        8
        >>> type(emb.embed_documents(["a", "b"])[0][0])
        <class 'float'>
    """

    def __init__(
        self,
        provider: str | Provider,
        *,
        model: str | None = None,
        dim: int | None = None,
        api_key: Any = None,
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        if isinstance(provider, Provider):
            given = {"model": model, "dim": dim, "api_key": api_key, "base_url": base_url, **options}
            extra = sorted(name for name, value in given.items() if value is not None)
            if extra:
                raise ConfigError(f"MRLEmbeddings got a ready Provider and also {extra}; configure the provider instead")
            self.client: Provider = provider
        else:
            self.client = get_provider(provider, model=model, dim=dim, api_key=api_key, base_url=base_url, **options)

    @classmethod
    def from_config(
        cls, source: Settings | Mapping[str, Any] | str | os.PathLike[str] | None = None, **overrides: Any
    ) -> "MRLEmbeddings":
        """Build from an ``[embedder]`` block: ``Settings``, a mapping, a TOML path, or env vars only.

        Example:
            >>> MRLEmbeddings.from_config({"embedder": {"provider": "fake", "dim": 16}}).dim
            16
        """
        from mrl_retrievers.providers import from_config  # noqa: PLC0415 - the registry's config entry point

        return cls(from_config(source, **overrides))

    # --- what the provider is -------------------------------------------------------------------

    @property
    def spec(self) -> EmbeddingSpec:
        """The provider's ``EmbeddingSpec`` (what a store records and checks)."""
        return self.client.spec

    @property
    def dim(self) -> int:
        """Width of the vectors returned."""
        return self.client.dim

    @property
    def model(self) -> str:
        return self.client.model

    @property
    def provider(self) -> str:
        """The provider's registry name."""
        return self.client.name

    def __repr__(self) -> str:
        return f"MRLEmbeddings({self.client!r})"

    def close(self) -> None:
        """Release the provider's clients and connections (idempotent)."""
        self.client.close()

    async def aclose(self) -> None:
        """Release the provider's clients, including the async client of the running event loop."""
        await self.client.aclose()

    # --- LangChain's Embeddings interface -----------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (document-side prompt or task type). Python floats, unit rows."""
        texts = list(texts)
        if not texts:
            return []
        return self.client.embed_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a query (query-side prompt or task type). Python floats, unit length."""
        return self.client.embed_query(text).tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async ``embed_documents``: awaits the provider's own async path (identical results)."""
        texts = list(texts)
        if not texts:
            return []
        return (await self.client.aembed_documents(texts)).tolist()

    async def aembed_query(self, text: str) -> list[float]:
        """Async ``embed_query``: awaits the provider's own async path (identical results)."""
        return (await self.client.aembed_query(text)).tolist()

    # --- images (the convention of LangChain's image embedding classes, e.g. OpenCLIPEmbeddings) ---

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed images given by path or URL (or bytes, PIL images) into the space of the texts.

        Needs a multimodal model (voyage-multimodal-3.5, gemini-embedding-2, jina-embeddings-v4, or
        fake offline); a text-only one raises ``UnsupportedModalityError`` before any request.

        Example:
            >>> from mrl_retrievers.media import PNG_1x1
            >>> len(MRLEmbeddings("fake", dim=8).embed_image([PNG_1x1])[0])
            8
        """
        uris = list(uris)
        return self.client.embed_images(uris).tolist() if uris else []

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """Async ``embed_image``: awaits the provider's own async path (identical results)."""
        uris = list(uris)
        return (await self.client.aembed_images(uris)).tolist() if uris else []


__all__ = ["MRLEmbeddings"]
