"""MRLIndex: texts in, hits out. A provider + a store (+ the provider's embedding cache).

The store remembers the ``EmbeddingSpec`` it was built with; an index opened with another
provider, model, width or rotation fails with ``SpecMismatchError`` instead of mixing vector spaces.
A store is created only when the first vectors are in hand, so a call that fails before (a missing
key, bad input, an unreachable provider) leaves nothing on disk. A fitted rotation is saved inside
the store (``rotation.npy``), so ``MRLIndex.open(path)`` can embed queries with no config at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._writes import Progress, StepWriter, check_batch, check_text
from .checks import positive_int
from .config import EmbedderSettings, Settings, load_config
from .errors import ConfigError, InvalidInputError, StoreNotFoundError
from .media import Content, media_metadata
from .providers import Provider, from_config, from_spec
from .providers.multimodal import check_inputs
from .providers.rotation import save_rotation
from .store import MRLStore, StoreLike, VectorStore, create_store, open_existing
from .store.factory import store_settings
from .store.validation import check_ids
from .types import EmbeddingSpec, Hit, Record

# Texts embedded and stored per step: each step is one provider round (its batches cached as they
# complete) and one store transaction, so an interrupted ingestion resumes at the step it was in.
# The default step is one full round of the provider (batch_size x max_concurrency), at least
# DEFAULT_STEP and at most MAX_DEFAULT_STEP texts (bounds memory and what an uncached failure loses).
DEFAULT_STEP = 512
MAX_DEFAULT_STEP = 4096

# A local store's copy of the rotation its vectors were made with (named by checksum in its spec).
ROTATION_FILE = "rotation.npy"


class MRLIndex:
    """Embed texts with a provider and keep them in a coarse-to-fine store.

    Args:
        embedder: the provider.
        store: an open store, a path, a ``[store]`` block or ``Settings`` (``None``: a temporary
            store). An existing store is opened now (its spec must match the provider's); a new one
            is created by the first ``add_texts`` that has vectors to write.
        read_only: open an existing store without the writer lock (works beside a running writer;
            a missing store is then ``StoreNotFoundError``).
        **store_options: ``prefix_dim``, ``dtype``, ``exact_below``... for a store created here.

    Example:
        >>> from mrl_retrievers import MRLIndex, get_provider
        >>> index = MRLIndex(get_provider("fake", dim=64))          # temporary store
        >>> _ = index.add_texts(["cats purr", "dogs bark"], ids=["c", "d"])
        >>> index.query("the cats purr loudly", k=1)[0].id
        'c'
        >>> index.close()
    """

    def __init__(self, embedder: Provider, store: VectorStore | StoreLike = None, *, read_only: bool = False,
                 **store_options: Any) -> None:
        self.embedder = embedder
        self._store: VectorStore | None = None
        self._target: StoreLike = None
        self._store_options = store_options
        if isinstance(store, VectorStore):
            self._store = store
        else:
            self._store = _open_if_there(store, read_only=read_only)
            self._target = store  # if not there: created by the first add_texts, with vectors in hand
        if self._store is not None:
            if self._store.full_dim != embedder.dim:  # the plainest difference first, in plain words
                raise ConfigError(f"{_describe_store(self._store)} holds {self._store.full_dim}-wide vectors; "
                                  f"these are {embedder.dim}-wide")
            self._store.check_spec(embedder.spec)
            self._keep_rotation()

    @classmethod
    def from_config(
        cls,
        source: str | Mapping[str, Any] | Settings | None = None,
        *,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        read_only: bool = False,
    ) -> "MRLIndex":
        """Build the provider and the store that one config (TOML path, mapping or Settings) names.

        ``overrides`` (e.g. CLI flags) win over the file and the environment. When the store
        exists, the ``[embedder]`` fields the config leaves unset (provider, model, dim, rotation)
        are the store's, so a config needs no more than the store's path to query it.
        """
        if isinstance(source, Settings):
            settings = source
            for block, values in (overrides or {}).items():
                settings = dataclasses.replace(settings, **{block: dataclasses.replace(getattr(settings, block), **values)})
        else:
            settings = load_config(source, overrides=overrides)
        existing = _open_if_there(settings, read_only=read_only)
        if existing is None:  # built outside the except block: a provider error must not chain to it
            return cls(from_config(settings), settings)
        block = settings.embedder
        if existing.spec is not None:
            block = _complete(block, existing.spec, _rotation_path(existing))
        return cls(from_config(block), existing)

    @classmethod
    def open(cls, store: StoreLike, *, read_only: bool = False, **provider_options: Any) -> "MRLIndex":
        """Open an existing store and embed queries exactly the way its vectors were made.

        The provider is rebuilt from the spec the store recorded (provider, model, width, prompts
        and its saved rotation): no config needed. ``provider_options`` are settings that do not
        change the vectors (``api_key``, ``base_url``, ``timeout``, ``device``, ``cache``...).

        Raises:
            StoreNotFoundError: nothing is there.
            ConfigError: the store records no spec, or one this package cannot rebuild.
        """
        opened = open_existing(store, read_only=read_only)
        if opened.spec is None:
            raise ConfigError(f"{_describe_store(opened)} records no embedding spec: open it with MRLIndex(provider, store)")
        return cls(from_spec(opened.spec, rotation=_rotation_path(opened), **provider_options), opened)

    @property
    def store(self) -> VectorStore:
        """The store. A store not created yet is created now, at the provider's width."""
        if self._store is None:
            self._create(self.embedder.dim)
        return self._store  # type: ignore[return-value]

    @property
    def created(self) -> bool:
        """Whether the store exists yet (``False`` until the first vectors are written)."""
        return self._store is not None

    def _create(self, full_dim: int) -> bool:
        """Create the store for ``full_dim``-wide vectors; True if this call made its directory."""
        settings = store_settings(self._target)
        fresh = settings.backend == "local" and settings.path is not None and not Path(settings.path).exists()
        self._store = create_store(self._target, full_dim=full_dim, spec=self.embedder.spec, **self._store_options)
        self._keep_rotation()
        return fresh

    def _keep_rotation(self) -> None:
        """Save the provider's rotation in a local store that records one but lacks its file."""
        store, spec = self._store, self.embedder.spec
        rotation = getattr(getattr(self.embedder, "inner", self.embedder), "rotation", None)
        if (isinstance(store, MRLStore) and not store.read_only and spec.rotation is not None and rotation is not None
                and spec == store.spec and not (store.path / ROTATION_FILE).exists()):
            save_rotation(rotation, store.path / ROTATION_FILE)

    def _discard_new_store(self) -> None:
        """Remove a store this index created in the call that failed before its first write."""
        store, self._store = self._store, None
        if store is None:
            return
        path = store.path if isinstance(store, MRLStore) else None
        store.close()
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)

    # --- writes ------------------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        step: int | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """Embed and store ``texts`` (upsert by id; ``ids=None`` gives uuid4 ids).

        Work goes in steps of ``step`` texts (default: one full provider round, see
        ``default_step``): one provider round (at most ``max_concurrency`` requests in flight),
        then one store transaction. Steps are pipelined: step N+1 is embedded while step N is
        written by one writer thread, and the writes land in order, so when an error stops the
        ingestion every step before the failing one is stored whole and nothing of a later one is.
        ``progress(done, total)`` is called in this thread after each step is stored. Returns the
        ids, in order.
        """
        texts, metadatas, ids = check_batch(texts, metadatas, ids, reject_empty=self.embedder.reject_empty)
        return self._pipeline(self.embedder.embed_documents, texts, ids, texts, metadatas, step, progress)

    async def aadd_texts(
        self,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        step: int | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """``add_texts`` with the provider's real async path; store writes run in a worker thread,
        pipelined the same way (step N is written while step N+1 is embedded)."""
        texts, metadatas, ids = check_batch(texts, metadatas, ids, reject_empty=self.embedder.reject_empty)
        fresh = False
        try:
            async with StepWriter(lambda: self._store, progress, len(texts), threaded=True) as writer:
                for start, stop in self._spans(len(texts), step):
                    vectors = await self.embedder.aembed_documents(texts[start:stop])
                    if self._store is None:
                        fresh = await asyncio.to_thread(self._create, vectors.shape[1])
                    await writer.aput(ids[start:stop], vectors, texts[start:stop], metadatas[start:stop], stop)
        except BaseException:
            if fresh and self._store is not None and len(self._store) == 0:
                self._discard_new_store()
            raise
        return ids

    def add_images(
        self,
        images: Sequence[Any],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        captions: Sequence[str | None] | None = None,
        step: int | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """Embed and store images (paths, http(s) URLs where the provider takes them, bytes, file
        objects, PIL images): ``add_inputs`` with every item an image.

        Example:
            >>> from mrl_retrievers import get_provider
            >>> from mrl_retrievers.media import PNG_1x1
            >>> index = MRLIndex(get_provider("fake", dim=16))
            >>> index.add_images([PNG_1x1], ids=["dot"], captions=["a red dot"])
            ['dot']
            >>> index.get(["dot"])[0].metadata
            {'mrl_media_type': 'image/png', 'mrl_modality': 'image'}
            >>> index.close()
        """
        items = check_inputs(self.embedder, images, images=True)
        return self.add_inputs(items, metadatas, ids, texts=captions, step=step, progress=progress)

    def add_inputs(
        self,
        inputs: Sequence[Any],
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
        *,
        texts: Sequence[str | None] | None = None,
        step: int | None = None,
        progress: Progress | None = None,
    ) -> list[str]:
        """Embed and store texts, images and interleaved inputs (a list of parts: its ``str`` items
        are text, the rest images), one item each, in steps as ``add_texts`` does.

        Each image item's metadata gets the reserved keys ``mrl_modality``, ``mrl_source`` (its path
        or URL, when known) and ``mrl_media_type`` (keys the caller gives win). The stored text is
        ``texts[i]`` when given (a caption: stored, not embedded), else the input's own text parts
        (None for an image alone). Raises ``UnsupportedModalityError`` before any provider call if
        the provider's model cannot embed an input.
        """
        items = check_inputs(self.embedder, inputs)
        stored = [_stored_text(item) for item in items] if texts is None else list(texts)
        _, metadatas, ids = check_batch(["-"] * len(items), metadatas, ids, reject_empty=False)
        if len(stored) != len(items):
            raise InvalidInputError(f"got {len(stored)} texts for {len(items)} inputs")
        metadatas = [{**media_metadata(item), **(md or {})} for item, md in zip(items, metadatas)]
        return self._pipeline(self.embedder.embed_inputs, items, ids, stored, metadatas, step, progress)

    def _pipeline(self, embed: Callable[[list[Any]], np.ndarray], items: list[Any], ids: list[str], texts: list[str | None],
                  metadatas: list[dict[str, Any]], step: int | None, progress: Progress | None) -> list[str]:
        """Embed ``items`` step by step and store each step (pipelined: step N is written while N+1
        is embedded). A store this call created is removed again if nothing reached it."""
        spans = self._spans(len(items), step)
        fresh = False
        try:
            with StepWriter(lambda: self._store, progress, len(items), threaded=len(spans) > 1) as writer:
                for start, stop in spans:
                    vectors = embed(items[start:stop])
                    if self._store is None:
                        fresh = self._create(vectors.shape[1])
                    writer.put(ids[start:stop], vectors, texts[start:stop], metadatas[start:stop], stop)
        except BaseException:
            if fresh and self._store is not None and len(self._store) == 0:
                self._discard_new_store()
            raise
        return ids

    def default_step(self) -> int:
        """Texts per step when ``step`` is not given: one full provider round, within bounds."""
        round_size = getattr(self.embedder, "batch_size", 0) * getattr(self.embedder, "max_concurrency", 1)
        return int(min(MAX_DEFAULT_STEP, max(DEFAULT_STEP, round_size)))

    def _spans(self, n: int, step: int | None) -> list[tuple[int, int]]:
        step = self.default_step() if step is None else positive_int("step", step)
        return [(start, min(n, start + step)) for start in range(0, n, step)]

    def delete(self, ids: Sequence[str]) -> int:
        if self._store is None:
            check_ids(ids, allow_duplicates=True)
            return 0
        return self._store.delete(ids)

    def reindex(self, prefix_dim: int) -> None:
        """Change the coarse width from the stored full vectors: no provider call."""
        if self._store is None:
            raise StoreNotFoundError(f"nothing to reindex: {_describe_target(self._target)} has no store yet")
        self._store.reindex(prefix_dim=prefix_dim)

    # --- reads -------------------------------------------------------------------------------------

    def query(self, text: str, k: int = 5, shortlist: int | None = None, filter: Any = None, *,
              ef: int | None = None, target_recall: float | None = None) -> list[Hit]:
        """The ``k`` stored texts closest to ``text`` (one provider call, one store search).
        ``target_recall``: recall@10 to aim for (None: the store's target; 1.0 scans exactly);
        ``shortlist``/``ef`` fix the effort instead (the expert override, as in ``MRLStore.search``)."""
        if self._store is None:  # nothing written yet: no store, no provider call
            check_text(text)
            return []
        return self._store.search(self.embed_query(text), k=k, shortlist=shortlist, filter=filter, **_effort(ef, target_recall))

    async def aquery(self, text: str, k: int = 5, shortlist: int | None = None, filter: Any = None, *,
                     ef: int | None = None, target_recall: float | None = None) -> list[Hit]:
        if self._store is None:
            check_text(text)
            return []
        vector = await self.embedder.aembed_query(check_text(text))
        return await asyncio.to_thread(functools.partial(self._store.search, vector, k, shortlist, filter,
                                                         **_effort(ef, target_recall)))

    def query_exact(self, text: str, k: int = 5, filter: Any = None) -> list[Hit]:
        """The exact full-width answer (the oracle), for comparison."""
        if self._store is None:
            check_text(text)
            return []
        return self._store.search_exact(self.embed_query(text), k=k, filter=filter)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_query(check_text(text))

    def query_image(self, image: Any, k: int = 5, shortlist: int | None = None, filter: Any = None, *,
                    ef: int | None = None, target_recall: float | None = None) -> list[Hit]:
        """The ``k`` stored items closest to an image embedded as a query (image-to-image, or
        image-to-text on a multimodal model). Filter images only with ``{"mrl_modality": "image"}``."""
        if self._store is None:
            return []
        vector = self.embedder.embed_images([image], kind="query")[0]
        return self._store.search(vector, k=k, shortlist=shortlist, filter=filter, **_effort(ef, target_recall))

    async def aquery_image(self, image: Any, k: int = 5, shortlist: int | None = None, filter: Any = None, *,
                           ef: int | None = None, target_recall: float | None = None) -> list[Hit]:
        if self._store is None:
            return []
        vector = (await self.embedder.aembed_images([image], kind="query"))[0]
        return await asyncio.to_thread(functools.partial(self._store.search, vector, k, shortlist, filter,
                                                         **_effort(ef, target_recall)))

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[Record]:
        if self._store is None:
            check_ids(ids, allow_duplicates=True)
            return []
        return self._store.get(ids, include_vectors=include_vectors)

    def ids(self, filter: Any = None) -> list[str]:
        """The ids of the stored items (matching ``filter``); no vectors are read."""
        return [] if self._store is None else self._store.ids(filter=filter)

    def __len__(self) -> int:
        return 0 if self._store is None else len(self._store)

    # --- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self.embedder.close()

    def __enter__(self) -> "MRLIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        store = repr(self._store) if self._store is not None else f"<not created yet: {_describe_target(self._target)}>"
        return f"MRLIndex(embedder={self.embedder!r}, store={store})"


def _open_if_there(store: StoreLike, *, read_only: bool) -> VectorStore | None:
    """The store ``store`` names, opened; None if there is none yet and one may be created there."""
    try:
        return open_existing(store, read_only=read_only)
    except StoreNotFoundError:
        if read_only or not _creatable(store):
            raise
    return None


def _creatable(store: StoreLike) -> bool:
    """Whether a store may be created at ``store`` later: not over a file or a foreign folder."""
    settings = store_settings(store)
    if settings.backend != "local" or settings.path is None:
        return True
    path = Path(settings.path)
    return not path.exists() or path.is_dir() and (not any(path.iterdir()) or (path / "docs.sqlite").exists())


def _rotation_path(store: VectorStore) -> Path | None:
    """The rotation file a local store keeps beside its vectors, if it has one."""
    if isinstance(store, MRLStore) and (store.path / ROTATION_FILE).is_file():
        return store.path / ROTATION_FILE
    return None


def _complete(block: EmbedderSettings, spec: EmbeddingSpec, rotation: Path | None) -> EmbedderSettings:
    """``block`` with the provider, model, dim and rotation it leaves unset taken from ``spec``.

    Only for the store's own provider: a config naming another provider keeps its own defaults
    (and the store then refuses it with ``SpecMismatchError``, naming both).
    """
    if block.provider is not None and block.provider != spec.provider:
        return block
    filled: dict[str, Any] = {"provider": spec.provider}
    if block.model is None:
        filled["model"] = spec.model
    if block.dim is None:
        filled["dim"] = spec.dim
    if block.rotation is None and spec.rotation is not None and rotation is not None:
        filled["rotation"] = os.fspath(rotation)
    return dataclasses.replace(block, **filled)


def _stored_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if isinstance(item, Content) and item.texts:
        return " ".join(item.texts)
    return None


def _describe_store(store: VectorStore) -> str:
    return f"store {store.path}" if isinstance(store, MRLStore) else f"Qdrant collection {getattr(store, 'collection', '?')!r}"


def _describe_target(store: StoreLike) -> str:
    settings = store_settings(store)
    if settings.backend == "qdrant":
        return f"Qdrant collection {settings.collection or 'mrl'!r}"
    return "the temporary store" if settings.path is None else str(settings.path)



def _effort(ef: int | None, target_recall: float | None) -> dict[str, float]:
    """Search keywords for a call's ef and recall target: only those given (a store implementing an
    older protocol without the keywords still serves calls that pass neither)."""
    given = {"ef": ef, "target_recall": target_recall}
    return {name: value for name, value in given.items() if value is not None}

__all__ = ["MRLIndex"]
