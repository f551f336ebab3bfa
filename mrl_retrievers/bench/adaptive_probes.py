"""``adaptive-probes``: how the calibration's probes compare with a workload's held-out queries.

A store calibrates on probes (``calibration.off_node``: a sampled row moved by Gaussian noise shaped
like the data's per-dimension spread). Whether their recall predicts real queries' depends on how
alike they are where the coarse stage looks: the prefix. Per workload, over one pass of the data:

* **prefix share**: the fraction of an offset's energy in the first ``prefix_dim`` dimensions, for
  the held-out queries' offsets from their nearest stored row, for the probes' noise (offset from
  the row they came from), and for the stored rows' differences from their nearest other row;
* **distance**: percentiles (10/50/90) of the offset to the nearest stored row, for the queries and
  for each probe stratum (near/middle/far; a probe's own row excluded, as the calibration does).

Run: ``python -m mrl_retrievers.bench adaptive-probes --n 0 --text man --cache CACHE`` (the same
workload options as ``adaptive-grid``; nothing is built or searched, only the dataset is read).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..mrl import normalize
from ..store.local import calibration
from . import data
from .adaptive import Workload, _common, _workloads, log_line, save_json

_PERCENTILES = (10, 50, 90)


def nearest(dataset, queries: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Row of each (unit) query's nearest stored row, never its ``exclude`` row (-1: none); one pass."""
    return data.exact_topk(dataset, queries, 1, exclude)[:, 0]


def prefix_share(offsets: np.ndarray, prefix_dim: int) -> float:
    """Fraction of the offsets' summed energy in their first ``prefix_dim`` dimensions."""
    energy = (offsets.astype(np.float64) ** 2).sum(axis=0)
    return float(energy[:prefix_dim].sum() / max(energy.sum(), 1e-30))


def study(w: Workload, nq: int, sample: int = calibration.DEFAULT_PROBES, seed: int = 0) -> dict[str, Any]:
    ds = w.dataset
    rows_of = lambda rows: normalize(np.asarray(ds.vectors()[rows], dtype=np.float32))  # noqa: E731
    queries = normalize(np.asarray(ds.queries()[:nq], dtype=np.float32))
    rng = np.random.default_rng(seed)
    own = np.sort(rng.choice(ds.n, size=min(sample, ds.n - 1), replace=False))
    base = rows_of(own)
    probes, strata = calibration.off_node(base, rng)  # the calibration's own procedure
    # One pass for all three: the queries' nearest rows, and the probes' and their rows' other than their own.
    near = nearest(ds, np.vstack([queries, probes, base]), np.concatenate([np.full(len(queries), -1), own, own]))
    q_near, p_near, r_near = np.split(near, [len(queries), len(queries) + len(probes)])
    q_off = queries - rows_of(q_near)
    p_dist = np.linalg.norm(probes - rows_of(p_near), axis=1)
    r_off = base - rows_of(r_near)
    q_dist = np.linalg.norm(q_off, axis=1)
    pct = lambda x: [round(float(v), 3) for v in np.percentile(x, _PERCENTILES)]  # noqa: E731
    return {
        "workload": w.name, "prefix_dim": w.prefix_dim, "dim": ds.dim, "queries": len(queries), "probes": len(probes),
        "prefix_share": {"queries": prefix_share(q_off, w.prefix_dim), "probe_noise": prefix_share(probes - base, w.prefix_dim),
                         "neighbour_differences": prefix_share(r_off, w.prefix_dim)},
        "nearest_offset": {"queries": pct(q_dist), **{f"probes stratum {s}": pct(p_dist[strata == s]) for s in np.unique(strata).tolist()}},
    }


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = ("| workload | prefix share: queries' offsets / probes' noise / neighbour differences | "
            "nearest offset p10/p50/p90: queries | probes near / middle / far |\n|---|---|---|---|")
    lines = [head]
    for r in rows:
        s, d = r["prefix_share"], r["nearest_offset"]
        probes = " ; ".join("/".join(f"{v:.2f}" for v in d[key]) for key in d if key.startswith("probes"))
        lines.append(f"| {r['workload']} | {s['queries']:.3f} / {s['probe_noise']:.3f} / {s['neighbour_differences']:.3f} | "
                     f"{'/'.join(f'{v:.2f}' for v in d['queries'])} | {probes} |")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("adaptive-probes", help="the calibration's probes against held-out queries: prefix share of offsets, distances")
    _common(p)
    p.set_defaults(func=cmd_probes)


def cmd_probes(args: argparse.Namespace) -> int:
    rows = []
    for w in _workloads(args, log_line):
        rows.append(study(w, args.queries))
        log_line(format_rows(rows[-1:]))
    print(format_rows(rows))
    save_json(args.out, rows)
    return 0


__all__ = ["add_parser", "nearest", "prefix_share", "study"]
