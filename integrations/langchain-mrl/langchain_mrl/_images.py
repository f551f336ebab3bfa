"""Images in ``MRLVectorStore``: ``add_images`` as langchain-chroma offers it, and image queries.

Kept beside ``vectorstores.py`` as a mixin so the text store stays readable; every method here runs
through the same store core (``_write``, ``_hits``) as the text methods.

An image is embedded by ``MRLEmbeddings.embed_image`` (a multimodal provider: voyage-multimodal-3.5,
gemini-embedding-2, jina-embeddings-v4, or fake offline), or by any LangChain embedding class that
follows the ``embed_image(uris)`` convention (``OpenCLIPEmbeddings``). Its record keeps where it came
from in the reserved metadata keys ``mrl_modality``, ``mrl_source`` and ``mrl_media_type``; a
``Document`` of an image carries its source (path or URL) as ``page_content`` and those keys in its
metadata. Unlike Chroma, the image bytes are not copied into the store: load them from the source.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.runnables.config import run_in_executor

from mrl_retrievers.errors import ConfigError
from mrl_retrievers.media import Image, media_metadata

from ._utils import check_count, prepare_add, unit_rows, unit_vector


class ImageSearch:
    """The image methods of ``MRLVectorStore`` (see the module docstring)."""

    _embedding: Any
    _mrl: Any
    _lazy: Any

    def add_images(
        self,
        uris: list[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        *,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert images given by path or URL (http(s), where the provider takes URLs).

        Each batch (default: all) is one embedding call sequence and one store transaction, durable
        when this returns. Returns the ids (uuid4 strings when not given).

        Example:
            >>> from langchain_mrl import MRLEmbeddings, MRLVectorStore
            >>> from mrl_retrievers.media import PNG_1x1
            >>> import pathlib, tempfile
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "dot.png"; _ = path.write_bytes(PNG_1x1)
            >>> vs = MRLVectorStore(MRLEmbeddings("fake", dim=16))
            >>> vs.add_images([str(path)], ids=["dot"])
            ['dot']
            >>> vs.get_by_ids(["dot"])[0].metadata["mrl_media_type"]
            'image/png'
        """
        uris, metas, ids, batches = prepare_add(uris, metadatas, ids, batch_size, kwargs)
        images = _load(uris)
        self._lazy.check_writable()  # before paying for embeddings
        for part in batches:
            vectors = self._image_vectors(uris[part], images[part])
            self._write(ids[part], vectors, [None] * len(vectors), _metadatas(images[part], metas[part]))
        return ids

    async def aadd_images(
        self,
        uris: list[str],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        *,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async ``add_images``: awaits the provider's async path; the store write runs in a thread."""
        uris, metas, ids, batches = prepare_add(uris, metadatas, ids, batch_size, kwargs)
        images = _load(uris)
        self._lazy.check_writable()
        for part in batches:
            vectors = await self._aimage_vectors(uris[part], images[part])
            await run_in_executor(None, self._write, ids[part], vectors, [None] * len(vectors),
                                  _metadatas(images[part], metas[part]))
        return ids

    def similarity_search_by_image(self, uri: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` documents (images or texts) closest to an image embedded as a query."""
        return [doc for doc, _ in self.similarity_search_by_image_with_score(uri, k, **kwargs)]

    def similarity_search_by_image_with_score(self, uri: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """``similarity_search_by_image`` with cosine similarities (``filter``, ``shortlist``... as
        for text queries; ``{"mrl_modality": "image"}`` keeps images only)."""
        options = self._options(kwargs)
        if self._lazy.existing() is None or check_count("k", k) == 0:
            return []
        return self._scored(self._image_query_vector(uri), k, options)

    # --- embedding ---------------------------------------------------------------------------------

    def _image_vectors(self, uris: list[str], images: list[Image]) -> np.ndarray:
        if self._mrl is not None:
            return self._mrl.embed_images(images)
        return unit_rows(_foreign_embed_image(self._embedding)(uris), len(uris))

    async def _aimage_vectors(self, uris: list[str], images: list[Image]) -> np.ndarray:
        if self._mrl is not None:
            return await self._mrl.aembed_images(images)
        return await run_in_executor(None, self._image_vectors, uris, images)

    def _image_query_vector(self, uri: str) -> np.ndarray:
        if self._mrl is not None:
            return self._mrl.embed_images([uri], kind="query")[0]
        return unit_vector(_foreign_embed_image(self._embedding)([uri])[0])


def _load(uris: list[Any]) -> list[Image]:
    return [Image.load(u, where=f"uris[{i}]") for i, u in enumerate(uris)]


def _metadatas(images: list[Image], metas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The caller's keys win (e.g. mrl_source for an image given as bytes); the store validates them.
    return [{**media_metadata(img), **md} for img, md in zip(images, metas)]


def _foreign_embed_image(embedding: Any) -> Any:
    embed = getattr(embedding, "embed_image", None)
    if not callable(embed):
        raise ConfigError(
            f"{type(embedding).__name__} cannot embed images (it has no embed_image(uris)); use "
            "MRLEmbeddings with a multimodal model, e.g. MRLEmbeddings('voyage', model='voyage-multimodal-3.5')")
    return embed


def document_content(text: str | None, metadata: dict[str, Any]) -> str:
    """A Document's ``page_content``: the item's text, else an image's source (path or URL)."""
    if text is not None:
        return text
    source = metadata.get("mrl_source")
    return source if isinstance(source, str) else ""


__all__ = ["ImageSearch", "document_content"]
