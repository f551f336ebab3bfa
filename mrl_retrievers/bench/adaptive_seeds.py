"""``adaptive-seeds``: how much the recorded policy depends on which probes a calibration drew.

A calibration draws its probes with a seed (checkpoints use seed 0). For each probe count and seed,
this runs the store's own ``calibration.calibrate`` (nothing is recorded) and judges the policy it
chose for the target on an independent set of probes (another seed, ``--test-probes`` of them, every
level of the ladder traced): mean recall, each stratum's (near, middle, far), and the modeled cost
(``calibration.level_cost``/``scan_cost``, CPU microseconds at the fitted constants) on the mean and
the median probe. Stable calibrations choose policies of about the same cost for every seed.

Run: ``python -m mrl_retrievers.bench adaptive-seeds STORE --probes 512 1536 --seeds 0 1 2 3``
(read-only: the store is opened read-only and nothing is written).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..store.effort import EffortPolicy
from ..store.local import calibration
from .adaptive import log_line, save_json

TEST_SEED = 10_000


def judge(policy: EffortPolicy, test) -> dict[str, Any]:
    """What ``policy`` does with the probes of ``test`` (a ``Diagnostics.trace_probes``): the
    calibration's own simulation of ``climb``."""
    cost, got = test.replay(policy)
    strata = test.strata
    return {"recall": float(got.mean()), "strata": [float(got[strata == s].mean()) for s in np.unique(strata)],
            "worst_decile": float(np.sort(got)[: max(1, len(got) // 10)].mean()),
            "cost_mean": float(cost.mean()), "cost_median": float(np.median(cost))}


def describe(policy: EffortPolicy) -> str:
    levels = " -> ".join(f"{s}/{e}" for s, e in policy.levels)
    return levels + (" -> exact" if policy.exact else "")


def run(path: str | Path, probes: list[int], seeds: list[int], target: float, test_probes: int, log) -> list[dict[str, Any]]:
    from ..store import MRLStore  # noqa: PLC0415

    rows = []
    with MRLStore.open(path, read_only=True) as store:
        log(f"tracing {test_probes} test probes ...")
        test = store.diagnostics.trace_probes(test_probes, TEST_SEED)
        for n in probes:
            for seed in seeds:
                cal = store.diagnostics.measure_calibration(target, probes=n, seed=seed)
                measured = cal.policies.get(target)
                row = {"probes": n, "seed": seed, "seconds": cal.seconds,
                       "policy": describe(measured.policy) if measured else None,
                       "modeled_cost": measured.cost if measured else None}
                if measured is not None:
                    row["test"] = judge(measured.policy, test)
                rows.append(row)
                log(format_rows(rows[-1:], header=False))
    return rows


def format_rows(rows: list[dict[str, Any]], header: bool = True) -> str:
    lines = ["| probes | seed | policy | its modeled cost | test: recall (near / middle / far) | test: cost mean / median | seconds |",
             "|---|---|---|---|---|---|---|"] if header else []
    for r in rows:
        t = r.get("test")
        judged = (f"{t['recall']:.4f} ({' / '.join(f'{x:.4f}' for x in t['strata'])}) | {t['cost_mean']:.0f} / {t['cost_median']:.0f}"
                  if t else "- | -")
        lines.append(f"| {r['probes']} | {r['seed']} | {r['policy'] or 'none met the target'} | "
                     f"{r['modeled_cost'] or 0:.0f} | {judged} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("adaptive-seeds", help="does the calibrated policy depend on the probe seed? (read-only)")
    p.add_argument("store")
    p.add_argument("--probes", type=int, nargs="+", default=[512, calibration.DEFAULT_PROBES])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--target", type=float, default=0.99)
    p.add_argument("--test-probes", type=int, default=2048)
    p.add_argument("--out", help="write the rows as JSON here")
    p.set_defaults(func=cmd_seeds)


def cmd_seeds(args: argparse.Namespace) -> int:
    rows = run(args.store, args.probes, args.seeds, args.target, args.test_probes, log_line)
    print(format_rows(rows))
    save_json(args.out, rows)
    return 0


__all__ = ["add_parser", "judge", "run"]
