"""What every benchmark adapter shares: the ``Peer`` shape, ``Skip`` and the effort grids.

The adapters themselves live in ``peers`` (ours, numpy, hnswlib, faiss), ``peers_frameworks``
(LangChain, LlamaIndex, Qdrant local mode) and ``peers_native`` (the compiled engines); ``peers``
gathers them into ``PEERS``.
"""

from __future__ import annotations
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar
import numpy as np
from .data import Dataset


class Skip(Exception):
    """This method does not apply here (too large, missing package); the message says why."""


class Peer:
    """Base adapter. ``build`` is timed by the runner; ``settings`` are swept in order."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = "bench"
    max_n: ClassVar[int | None] = None  # above this many vectors the method is skipped (and reported)

    def __init__(self, ds: Dataset, cache: Path, options: dict[str, Any]) -> None:
        self.ds, self.options = ds, options
        self.cache = Path(cache) / ds.name / self.cache_key()
        self.build_info: dict[str, Any] = {}

    # --- what the runner asks ------------------------------------------------------------------

    @classmethod
    def applicable(cls, n: int, options: dict[str, Any]) -> str | None:
        """None when the method runs at this size, else the reason it is skipped."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs {', '.join(missing)} (pip install 'mrl-retrievers[{cls.extra}]')"
        limit = options.get(f"{cls.name}_max_n", cls.max_n)
        if limit is not None and n > limit:
            return f"skipped above {limit:,} vectors (it would not finish in reasonable time or RAM)"
        return None

    def cache_key(self) -> str:
        return self.name

    def cached_info(self) -> dict[str, Any] | None:
        """The recorded build of these parameters, if a finished one is cached (and reuse is allowed)."""
        info = self.cache / "build.json"
        if self.cacheable and info.exists() and not self.options.get("rebuild"):
            return {**json.loads(info.read_text()), "cached": True}
        return None

    def build(self) -> None:
        """Build the index, or load it when a finished build of the same parameters is cached."""
        info = self.cache / "build.json"
        if self.cacheable and info.exists() and not self.options.get("rebuild"):
            started = time.perf_counter()
            self.load()
            self.build_info = {**json.loads(info.read_text()), "cached": True, "load_s": time.perf_counter() - started}
            return
        shutil.rmtree(self.cache, ignore_errors=True)
        self.cache.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        extra = self.build_fresh() or {}
        self.build_info = {"build_s": time.perf_counter() - started, "cached": False, **extra}
        if self.cacheable:
            tmp = info.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.build_info))
            os.replace(tmp, info)

    cacheable: ClassVar[bool] = False

    def build_fresh(self) -> dict | None:
        raise NotImplementedError

    def load(self) -> None:
        raise NotImplementedError

    def settings(self) -> list[dict[str, Any]]:
        return [{}]

    def default_setting(self) -> dict[str, Any] | None:
        """The setting to report as the method's headline (None: the fastest meeting the target)."""
        return None

    def configure(self, setting: dict[str, Any]) -> None:
        self.setting = setting

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def disk_bytes(self) -> int:
        return _tree_size(self.cache)

    def cold_files(self) -> list[Any]:
        """Open objects whose pages ``evict`` drops between queries (empty: nothing on disk to evict)."""
        return []

    def evict(self) -> None:
        pass

    def extra_metrics(self, queries: np.ndarray, k: int) -> dict[str, Any]:
        return {}

    def async_qps(self, queries: np.ndarray, k: int, seconds: float, concurrency: int) -> float | None:
        """Queries per second through the method's async API with ``concurrency`` tasks (None: no async API)."""
        return None

    def close(self) -> None:
        pass


# The knobs every method is swept over. Both curves reach past the 0.99 target where they can
# (hnswlib to ef 1024, coarse-to-fine to shortlist 400 / ef 800), and both have points between the
# doublings (ef 48, 96, 192; 50/75, 100/150; 200 to 400) so "fastest at >= the peer's recall" does
# not jump a whole step: at 100k, 50/50 -> 50/100 took ours from 0.9931 to 0.9989 with nothing
# between, past faiss-refine's 0.9942 (docs/benchmarks.md, "float16 prefixes in the graph").
# Shortlist 25 since 2026-12-06: ours' sweep always held its recorded default (25/50 at 100k), the
# other coarse-to-fine methods had nothing below 50/50 (faiss-refine at 25/50: 0.9927 in 0.108 ms,
# against 0.9942 in 0.132 at 50/50, on the 100k bench data).
HNSW_EF_GRID = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
COARSE_TO_FINE_GRID = ((25, 50), (25, 75), (50, 50), (50, 75), (50, 100), (100, 100), (100, 150), (100, 200), (200, 200),
                       (200, 400), (200, 600), (300, 600), (400, 800))
# Ours' own knob on a calibrated store: the target recall of its per-query effort policy.
ADAPTIVE_TARGETS = (0.9, 0.95, 0.98, 0.99, 0.995)


def _tree_size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.name != "build.json")


__all__ = ["ADAPTIVE_TARGETS", "COARSE_TO_FINE_GRID", "HNSW_EF_GRID", "Peer", "Skip"]
