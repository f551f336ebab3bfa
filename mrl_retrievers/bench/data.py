"""Benchmark datasets: float16 vectors on disk, query vectors and the exact top-k, all cached.

Three sources, one shape (``Dataset``):

* ``synthetic(n, dim, ...)``: seeded MRL-like vectors (``synthetic.mrl_like``) written block by block
  as float16 to a ``.npy`` file, so 1M x 1024 (2 GiB) never sits in RAM as float32;
* ``from_npy(path)``: a user's ``(n, dim)`` array, normalized and copied as float16;
* ``from_store(path)``: the live vectors of an existing ``MRLStore`` (opened read-only).

Queries resemble stored vectors without copying them (``synthetic.queries_near``); the truth is the
exact full-width top-k over the float16 vectors as every method sees them, computed in one blocked
pass. Every file is written to a temp name and renamed, so an interrupted run leaves no half file
that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..store.local.search import fold_top_k
from .synthetic import mrl_like, queries_near

# Where datasets and built indexes are kept between runs (``--cache`` overrides it).
DEFAULT_CACHE = Path(os.environ.get("MRL_BENCH_CACHE", Path.home() / ".cache" / "mrl-retrievers" / "bench"))

BLOCK = 65536


@dataclass(frozen=True)
class Dataset:
    """Vectors (float16 ``.npy``, unit rows), queries (float32) and the exact top-k rows per query."""

    name: str
    directory: Path
    n: int
    dim: int
    k: int
    nq: int
    source: dict

    @property
    def vectors_path(self) -> Path:
        return self.directory / "vectors.f16.npy"

    @property
    def queries_path(self) -> Path:
        return self.directory / f"queries-{self.nq}.npy"

    @property
    def truth_path(self) -> Path:
        return self.directory / f"truth-{self.nq}-k{self.k}.npy"

    def vectors(self) -> np.ndarray:
        """The stored vectors as a read-only float16 memory map (nothing is read yet)."""
        return np.load(self.vectors_path, mmap_mode="r")

    def queries(self) -> np.ndarray:
        return np.load(self.queries_path)

    def truth(self) -> np.ndarray:
        return np.load(self.truth_path)

    def blocks(self, block: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        """(start row, float32 copy of the rows) over the whole file, ``block`` rows at a time."""
        data = self.vectors()
        for start in range(0, self.n, block):
            yield start, np.asarray(data[start : start + block], dtype=np.float32)

    def to_json(self) -> dict:
        return {"name": self.name, "n": self.n, "dim": self.dim, "k": self.k, "nq": self.nq,
                "path": str(self.vectors_path), "source": self.source}


# --- sources ---------------------------------------------------------------------------------------


def synthetic(n: int, dim: int, *, cache: Path, nq: int = 1000, k: int = 10, seed: int = 0, clusters: int = 256,
              decay: float = 0.5, spread: float = 0.6, query_noise: float = 0.5) -> Dataset:
    """Seeded MRL-like vectors (see ``synthetic.mrl_like``), generated once and cached on disk."""
    params = {"kind": "synthetic", "n": n, "dim": dim, "seed": seed, "clusters": clusters, "decay": decay,
              "spread": spread, "query_noise": query_noise}
    name = f"synthetic-{n}x{dim}-s{seed}-c{clusters}-d{decay}-sp{spread}"
    ds = Dataset(name, Path(cache) / name, n, dim, k, nq, params)
    if not ds.vectors_path.exists():
        _write_f16(ds.vectors_path, n, dim, mrl_like(n, dim, seed=seed, clusters=clusters, decay=decay, spread=spread, block=BLOCK))
    _ensure_queries_and_truth(ds, seed=seed + 1, noise=query_noise, decay=decay)
    return ds


def from_npy(path: str | os.PathLike[str], *, cache: Path, nq: int = 1000, k: int = 10, queries: str | None = None,
             seed: int = 1, query_noise: float = 0.5) -> Dataset:
    """A user's ``(n, dim)`` float array (``.npy``); queries from ``queries`` or near stored rows."""
    path = Path(path).resolve()
    source = np.load(path, mmap_mode="r")
    if source.ndim != 2 or not np.issubdtype(source.dtype, np.floating):
        raise ValueError(f"{path} must hold a 2-D float array, got {source.dtype} {source.shape}")
    stat = path.stat()
    key = _digest(f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{queries}")
    n, dim = source.shape
    given = None if queries is None else _unit(np.load(queries).astype(np.float32))
    if given is not None:
        if given.ndim != 2 or given.shape[1] != dim:
            raise ValueError(f"queries {queries} must be (nq, {dim}), got {given.shape}")
        nq = len(given)
    ds = Dataset(f"npy-{path.stem}-{key}", Path(cache) / f"npy-{path.stem}-{key}", n, dim, k, nq,
                 {"kind": "npy", "path": str(path), "queries": queries})
    if not ds.vectors_path.exists():
        _write_f16(ds.vectors_path, n, dim, (np.asarray(source[s : s + BLOCK], dtype=np.float32) for s in range(0, n, BLOCK)))
    if given is not None and not ds.queries_path.exists():
        _save_queries(ds, given)
    _ensure_queries_and_truth(ds, seed=seed, noise=query_noise, decay=0.5)
    return ds


def from_store(path: str | os.PathLike[str], *, cache: Path, nq: int = 1000, k: int = 10, seed: int = 1,
               query_noise: float = 0.5) -> Dataset:
    """The live vectors of an existing store, in row order (the store is opened read-only)."""
    from ..store import MRLStore  # noqa: PLC0415 - only this source needs a store

    path = Path(path).resolve()
    stamp = ":".join(f"{p.name}={p.stat().st_size}" for p in sorted(path.iterdir()) if p.is_file())
    key = _digest(f"{path}:{stamp}")
    with MRLStore.open(path, read_only=True) as store:
        ids = store.ids()  # in row order; ``get`` reads each block's rows in one pass (checksums checked)
        ds = Dataset(f"store-{path.name}-{key}", Path(cache) / f"store-{path.name}-{key}", len(ids), store.full_dim, k, nq,
                     {"kind": "store", "path": str(path)})
        if not ds.vectors_path.exists():
            blocks = (np.stack([r.vector for r in store.get(ids[s : s + BLOCK], include_vectors=True)])
                      for s in range(0, len(ids), BLOCK))
            _write_f16(ds.vectors_path, len(ids), store.full_dim, blocks)
    _ensure_queries_and_truth(ds, seed=seed, noise=query_noise, decay=0.5)
    return ds


# --- exact truth --------------------------------------------------------------------------------------


def exact_topk(ds: Dataset, queries: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Exact top-``k`` rows per query by full-width inner product, in one pass over the file.

    ``exclude[i]`` (optional) is a row never returned for query ``i`` (its own row).
    """
    nq = len(queries)
    best = (np.full((nq, 0), -1, dtype=np.int64), np.full((nq, 0), -np.inf, dtype=np.float32))
    qt = np.ascontiguousarray(queries.T, dtype=np.float32)
    for start, block in ds.blocks():
        scores = block @ qt  # (block, nq)
        if exclude is not None:
            inside = (exclude >= start) & (exclude < start + len(block))
            scores[exclude[inside] - start, np.flatnonzero(inside)] = -np.inf
        best = fold_top_k(best, np.arange(start, start + len(block), dtype=np.int64), scores, k)
    return best[0]


def recall(found: np.ndarray | list, truth: np.ndarray, k: int) -> float:
    """Mean fraction of each query's true top-k rows found in its first k results."""
    hits = [len(set(np.asarray(f[:k]).tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]
    return float(np.mean(hits)) if hits else 0.0


# --- helpers -------------------------------------------------------------------------------------------


def _ensure_queries_and_truth(ds: Dataset, *, seed: int, noise: float, decay: float) -> None:
    if not ds.queries_path.exists():
        data = ds.vectors()
        _save_queries(ds, queries_near(data, ds.nq, seed=seed, noise=noise, decay=decay))
    if not ds.truth_path.exists():
        truth = exact_topk(ds, ds.queries(), ds.k)
        _atomic_save(ds.truth_path, truth)
    meta = ds.directory / "dataset.json"
    if not meta.exists():
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(ds.to_json(), indent=2))
        os.replace(tmp, meta)


def _save_queries(ds: Dataset, queries: np.ndarray) -> None:
    _atomic_save(ds.queries_path, np.ascontiguousarray(queries, dtype=np.float32))


def _write_f16(path: Path, n: int, dim: int, blocks) -> None:
    """Write unit rows as float16 ``.npy`` block by block (bounded RAM), then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, dim))
    start = 0
    for block in blocks:
        out[start : start + len(block)] = _unit(block)
        start += len(block)
    if start != n:
        raise ValueError(f"expected {n} rows, the source yielded {start}")
    out.flush()
    del out
    os.replace(tmp, path)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


__all__ = ["Dataset", "exact_topk", "from_npy", "from_store", "recall", "synthetic"]
