"""The Qdrant collection behind a ``QdrantStore``: client connection, recorded layout, creation.

Private to ``store.qdrant``. qdrant-client is imported lazily (``MissingDependencyError`` names the
``qdrant`` extra).
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from ...config import Secret
from ...errors import (
    ConfigError,
    CorruptStoreError,
    MissingDependencyError,
    StoreError,
    StoreNotFoundError,
    UnsupportedFormatError,
)
from ...types import EmbeddingSpec
from . import filters as qf

FORMAT_VERSION = 1
META_KEY = "mrl_retrievers"  # key of our record in the collection's metadata
DEFAULT_COLLECTION = "mrl"
QUANTIZATIONS = (None, "int8")


def qdrant() -> Any:
    try:
        from qdrant_client import QdrantClient, models
    except ImportError:
        raise MissingDependencyError("qdrant-client", "qdrant", "the Qdrant store backend") from None
    return QdrantClient, models


@dataclasses.dataclass(frozen=True)
class Layout:
    """What the collection's metadata records (the Qdrant counterpart of the local manifest)."""

    full_dim: int
    prefix_dim: int
    dtype: str
    spec: EmbeddingSpec | None
    shortlist: int
    ef: int
    M: int
    ef_construction: int
    quantization: str | None = None
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["spec"] = None if self.spec is None else self.spec.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Layout":
        if not isinstance(data, dict):
            raise StoreNotFoundError(f"{where} exists but is not an mrl-retrievers collection (no '{META_KEY}' metadata)")
        version = data.get("format_version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise UnsupportedFormatError(
                f"{where} was written by a newer mrl-retrievers (format {version}; this one reads up to "
                f"{FORMAT_VERSION}). Upgrade mrl-retrievers (the collection is not damaged)."
            )
        try:
            spec = data.get("spec")
            return cls(**{**data, "spec": None if spec is None else EmbeddingSpec.from_dict(spec)})
        except (TypeError, ValueError) as exc:
            raise CorruptStoreError(f"{where}: unreadable '{META_KEY}' metadata ({exc})") from None


class Connection:
    """A client plus what using it safely needs: local mode is not thread-safe (we serialize its
    calls), and a local ``path`` may be opened by one client per process (shared, ref-counted)."""

    _by_path: dict[str, "Connection"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, client: Any, where: str, *, local: bool, owned: bool, path_key: str | None = None) -> None:
        self.client, self.where, self.owned, self.path_key, self.refs = client, where, owned, path_key, 1
        self.lock = threading.RLock() if local else None

    @contextmanager
    def io(self) -> Iterator[None]:
        """Around every client call: serialize local mode; turn transport and server errors into
        ``StoreError`` naming the server (never the key)."""
        from qdrant_client.http.exceptions import (
            ResponseHandlingException,
            UnexpectedResponse,
        )

        with self.lock if self.lock is not None else nullcontext():
            try:
                yield
            except (ResponseHandlingException, UnexpectedResponse, ConnectionError, TimeoutError) as exc:
                raise StoreError(f"Qdrant at {self.where} failed: {_short(exc)}") from exc
            except Exception as exc:
                if type(exc).__module__.startswith("grpc"):
                    raise StoreError(f"Qdrant at {self.where} failed: {_short(exc)}") from exc
                raise

    @classmethod
    def make(cls, *, url: str | None, api_key: Any, path: Any, location: str | None, client: Any, timeout: int | None) -> "Connection":
        QdrantClient, _ = qdrant()
        given = [name for name, value in (("url", url), ("path", path), ("location", location), ("client", client)) if value is not None]
        if len(given) > 1:
            raise ConfigError(f"give one of url, path, location or client for a Qdrant store, got {given}")
        if client is not None:
            return cls(client, "client", local=is_local(client), owned=False)
        if url is not None:
            key = api_key.get_secret_value() if isinstance(api_key, Secret) else api_key
            return cls(QdrantClient(url=url, api_key=key or None, timeout=timeout), _safe_url(url), local=False, owned=True)
        if path is None:
            if location not in (None, ":memory:"):
                raise ConfigError(f"location must be ':memory:' (use url= for a server, path= for a folder), got {location!r}")
            return cls(QdrantClient(location=":memory:"), ":memory:", local=True, owned=True)
        path_key = str(Path(path).resolve())
        with cls._registry_lock:
            shared = cls._by_path.get(path_key)
            if shared is not None and not getattr(shared.client._client, "closed", False):
                shared.refs += 1
                return shared
            # Store calls may come from worker threads (async integrations); our lock serializes them.
            made = cls(QdrantClient(path=path_key, force_disable_check_same_thread=True), path_key, local=True, owned=True, path_key=path_key)
            cls._by_path[path_key] = made
            return made

    def release(self) -> None:
        with self._registry_lock:
            self.refs -= 1
            if self.refs > 0:
                return
            if self.path_key is not None and self._by_path.get(self.path_key) is self:
                del self._by_path[self.path_key]
        if self.owned:
            with self.io():
                self.client.close()


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_local(client: Any) -> bool:
    from qdrant_client.local.qdrant_local import QdrantLocal

    return isinstance(getattr(client, "_client", None), QdrantLocal)


def _safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}" if parts.hostname else "<url>"


def check_collection_name(name: Any) -> None:
    if not isinstance(name, str) or not name or "/" in name or len(name) > 200:
        raise ConfigError(f"a Qdrant collection name must be a non-empty string without '/', got {name!r}")


def alias_target(client: Any, name: str) -> str | None:
    return next((a.collection_name for a in client.get_aliases().aliases if a.alias_name == name), None)


def exists(client: Any, name: str) -> bool:
    return alias_target(client, name) is not None or client.collection_exists(name)


def read_layout(client: Any, name: str, where: str, io: Any = nullcontext) -> Layout:
    with io():
        if not exists(client, name):
            raise StoreNotFoundError(f"no Qdrant collection {name!r} at {where}; create it with QdrantStore.create")
        info = client.get_collection(name)
    layout = Layout.from_dict((info.config.metadata or {}).get(META_KEY), f"Qdrant collection {name!r} at {where}")
    vectors = info.config.params.vectors
    sizes = {key: getattr(vectors.get(key), "size", None) for key in ("prefix", "full")} if isinstance(vectors, dict) else {}
    if sizes != {"prefix": layout.prefix_dim, "full": layout.full_dim}:
        raise CorruptStoreError(f"Qdrant collection {name!r} at {where}: named vectors {sizes} do not match its metadata "
                                f"(prefix {layout.prefix_dim}, full {layout.full_dim})")
    return layout


def new_physical(client: Any, alias: str, layout: Layout) -> str:
    """Create the collection behind ``alias`` for ``layout``; returns its name."""
    _, models = qdrant()
    name = f"{alias}-mrl-{uuid.uuid4().hex[:12]}"
    quantization = None if layout.quantization is None else models.ScalarQuantization(
        scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True))
    datatype = models.Datatype.FLOAT16 if layout.dtype == "float16" else models.Datatype.FLOAT32
    client.create_collection(name, vectors_config={
        "prefix": models.VectorParams(size=layout.prefix_dim, distance=models.Distance.COSINE, on_disk=False,
                                      hnsw_config=models.HnswConfigDiff(m=layout.M, ef_construct=layout.ef_construction),
                                      quantization_config=quantization),
        "full": models.VectorParams(size=layout.full_dim, distance=models.Distance.COSINE, on_disk=True, datatype=datatype,
                                    hnsw_config=models.HnswConfigDiff(m=0)),  # m=0: no graph, rescoring only
    }, metadata={META_KEY: layout.to_dict()})
    if (client.get_collection(name).config.metadata or {}).get(META_KEY) is None:
        client.delete_collection(name)
        raise ConfigError("this Qdrant server does not keep collection metadata (needed for the EmbeddingSpec); use Qdrant >= 1.16")
    if is_local(client):
        return name  # local mode has no payload indexes (it scans), and warns about each
    # Keyword indexes on the match fields let the server plan filtered HNSW searches.
    for field in ("present", "nonempty", "list", "number", "string", "value", "element"):
        client.create_payload_index(name, f"{qf.MATCH}.{field}", field_schema=models.PayloadSchemaType.KEYWORD)
    return name


__all__ = ["DEFAULT_COLLECTION", "FORMAT_VERSION", "META_KEY", "QUANTIZATIONS", "Connection", "Layout",
           "alias_target", "check_collection_name", "exists", "is_local", "new_physical", "qdrant", "read_layout"]
