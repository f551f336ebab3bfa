"""The measurement behind ``tune``: does the setting it picks hold on queries it never saw?

For each synthetic spectrum (``decay``): build a store at the shipped defaults, measure recall@k and
p50 on held-out paraphrase queries (``queries_near``, truth = exact full-width top-k), run ``tune``
(which samples *stored* vectors as its queries), then measure the held-out queries again at the
setting it recorded. Run: ``python -m mrl_retrievers.bench tune-check --n 50000``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..store import MRLStore
from ..store.local.tuning import tune
from . import data


def held_out(store: MRLStore, queries: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    """(recall@k, p50 ms) of ``store.search`` at its defaults; ids are dataset rows."""
    found, times = [], []
    for q in queries:
        store.search(q, k=k)
    for q in queries:
        started = time.perf_counter()
        hits = store.search(q, k=k)
        times.append(time.perf_counter() - started)
        found.append([int(h.id) for h in hits])
    return data.recall(found, truth, k), float(np.median(times)) * 1e3


def check_tune(*, n: int, dim: int, decays: list[float], target_recall: float = 0.99, nq: int = 500, k: int = 10,
               cache: Path, prefix_dim: int = 128, log: Callable[[str], None] = print, **tune_kwargs: Any) -> list[dict[str, Any]]:
    rows = []
    for decay in decays:
        ds = data.synthetic(n, dim, cache=cache, nq=nq, k=k, decay=decay)
        queries, truth = ds.queries(), ds.truth()
        with tempfile.TemporaryDirectory(prefix="mrl-tune-check-") as tmp:
            store = MRLStore.create(Path(tmp) / "s", full_dim=dim, prefix_dim=prefix_dim, exact_below=0)
            for start, block in ds.blocks(50_000):
                store.add([str(i) for i in range(start, start + len(block))], block)
            before = held_out(store, queries, truth, k)
            log(f"decay {decay}: defaults prefix {store.prefix_dim} shortlist {store.manifest.shortlist} ef {store.manifest.ef}: "
                f"held-out recall {before[0]:.4f}, p50 {before[1]:.3f} ms; tuning ...")
            result = tune(store, target_recall=target_recall, k=k, progress=log, **tune_kwargs)
            after = held_out(store, queries, truth, k)
            store.close()
        rows.append({"decay": decay, "n": n, "dim": dim, "tune": result.to_dict(),
                     "before": {"prefix_dim": prefix_dim, "recall": before[0], "p50_ms": before[1]},
                     "after": {"recall": after[0], "p50_ms": after[1]}})
    return rows


def format_check(rows: list[dict[str, Any]]) -> str:
    lines = ["| decay | chosen prefix / shortlist / ef | tune-sample recall | held-out recall before -> after | p50 ms before -> after | tune s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        t = r["tune"]
        lines.append(f"| {r['decay']} | {t['prefix_dim']} / {t['shortlist']} / {t['ef']}{'' if t['met'] else ' (not met)'} | "
                     f"{t['recall']:.4f} | {r['before']['recall']:.4f} -> {r['after']['recall']:.4f} | "
                     f"{r['before']['p50_ms']:.3f} -> {r['after']['p50_ms']:.3f} | {t['seconds']:.0f} |")
    return "\n".join(lines)


__all__ = ["check_tune", "format_check", "held_out"]
