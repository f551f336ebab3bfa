"""``adaptive-seeds``: calibrations with several probe seeds, each judged on independent probes."""

from __future__ import annotations

import numpy as np

from mrl_retrievers import MRLStore
from mrl_retrievers.bench import synthetic
from mrl_retrievers.bench.adaptive_seeds import TEST_SEED, format_rows, judge, run
from mrl_retrievers.store.effort import EffortPolicy


def test_policies_are_judged_on_probes_they_were_not_chosen_on(tmp_path):
    data = synthetic.mrl_like(4000, 64, decay=0.5, seed=1)
    with MRLStore.create(tmp_path / "s", full_dim=64, prefix_dim=8, exact_below=0) as store:
        store.bulk_add(data)
    rows = run(tmp_path / "s", probes=[128], seeds=[0, 1], target=0.95, test_probes=160, log=lambda line: None)
    assert [(r["probes"], r["seed"]) for r in rows] == [(128, 0), (128, 1)]
    for r in rows:
        assert r["policy"] is not None and r["modeled_cost"] > 0
        assert 0.9 <= r["test"]["recall"] <= 1.0 and len(r["test"]["strata"]) == 3
        assert r["test"]["cost_mean"] > 0 and r["test"]["cost_median"] > 0
    assert "| 128 | 1 |" in format_rows(rows)


def test_an_exact_rung_for_every_probe_finds_everything(tmp_path):
    data = synthetic.mrl_like(3000, 32, decay=0.5, seed=2)
    with MRLStore.create(tmp_path / "s", full_dim=32, prefix_dim=4, exact_below=0) as store:
        store.bulk_add(data)
        test = store.diagnostics.trace_probes(96, TEST_SEED)
    first = test.shortlists[0]
    shallow = judge(EffortPolicy(((first, first),), float("inf"), exact=False), test)
    everything = judge(EffortPolicy(((first, first),), float("inf"), exact=True), test)
    assert everything["recall"] == 1.0 and all(s == 1.0 for s in everything["strata"])
    assert shallow["recall"] < 1.0  # a 16-row shortlist on a 4-wide prefix misses some
    assert everything["cost_median"] > shallow["cost_median"]  # the exact scan is paid on top
