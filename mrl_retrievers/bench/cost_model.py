"""``cost-model``: time a store's searches and fit the calibration's cost model to them.

The calibration ranks policies by a deterministic cost model, never a clock (``calibration.level_cost``
and ``scan_cost``, CPU microseconds a query): a level costs ``COST_PER_EF`` per unit of hnswlib's ef
(at a 128-wide prefix, scaled by ``(prefix + 32) / 160``) plus ``COST_PER_ROW`` per reranked row (at
1024 dims), an exact scan ``COST_PER_SCANNED_ROW`` (base + per 1024 dims) per live row. Which
policy wins depends on the ratios between them, so when the search path changes (the compiled rerank
made reranked and scanned rows several times cheaper) the constants must be measured again.

Per store: queries are stored rows moved by the calibration's own noise (``calibration.off_node``,
seeded); fixed ``(shortlist, ef)`` searches and exact scans are timed in CPU time, each setting over
the same queries after one untimed pass over them (steady state: the rows' first-read checksums and
page faults are not what a long-running process pays per search). A least-squares fit of
``t = fixed + e x ef x (prefix + 32) / 160 + r x shortlist x dims / 1024`` over every store's
settings gives ``COST_PER_EF`` and ``COST_PER_ROW``; the exact scans' time per live row, against the
stores' widths, gives ``COST_PER_SCANNED_ROW`` (from one width, or when the widths' costs give a negative part,
the current split into base and per-dimension parts is kept, scaled to the measured cost).

Run: ``python -m mrl_retrievers.bench cost-model STORE [STORE ...]`` (read-only: nothing is written).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..mrl import normalize
from ..store.local import calibration
from .adaptive import log_line, save_json

SETTINGS = ((16, 16), (16, 256), (16, 1024), (16, 4096), (256, 256), (1024, 1024), (4096, 4096))


def cpu_us(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> float:
    """CPU microseconds per search over ``queries``, after one untimed pass over the same queries."""
    for q in queries:
        search(q)
    started = time.process_time()
    for q in queries:
        search(q)
    return (time.process_time() - started) / len(queries) * 1e6


def measure(path: str | Path, *, queries: int = 300, exact_queries: int = 30, seed: int = 0) -> dict[str, Any]:
    """Timings of one store: its widths and size, each fixed setting's and the exact scan's CPU us."""
    from ..store import MRLStore  # noqa: PLC0415

    with MRLStore.open(path, read_only=True) as store:
        ids = store.ids()
        rng = np.random.default_rng(seed)
        chosen = [ids[i] for i in np.sort(rng.choice(len(ids), size=min(queries, len(ids)), replace=False))]
        stored = np.stack([r.vector for r in store.get(chosen, include_vectors=True)])
        probes, _ = calibration.off_node(normalize(stored.astype(np.float32)), rng)
        timed = []
        for shortlist, ef in SETTINGS:
            if shortlist < len(ids) // 2:
                t = cpu_us(lambda q, s=shortlist, e=ef: store.search(q, k=10, shortlist=s, ef=e), probes)
                timed.append({"shortlist": shortlist, "ef": ef, "us": t})
        exact = cpu_us(lambda q: store.search_exact(q, k=10), probes[:exact_queries])
        return {"store": str(path), "live": len(ids), "prefix_dim": store.prefix_dim, "full_dim": store.full_dim,
                "settings": timed, "exact_us": exact}


def fit(stores: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's constants from ``measure``'s timings (see the module docstring)."""
    rows, times = [], []
    for s in stores:
        for t in s["settings"]:
            rows.append([1.0, max(t["ef"], t["shortlist"]) * (s["prefix_dim"] + 32) / 160, t["shortlist"] * s["full_dim"] / 1024])
            times.append(t["us"])
    (fixed, per_ef, per_row), *_ = np.linalg.lstsq(np.array(rows), np.array(times), rcond=None)
    widths = np.array([s["full_dim"] / 1024 for s in stores])
    per_scanned = np.array([s["exact_us"] / s["live"] for s in stores])
    base = per_width = -1.0
    if len(set(widths.tolist())) > 1:
        (base, per_width), *_ = np.linalg.lstsq(np.stack([np.ones_like(widths), widths], axis=1), per_scanned, rcond=None)
    if base < 0 or per_width < 0:
        # One width, or widths whose scans cost about the same per row (memory-bound: the fit's
        # split is noise): keep the current split between the per-row base and the per-dimension
        # part, scaled to the measured cost per row at the stores' mean width.
        b0, b1 = calibration.COST_PER_SCANNED_ROW
        scale = float(per_scanned.mean()) / (b0 + b1 * float(widths.mean()))
        base, per_width = b0 * scale, b1 * scale
    return {"fixed_us": float(fixed), "COST_PER_EF": float(per_ef), "COST_PER_ROW": float(per_row),
            "COST_PER_SCANNED_ROW": (float(base), float(per_width))}


def modeled(store: dict[str, Any], shortlist: int, ef: int, constants: dict[str, Any] | None = None) -> float:
    """``calibration.level_cost`` with the module's constants, or with ``constants`` (a ``fit``)."""
    c = constants or {"COST_PER_EF": calibration.COST_PER_EF, "COST_PER_ROW": calibration.COST_PER_ROW}
    p, d = store["prefix_dim"], store["full_dim"]
    return c["COST_PER_EF"] * max(ef, shortlist) * (p + 32) / 160 + c["COST_PER_ROW"] * shortlist * d / 1024


def format_report(stores: list[dict[str, Any]], fitted: dict[str, Any]) -> str:
    lines = ["| store | setting | measured CPU us | current model | fitted model (+ fixed) |", "|---|---|---|---|---|"]
    for s in stores:
        name = f"{s['live']:,} x {s['full_dim']}, prefix {s['prefix_dim']}"
        for t in s["settings"]:
            lines.append(f"| {name} | {t['shortlist']}/{t['ef']} | {t['us']:.0f} | {modeled(s, t['shortlist'], t['ef']):.0f} | "
                         f"{modeled(s, t['shortlist'], t['ef'], fitted) + fitted['fixed_us']:.0f} |")
        b0, b1 = calibration.COST_PER_SCANNED_ROW
        f0, f1 = fitted["COST_PER_SCANNED_ROW"]
        w = s["full_dim"] / 1024
        lines.append(f"| {name} | exact scan | {s['exact_us']:.0f} | {s['live'] * (b0 + b1 * w):.0f} | {s['live'] * (f0 + f1 * w):.0f} |")
    current = {"COST_PER_EF": calibration.COST_PER_EF, "COST_PER_ROW": calibration.COST_PER_ROW,
               "COST_PER_SCANNED_ROW": calibration.COST_PER_SCANNED_ROW}
    lines += ["", "| constant | current | fitted |", "|---|---|---|"]
    for key, now in current.items():
        new = fitted[key]
        show = (lambda v: f"({v[0]:.3f}, {v[1]:.3f})") if isinstance(now, tuple) else (lambda v: f"{v:.3f}")
        lines.append(f"| {key} | {show(now)} | {show(new)} |")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("cost-model", help="time a store's searches and fit the calibration's cost model (read-only)")
    p.add_argument("stores", nargs="+", help="store directories")
    p.add_argument("--queries", type=int, default=300, help="queries per setting (each timed after an untimed pass)")
    p.add_argument("--exact-queries", type=int, default=30)
    p.add_argument("--out", help="write the timings and the fit as JSON here")
    p.set_defaults(func=cmd_cost_model)


def cmd_cost_model(args: argparse.Namespace) -> int:
    stores = []
    for path in args.stores:
        stores.append(measure(path, queries=args.queries, exact_queries=args.exact_queries))
        log_line(f"measured {path}")
    fitted = fit(stores)
    print(format_report(stores, fitted))
    save_json(args.out, {"stores": stores, "fit": fitted})
    return 0


__all__ = ["add_parser", "fit", "measure", "modeled"]
