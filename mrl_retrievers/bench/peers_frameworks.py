"""Peers that keep everything in Python objects: LangChain ``InMemoryVectorStore``, LlamaIndex
``SimpleVectorStore`` (brute force over Python lists) and Qdrant local mode (brute force, with a
prefix prefetch and full-width rescoring, as a functional peer only). Each is skipped above the size
where it would not finish in reasonable time or RAM, and the report says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import Dataset
from .peer_base import Peer


def _vectors_as_lists(ds: Dataset, start: int, stop: int) -> list[list[float]]:
    return np.asarray(ds.vectors()[start:stop], dtype=np.float32).tolist()


class LangChainInMemory(Peer):
    name, label = "langchain", "LangChain InMemoryVectorStore"
    requires = ("langchain_core",)
    extra = "langchain"
    max_n = 100_000

    def build_fresh(self) -> None:
        from langchain_core.documents import Document  # noqa: PLC0415
        from langchain_core.embeddings import Embeddings  # noqa: PLC0415
        from langchain_core.vectorstores import InMemoryVectorStore  # noqa: PLC0415

        ds = self.ds

        class Stored(Embeddings):  # the stored vectors, looked up by row: no model in the loop
            def embed_documents(self, texts):
                rows = [int(t) for t in texts]
                return _vectors_as_lists(ds, rows[0], rows[-1] + 1)

            def embed_query(self, text):
                raise NotImplementedError

        self.vs = InMemoryVectorStore(embedding=Stored())
        for start in range(0, ds.n, 10_000):
            rows = range(start, min(ds.n, start + 10_000))
            self.vs.add_documents([Document(page_content=str(r)) for r in rows], ids=[str(r) for r in rows])

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        docs = self.vs.similarity_search_by_vector(query.tolist(), k=k)
        return np.array([int(d.id) for d in docs], dtype=np.int64)

    def disk_bytes(self) -> int:
        return 0  # in memory only


class LlamaIndexSimple(Peer):
    name, label = "llamaindex", "LlamaIndex SimpleVectorStore"
    requires = ("llama_index.core",)
    extra = "llama-index"
    max_n = 100_000

    def build_fresh(self) -> None:
        from llama_index.core.schema import TextNode  # noqa: PLC0415
        from llama_index.core.vector_stores import SimpleVectorStore  # noqa: PLC0415

        self.vs = SimpleVectorStore()
        for start in range(0, self.ds.n, 10_000):
            stop = min(self.ds.n, start + 10_000)
            vectors = _vectors_as_lists(self.ds, start, stop)
            self.vs.add([TextNode(id_=str(r), text=str(r), embedding=v) for r, v in zip(range(start, stop), vectors)])

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        from llama_index.core.vector_stores.types import VectorStoreQuery  # noqa: PLC0415

        result = self.vs.query(VectorStoreQuery(query_embedding=query.tolist(), similarity_top_k=k))
        return np.array([int(i) for i in result.ids], dtype=np.int64)

    def disk_bytes(self) -> int:
        return 0


class QdrantLocal(Peer):
    name, label = "qdrant-local", "Qdrant local mode (prefix prefetch + full rescoring)"
    requires = ("qdrant_client",)
    extra = "qdrant"
    max_n = 20_000  # local mode is brute force and warns above 20k points: a functional peer only

    def build_fresh(self) -> None:
        from qdrant_client import QdrantClient, models  # noqa: PLC0415

        p = self.prefix_dim = self.options.get("prefix_dim", 128)
        # In memory: local mode keeps every point in RAM either way, and its on-disk flavour
        # re-pickles the collection on every upsert (minutes for 10k points).
        self.client = QdrantClient(location=":memory:")
        self.client.create_collection("bench", vectors_config={
            "prefix": models.VectorParams(size=p, distance=models.Distance.COSINE),
            "full": models.VectorParams(size=self.ds.dim, distance=models.Distance.COSINE, on_disk=True),
        })
        for start in range(0, self.ds.n, 2_000):
            block = np.asarray(self.ds.vectors()[start : start + 2_000], dtype=np.float32)
            points = [models.PointStruct(id=start + i, vector={"prefix": v[:p].tolist(), "full": v.tolist()}) for i, v in enumerate(block)]
            self.client.upsert("bench", points=points, wait=True)

    def disk_bytes(self) -> int:
        return 0  # in memory (local mode)

    def settings(self) -> list[dict[str, Any]]:
        return [{"shortlist": s} for s in (50, 100, 200)]

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        from qdrant_client import models  # noqa: PLC0415

        result = self.client.query_points(
            "bench", prefetch=models.Prefetch(query=query[: self.prefix_dim].tolist(), using="prefix", limit=self.setting["shortlist"]),
            query=query.tolist(), using="full", limit=k,
        )
        return np.array([p.id for p in result.points], dtype=np.int64)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()


__all__ = ["LangChainInMemory", "LlamaIndexSimple", "QdrantLocal"]
