"""One small adapter per method the benchmark compares, all with the same shape.

An adapter builds (or loads from its cache) an index over a ``Dataset``, lists the settings it is
swept over (its recall/latency curve), and answers ``search(query, k) -> rows``. Everything heavy is
imported inside the adapter, so a missing optional package skips one method, not the run.

Peers: ours (``MRLStore``), numpy exact at full width (float32 in RAM: the fastest numpy can do),
hnswlib at full width, faiss ``IndexHNSWFlat`` and ``IndexRefineFlat`` (faiss's own coarse-to-fine:
an HNSW over the same renormalized prefix, refined on float32 full vectors kept in RAM), LangChain
``InMemoryVectorStore``, LlamaIndex ``SimpleVectorStore`` and Qdrant local mode with a prefetch; the
compiled engines (DiskANN, usearch, Qdrant's engine in-process, LanceDB) are in ``peers_native``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .peer_base import ADAPTIVE_TARGETS, COARSE_TO_FINE_GRID, HNSW_EF_GRID, Peer, Skip
from .peers_frameworks import LangChainInMemory, LlamaIndexSimple, QdrantLocal
from .peers_native import PEERS_NATIVE


# --- ours --------------------------------------------------------------------------------------------


class Ours(Peer):
    name, label = "ours", "mrl-retrievers (prefix HNSW + fp16 rerank)"
    cacheable = True

    def cache_key(self) -> str:
        o = self.options
        tuned = f"-tuned{o.get('tune_sample', 200)}" if o.get("tune") else ""
        if o.get("tune") and o.get("tune_prefix_dims"):
            tuned += "-w" + "_".join(map(str, o["tune_prefix_dims"]))
        return f"ours-p{o.get('prefix_dim', 128)}-M{o.get('M', 16)}-efc{self._ef_construction()}{tuned}"

    def _ef_construction(self) -> int:
        # Ours builds its coarse graph with its own default unless told otherwise (see --ours-ef-construction).
        from ..store.defaults import DEFAULT_EF_CONSTRUCTION  # noqa: PLC0415

        return self.options.get("ours_ef_construction") or DEFAULT_EF_CONSTRUCTION

    def build_fresh(self) -> dict:
        from ..store import MRLStore  # noqa: PLC0415
        from .framework import StoredQueries  # noqa: PLC0415

        o = self.options
        # The spec of the query-lookup provider, so the framework wrappers can open this store.
        spec = StoredQueries(self.ds.name, self.ds.dim).spec
        store = MRLStore.create(self.cache / "store", full_dim=self.ds.dim, prefix_dim=o.get("prefix_dim", 128),
                                spec=spec, exact_below=0, M=o.get("M", 16), ef_construction=self._ef_construction())
        step = 50_000
        for start, block in self.ds.blocks(step):
            store.add([str(i) for i in range(start, start + len(block))], block)
        store.checkpoint()
        extra: dict[str, Any] = {}
        if o.get("tune"):
            from ..store.local.tuning import tune  # noqa: PLC0415

            started = time.perf_counter()
            result = tune(store, target_recall=o.get("target_recall", 0.99), sample=o.get("tune_sample", 200),
                          prefix_dims=o.get("tune_prefix_dims"))
            extra = {"tune_s": time.perf_counter() - started, "tune": result.to_dict()}
        self.store = store
        return extra

    def load(self) -> None:
        from ..store import MRLStore  # noqa: PLC0415

        self.store = MRLStore.open(self.cache / "store")

    def settings(self) -> list[dict[str, Any]]:
        """The fixed efforts every coarse-to-fine method is swept over, the recorded fixed default,
        and, on a calibrated store, its own knob: the target recall (``ADAPTIVE_TARGETS``, each the
        store's calibrated per-query policy: ``search(q, target_recall=t)``)."""
        m = self.store.manifest
        grid = [{"shortlist": s, "ef": e} for s, e in COARSE_TO_FINE_GRID]
        fixed = {"shortlist": m.shortlist, "ef": m.ef}
        grid = grid if fixed in grid else grid + [fixed]
        if m.calibration is None:
            return grid
        return grid + [{"target_recall": t} for t in ADAPTIVE_TARGETS]

    def default_setting(self) -> dict[str, Any]:
        """What ``store.search(q)`` runs with no knobs: the calibrated policy for the store's target
        (until 2026-12-06 the headline was the fixed shortlist/ef tune records, which a default search
        runs only on a store without a calibration)."""
        m = self.store.manifest
        if m.calibration is not None and m.target_recall is not None:
            return {"target_recall": m.target_recall}
        return {"shortlist": m.shortlist, "ef": m.ef}

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        hits = self.store.search(query, k=k, **self.setting)
        return np.fromiter((int(h.id) for h in hits), dtype=np.int64, count=len(hits))

    def async_qps(self, queries: np.ndarray, k: int, seconds: float, concurrency: int) -> float:
        """``MRLIndex.aquery`` (the only async search: the provider's ``aembed_query``, then
        ``asyncio.to_thread(store.search)``) with ``concurrency`` tasks on one event loop, at the
        measured setting (shortlist and ef, or the target recall). Without it, a calibrated store's
        adaptive default would be timed whatever the setting."""
        import asyncio  # noqa: PLC0415

        from ..index import MRLIndex  # noqa: PLC0415
        from .framework import StoredQueries  # noqa: PLC0415

        provider = StoredQueries(self.store.spec.model if self.store.spec else "stored-queries", self.store.full_dim, queries)
        index = MRLIndex(provider, store=self.store)
        texts = [f"q{i}" for i in range(len(queries))]
        shortlist, ef, target = self.setting.get("shortlist"), self.setting.get("ef"), self.setting.get("target_recall")

        async def run() -> float:
            started = time.perf_counter()

            async def loop(offset: int) -> int:
                count = 0
                while True:
                    for text in texts[offset::concurrency]:
                        await index.aquery(text, k=k, shortlist=shortlist, ef=ef, target_recall=target)
                        count += 1
                    if time.perf_counter() - started >= seconds:
                        return count

            done = sum(await asyncio.gather(*(loop(i) for i in range(concurrency))))
            return done / (time.perf_counter() - started)

        return asyncio.run(run())

    def cold_files(self) -> list[Any]:
        return [self.store.diagnostics.vector_file]

    def evict(self) -> None:
        self.store.diagnostics.evict_vector_file()  # our mapped pages first: they survive POSIX_FADV_DONTNEED

    def extra_metrics(self, queries: np.ndarray, k: int) -> dict[str, Any]:
        from .framework import framework_overhead, rerank_cold  # noqa: PLC0415

        out = self._manifest()
        out.update(rerank_cold(self, queries[: min(len(queries), 200)], k))
        if self.options.get("frameworks", True):
            out.update(framework_overhead(self.store, queries[: min(len(queries), 300)], k, self.setting))
        return out

    def _manifest(self) -> dict[str, Any]:
        m = self.store.manifest
        return {"manifest": {"prefix_dim": m.prefix_dim, "shortlist": m.shortlist, "ef": m.ef, "target_recall": m.target_recall,
                             "calibrated": m.calibration is not None}}

    def close(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()


class _OursAgain(Ours):
    """Ours' cached store measured another way, in the same run (never built: a build would first
    clear the folder it shares with ours)."""

    def build(self) -> None:
        if self.options.get("rebuild") or not (self.cache / "build.json").exists():
            raise Skip(f"{self.name} measures ours' cached store: list ours before it, without --rebuild")
        super().build()


class OursNumpy(_OursAgain):
    """Ours on the same store with the rerank scored by numpy instead of the compiled kernel
    (``store/local/kernel.py``): the kernel's share of the speed, measured in the same run."""

    name, label = "ours-numpy", "mrl-retrievers, numpy rerank (no compiled kernel)"

    def load(self) -> None:
        from ..store.local import kernel  # noqa: PLC0415

        kernel.use_numpy()
        super().load()


class OursReadOnly(_OursAgain):
    """Ours on the same store through a read-only handle: how every process but the writer serves
    it (each read checks for the writer's commits first: ``store/local/follow.py``)."""

    name, label = "ours-ro", "mrl-retrievers, read-only handle"

    def load(self) -> None:
        from ..store import MRLStore  # noqa: PLC0415

        self.store = MRLStore.open(self.cache / "store", read_only=True)

    def extra_metrics(self, queries: np.ndarray, k: int) -> dict[str, Any]:
        return self._manifest()  # the rest is measured as ours


# --- numpy exact ---------------------------------------------------------------------------------------


class NumpyExact(Peer):
    name, label = "numpy", "numpy exact (float32 in RAM)"

    def build_fresh(self) -> None:
        self.matrix = np.empty((self.ds.n, self.ds.dim), dtype=np.float32)
        for start, block in self.ds.blocks():
            self.matrix[start : start + len(block)] = block

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        scores = self.matrix @ query
        top = np.argpartition(-scores, k - 1)[:k]
        return top[np.argsort(-scores[top])]

    def disk_bytes(self) -> int:
        return self.ds.vectors_path.stat().st_size  # it keeps nothing but the float16 source file


# --- hnswlib -----------------------------------------------------------------------------------------


class Hnswlib(Peer):
    name, label = "hnswlib", "hnswlib full width"
    requires = ("hnswlib",)
    cacheable = True

    def cache_key(self) -> str:
        return f"hnswlib-M{self.options.get('M', 16)}-efc{self.options.get('ef_construction', 200)}"

    def build_fresh(self) -> None:
        import hnswlib  # noqa: PLC0415

        self.index = hnswlib.Index(space="ip", dim=self.ds.dim)
        self.index.init_index(max_elements=self.ds.n, M=self.options.get("M", 16),
                              ef_construction=self.options.get("ef_construction", 200), random_seed=100)
        for start, block in self.ds.blocks():
            self.index.add_items(block, np.arange(start, start + len(block)), num_threads=-1)
        self.index.save_index(str(self.cache / "index.bin"))

    def load(self) -> None:
        import hnswlib  # noqa: PLC0415

        self.index = hnswlib.Index(space="ip", dim=self.ds.dim)
        self.index.load_index(str(self.cache / "index.bin"))

    def settings(self) -> list[dict[str, Any]]:
        return [{"ef": ef} for ef in HNSW_EF_GRID]

    def configure(self, setting: dict[str, Any]) -> None:
        self.setting = setting
        self.index.set_ef(setting["ef"])

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        labels, _ = self.index.knn_query(query[None, :], k=k, num_threads=1)
        return labels[0].astype(np.int64)


# --- faiss ---------------------------------------------------------------------------------------------


class _Faiss(Peer):
    requires = ("faiss",)
    cacheable = True

    def _faiss(self):
        import faiss  # noqa: PLC0415

        faiss.omp_set_num_threads(1)  # single-thread latency; the build raises it
        return faiss

    def load(self) -> None:
        faiss = self._faiss()
        self.index = faiss.read_index(str(self.cache / "index.faiss"))

    def _add_all(self, index) -> None:
        faiss = self._faiss()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        for _, block in self.ds.blocks():
            index.add(block)
        faiss.omp_set_num_threads(1)
        faiss.write_index(index, str(self.cache / "index.faiss"))


class FaissHNSW(_Faiss):
    name, label = "faiss-hnsw", "faiss IndexHNSWFlat full width"

    def cache_key(self) -> str:
        return f"faiss-hnsw-M{self.options.get('M', 16)}-efc{self.options.get('ef_construction', 200)}"

    def build_fresh(self) -> None:
        faiss = self._faiss()
        self.index = faiss.IndexHNSWFlat(self.ds.dim, self.options.get("M", 16), faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.options.get("ef_construction", 200)
        self._add_all(self.index)

    def settings(self) -> list[dict[str, Any]]:
        return [{"ef": ef} for ef in HNSW_EF_GRID]

    def configure(self, setting: dict[str, Any]) -> None:
        self.setting = setting
        self.params = self._faiss().SearchParametersHNSW(efSearch=setting["ef"])

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        _, labels = self.index.search(query[None, :], k, params=self.params)
        return labels[0]


class FaissRefine(_Faiss):
    name, label = "faiss-refine", "faiss IndexRefineFlat (prefix HNSW + float32 refine)"

    def cache_key(self) -> str:
        o = self.options
        return f"faiss-refine-p{o.get('prefix_dim', 128)}-M{o.get('M', 16)}-efc{o.get('ef_construction', 200)}"

    def build_fresh(self) -> None:
        faiss = self._faiss()
        d, p = self.ds.dim, self.options.get("prefix_dim", 128)
        coarse = faiss.IndexHNSWFlat(p, self.options.get("M", 16), faiss.METRIC_INNER_PRODUCT)
        coarse.hnsw.efConstruction = self.options.get("ef_construction", 200)
        base = faiss.IndexPreTransform(coarse)
        # uniform=False: keep the first p dimensions (the MRL prefix), then renormalize them.
        base.prepend_transform(faiss.NormalizationTransform(p))
        base.prepend_transform(faiss.RemapDimensionsTransform(d, p, False))
        self.index = faiss.IndexRefineFlat(base)
        self._add_all(self.index)

    def settings(self) -> list[dict[str, Any]]:
        return [{"shortlist": s, "ef": e} for s, e in COARSE_TO_FINE_GRID]

    def configure(self, setting: dict[str, Any]) -> None:
        faiss = self._faiss()
        self.setting = setting
        self._hnsw_params = faiss.SearchParametersHNSW(efSearch=setting["ef"])
        self._pre_params = faiss.SearchParametersPreTransform(index_params=self._hnsw_params)
        self.k_shortlist = setting["shortlist"]

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        params = self._faiss().IndexRefineSearchParameters(k_factor=self.k_shortlist / k, base_index_params=self._pre_params)
        _, labels = self.index.search(query[None, :], k, params=params)
        return labels[0]


PEERS: dict[str, type[Peer]] = {
    cls.name: cls for cls in (Ours, OursNumpy, OursReadOnly, NumpyExact, Hnswlib, FaissHNSW, FaissRefine, *PEERS_NATIVE, LangChainInMemory,
                              LlamaIndexSimple, QdrantLocal)
}
DEFAULT_METHODS = tuple(PEERS)


__all__ = ["DEFAULT_METHODS", "PEERS", "Peer", "Skip"]
