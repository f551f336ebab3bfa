"""Turn a benchmark report (``runner.run_bench``) into a table, a JSON file and a PNG plot.

The table has one row per method at its headline setting; the targets of issue 7 are checked as
ratios against the peers measured in the same run (never against numbers from another machine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = ("method", "setting", "recall@k", "p50 ms", "p99 ms", "QPS 1/2/4 thr", "cold p50 ms", "build s", "RAM MB",
           "mapped MB", "disk MB")
# Methods that hold their whole index (graph and vectors) in RAM: issue 16's RAM target is against these.
IN_RAM = ("numpy", "hnswlib", "faiss-hnsw", "faiss-refine", "diskann-mem", "usearch-f16", "usearch-i8")
# Issue 16: ours >= 1.0x the speed of every peer at equal or better recall.
SPEED_PEERS = ("hnswlib", "faiss-hnsw", "faiss-refine", "diskann-mem", "diskann-disk", "diskann-disk-lean", "usearch-f16",
               "usearch-i8", "usearch-c2f", "qdrant-edge", "qdrant-edge-int8", "lancedb")
DISKANN = ("diskann-mem", "diskann-disk", "diskann-disk-lean")


def _ok(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["method"]: r for r in report["results"] if r.get("status") == "ok"}


def build_seconds(result: dict[str, Any]) -> float:
    """Index build time without the tuning measurement (reported on its own)."""
    info = result.get("build", {})
    return float(info.get("build_s", 0.0)) - float(info.get("tune_s", 0.0) or 0.0)


def _setting(setting: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items()) or "-"


def rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in report["results"]:
        if r.get("status") != "ok":
            out.append([r["method"], f"{r.get('status')}: {r.get('reason', '')}"] + [""] * (len(COLUMNS) - 2))
            continue
        h = r["headline"]
        setting = dict(h["setting"])
        if r["method"] == "ours":
            setting = {"prefix": r["extra"].get("manifest", {}).get("prefix_dim"), **setting}
        cold = f"{h['cold_p50_ms']:.2f}" if "cold_p50_ms" in h else "-"
        cached = " (cached)" if r["build"].get("cached") else ""
        out.append([
            r["method"], _setting(setting), f"{h['recall']:.4f}", f"{h['p50_ms']:.3f}", f"{h['p99_ms']:.3f}",
            qps_cell(h.get("qps_threads") or {"2": h["qps_2_threads"]}), cold, f"{build_seconds(r):.1f}{cached}",
            f"{r['memory']['index_mb']:.0f}", f"{r['memory'].get('mapped_mb', 0):.0f}", f"{r['disk_mb']:.0f}",
        ])
        if "qps_async" in h:  # ours through MRLIndex.aquery: same setting, 1/2/4 concurrent tasks
            out.append([f"{r['method']} (async aquery)", "1/2/4 tasks", f"{h['recall']:.4f}", "", "",
                        qps_cell(h["qps_async"]), "", "", "", "", ""])
    return out


def qps_cell(qps: dict[str, float]) -> str:
    return " / ".join(f"{qps[t]:.0f}" for t in sorted(qps, key=int))


def markdown_table(report: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(report):
        if row[2] == "":  # skipped / failed: one wide cell
            lines.append(f"| {row[0]} | {row[1]} |" + " |" * (len(COLUMNS) - 2))
        else:
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def text_table(report: dict[str, Any]) -> str:
    table = [list(COLUMNS)] + rows(report)
    widths = [max(len(r[i]) for r in table if r[2] != "" or i < 2) for i in range(len(COLUMNS))]
    lines = []
    for row in table:
        if row[2] == "" and row is not table[0]:
            lines.append(f"{row[0]:<{widths[0]}}  {row[1]}")
        else:
            lines.append("  ".join(cell.rjust(w) if i > 1 else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def _latency_at(result: dict[str, Any], recall: float, slack: float = 0.001) -> tuple[float, dict] | None:
    """A peer's fastest p50 among its settings with recall >= ``recall`` (minus ``slack``)."""
    good = [p for p in result["points"] if p["recall"] >= recall - slack]
    if not good:
        return None
    best = min(good, key=lambda p: p["p50_ms"])
    return best["p50_ms"], best


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the measured figure and whether it was met in this run."""
    ok = _ok(report)
    ours = ok.get("ours")
    if ours is None:
        return []
    h, extra, n = ours["headline"], ours["extra"], report["dataset"]["n"]
    out = []

    def add(name: str, value: float | None, goal: str, met: bool | None, detail: str = "",
            goal_n: int | None = 1_000_000) -> None:
        # A goal stated for goal_n vectors is not judged on a run 10x smaller: a small store is searched
        # exactly and its ratios say nothing about 1M (shown for reference, "n/a").
        if goal_n is not None and n < goal_n // 10:
            met, detail = None, f"goal stated for {goal_n:,} vectors; this run has {n:,}" + (f"; {detail}" if detail else "")
        out.append({"target": name, "measured": value, "goal": goal, "met": met, "detail": detail})

    add("recall@10 at the tuned defaults", h["recall"], ">= 0.99", h["recall"] >= 0.99, goal_n=None)
    add(f"p50 warm, 1 thread (n={n:,})", h["p50_ms"], "<= 3 ms (at 1M)", h["p50_ms"] <= 3.0)
    if "rerank_cold_p50_ms" in extra:
        add(f"cold rerank of {extra['rerank_cold_candidates']} candidates", extra["rerank_cold_p50_ms"], "<= 5 ms",
            extra["rerank_cold_p50_ms"] <= 5.0, f"{extra['rerank_cold_kib_read']:.0f} KiB read from storage per query", goal_n=None)
    for method, goal, factor in (("numpy", ">= 40x", 40.0), ("hnswlib", ">= 1.5x", 1.5), ("faiss-refine", "> 1x", 1.0),
                                 ("langchain", ">= 1000x (at 100k)", 1000.0)):
        peer = ok.get(method)
        if peer is None:
            continue
        goal_n = 100_000 if method == "langchain" else 1_000_000
        at = _latency_at(peer, h["recall"])
        if at is None:
            # The peer never reaches our headline recall: compare its best point with our fastest
            # setting that is at least as accurate (still "faster at equal or better recall").
            best = max(peer["points"], key=lambda p: (p["recall"], -p["p50_ms"]))
            ours_at = _latency_at(ours, best["recall"], slack=0.0)
            ratio = best["p50_ms"] / ours_at[0]
            met = ratio >= factor if method != "faiss-refine" else ratio > factor
            add(f"speed vs {method} at >= its best recall", ratio, goal, met, goal_n=goal_n, detail=
                f"{method} never reaches our headline recall {h['recall']:.4f}; its best: {best['recall']:.4f} at "
                f"{best['p50_ms']:.3f} ms ({_setting(best['setting'])}); ours {ours_at[0]:.3f} ms at "
                f"{_setting(ours_at[1]['setting'])} (recall {ours_at[1]['recall']:.4f})")
            continue
        ratio = at[0] / h["p50_ms"]
        met = ratio >= factor if method != "faiss-refine" else ratio > factor
        add(f"speed vs {method} at >= our recall", ratio, goal, met, goal_n=goal_n, detail=
            f"{method} {at[0]:.3f} ms at {_setting(at[1]['setting'])} (recall {at[1]['recall']:.4f}) vs ours {h['p50_ms']:.3f} ms")
    for method, goal, limit in (("hnswlib", "<= 0.30", 0.30), ("faiss-refine", "< 1", 1.0)):
        peer = ok.get(method)
        if peer is not None and peer["memory"]["index_mb"] > 0:
            ratio = ours["memory"]["index_mb"] / peer["memory"]["index_mb"]
            add(f"RAM vs {method}", ratio, goal, ratio <= limit if limit < 1 else ratio < limit,
                f"{ours['memory']['index_mb']:.0f} MB vs {peer['memory']['index_mb']:.0f} MB anonymous")
    peer = ok.get("hnswlib")
    if peer is not None and build_seconds(peer) > 0:
        ratio = build_seconds(ours) / build_seconds(peer)
        add("build time vs hnswlib", ratio, "<= 0.40", ratio <= 0.40,
            f"{build_seconds(ours):.1f} s vs {build_seconds(peer):.1f} s")
    for name, ratio in extra.get("framework_ratio", {}).items():
        add(f"{name} retriever / bare search", ratio, "<= 1.2", ratio <= 1.2,
            f"p50 {extra['framework_p50_ms'][name]:.3f} ms vs {extra['framework_p50_ms']['bare']:.3f} ms")
    out.extend(targets_16(report))
    return out


GOAL_RECALL = 0.99  # issue 16 compares every method at >= 0.99 recall@10


def _speed_ratio(ours: dict[str, Any], peer: dict[str, Any]) -> tuple[float | None, str]:
    """Peer latency / ours (>1: ours faster), ours at a recall at least the peer's.

    The peer runs at its cheapest setting reaching ``GOAL_RECALL`` (its best setting if it never
    does), ours at its cheapest setting reaching that setting's recall. Until 2026-12-05 ours ran
    at its headline, whatever its recall: at 100k ours' 0.9886 was set against faiss-hnsw's 0.9956
    and reported as "1.11x, met" where at >= 0.9956 ours was 0.88x. None: ours never reaches it."""
    at = _latency_at(peer, GOAL_RECALL, slack=0.0)
    if at is None:
        best = max(peer["points"], key=lambda p: (p["recall"], -p["p50_ms"]))
        at = (best["p50_ms"], best)
    peer_ms, point = at
    where = f"{peer['method']} {peer_ms:.3f} ms at {_setting(point['setting'])} (recall {point['recall']:.4f})"
    ours_at = _latency_at(ours, point["recall"], slack=0.0)
    if ours_at is None:
        best = max(p["recall"] for p in ours["points"])
        return None, f"{where}; ours never reaches its recall (best {best:.4f})"
    return peer_ms / ours_at[0], f"{where} vs ours {ours_at[0]:.3f} ms at {_setting(ours_at[1]['setting'])} (recall {ours_at[1]['recall']:.4f})"


def targets_16(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 16: speed vs every peer, RAM vs the in-RAM peers, DiskANN matched, thread scaling."""
    ok = _ok(report)
    ours = ok.get("ours")
    if ours is None:
        return []
    out: list[dict[str, Any]] = []
    n = report["dataset"]["n"]

    def add(name: str, value: float | None, goal: str, met: bool | None, detail: str = "") -> None:
        # Issue 16 states its goals at 100k and 1M: a run 10x smaller is shown, not judged.
        if met is not None and n < 10_000:
            met, detail = None, f"goal stated for 100,000 and 1,000,000 vectors; this run has {n:,}" + (f"; {detail}" if detail else "")
        out.append({"target": name, "measured": value, "goal": goal, "met": met, "detail": detail})

    for method in SPEED_PEERS:
        if method in ok:
            ratio, detail = _speed_ratio(ours, ok[method])
            add(f"[16] speed vs {method} at equal or better recall", ratio, ">= 1.0x", ratio is not None and ratio >= 1.0, detail)
    mine = ours["memory"]["index_mb"]
    for method in IN_RAM:
        if method in ok and ok[method]["memory"]["index_mb"] > 0:
            ratio = mine / ok[method]["memory"]["index_mb"]
            add(f"[16] RAM vs {method}", ratio, "<= 0.25", ratio <= 0.25,
                f"{mine:.0f} MB vs {ok[method]['memory']['index_mb']:.0f} MB anonymous")
    diskann = [ok[m] for m in DISKANN if m in ok]
    if diskann:
        matched = min(diskann, key=lambda r: abs(r["memory"]["index_mb"] - mine))
        ratio, detail = _speed_ratio(ours, matched)
        add("[16] DiskANN at matched RAM: its latency / ours", ratio, "report", None,
            f"{matched['method']} ({matched['memory']['index_mb']:.0f} MB vs ours {mine:.0f} MB): {detail}")
        fast = [(r, _latency_at(r, ours["headline"]["recall"])) for r in diskann]
        fast = [(r, at) for r, at in fast if at is not None and at[0] <= ours["headline"]["p50_ms"]]
        if fast:
            r, at = min(fast, key=lambda item: item[0]["memory"]["index_mb"])
            add("[16] DiskANN at matched speed: its RAM / ours", r["memory"]["index_mb"] / max(mine, 1e-9), "report", None,
                f"{r['method']} {at[0]:.3f} ms at {_setting(at[1]['setting'])}, {r['memory']['index_mb']:.0f} MB vs ours {mine:.0f} MB")
        else:
            add("[16] DiskANN at matched speed: its RAM / ours", None, "report", None,
                "no DiskANN index reaches our latency at our recall")
    qps = ours["headline"].get("qps_threads")
    if qps and qps.get("1"):
        goal = 1.7 if n >= 1_000_000 else 1.5
        ratio = qps["2"] / qps["1"]
        add(f"[16] QPS 2 threads / 1 thread (n={n:,})", ratio, f">= {goal}", ratio >= goal,
            f"{qps['1']:.0f} / {qps['2']:.0f} / {qps['4']:.0f} QPS at 1/2/4 threads")
    return out


def targets_table(report: dict[str, Any]) -> str:
    lines = ["| target | goal | measured | met | detail |", "|---|---|---|---|---|"]
    for t in targets(report):
        value = "-" if t["measured"] is None else f"{t['measured']:.4g}"
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {value} | {met} | {t['detail']} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> Path:
    """Recall vs p50 latency, one curve per method (its sweep), the headline setting circled."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    # Left: every method's whole sweep; right: the same curves where the comparison is made
    # (recall >= 0.98, the methods' fastest points there). ~20 methods: the default cycle's ten
    # colours would repeat, so each method gets its own colour (tab20) and one of four markers.
    fig, (ax, near) = plt.subplots(1, 2, figsize=(13, 5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    colours, markers = plt.get_cmap("tab20").colors, "os^D"
    for i, (method, r) in enumerate(_ok(report).items()):
        # A curve joins a method's fixed settings; a target-recall knob's points (each a per-query
        # policy, not a point on that curve) stand apart as stars, or the curve would zig-zag.
        knob = [p for p in r["points"] if "target_recall" in p.get("setting", {})]
        points = sorted((p for p in r["points"] if p not in knob), key=lambda p: p["p50_ms"])
        style = {"marker": markers[i % 4], "color": colours[i % len(colours)]}
        for axis in (ax, near):
            axis.plot([p["p50_ms"] for p in points], [p["recall"] for p in points], ms=3, label=method, **style)
            if knob:
                axis.plot([p["p50_ms"] for p in knob], [p["recall"] for p in knob], ls="none", marker="*", ms=8,
                          color=style["color"], label=f"{method}, target_recall")
            h = r["headline"]
            axis.plot([h["p50_ms"]], [h["recall"]], marker="o", ms=10, mfc="none", color=style["color"])
    ds = report["dataset"]
    for axis in (ax, near):
        axis.set_xscale("log")
        axis.set_xlabel("p50 latency per query, 1 thread (ms, log scale)")
        axis.grid(True, which="both", alpha=0.3)
    ax.set_ylabel(f"recall@{report['k']} vs exact")
    ax.set_title(f"{ds['n']:,} x {ds['dim']} ({ds['name']}), {report['nq']} queries", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    near.set_ylim(0.98, 1.0005)
    near_x = [p["p50_ms"] for r in _ok(report).values() for p in r["points"] if p["recall"] >= 0.98]
    if near_x:
        near.set_xlim(min(near_x) / 1.3, min(max(near_x), 30 * min(near_x)) * 1.3)
    near.set_title("recall >= 0.98", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def save(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write results.json, table.md (results + targets) and recall_latency.png into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**report, "targets": targets(report)}
    paths = {"json": out_dir / "results.json", "table": out_dir / "table.md", "plot": out_dir / "recall_latency.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float))
    paths["table"].write_text(markdown_table(report) + "\n\n" + targets_table(report) + "\n")
    plot(report, paths["plot"])
    return paths


__all__ = ["markdown_table", "plot", "rows", "save", "targets", "targets_table", "text_table"]
