"""``adaptive-grid`` end to end on a tiny synthetic store: the calibrated default measured against
exact truth, beside timed fixed settings, on the dataset's queries or on noisier ones."""

from __future__ import annotations

import json

from mrl_retrievers.bench.cli import main


def test_grid_times_the_default_beside_fixed_settings_on_noisier_queries(tmp_path, capsys):
    out = tmp_path / "grid.json"
    argv = ["adaptive-grid", "--n", "3000", "--dims", "64", "--decays", "0.5", "--fractions", "4", "--queries", "60",
            "--cache", str(tmp_path / "cache"), "--fixed", "20/40", "3000/3000", "--query-noise-range", "0.3", "1.5",
            "--out", str(out)]
    assert main(argv) == 0
    (row,) = json.loads(out.read_text())
    assert row["workload"].endswith("queries at noise 0.3-1.5") and row["queries"] == 60
    assert row["calibration"] is not None and row["policy"] is not None  # 3000 rows: past exact_below, calibrated
    assert set(row["fixed"]) == {"20/40", "3000/3000"}
    for result in (row["defaults"], *row["fixed"].values()):
        assert 0 <= result["worst_decile"] <= result["mean"] <= 1 and result["mean_ms"] > 0
    assert row["fixed"]["3000/3000"]["mean"] == 1.0  # a shortlist of every row is exact: the truth is right
    assert "| fixed 20/40 | fixed 3000/3000 |" in capsys.readouterr().out
