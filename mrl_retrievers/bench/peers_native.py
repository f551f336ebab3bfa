"""The strongest compiled peers: DiskANN, usearch, Qdrant's engine in-process, LanceDB.

Each adapter has the shape of ``peers.Peer`` (build or load from the cache, a sweep of its effort
knob, ``search(query, k) -> rows``) and imports its library inside, so a missing package skips one
method with the reason. Build parameters follow the other graph peers: HNSW graphs use the same M
and ef_construction; DiskANN's Vamana graph gets R = 2 x M (the degree of HNSW's base layer) and
L = ef_construction.

* ``diskann-mem``: DiskANN's in-memory index (``diskannpy`` built from Microsoft's Rust DiskANN,
  the maintained successor of the C++ wheel, whose last release pins numpy 1.25), float32 vectors.
* ``diskann-disk``: DiskANN's SSD index: the graph and full float32 vectors on disk, read per hop;
  in RAM only PQ codes of ``diskann_pq_bytes`` per vector (default: the bytes of our in-RAM prefix,
  prefix_dim x 4, so its RAM matches ours). ``diskann-disk-lean``: the same at 1/4 of that budget.
* ``usearch-f16`` / ``usearch-i8``: usearch HNSW over full-width vectors stored as f16 / i8.
* ``usearch-c2f``: usearch over the renormalized prefix (f32, as our hnswlib graph) + a rerank of
  the shortlist's full vectors read from a float16 memory-mapped file: our design, usearch's graph.
* ``qdrant-edge`` / ``qdrant-edge-int8``: a Qdrant shard in-process: a ``prefix`` named vector with
  HNSW (same M / ef_construction; float32, or int8 scalar-quantized), a ``full`` float16 vector on
  disk (mmap) without an index, and one query: a ``Prefetch`` of ``shortlist`` on the prefix, the
  final top-k rescored on ``full``.
* ``lancedb``: an IVF-PQ index over float16 vectors, ``nprobes`` x ``refine_factor`` swept (the
  refine re-scores ``refine_factor x k`` candidates on the stored vectors).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np

from .data import Dataset
from .peer_base import COARSE_TO_FINE_GRID, HNSW_EF_GRID, Peer

# DiskANN's search list L (its ef): the same range as the HNSW peers' ef, from 16 (L >= k).
DISKANN_L_GRID = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# LanceDB: partitions probed x refine factor (candidates re-scored = refine_factor x k).
LANCE_GRID = ((10, 5), (20, 5), (20, 10), (40, 10), (40, 20), (80, 20), (80, 50), (160, 50))


def _unit_prefix(block: np.ndarray, p: int) -> np.ndarray:
    prefix = np.ascontiguousarray(block[:, :p], dtype=np.float32)
    prefix /= np.maximum(np.linalg.norm(prefix, axis=1, keepdims=True), 1e-12)
    return prefix


def _write_diskann_bin(ds: Dataset, path) -> None:
    """DiskANN's vector file (int32 n, int32 dim, float32 rows), written block by block."""
    with open(path, "wb") as fh:
        fh.write(np.array([ds.n, ds.dim], dtype=np.int32).tobytes())
        for _, block in ds.blocks():
            fh.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())


# --- DiskANN -----------------------------------------------------------------------------------------


class _DiskANN(Peer):
    requires = ("diskannpy",)
    cacheable = True

    def _graph(self) -> tuple[int, int]:
        return 2 * self.options.get("M", 16), self.options.get("ef_construction", 200)

    def settings(self) -> list[dict[str, Any]]:
        return [{"L": L} for L in DISKANN_L_GRID]


class DiskANNMemory(_DiskANN):
    name, label = "diskann-mem", "DiskANN in-memory index (float32)"

    def cache_key(self) -> str:
        R, L = self._graph()
        return f"diskann-mem-R{R}-L{L}"

    def build_fresh(self) -> None:
        import diskannpy  # noqa: PLC0415

        R, L = self._graph()
        data = self.cache / "data.bin"
        _write_diskann_bin(self.ds, data)
        diskannpy.build_async_index(
            str(data), "innerproduct", str(self.cache), complexity=L, graph_degree=R, num_start_pts=1,
            num_threads=os.cpu_count() or 1, graph_slack_factor=1.3, max_fp_vecs_per_prune=750,
            num_tasks=os.cpu_count() or 1, pq_seed=42, insert_minibatch_size=256, vector_dtype=np.float32)
        data.unlink()  # the index keeps its own copy of the vectors (ann.data)
        self.load()

    def load(self) -> None:
        import diskannpy  # noqa: PLC0415

        R, L = self._graph()
        self.index = diskannpy.AsyncDiskIndex(str(self.cache), num_threads=1, r=R, l=L, dimensions=self.ds.dim)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(query, k, max(self.setting["L"], k)).identifiers.astype(np.int64)


class DiskANNDisk(_DiskANN):
    name, label = "diskann-disk", "DiskANN SSD index (PQ in RAM at 4 bytes a prefix component; graph + float32 on disk)"
    budget_fraction: ClassVar[float] = 1.0

    def pq_bytes(self) -> int:
        o = self.options
        full = o.get("diskann_pq_bytes") or 4 * o.get("prefix_dim", 128)
        return max(8, min(self.ds.dim, int(full * self.budget_fraction)))

    def cache_key(self) -> str:
        R, L = self._graph()
        return f"diskann-disk-R{R}-L{L}-pq{self.pq_bytes()}"

    def build_fresh(self) -> dict:
        import diskannpy  # noqa: PLC0415

        R, L = self._graph()
        data = self.cache / "data.bin"
        _write_diskann_bin(self.ds, data)
        # DiskANN's build budget: twice the float32 data, at most 8 GB (above it, it builds in shards)
        build_gb = max(1.0, min(8.0, 2 * self.ds.n * self.ds.dim * 4 / 2**30))
        diskannpy.build_disk_index(str(data), "innerproduct", str(self.cache), complexity=L, graph_degree=R,
                                   build_memory_maximum=build_gb, num_threads=os.cpu_count() or 1,
                                   num_of_pq_chunks=self.pq_bytes(), vector_dtype=np.float32)
        data.unlink()
        self.load()
        return {"pq_bytes": self.pq_bytes()}

    def load(self) -> None:
        import diskannpy  # noqa: PLC0415

        # beam width 4: DiskANN's recommended default for a local SSD; no BFS node cache (RAM = PQ codes)
        self.index = diskannpy.StaticDiskIndex(str(self.cache), num_threads=1, beam_width=4, num_nodes_to_cache=0)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(query, k, max(self.setting["L"], k)).identifiers.astype(np.int64)

    def cold_files(self) -> list[Any]:
        return [self.cache / "ann_disk.index"]

    def evict(self) -> None:
        fd = os.open(self.cache / "ann_disk.index", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class DiskANNDiskLean(DiskANNDisk):
    name, label = "diskann-disk-lean", "DiskANN SSD index (PQ in RAM at 1 byte a prefix component)"
    budget_fraction = 0.25


# --- usearch -----------------------------------------------------------------------------------------


class _Usearch(Peer):
    requires = ("usearch",)
    cacheable = True
    dtype: ClassVar[str] = "f16"

    def _new(self, ndim: int):
        from usearch.index import Index  # noqa: PLC0415

        # cos on unit rows ranks as ip; usearch's i8 codes are defined for cos.
        return Index(ndim=ndim, metric="cos", dtype=self.dtype, connectivity=self.options.get("M", 16),
                     expansion_add=self.options.get("ef_construction", 200))

    def _fill(self, index, transform=lambda block: block) -> None:
        for start, block in self.ds.blocks():
            index.add(np.arange(start, start + len(block), dtype=np.uint64), transform(block), threads=os.cpu_count() or 1)
        index.save(str(self.cache / "index.usearch"))

    def load(self) -> None:
        self.index = self._new(self._ndim())
        self.index.load(str(self.cache / "index.usearch"))  # into RAM (restore(view=True) would map it)

    def _ndim(self) -> int:
        return self.ds.dim

    def _keys(self, query: np.ndarray, count: int) -> np.ndarray:
        return self.index.search(query, count, threads=1).keys.astype(np.int64)


class UsearchFull(_Usearch):
    name, label = "usearch-f16", "usearch HNSW full width (f16)"

    def cache_key(self) -> str:
        return f"{self.name}-M{self.options.get('M', 16)}-efc{self.options.get('ef_construction', 200)}"

    def build_fresh(self) -> None:
        self.index = self._new(self.ds.dim)
        self._fill(self.index)

    def settings(self) -> list[dict[str, Any]]:
        return [{"ef": ef} for ef in HNSW_EF_GRID]

    def configure(self, setting: dict[str, Any]) -> None:
        self.setting = setting
        self.index.expansion_search = setting["ef"]

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        return self._keys(query, k)


class UsearchInt8(UsearchFull):
    name, label = "usearch-i8", "usearch HNSW full width (i8)"
    dtype = "i8"


class UsearchCoarseToFine(_Usearch):
    name, label = "usearch-c2f", "usearch over the prefix (f32) + float16 memmap rerank"
    dtype = "f32"

    def cache_key(self) -> str:
        o = self.options
        return f"usearch-c2f-p{o.get('prefix_dim', 128)}-M{o.get('M', 16)}-efc{o.get('ef_construction', 200)}"

    def _ndim(self) -> int:
        return self.options.get("prefix_dim", 128)

    def build_fresh(self) -> None:
        p = self._ndim()
        # The full vectors in their own float16 file (what a store of this design keeps on disk).
        full = np.lib.format.open_memmap(self.cache / "full.f16.npy", mode="w+", dtype=np.float16, shape=(self.ds.n, self.ds.dim))
        source = self.ds.vectors()
        for start in range(0, self.ds.n, 65536):
            full[start : start + 65536] = source[start : start + 65536]
        full.flush()
        del full
        self.index = self._new(p)
        self._fill(self.index, lambda block: _unit_prefix(block, p))
        self._open_full()

    def load(self) -> None:
        super().load()
        self._open_full()

    def _open_full(self) -> None:
        self.full = np.load(self.cache / "full.f16.npy", mmap_mode="r")

    def settings(self) -> list[dict[str, Any]]:
        return [{"shortlist": s, "ef": e} for s, e in COARSE_TO_FINE_GRID]

    def configure(self, setting: dict[str, Any]) -> None:
        self.setting = setting
        self.index.expansion_search = setting["ef"]

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        from ..store.local.kernel import dot  # noqa: PLC0415 - the same exact float16 -> float32 scoring as ours

        p = self._ndim()
        prefix = query[:p] / max(float(np.linalg.norm(query[:p])), 1e-12)
        rows = np.sort(self._keys(prefix.astype(np.float32), self.setting["shortlist"]))
        scores = dot(self.full[rows], query.astype(np.float32))
        top = np.argpartition(-scores, min(k, len(rows)) - 1)[:k]
        return rows[top[np.argsort(-scores[top])]]

    def cold_files(self) -> list[Any]:
        return [self.full]

    def evict(self) -> None:
        import mmap  # noqa: PLC0415

        # np.memmap's buffer: drop our mapped pages, then the file's page cache
        self.full._mmap.madvise(mmap.MADV_DONTNEED)
        fd = os.open(self.cache / "full.f16.npy", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --- Qdrant edge ----------------------------------------------------------------------------------------


class QdrantEdge(Peer):
    name, label = "qdrant-edge", "Qdrant engine in-process (prefix HNSW prefetch + float16 rescore on disk)"
    requires = ("qdrant_edge",)
    extra = "bench"
    cacheable = True
    int8: ClassVar[bool] = False

    def cache_key(self) -> str:
        o = self.options
        return f"{self.name}-p{o.get('prefix_dim', 128)}-M{o.get('M', 16)}-efc{o.get('ef_construction', 200)}"

    def _config(self):
        import qdrant_edge as qe  # noqa: PLC0415

        o = self.options
        quant = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, memory=qe.Memory.Cached) if self.int8 else None
        return qe.EdgeConfig(
            vectors={
                "prefix": qe.EdgeVectorParams(size=o.get("prefix_dim", 128), distance=qe.Distance.Cosine, quantization_config=quant,
                                              hnsw_config=qe.HnswIndexConfig(m=o.get("M", 16), ef_construct=o.get("ef_construction", 200),
                                                                             full_scan_threshold=10)),
                # m = 0: no graph over the full vectors; memory Cold: memory-mapped from disk
                "full": qe.EdgeVectorParams(size=self.ds.dim, distance=qe.Distance.Dot, datatype=qe.VectorStorageDatatype.Float16,
                                            memory=qe.Memory.Cold, hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10)),
            },
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1), wal_enabled=False,
        )

    def build_fresh(self) -> None:
        import qdrant_edge as qe  # noqa: PLC0415

        p = self.options.get("prefix_dim", 128)
        shard = qe.EdgeShard.create(str(self.cache / "shard"), self._config())
        for start, block in self.ds.blocks(4096):
            prefix = block[:, :p]
            points = [qe.Point(start + i, {"prefix": prefix[i], "full": block[i]}) for i in range(len(block))]
            shard.update(qe.UpdateOperation.upsert_points(points))
        shard.optimize()  # builds the prefix HNSW (and quantizes it) into one segment
        shard.flush()
        self.shard = shard

    def load(self) -> None:
        import qdrant_edge as qe  # noqa: PLC0415

        self.shard = qe.EdgeShard.load(str(self.cache / "shard"))

    def settings(self) -> list[dict[str, Any]]:
        return [{"shortlist": s, "ef": e} for s, e in COARSE_TO_FINE_GRID]

    def configure(self, setting: dict[str, Any]) -> None:
        import qdrant_edge as qe  # noqa: PLC0415

        self.setting = setting
        # int8: the prefetch ranks on the int8 codes alone (no rescore on the float prefix): the
        # final stage rescores on the full vectors anyway.
        quant = qe.QuantizationSearchParams(rescore=False) if self.int8 else None
        self._params = qe.SearchParams(hnsw_ef=setting["ef"], quantization=quant)
        self._qe = qe

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        qe, p = self._qe, self.options.get("prefix_dim", 128)
        request = qe.QueryRequest(
            limit=k, prefetches=[qe.Prefetch(limit=self.setting["shortlist"], query=qe.Query.Nearest(query[:p], using="prefix"),
                                             params=self._params)],
            query=qe.Query.Nearest(query, using="full"), with_payload=False, with_vector=False)
        return np.fromiter((point.id for point in self.shard.query(request)), dtype=np.int64)

    def close(self) -> None:
        shard = getattr(self, "shard", None)
        if shard is not None:
            shard.close()


class QdrantEdgeInt8(QdrantEdge):
    name, label = "qdrant-edge-int8", "Qdrant engine in-process, int8-quantized prefix"
    int8 = True


# --- LanceDB ---------------------------------------------------------------------------------------------


class LanceIVFPQ(Peer):
    name, label = "lancedb", "LanceDB IVF-PQ + refine (float16 vectors on disk)"
    requires = ("lancedb",)
    cacheable = True

    def _shape(self) -> tuple[int, int]:
        # sqrt(n) partitions (LanceDB's guidance), 1 PQ byte per 16 dimensions (its default d/16)
        return max(1, int(round(np.sqrt(self.ds.n)))), max(1, self.ds.dim // 16)

    def cache_key(self) -> str:
        parts, sub = self._shape()
        return f"lancedb-ivf{parts}-pq{sub}"

    def build_fresh(self) -> dict:
        import lancedb  # noqa: PLC0415
        import pyarrow as pa  # noqa: PLC0415
        from lancedb.index import IvfPq  # noqa: PLC0415

        d = self.ds.dim
        schema = pa.schema([pa.field("id", pa.int64()), pa.field("vector", pa.list_(pa.float16(), d))])

        def batches():
            for start, block in self.ds.blocks():
                flat = pa.array(block.astype(np.float16).ravel())
                yield pa.record_batch([pa.array(np.arange(start, start + len(block))), pa.FixedSizeListArray.from_arrays(flat, d)],
                                      schema=schema)

        db = lancedb.connect(str(self.cache / "db"))
        table = db.create_table("bench", batches(), schema=schema)
        parts, sub = self._shape()
        table.create_index("vector", config=IvfPq(distance_type="dot", num_partitions=parts, num_sub_vectors=sub))
        self.table = table
        return {"num_partitions": parts, "num_sub_vectors": sub}

    def load(self) -> None:
        import lancedb  # noqa: PLC0415

        self.table = lancedb.connect(str(self.cache / "db")).open_table("bench")

    def settings(self) -> list[dict[str, Any]]:
        parts, _ = self._shape()
        return [{"nprobes": min(n, parts), "refine_factor": r} for n, r in LANCE_GRID if n <= max(parts, 10)]

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        s = self.setting
        result = (self.table.search(query, vector_column_name="vector").nprobes(s["nprobes"]).refine_factor(s["refine_factor"])
                  .limit(k).select(["id", "_distance"]).to_arrow())
        return result.column("id").to_numpy().astype(np.int64)


PEERS_NATIVE: tuple[type[Peer], ...] = (DiskANNMemory, DiskANNDisk, DiskANNDiskLean, UsearchFull, UsearchInt8, UsearchCoarseToFine,
                                       QdrantEdge, QdrantEdgeInt8, LanceIVFPQ)

__all__ = ["PEERS_NATIVE"]
