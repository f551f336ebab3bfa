"""QdrantStore: the coarse-to-fine store protocol on Qdrant, for collections that outgrow one machine.

Layout of a collection (one Qdrant collection behind an alias named as the user's collection):

- named vector ``prefix``: the renormalized prefix, cosine, HNSW, in RAM (optionally int8
  scalar-quantized); named vector ``full``: the full vector, cosine, on disk, no HNSW (``m=0``);
- point id: ``uuid5(ID_NAMESPACE, id)``, so string ids map to Qdrant ids deterministically; the
  payload holds ``id``, ``text``, ``metadata``, ``seq`` (insertion order, for ties) and the derived
  ``match`` fields the filter translation uses (see ``qdrant/filters.py``);
- the collection's metadata (Qdrant >= 1.16) holds the format version, widths, dtype, search
  defaults and the ``EmbeddingSpec``; ``open`` checks them.

``search`` is ONE ``query_points`` call: a prefetch on ``prefix`` (limit = shortlist) rescored on
``full``. ``reindex`` builds a new collection from the stored full vectors and moves the alias
atomically. qdrant-client is imported lazily (extra ``qdrant``). Its local mode (``path=`` or
``location=":memory:"``) is a brute-force test harness that pickles its files: tests run on it,
production points ``url=`` at a Qdrant server or cluster.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ... import filters
from ...config import Secret
from ...checks import positive_int
from ...errors import (
    ConfigError,
    InvalidInputError,
    SpecMismatchError,
    StoreClosedError,
    StoreError,
    StoreExistsError,
    StoreNotFoundError,
)  # fmt: skip
from ...metadata import load_metadata, validate_metadatas
from ...mrl import as_matrix, as_vector, check_width, normalize, prefix
from ...types import EmbeddingSpec, Hit, Record
from . import collection as qc
from . import filters as qf
from .collection import DEFAULT_COLLECTION, META_KEY, QUANTIZATIONS, Layout
from ..validation import check_create_args, check_ids, check_k, check_texts
from ..effort import check_target, scaled_effort

ID_NAMESPACE = uuid.UUID("6f1c3a52-2d0e-5b8e-9a43-0c6a8f7e1d29")  # fixed forever: ids map to points by it
_PAYLOAD = ["id", "text", "metadata", "seq"]  # what reads fetch (not the match fields)
_PAGE = 512  # points per scroll page
_MAX_REQUEST_BYTES = 16 << 20  # split upserts below Qdrant's default 32 MiB request limit


def point_id(id_: str) -> str:
    """The Qdrant point id of a string id (deterministic UUID5)."""
    return str(uuid.uuid5(ID_NAMESPACE, id_))


class QdrantStore:
    """The store protocol on a Qdrant collection (server, cluster, or qdrant-client's local mode).

    Example:
        >>> import numpy as np
        >>> store = QdrantStore.create(location=":memory:", collection="docs", full_dim=8, prefix_dim=4)
        >>> store.add(["a", "b"], np.eye(8)[:2], texts=["first", "second"])
        ['a', 'b']
        >>> [h.id for h in store.search(np.eye(8)[0], k=1)]
        ['a']
        >>> store.close()

    Thread-safety: every method may be called from several threads (local mode serializes them).
    Durability: a write returns when the server has applied it (``wait=True``).
    """

    def __init__(self, conn: qc.Connection, collection: str, layout: Layout) -> None:  # use create() / open()
        self._conn, self._name, self._layout = conn, collection, layout
        self._client = conn.client
        self._write_lock = threading.RLock()
        self._closed = False
        self._last_seq = 0
        # The recall@10 a call without one aims for (``[store] target_recall``; None: the collection's
        # shortlist/ef). A handle setting, not recorded in the collection.
        self.target_recall: float | None = None
        self._finalizer = weakref.finalize(self, conn.release)

    # --- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, collection: str = DEFAULT_COLLECTION, *, full_dim: int, prefix_dim: int, url: str | None = None,
        api_key: Secret | str | None = None, path: Any = None, location: str | None = None, client: Any = None,
        dtype: str = "float16", spec: EmbeddingSpec | None = None, shortlist: int | None = None, ef: int | None = None,
        M: int | None = None, ef_construction: int | None = None, quantization: str | None = None,
        timeout: int | None = None, exact_below: int | None = None,
    ) -> "QdrantStore":
        """Create an empty collection (named by an alias, so ``reindex`` can swap it atomically).

        ``exact_below`` is accepted for interface parity and ignored (Qdrant picks exact scans itself
        below its ``full_scan_threshold``). Raises ``StoreExistsError`` if the collection exists.
        """
        m = check_create_args(full_dim=full_dim, prefix_dim=prefix_dim, dtype=dtype, spec=spec, exact_below=exact_below,
                              shortlist=shortlist, ef=ef, funnel_dim=None, M=M, ef_construction=ef_construction)
        if quantization not in QUANTIZATIONS:
            raise InvalidInputError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
        qc.check_collection_name(collection)
        layout = Layout(full_dim=m["full_dim"], prefix_dim=m["prefix_dim"], dtype=m["dtype"], spec=m["spec"],
                        shortlist=m["shortlist"], ef=m["ef"], M=m["M"], ef_construction=m["ef_construction"],
                        quantization=quantization)
        conn = qc.Connection.make(url=url, api_key=api_key, path=path, location=location, client=client, timeout=timeout)
        try:
            with conn.io():
                if qc.exists(conn.client, collection):
                    raise StoreExistsError(f"Qdrant collection {collection!r} already exists at {conn.where}; open it instead")
                physical = qc.new_physical(conn.client, collection, layout)
                _, models = qc.qdrant()
                conn.client.update_collection_aliases([models.CreateAliasOperation(
                    create_alias=models.CreateAlias(collection_name=physical, alias_name=collection))])
        except BaseException:
            conn.release()
            raise
        return cls(conn, collection, layout)

    @classmethod
    def open(
        cls, collection: str = DEFAULT_COLLECTION, *, url: str | None = None, api_key: Secret | str | None = None,
        path: Any = None, location: str | None = None, client: Any = None, spec: EmbeddingSpec | None = None,
        timeout: int | None = None,
    ) -> "QdrantStore":
        """Open an existing collection; checks its format version and layout (and ``spec``, if given)."""
        qc.check_collection_name(collection)
        conn = qc.Connection.make(url=url, api_key=api_key, path=path, location=location, client=client, timeout=timeout)
        try:
            with conn.io():
                layout = qc.read_layout(conn.client, collection, conn.where)
        except BaseException:
            conn.release()
            raise
        store = cls(conn, collection, layout)
        if spec is not None:
            store.check_spec(spec)
        return store

    def close(self) -> None:
        """Release the client (closed when no other handle of this process shares it). Idempotent."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> "QdrantStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:  # never the api key
        state = "closed" if self._closed else "open"
        return (f"QdrantStore({self._conn.where!r}, collection={self._name!r}, full_dim={self.full_dim}, "
                f"prefix_dim={self.prefix_dim}, {state})")

    # --- properties --------------------------------------------------------------------------------

    collection = property(lambda self: self._name)
    layout = property(lambda self: self._layout)
    full_dim = property(lambda self: self._layout.full_dim)
    prefix_dim = property(lambda self: self._layout.prefix_dim)
    dtype = property(lambda self: self._layout.dtype)
    client = property(lambda self: self._client, doc="The qdrant-client ``QdrantClient`` (shared; do not close it).")

    @property
    def path(self) -> Path | None:
        """The local-mode folder (``path=``); None for a server or an in-memory collection."""
        return None if self._conn.path_key is None else Path(self._conn.path_key)

    @property
    def spec(self) -> EmbeddingSpec | None:
        return self._layout.spec

    def __len__(self) -> int:
        """Live items (an exact count on the server)."""
        self._check_open()
        with self._conn.io():
            return int(self._client.count(self._name, exact=True).count)

    def check_spec(self, spec: EmbeddingSpec) -> None:
        """Raise ``SpecMismatchError`` unless ``spec`` is the collection's; one created without a
        spec adopts the first one offered (recorded in the collection's metadata)."""
        self._check_open()
        current = self.spec
        if current is None:
            with self._write_lock:
                self._write_layout(dataclasses.replace(self._layout, spec=spec))
            return
        if current != spec:
            raise SpecMismatchError(
                f"Qdrant collection {self._name!r} holds vectors from {current.provider}/{current.model} (dim "
                f"{current.dim}); refusing {spec.provider}/{spec.model} (dim {spec.dim}) to avoid mixing vector "
                f"spaces. Differences: {'; '.join(current.differences(spec))}"
            )

    # --- writes --------------------------------------------------------------------------------------

    def add(self, ids: Sequence[str], vectors: Any, texts: Sequence[str | None] | None = None,
            metadatas: Sequence[dict[str, Any] | None] | None = None) -> list[str]:
        """Insert or overwrite (by id) a batch; everything is validated before anything is sent.

        One upsert request per ~16 MiB of points: a batch that fits is applied atomically, a larger
        one is split (each part atomic). Durable when it returns. Costs one request per part.
        """
        ids = check_ids(ids)
        vectors = as_matrix(vectors, self.full_dim)
        if len(vectors) != len(ids):
            raise InvalidInputError(f"got {len(ids)} ids but {len(vectors)} vectors")
        texts = check_texts(texts, len(ids))
        metas = [load_metadata(text) for text in validate_metadatas(metadatas, len(ids))]
        if not ids:
            return []
        self._check_open()
        _, models = qc.qdrant()
        full = normalize(vectors)
        with self._write_lock:
            seq = self._next_seq(len(ids))
            coarse = prefix(full, self.prefix_dim)
            points = [
                models.PointStruct(
                    id=point_id(id_), vector={"prefix": coarse[i].tolist(), "full": full[i].tolist()},
                    payload={"id": id_, "text": texts[i], "metadata": metas[i], "seq": seq + i,
                             qf.MATCH: qf.payload_match_fields(metas[i])},
                )
                for i, id_ in enumerate(ids)
            ]
            self._upsert(self._name, points)
        return list(ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Delete by id; unknown ids are ignored. Returns how many existed. Durable when it returns."""
        ids = list(dict.fromkeys(check_ids(ids, allow_duplicates=True)))
        self._check_open()
        if not ids:
            return 0
        _, models = qc.qdrant()
        with self._write_lock, self._conn.io():
            found = self._client.retrieve(self._name, ids=[point_id(i) for i in ids], with_payload=["id"], with_vectors=False)
            existing = [p.id for p in found if (p.payload or {}).get("id") in ids]
            if existing:
                self._client.delete(self._name, points_selector=models.PointIdsList(points=existing), wait=True)
        return len(existing)

    def reindex(self, prefix_dim: int | None = None) -> None:
        """Rebuild the coarse vectors at a new prefix width from the stored full vectors.

        No provider call. Builds a new collection (copying every point: full vectors, payloads, new
        prefixes), then moves the alias in one atomic step and drops the old collection; searches
        keep using the old one until then. Writes from OTHER clients during a reindex are lost:
        stop them first. Costs a download and an upload of every full vector.
        """
        self._check_open()
        width = check_width("prefix_dim", prefix_dim if prefix_dim is not None else self.prefix_dim, full_dim=self.full_dim)
        _, models = qc.qdrant()
        with self._write_lock:
            old = self._physical()
            layout = dataclasses.replace(qc.read_layout(self._client, self._name, self._conn.where, io=self._conn.io), prefix_dim=width)
            with self._conn.io():
                new = qc.new_physical(self._client, self._name, layout)
            try:
                copied = self._copy_points(old, new, width)
                with self._conn.io():
                    if int(self._client.count(old, exact=True).count) != copied:
                        raise StoreError(f"Qdrant collection {self._name!r} changed during reindex; stop other writers and retry")
                    self._client.update_collection_aliases([
                        models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self._name)),
                        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=new, alias_name=self._name)),
                    ])
            except BaseException:
                with self._conn.io():
                    self._client.delete_collection(new)
                raise
            with self._conn.io():
                self._client.delete_collection(old)
            self._layout = layout

    def _copy_points(self, old: str, new: str, width: int) -> int:
        _, models = qc.qdrant()
        copied, offset = 0, None
        while True:
            with self._conn.io():
                page, offset = self._client.scroll(old, limit=_PAGE, offset=offset, with_payload=True, with_vectors=["full"])
            if page:
                full = np.asarray([p.vector["full"] for p in page], dtype=np.float32)
                coarse = prefix(normalize(full), width)
                self._upsert(new, [models.PointStruct(id=p.id, payload=p.payload, vector={"prefix": coarse[i].tolist(), "full": full[i].tolist()})
                                   for i, p in enumerate(page)])
                copied += len(page)
            if offset is None:
                return copied

    def _upsert(self, collection: str, points: list[Any]) -> None:
        per_point = 24 * (self.full_dim + self.prefix_dim) + 512
        step = max(1, min(len(points), _MAX_REQUEST_BYTES // per_point))
        for start in range(0, len(points), step):
            with self._conn.io():
                self._client.upsert(collection, points=points[start : start + step], wait=True)

    def _next_seq(self, n: int) -> int:
        start = max(time.time_ns(), self._last_seq + 1)
        self._last_seq = start + n - 1
        return start

    # --- reads ----------------------------------------------------------------------------------------

    def get(self, ids: Sequence[str], include_vectors: bool = False) -> list[Record]:
        """Records for the ids that exist, in the order asked (full vectors if asked). One request."""
        ids = check_ids(ids, allow_duplicates=True)
        self._check_open()
        if not ids:
            return []
        with self._conn.io():
            found = self._client.retrieve(self._name, ids=[point_id(i) for i in dict.fromkeys(ids)], with_payload=_PAYLOAD,
                                          with_vectors=["full"] if include_vectors else False)
        by_id = {}
        for point in found:
            payload = point.payload or {}
            vector = np.asarray(point.vector["full"], dtype=np.float32) if include_vectors else None
            by_id[payload.get("id")] = (payload, vector)
        records = []
        for id_ in ids:
            if id_ in by_id:
                payload, vector = by_id[id_]
                records.append(Record(id=id_, text=payload.get("text"), metadata=payload.get("metadata") or {},
                                      vector=None if vector is None else vector.copy()))
        return records

    def ids(self, filter: Any = None) -> list[str]:
        """Ids of every live item (matching ``filter``), in insertion order. Scrolls the payloads of
        the matching points (never the vectors): one request per page of points."""
        translation = qf.translate(filter)
        self._check_open()
        if translation.never:
            return []
        fields = ["id", "seq"] + (["metadata"] if translation.post is not None else [])
        pairs = [(p.payload.get("seq", 0), p.payload["id"]) for p in self._scroll(translation.server, fields)
                 if translation.post is None or filters.matches(translation.post, p.payload.get("metadata") or {})]
        return [id_ for _, id_ in sorted(pairs)]

    def _scroll(self, server_filter: Any, fields: list[str]) -> Iterator[Any]:
        """Every point passing ``server_filter`` (payload ``fields`` only), page by page."""
        offset = None
        while True:
            with self._conn.io():
                page, offset = self._client.scroll(self._name, scroll_filter=server_filter, limit=_PAGE, offset=offset,
                                                   with_payload=fields, with_vectors=False)
            for point in page:
                point.payload = point.payload or {}
                yield point
            if offset is None:
                return

    def search(self, vector: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
               target_recall: float | None = None) -> list[Hit]:
        """Top-``k`` by full-width cosine: ONE ``query_points`` call, a prefetch of ``shortlist``
        candidates on ``prefix`` (HNSW, ``hnsw_ef = max(ef, shortlist)``) rescored on ``full``.

        ``target_recall`` maps onto the prefetch limit and ``hnsw_ef`` (``effort.scaled_effort``:
        the collection's shortlist/ef scaled by sqrt(0.01 / (1 - target)), 0.5x..8x; 1.0 scans
        exactly). It cannot adapt per query: the server runs the whole plan in one call and returns
        only the top-k, not the shortlist's scores a per-query decision needs (docs/adaptive-effort.md).
        A filter with a substring operator first resolves its matches (see ``qdrant/filters.py``).
        """
        if self._exact(shortlist, ef, target_recall):
            return self.search_exact(vector, k, filter)
        query = normalize(as_vector(vector, self.full_dim))
        shortlist, ef = self._effort(shortlist, ef, target_recall)
        request = self._request(query, k, shortlist, ef, self._server_filter(filter))
        if request is None:
            return []
        with self._conn.io():
            response = self._client.query_points(self._name, query=request.query, using=request.using, prefetch=request.prefetch,
                                                 limit=request.limit, with_payload=request.with_payload)
        return _hits(response.points)

    def search_batch(self, vectors: Any, k: int = 10, shortlist: int | None = None, filter: Any = None, *, ef: int | None = None,
                     target_recall: float | None = None) -> list[list[Hit]]:
        """``search`` for each row of ``vectors``, as one ``query_batch_points`` call."""
        queries = normalize(as_matrix(vectors, self.full_dim, what="query vectors"))
        if self._exact(shortlist, ef, target_recall):
            return [self.search_exact(q, k, filter) for q in queries]
        shortlist, ef = self._effort(shortlist, ef, target_recall)
        server = self._server_filter(filter)
        requests = [self._request(q, k, shortlist, ef, server) for q in queries]
        if not requests or requests[0] is None:
            return [[] for _ in queries]
        with self._conn.io():
            responses = self._client.query_batch_points(self._name, requests=requests)
        return [_hits(r.points) for r in responses]

    def search_exact(self, vector: Any, k: int = 10, filter: Any = None) -> list[Hit]:
        """The oracle: exact full-width scan (``SearchParams(exact=True)`` on ``full``)."""
        query = normalize(as_vector(vector, self.full_dim))
        k = check_k(k)
        server = self._server_filter(filter)
        self._check_open()
        if server is _NEVER:
            return []
        _, models = qc.qdrant()
        with self._conn.io():
            response = self._client.query_points(self._name, query=query.tolist(), using="full", limit=k, query_filter=server,
                                                 search_params=models.SearchParams(exact=True), with_payload=_PAYLOAD)
        return _hits(response.points)

    def _effort(self, shortlist: Any, ef: Any, target_recall: Any) -> tuple[Any, Any]:
        """(shortlist, ef) for a call: given ones win (the expert override), else the target's."""
        target = self.target_recall if target_recall is None else target_recall
        if shortlist is not None or ef is not None or target is None:
            return shortlist, ef
        return scaled_effort(check_target(target), self._layout.shortlist, self._layout.ef)

    def _exact(self, shortlist: Any, ef: Any, target_recall: Any) -> bool:
        if target_recall is not None and (shortlist is not None or ef is not None):
            raise InvalidInputError("pass target_recall or shortlist/ef, not both (shortlist/ef fix the effort)")
        target = self.target_recall if target_recall is None else target_recall
        return target is not None and shortlist is None and ef is None and check_target(target) >= 1

    def _request(self, query: np.ndarray, k: Any, shortlist: Any, ef: Any, server: Any) -> Any:
        k = check_k(k)
        for name, value in (("shortlist", shortlist), ("ef", ef)):
            if value is not None:
                positive_int(name, value)
        self._check_open()
        if server is _NEVER:
            return None
        _, models = qc.qdrant()
        candidates = max(int(shortlist or self._layout.shortlist), k)
        coarse = models.Prefetch(query=prefix(query, self.prefix_dim).tolist(), using="prefix", limit=candidates, filter=server,
                                 params=models.SearchParams(hnsw_ef=max(int(ef or self._layout.ef), candidates)))
        return models.QueryRequest(prefetch=coarse, query=query.tolist(), using="full", limit=k, with_payload=_PAYLOAD)

    def _server_filter(self, flt: Any) -> Any:
        """The Qdrant filter to send (None: none; ``_NEVER``: nothing matches)."""
        translation = qf.translate(flt)
        if translation.never:
            return _NEVER
        if translation.post is None:
            return translation.server
        self._check_open()
        # Substring operators: resolve the exact matches among the points the server-side part
        # selects, by the reference evaluator. Costs one scroll over those points' metadata.
        _, models = qc.qdrant()
        matching = [p.id for p in self._scroll(translation.server, ["metadata"])
                    if filters.matches(translation.post, p.payload.get("metadata") or {})]
        return models.Filter(must=[models.HasIdCondition(has_id=matching)]) if matching else _NEVER

    # --- collection metadata ----------------------------------------------------------------------

    def _physical(self) -> str:
        with self._conn.io():
            target = qc.alias_target(self._client, self._name)
        if target is None:
            raise ConfigError(f"Qdrant collection {self._name!r} is not an alias (not created by QdrantStore.create): "
                              "reindex needs the alias to swap collections atomically")
        return target

    def _write_layout(self, layout: Layout) -> None:
        physical = self._physical()
        with self._conn.io():
            self._client.update_collection(physical, metadata={META_KEY: layout.to_dict()})
        self._layout = layout

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"Qdrant store {self._name!r} is closed")


_NEVER = object()


def _hits(points: list[Any]) -> list[Hit]:
    ranked = sorted(points, key=lambda p: (-p.score, (p.payload or {}).get("seq", 0)))  # ties: insertion order
    return [Hit(id=p.payload["id"], score=float(p.score), text=p.payload.get("text"), metadata=p.payload.get("metadata") or {})
            for p in ranked]


def open_from_settings(settings: Any, *, full_dim: int | None, spec: EmbeddingSpec | None = None, **create_kwargs: Any) -> QdrantStore:
    """Open the ``[store]`` block's Qdrant collection, creating it (at ``full_dim``) if it is missing.

    ``url`` -> a server or cluster; else ``path`` -> qdrant-client local mode in that folder; else an
    in-memory local-mode collection (temporary, like a local store with no path). ``full_dim=None``
    only opens an existing collection (``StoreNotFoundError`` otherwise). ``create_kwargs``
    (``prefix_dim``, ``dtype``, ``shortlist``, ``ef``, ``M``, ``ef_construction``, ``quantization``)
    apply only when the collection is created, and win over the settings.
    """
    if create_kwargs.pop("funnel_dim", None) is not None or settings.funnel_dim is not None:
        raise ConfigError("funnel_dim is not supported by the qdrant backend (Qdrant rescores the shortlist on the full vectors)")
    create_kwargs.pop("exact_below", None)  # Qdrant decides when to scan exactly (full_scan_threshold)
    target_recall = create_kwargs.pop("target_recall", None) or settings.target_recall
    known = {"prefix_dim", "dtype", "shortlist", "ef", "M", "ef_construction", "quantization", "timeout"}
    if set(create_kwargs) - known:
        raise ConfigError(f"unknown options for a Qdrant store: {sorted(set(create_kwargs) - known)}; known: {sorted(known)}")
    where = {"url": settings.url, "api_key": settings.api_key} if settings.url else {"path": settings.path} if settings.path else None
    name = settings.collection or DEFAULT_COLLECTION
    if where is None:  # in memory: always a new, temporary collection
        if full_dim is None:
            raise StoreNotFoundError("a temporary (in-memory) Qdrant store cannot be opened before its width is known")
        where = {"location": ":memory:"}
    else:
        try:
            store = QdrantStore.open(name, **where)
        except StoreNotFoundError:
            if full_dim is None:
                raise
        else:
            store.target_recall = target_recall
            return _checked(store, full_dim, spec)
    options = {"prefix_dim": settings.prefix_dim, "dtype": settings.dtype, "shortlist": settings.shortlist, "ef": settings.ef,
               "quantization": settings.quantization, **create_kwargs}
    if options["prefix_dim"] is None:  # unset: the default width, or the full width of narrower vectors
        options["prefix_dim"] = settings.prefix_dim_for(full_dim)
    store = QdrantStore.create(name, full_dim=full_dim, spec=spec, **where, **{k: v for k, v in options.items() if v is not None})
    store.target_recall = target_recall
    return store


def _checked(store: QdrantStore, full_dim: int | None, spec: EmbeddingSpec | None) -> QdrantStore:
    try:
        if full_dim is not None and store.full_dim != full_dim:
            raise ConfigError(f"Qdrant collection {store.collection!r} holds {store.full_dim}-wide vectors; these are {full_dim}-wide")
        if spec is not None:
            store.check_spec(spec)
    except BaseException:
        store.close()
        raise
    return store


__all__ = ["DEFAULT_COLLECTION", "ID_NAMESPACE", "Layout", "QdrantStore", "open_from_settings", "point_id"]
