"""``adaptive-compare``: adaptive effort vs the best fixed shortlist/ef ``tune`` finds, at equal recall.

One synthetic dataset (default 200k x 1024, decay 0.5, prefix 128), one store built with no knobs
(its checkpoints calibrate it as it grows), then ``tune`` over the store's own prefix width (which
records its fixed pick and recalibrates thoroughly). On held-out paraphrase queries (exact truth):

* fixed: tune's grid (shortlist 25-400 x ef 1-3x) and two larger points; tune's pick among them;
* adaptive: the store's policy per target (0.95-0.995), once with the checkpoint calibration made
  before tune and once with tune's;

each timed on one thread (BLAS pinned to one thread), three interleaved passes, the best pass per
setting (wall p50 and mean, and CPU time). "At equal recall": the fixed curve (its lower envelope)
interpolated at the adaptive point's recall. Writes ``compare.json``, ``compare.md`` and
``adaptive.png`` (recall vs latency, and the effort histogram).

Run: ``python -m mrl_retrievers.bench adaptive-compare --n 200000 --cache CACHE --out OUT``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..store.local.tuning import tune
from . import data
from .data import DEFAULT_CACHE
from .adaptive import K, Workload, effort_levels, noisy_queries, open_store, summary

FIXED_GRID = [(s, r * s) for s in (25, 50, 100, 200, 400) for r in (1, 2, 3)] + [(600, 1200), (800, 1600)]
TARGETS = (0.95, 0.98, 0.99, 0.995)
PASSES = 3


def _single_thread():
    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415 - optional: present with scikit-learn
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _timed(store, queries: np.ndarray, search: dict[str, Any]) -> tuple[np.ndarray, float]:
    """Per-query wall seconds and the pass's CPU seconds per query."""
    times = np.empty(len(queries))
    cpu = time.process_time()
    for i, q in enumerate(queries):
        started = time.perf_counter()
        store.search(q, k=K, **search)
        times[i] = time.perf_counter() - started
    return times, (time.process_time() - cpu) / len(queries)


def measure(store, queries: np.ndarray, truth: np.ndarray, configs: dict[str, dict[str, Any]],
            calibrations: dict[str, Any], log) -> dict[str, dict[str, Any]]:
    """Recall and latency of every config (name -> search kwargs, plus "_calibration": a key of
    ``calibrations`` to search with). Passes are interleaved so a burst of load hits all alike."""
    out: dict[str, dict[str, Any]] = {}

    def use(config):
        """(the calibration to search with, in memory only; the search kwargs)."""
        cal = config.get("_calibration")
        override = store.diagnostics.calibration_override(None if cal is None else calibrations[cal])
        return override, {k: v for k, v in config.items() if not k.startswith("_")}

    for name, config in configs.items():
        override, search = use(config)
        with override:
            found = [[int(h.id) for h in store.search(q, k=K, **search)] for q in queries]  # also warms caches
            recall = np.array([len(set(f) & set(t[:K].tolist())) / K for f, t in zip(found, truth)])
            levels = effort_levels(store, queries, target=search.get("target_recall")) if "target_recall" in search else []
        out[name] = {"search": search, "calibration": config.get("_calibration"), **summary(recall),
                     "levels": {str(lv): levels.count(lv) for lv in sorted(set(levels))}, "passes": []}
    for p in range(PASSES):
        for name, config in configs.items():
            override, search = use(config)
            with override:
                times, cpu = _timed(store, queries, search)
            out[name]["passes"].append({"p50_ms": float(np.median(times)) * 1e3, "mean_ms": float(times.mean()) * 1e3,
                                        "cpu_ms": cpu * 1e3})
        log(f"pass {p + 1}/{PASSES} done")
    for r in out.values():
        best = min(r["passes"], key=lambda x: x["mean_ms"])
        r.update(p50_ms=best["p50_ms"], mean_ms=best["mean_ms"], cpu_ms=min(x["cpu_ms"] for x in r["passes"]))
    return out


def envelope_at(points: list[dict[str, Any]], recall: float, key: str) -> float | None:
    """Latency (``key``) of the fixed curve's lower envelope at ``recall`` (linear between its points)."""
    pts = sorted((p["mean"], p[key]) for p in points)
    frontier: list[tuple[float, float]] = []
    for r, lat in reversed(pts):  # from the highest recall down: keep points faster than all above them
        if not frontier or lat < frontier[-1][1]:
            frontier.append((r, lat))
    frontier.reverse()  # recall ascending, latency ascending
    for (r0, l0), (r1, l1) in zip(frontier, frontier[1:]):
        if r0 <= recall <= r1:
            return l0 + (l1 - l0) * (recall - r0) / max(r1 - r0, 1e-12)
    if frontier and frontier[0][0] >= recall:
        return frontier[0][1]
    return None  # above every fixed point


def run(args: argparse.Namespace, log) -> dict[str, Any]:
    ds = data.synthetic(args.n, args.dim, cache=args.cache, nq=args.queries, k=K, decay=args.decay)
    w = Workload(f"synthetic n={args.n} dim={args.dim} decay={args.decay} prefix={args.prefix_dim}", ds, args.prefix_dim, tag="tuned")
    queries, truth = ds.queries(), ds.truth()
    if args.query_noise != 0.5 or args.query_noise_max is not None:  # other paraphrases than the dataset's own
        noise = args.query_noise if args.query_noise_max is None else (args.query_noise, args.query_noise_max)
        queries, truth = noisy_queries(w, args.queries, noise)
        said = args.query_noise if args.query_noise_max is None else f"{args.query_noise}-{args.query_noise_max} (uniform, mixed)"
        w = dataclasses.replace(w, name=f"{w.name}, queries at noise {said}")
    started = time.perf_counter()
    store = open_store(w, args.cache, rebuild=args.rebuild, log=log)
    if args.build_only:
        store.close()
        return {}
    record = store.path / "adaptive-compare.json"  # the tune result and the calibration before it
    try:
        if record.exists() and not args.recalibrate:
            saved = json.loads(record.read_text())
        else:
            if args.recalibrate:  # what a checkpoint would measure now, with the current code
                store.calibrate(0.99)
            before = store.manifest.calibration
            log(f"tuning (prefix {args.prefix_dim}) and calibrating thoroughly ...")
            result = tune(store, target_recall=0.99, prefix_dims=[args.prefix_dim], progress=log,
                          **({} if args.tune_probes is None else {"calibration_probes": args.tune_probes}))
            saved = {"tune": result.to_dict(), "checkpoint_calibration": before.to_dict() if before else None}
            record.write_text(json.dumps(saved, indent=2))
        from ..store.effort import Calibration  # noqa: PLC0415

        calibrations = {"tune": store.manifest.calibration}
        if saved["checkpoint_calibration"]:
            calibrations["checkpoint"] = Calibration.from_dict(saved["checkpoint_calibration"])
        t = saved["tune"]
        configs: dict[str, dict[str, Any]] = {f"fixed {s}/{e}": {"shortlist": s, "ef": e} for s, e in FIXED_GRID}
        pick = f"fixed {t['shortlist']}/{t['ef']}"
        configs.setdefault(pick, {"shortlist": t["shortlist"], "ef": t["ef"]})
        for cal in calibrations:
            for target in TARGETS:
                configs[f"adaptive {target} ({cal} calibration)"] = {"target_recall": target, "_calibration": cal}
        with _single_thread():
            results = measure(store, queries[: args.queries], truth[: args.queries], configs, calibrations, log)
    finally:
        store.close()
    fixed = [r for name, r in results.items() if name.startswith("fixed")]
    comparisons = []
    for name, r in results.items():
        if not name.startswith("adaptive"):
            continue
        row = {"adaptive": name, "recall": r["mean"], "worst_decile": r["worst_decile"], "p50_ms": r["p50_ms"], "mean_ms": r["mean_ms"]}
        for key in ("p50_ms", "mean_ms", "cpu_ms"):
            at = envelope_at(fixed, r["mean"], key)
            row[f"fixed_{key}_at_equal_recall"] = at
            row[f"speedup_{key}"] = None if at is None else at / r[key]
        comparisons.append(row)
    return {"workload": w.name, "n": args.n, "queries": len(queries[: args.queries]), "tune": saved["tune"], "tune_pick": pick,
            "calibrations": {k: v.to_dict() for k, v in calibrations.items() if v is not None}, "results": results,
            "comparisons": comparisons, "seconds": time.perf_counter() - started,
            "command": " ".join(["python -m mrl_retrievers.bench", *sys.argv[1:]])}


def format_report(rep: dict[str, Any]) -> str:
    res, pick = rep["results"], rep["tune_pick"]
    lines = [f"{rep['workload']}, {rep['queries']} held-out queries; tune picked {pick} "
             f"(its sample: recall {rep['tune']['recall']:.4f}, bound {rep['tune']['recall_low']:.4f})", "",
             "| setting | recall@10 | worst decile | queries missing 1 / 2 / 3+ | p10 | p50 ms | mean ms | CPU ms | effort (level: queries) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in res.items():
        mark = " (tune's pick)" if name == pick else ""
        missed = " / ".join(str(r["missed"][n]) for n in ("1", "2", "3+"))
        lines.append(f"| {name}{mark} | {r['mean']:.4f} | {r['worst_decile']:.4f} | {missed} | {r['p10']:.1f} | {r['p50_ms']:.3f} | "
                     f"{r['mean_ms']:.3f} | {r['cpu_ms']:.3f} | {', '.join(f'{k}: {v}' for k, v in r['levels'].items())} |")
    lines += ["", "| adaptive | recall@10 | worst decile | vs tune's pick (recall " + f"{res[pick]['mean']:.4f}" + "): p50 / mean speedup "
              "| fixed curve at equal recall: p50 / mean / CPU speedup |", "|---|---|---|---|---|"]
    for c in rep["comparisons"]:
        vs_pick = f"{res[pick]['p50_ms'] / c['p50_ms']:.2f}x / {res[pick]['mean_ms'] / c['mean_ms']:.2f}x"
        eq = " / ".join("-" if c[f"speedup_{k}"] is None else f"{c[f'speedup_{k}']:.2f}x" for k in ("p50_ms", "mean_ms", "cpu_ms"))
        lines.append(f"| {c['adaptive']} | {c['recall']:.4f} | {c['worst_decile']:.4f} | {vs_pick} | {eq} |")
    return "\n".join(lines)


def plot(rep: dict[str, Any], path: Path) -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    res = rep["results"]
    fixed = sorted((r["mean_ms"], r["mean"], n) for n, r in res.items() if n.startswith("fixed"))
    left.plot([f[0] for f in fixed], [f[1] for f in fixed], "o-", color="grey", label="fixed shortlist/ef (tune's grid)")
    pick = res[rep["tune_pick"]]
    left.plot(pick["mean_ms"], pick["mean"], "s", color="black", markersize=9, label=f"tune's pick {rep['tune_pick'][6:]}")
    for cal, color in (("checkpoint", "tab:blue"), ("tune", "tab:red")):
        pts = sorted((r["mean_ms"], r["mean"]) for n, r in res.items() if n.endswith(f"({cal} calibration)"))
        if pts:
            left.plot([p[0] for p in pts], [p[1] for p in pts], "^-", color=color, label=f"adaptive, {cal} calibration")
    left.set_xlabel("mean latency per query, ms (one thread)")
    left.set_ylabel("recall@10 (held-out queries)")
    left.set_ylim(max(0.9, min(r["mean"] for r in res.values()) - 0.005), 1.0005)
    left.axhline(0.99, color="green", linestyle=":", linewidth=1)
    left.legend(fontsize=8)
    left.set_title(rep["workload"])
    hist = next((r for n, r in res.items() if n == "adaptive 0.99 (tune calibration)"), None)
    if hist and hist["levels"]:
        policy = rep["calibrations"]["tune"]["policies"].get("0.99")
        names = [f"{s}/{e}" for s, e in policy["levels"]] + (["exact"] if policy.get("exact") else []) if policy else []
        keys = sorted(hist["levels"], key=int)
        right.bar([names[int(k)] if 0 <= int(k) < len(names) else k for k in keys], [hist["levels"][k] for k in keys], color="tab:red")
        right.set_title("effort per query at target 0.99: where each query stopped")
        right.set_xlabel("level (shortlist/ef)")
        right.set_ylabel("queries")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def add_parser(sub) -> None:

    p = sub.add_parser("adaptive-compare", help="adaptive effort vs tune's best fixed shortlist/ef, at equal recall")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--decay", type=float, default=0.5)
    p.add_argument("--prefix-dim", type=int, default=128)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--query-noise", type=float, default=0.5,
                   help="held-out queries' noise norm (0.5: the bench's paraphrases, cosine ~0.9; 1.0: ~0.7, as loose as real text)")
    p.add_argument("--query-noise-max", type=float, default=None,
                   help="each query draws its noise uniformly from [--query-noise, this]: easy and hard queries mixed")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--recalibrate", action="store_true", help="a cached store: calibrate it again (current code) and re-tune")
    p.add_argument("--out", type=Path, default=Path("bench-results") / "adaptive")
    p.add_argument("--tune-probes", type=int, default=None,
                   help="probes of tune's thorough calibration (default: tune's own, 2x a checkpoint's: "
                        "3072 at 1M); 512 matches the runs in docs/benchmarks.md before 2026-12-05")
    p.add_argument("--build-only", action="store_true", help="build (and calibrate) the cached store, measure nothing")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    rep = run(args, lambda line: print(line, file=sys.stderr, flush=True))
    if args.build_only:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(rep, indent=2))
    text = format_report(rep)
    (args.out / "compare.md").write_text(text + "\n")
    print(text)
    print(f"\nwrote {args.out / 'compare.json'}, {args.out / 'compare.md'}, {plot(rep, args.out / 'adaptive.png')}")
    return 0


__all__ = ["add_parser", "envelope_at", "format_report", "measure", "run"]
