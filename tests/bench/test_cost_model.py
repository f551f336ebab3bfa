"""``bench cost-model``: the fit recovers the constants that produced the timings, and a run on a
real (small) store measures every setting it can and reports the current and fitted constants."""

from __future__ import annotations

import numpy as np
import pytest

from mrl_retrievers import MRLStore
from mrl_retrievers.bench.cost_model import SETTINGS, fit, format_report, measure
from mrl_retrievers.store.local import calibration


def synthetic(live, prefix_dim, full_dim, *, fixed, per_ef, per_row, scanned):
    settings = [{"shortlist": s, "ef": e, "us": fixed + per_ef * max(e, s) * (prefix_dim + 32) / 160 + per_row * s * full_dim / 1024}
                for s, e in SETTINGS]
    return {"store": "x", "live": live, "prefix_dim": prefix_dim, "full_dim": full_dim, "settings": settings,
            "exact_us": live * (scanned[0] + scanned[1] * full_dim / 1024)}


def test_the_fit_recovers_the_constants_behind_the_timings():
    truth = {"fixed": 150.0, "per_ef": 0.7, "per_row": 0.8, "scanned": (0.1, 0.3)}
    stores = [synthetic(200_000, 192, 768, **truth), synthetic(100_000, 64, 1024, **truth)]
    fitted = fit(stores)
    assert fitted["fixed_us"] == pytest.approx(150.0)
    assert fitted["COST_PER_EF"] == pytest.approx(0.7) and fitted["COST_PER_ROW"] == pytest.approx(0.8)
    assert fitted["COST_PER_SCANNED_ROW"] == pytest.approx((0.1, 0.3))


def test_one_width_keeps_the_current_split_of_the_scan_cost():
    stores = [synthetic(50_000, 64, 512, fixed=100.0, per_ef=1.0, per_row=1.0, scanned=(0.2, 0.4))]
    base, per_width = fit(stores)["COST_PER_SCANNED_ROW"]
    b0, b1 = calibration.COST_PER_SCANNED_ROW
    assert base / per_width == pytest.approx(b0 / b1)
    assert base + per_width * 0.5 == pytest.approx(0.2 + 0.4 * 0.5)  # the measured cost per row is kept


def test_a_negative_share_is_not_fitted():
    """Two widths whose scans cost the same per row (memory-bound): no negative per-width cost."""
    stores = [synthetic(200_000, 192, 768, fixed=100.0, per_ef=1.0, per_row=1.0, scanned=(0.40, 0.0)),
              synthetic(100_000, 64, 1024, fixed=100.0, per_ef=1.0, per_row=1.0, scanned=(0.38, 0.0))]
    base, per_width = fit(stores)["COST_PER_SCANNED_ROW"]
    assert base >= 0 and per_width >= 0
    assert base + per_width * 0.875 == pytest.approx(0.39)  # the mean cost per row, at the mean width


def test_a_small_store_is_measured_and_reported(tmp_path):
    rng = np.random.default_rng(0)
    with MRLStore.create(tmp_path / "s", full_dim=64, prefix_dim=16, exact_below=0) as store:
        store.add([str(i) for i in range(3000)], rng.standard_normal((3000, 64)).astype(np.float32))
    timings = measure(tmp_path / "s", queries=20, exact_queries=5)
    assert [(t["shortlist"], t["ef"]) for t in timings["settings"]] == [(s, e) for s, e in SETTINGS if s < 1500]
    assert all(t["us"] > 0 for t in timings["settings"]) and timings["exact_us"] > 0
    report = format_report([timings], fit([timings]))
    assert "| COST_PER_ROW |" in report and "exact scan" in report
