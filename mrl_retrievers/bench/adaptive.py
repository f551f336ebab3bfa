"""Adaptive effort: the measurements behind ``store/effort.py`` and ``store/local/calibration.py``.

Workloads are stores built the ordinary way (``MRLStore.create`` with no knobs, items added in
50k batches so checkpoints calibrate as the store grows), over

* seeded synthetic MRL-like vectors (``synthetic.mrl_like``) for a grid of spectrum decays and prefix
  widths, with held-out paraphrase queries (``synthetic.queries_near``: the *generator's* spectrum
  shapes their noise, while the store's calibration probes use the data's own spread: the two
  procedures differ on purpose) and their exact full-width truth;
* real text (``textcorpus``): held-out passages and first sentences as queries.

Subcommands (``python -m mrl_retrievers.bench ...``):

* ``adaptive-signals``: at fixed (shortlist, ef) levels, how well each per-query signal computed
  after the coarse stage predicts "this shortlist already holds the query's true top-10" (ROC AUC,
  and the share of queries one could stop while keeping 99.9% recall among them);
* ``adaptive-grid``: recall@10 with no tune and no knobs (mean, worst decile, p10), the effort
  per query, and what the store's calibration recorded;
* ``adaptive-compare`` (``bench/adaptive_compare.py``): adaptive vs the fixed setting ``tune`` picks,
  at equal recall, with latencies and the effort histogram.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..mrl import normalize, prefix
from ..store import MRLStore
from ..store import effort
from ..store.local import calibration, kernel
from . import data, textcorpus
from .data import DEFAULT_CACHE

K = 10
ADD_BLOCK = 50_000
FIXED_DEFAULT = (200, 400)  # the store's fixed defaults before adaptive effort


@dataclass(frozen=True)
class Workload:
    """A store to build and held-out queries with their exact truth (dataset rows)."""

    name: str
    dataset: data.Dataset
    prefix_dim: int
    exact_below: int | None = None  # None: the store's default
    tag: str = ""  # stores measured differently (e.g. tuned) are built apart
    corpus: str | None = None  # workloads of one corpus (query kinds) share its store

    @property
    def store_name(self) -> str:
        tag = ("" if self.exact_below is None else f"-eb{self.exact_below}") + (f"-{self.tag}" if self.tag else "")
        return f"{self.corpus or self.dataset.name}-p{self.prefix_dim}{tag}"


def synthetic_workloads(n: int, dims: Sequence[int], decays: Sequence[float], fractions: Sequence[int], *,
                        cache: Path, nq: int, seed: int = 0) -> list[Workload]:
    out = []
    for dim in dims:
        for decay in decays:
            ds = data.synthetic(n, dim, cache=cache, nq=nq, k=K, seed=seed, decay=decay)
            out += [Workload(f"synthetic n={n} dim={dim} decay={decay} prefix={dim // f}", ds, dim // f) for f in fractions]
    return out


def text_workloads(names: Sequence[str], widths: Sequence[int], *, cache: Path, exact_below: int | None = None,
                   log: Callable[[str], None] = print) -> list[Workload]:
    """Each corpus rotated (PCA fitted on its stored passages) and saved once as ``.npy``; one
    dataset per query kind (held-out passages, their first sentences)."""
    out = []
    for name in names:
        corpus = textcorpus.load(name, cache=cache, log=log)
        docs, passages, sentences = corpus.rotated()
        folder = Path(cache) / f"text-{name}-rotated-{len(docs)}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for part, array in (("docs", docs), ("passages", passages), ("sentences", sentences)):
            paths[part] = folder / f"{part}.npy"
            if not paths[part].exists():
                np.save(paths[part], array.astype(np.float32))
        for kind in ("passages", "sentences"):
            ds = data.from_npy(paths["docs"], cache=cache, k=K, queries=str(paths[kind]))
            ds = data.Dataset(f"{ds.name}-{kind}", ds.directory, ds.n, ds.dim, ds.k, ds.nq, ds.source)
            out += [Workload(f"{name} ({len(docs)} passages, {kind} queries) prefix={w}", ds, w, exact_below, corpus=folder.name)
                    for w in widths]
    return out


def open_store(w: Workload, cache: Path, *, rebuild: bool = False, recalibrate: bool = False,
               log: Callable[[str], None] = print) -> MRLStore:
    """The workload's store, built once with no knobs (calibrated by its own checkpoints) and cached.
    Text workloads share a store per corpus and width (the query kind does not change the store).
    ``recalibrate``: measure a cached store again with the current calibration code."""
    name = w.store_name
    path = Path(cache) / "adaptive-stores" / name
    if rebuild and path.exists():
        import shutil  # noqa: PLC0415

        shutil.rmtree(path)
    if not (path / "manifest.json").exists():
        started = time.perf_counter()
        options = {} if w.exact_below is None else {"exact_below": w.exact_below}
        store = MRLStore.create(path, full_dim=w.dataset.dim, prefix_dim=w.prefix_dim, **options)
        for start, block in w.dataset.blocks(ADD_BLOCK):
            store.add([str(i) for i in range(start, start + len(block))], block)
        store.close()
        log(f"built {name} in {time.perf_counter() - started:.0f} s")
        recalibrate = False
    store = MRLStore.open(path)
    if recalibrate and len(store) > max(store.manifest.exact_below, calibration.MIN_LIVE):
        store.calibrate(store.manifest.target_recall)
        log(f"recalibrated {name} in {store.manifest.calibration.seconds:.0f} s")
    return store


# --- signals --------------------------------------------------------------------------------------------


def signals(sims: np.ndarray, full: np.ndarray, rows_f32: np.ndarray, query: np.ndarray, prefix_dim: int) -> dict[str, float]:
    """Candidate difficulty signals of one query's shortlist (prefix order); higher = safer."""
    n = len(full)
    order = np.argsort(-full, kind="stable")
    top = order[:K]
    kth = float(full[order[K - 1]])
    slope, intercept = np.polyfit(sims.astype(np.float64), full.astype(np.float64), 1)
    scatter = float(np.std(full - (slope * sims + intercept))) + 1e-6
    wide = min(2 * prefix_dim, len(query))
    funnel = normalize(rows_f32[:, :wide]) @ prefix(query, wide)
    return {
        "confidence (store)": effort.confidence(sims, full, K, parts=kernel.confidence_parts),  # weight 0: it is per store
        "z, whole shortlist": (kth - (slope * float(sims[-1]) + intercept)) / scatter,
        "-depth of top-k": -float(top.max()) / n,
        "k-th full score": kth,
        "-(1st - k-th) score": -float(full[order[0]] - kth),
        "last prefix score": float(sims[-1]),
        "funnel 2x agreement": len(set(np.argsort(-funnel)[:K].tolist()) & set(top.tolist())) / K,
    }


def auc(scores: np.ndarray, good: np.ndarray) -> float:
    """P(a complete query scores higher than an incomplete one) (ties count half)."""
    n_good, n_bad = int(good.sum()), int((~good).sum())
    if n_good == 0 or n_bad == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, 1-based
    return float((ranks[good].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))


def stoppable(scores: np.ndarray, recall: np.ndarray, keep: float = 0.999) -> float:
    """Largest share of queries that could stop (safest first by ``scores``) with mean recall >= ``keep``."""
    order = np.argsort(-scores, kind="stable")
    running = np.cumsum(recall[order]) / np.arange(1, len(recall) + 1)
    ok = np.flatnonzero(running >= keep - 1e-12)
    return float((ok.max() + 1) / len(recall)) if len(ok) else 0.0


def study_signals(store: MRLStore, w: Workload, levels: Sequence[tuple[int, int]], nq: int) -> list[dict[str, Any]]:
    queries, truth = w.dataset.queries()[:nq], w.dataset.truth()[:nq]
    # The search path's own stages (coarse shortlist, the rerank's read), under the store's read lock.
    return store.diagnostics.search_stages(lambda stages: _study_signals(stages, w, levels, queries, truth), k=K, shortlist=1, ef=1)


def _study_signals(stages, w: Workload, levels: Sequence[tuple[int, int]], queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for shortlist, ef in levels:
        feats: list[dict[str, float]] = []
        recall = np.empty(len(queries))
        for i, (q, t) in enumerate(zip(queries, truth)):
            rows, sims = stages.coarse(q, shortlist, ef)
            order = np.argsort(rows)
            stored = stages.gather(rows[order])
            rows_f32 = np.empty((len(rows), stored.shape[1]), np.float32)
            rows_f32[order] = stored.astype(np.float32)
            full = rows_f32 @ q
            top = rows[np.argsort(-full, kind="stable")[:K]]
            recall[i] = len(set(top.tolist()) & set(t.tolist())) / K
            feats.append(signals(sims, full, rows_f32, q, w.prefix_dim))
        good = recall >= 1.0
        row = {"workload": w.name, "shortlist": shortlist, "ef": ef, "recall": float(recall.mean()),
               "incomplete": float(1 - good.mean()), "signals": {}}
        for name in feats[0]:
            values = np.array([f[name] for f in feats])
            row["signals"][name] = {"auc": auc(values, good), "stoppable": stoppable(values, recall)}
        out.append(row)
    return out


# --- recall at the defaults --------------------------------------------------------------------------


def effort_levels(store: MRLStore, queries: np.ndarray, k: int = K, target: float | None = None) -> list[int]:
    """Where each query stops on the store's own plan: level index, len(levels) = exact scan,
    -1 = a fixed (uncalibrated) search. Runs the very ``effort.climb`` the search path runs."""

    def levels(stages) -> list[int]:
        plan = stages.plan
        if plan.policy is None:
            return [-1] * len(queries)
        out = []
        for q in queries:
            found = effort.climb(plan.policy, k, lambda sl, ef, q=q: stages.coarse(q, sl, ef),
                                 lambda rows, q=q: stages.exact_scores(q, rows), kernel.confidence_parts)
            level, sure = (found[2], found[3]) if found else (len(plan.policy.levels), False)
            out.append(level if sure or not plan.policy.exact else len(plan.policy.levels))
        return out

    return store.diagnostics.search_stages(levels, k=k, target_recall=target)


def per_query_recall(store: MRLStore, queries: np.ndarray, truth: np.ndarray, **search: Any) -> np.ndarray:
    return np.array([len({int(h.id) for h in store.search(q, k=K, **search)} & set(t[:K].tolist())) / K
                     for q, t in zip(queries, truth)])


def summary(recall: np.ndarray) -> dict[str, Any]:
    """Mean, worst decile and p10 of per-query recall@K, and how many queries missed 1, 2 and 3 or
    more of their K true neighbours (``missed``).

    At a mean >= 1 - 1/(10 K) (0.99 for K = 10) the worst decile says nothing of its own: n
    queries then miss at most n/10 neighbours in all, so every query that misses one lies in the
    worst tenth, and the worst decile is ``1 - 10 x (1 - mean)`` for every method. How the misses
    spread over the queries (``missed``) is what tells a method whose unlucky queries lose one
    neighbour from one whose unlucky queries lose several."""
    worst = np.sort(recall)[: max(1, len(recall) // 10)]
    missed = np.rint((1 - recall) * K).astype(np.int64)
    return {"mean": float(recall.mean()), "worst_decile": float(worst.mean()), "p10": float(np.percentile(recall, 10)),
            "missed": {"1": int((missed == 1).sum()), "2": int((missed == 2).sum()), "3+": int((missed >= 3).sum())}}


def timed_recall(store: MRLStore, queries: np.ndarray, truth: np.ndarray, **search: Any) -> dict[str, float]:
    """``summary`` of the per-query recall, and the mean wall milliseconds per search (one thread,
    after an untimed pass over the same queries: the rows they read are in the page cache, so the
    settings measured one after another do not pay for each other's cold reads)."""
    per_query_recall(store, queries, truth, **search)
    started = time.perf_counter()
    recall = per_query_recall(store, queries, truth, **search)
    return {**summary(recall), "mean_ms": (time.perf_counter() - started) * 1e3 / max(1, len(queries))}


def grid_row(store: MRLStore, w: Workload, nq: int, fixed: Sequence[tuple[int, int]] = (),
             queries: np.ndarray | None = None, truth: np.ndarray | None = None) -> dict[str, Any]:
    """One workload's row. ``fixed``: (shortlist, ef) settings timed beside the default (the default
    is then timed too); ``queries``/``truth``: other queries than the dataset's own."""
    if queries is None:
        queries, truth = w.dataset.queries(), w.dataset.truth()
    queries, truth = queries[:nq], truth[:nq]
    m = store.manifest
    cal = m.calibration
    policy = cal.policies.get(m.target_recall) if cal and m.target_recall else None
    levels = effort_levels(store, queries)
    return {
        "workload": w.name, "n": len(store), "queries": len(queries),
        "defaults": timed_recall(store, queries, truth) if fixed else summary(per_query_recall(store, queries, truth)),
        "fixed_200_400": summary(per_query_recall(store, queries, truth, shortlist=FIXED_DEFAULT[0], ef=FIXED_DEFAULT[1])),
        "fixed": {f"{s}/{e}": timed_recall(store, queries, truth, shortlist=s, ef=e) for s, e in fixed},
        "effort": {str(lv): levels.count(lv) for lv in sorted(set(levels))},
        "policy": None if policy is None else policy.to_dict(),
        "calibration": None if cal is None else {"live": cal.live, "probes": cal.probes, "seconds": round(cal.seconds, 1),
                                                 "source": cal.source, "met": sorted(cal.policies)},
        "exact_below": m.exact_below,
    }


def format_grid(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | recall@10 mean | worst decile | p10 | fixed 200/400: mean / worst decile | policy for 0.99 | effort per query (level: queries) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        d, f, p = r["defaults"], r["fixed_200_400"], r["policy"]
        pol = "exact scan (store < exact_below)" if r["n"] <= r["exact_below"] else (
            "uncalibrated: fixed defaults" if p is None else
            " -> ".join(f"{s}/{e}" for s, e in p["levels"]) + (" -> exact" if p.get("exact") else "")
            + (f", z + {p['weight']:g} x kth >= {p['threshold']:.2f}" if p["threshold"] is not None else ""))
        eff = ", ".join(f"{'exact' if p and int(k) == len(p['levels']) else 'fixed' if k == '-1' else k}: {v}" for k, v in r["effort"].items())
        lines.append(f"| {r['workload']} | {d['mean']:.4f} | {d['worst_decile']:.4f} | {d['p10']:.1f} | "
                     f"{f['mean']:.4f} / {f['worst_decile']:.4f} | {pol} | {eff} |")
    timed = [r for r in rows if r.get("fixed")]
    if timed:  # --fixed: the default beside fixed settings, mean ms per search (one thread)
        lines += ["", "| workload | default: mean / worst decile / ms | " + " | ".join(f"fixed {key}" for key in timed[0]["fixed"]) + " |",
                  "|---" * (2 + len(timed[0]["fixed"])) + "|"]
        cell = lambda x: f"{x['mean']:.4f} / {x['worst_decile']:.3f} / {x['mean_ms']:.2f}"  # noqa: E731
        lines += [f"| {r['workload']} | {cell(r['defaults'])} | " + " | ".join(cell(x) for x in r["fixed"].values()) + " |" for r in timed]
    return "\n".join(lines)


def format_signals(rows: list[dict[str, Any]]) -> str:
    names = list(rows[0]["signals"]) if rows else []
    lines = ["| workload | shortlist/ef | recall | incomplete | " + " | ".join(names) + " |", "|---|---|---|---|" + "---|" * len(names)]
    for r in rows:
        cells = [f"{r['signals'][n]['auc']:.2f} ({r['signals'][n]['stoppable']:.0%})" for n in names]
        lines.append(f"| {r['workload']} | {r['shortlist']}/{r['ef']} | {r['recall']:.4f} | {r['incomplete']:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------------------


def _workloads(args: argparse.Namespace, log) -> list[Workload]:
    out = []
    if args.n:
        out += synthetic_workloads(args.n, args.dims, args.decays, args.fractions, cache=args.cache, nq=args.queries)
    if args.text:
        out += text_workloads(args.text, args.text_widths, cache=args.cache, exact_below=args.text_exact_below, log=log)
    return out


def _common(p: argparse.ArgumentParser) -> None:

    p.add_argument("--n", type=int, default=50_000, help="synthetic items (0: none)")
    p.add_argument("--dims", type=int, nargs="+", default=[1024, 768])
    p.add_argument("--decays", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    p.add_argument("--fractions", type=int, nargs="+", default=[16, 8, 4], help="prefix width = full width / each")
    p.add_argument("--text", nargs="*", default=[], choices=["pydoc", "man"], help="real-text corpora")
    p.add_argument("--text-widths", type=int, nargs="+", default=[24, 48, 96], help="prefix widths of the 384-dim text stores")
    p.add_argument("--text-exact-below", type=int, default=None, help="text stores: exact_below (default: the store's)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true", help="rebuild the cached stores")
    p.add_argument("--recalibrate", action="store_true", help="calibrate cached stores again (current code)")
    p.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")


def add_parsers(sub) -> None:
    p = sub.add_parser("adaptive-signals", help="which per-query signal predicts a complete shortlist (AUC vs exact truth)")
    _common(p)
    p.add_argument("--levels", nargs="+", default=["25/50", "50/100", "100/200"], help="shortlist/ef levels to study")
    p.set_defaults(func=cmd_signals)
    p = sub.add_parser("adaptive-grid", help="recall@10 with no tune and no knobs: synthetic grid and real text")
    _common(p)
    p.add_argument("--fixed", nargs="*", default=[], metavar="S/E",
                   help="fixed shortlist/ef settings timed beside the default (mean ms per search, one thread)")
    p.add_argument("--query-noise-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="synthetic workloads: queries near stored rows (kept), each with noise drawn from [LOW, HIGH] "
                        "(synthetic.queries_near, seed 7; exact truth), instead of the dataset's own")
    p.set_defaults(func=cmd_grid)


def log_line(line: str) -> None:
    """Progress for a bench command: one line to stderr, flushed (stdout carries the tables)."""
    print(line, file=sys.stderr, flush=True)


def cmd_signals(args: argparse.Namespace) -> int:
    levels = [tuple(int(x) for x in level.split("/")) for level in args.levels]
    rows = []
    for w in _workloads(args, log_line):
        with open_store(w, args.cache, rebuild=args.rebuild, recalibrate=args.recalibrate, log=log_line) as store:
            rows += study_signals(store, w, levels, args.queries)
        log_line(format_signals(rows[-len(levels):]))
    print(format_signals(rows))
    save_json(args.out, rows)
    return 0


def cmd_grid(args: argparse.Namespace) -> int:
    rows = []
    fixed = [tuple(int(x) for x in setting.split("/")) for setting in args.fixed]
    for w in _workloads(args, log_line):
        queries = truth = None
        if args.query_noise_range and w.corpus is None:
            queries, truth = noisy_queries(w, args.queries, tuple(args.query_noise_range))
            w = replace(w, name=f"{w.name}, queries at noise {args.query_noise_range[0]:g}-{args.query_noise_range[1]:g}")
        with open_store(w, args.cache, rebuild=args.rebuild, recalibrate=args.recalibrate, log=log_line) as store:
            rows.append(grid_row(store, w, args.queries, fixed, queries, truth))
        log_line(format_grid(rows[-1:]))
    print(format_grid(rows))
    save_json(args.out, rows)
    return 0


def noisy_queries(w: Workload, nq: int, noise: float | tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Queries near the workload's stored rows (their rows stay stored: a question and its passage),
    at noise norm ``noise`` or each with its own from a (low, high) range, and their exact truth."""
    from .synthetic import queries_near  # noqa: PLC0415

    decay = float(w.dataset.source.get("decay", 0.5))
    queries = queries_near(np.asarray(w.dataset.vectors(), dtype=np.float32), nq, seed=7, noise=noise, decay=decay)
    return queries, data.exact_topk(w.dataset, queries, K)


def save_json(path: str | Path | None, rows: Any) -> None:
    """A bench command's ``--out``: the rows as JSON (nothing when no path is given)."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=2))


__all__ = ["Workload", "add_parsers", "auc", "effort_levels", "grid_row", "log_line", "noisy_queries", "open_store", "save_json",
           "signals", "stoppable", "study_signals", "summary", "synthetic_workloads", "text_workloads"]
