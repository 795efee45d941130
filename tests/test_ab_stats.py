"""Statistics and report of the simulated A/B harness (pure numpy, no Ray, no simulator)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from seqrec_ray.sim.ab_report import format_table, plot_summary, write_sessions_csv
from seqrec_ray.sim.ab_summary import METRICS, SessionResult, latency_summary, summarize
from seqrec_ray.sim.stats import bootstrap_mean_ci, holm_adjust, mean_ci, paired_test, t_cdf, t_ppf


def _t_cdf_numeric(t: float, df: int) -> float:
    """Student-t CDF by integrating its density (independent of the incomplete beta)."""
    x = np.linspace(-200.0, t, 400_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    return float(np.sum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x)))


@pytest.mark.parametrize(("q", "df", "expected"), [(0.975, 1, 12.706), (0.975, 10, 2.228), (0.995, 30, 2.750), (0.975, 10**6, 1.960)])
def test_t_quantiles_match_the_printed_table(q, df, expected):
    assert t_ppf(q, df) == pytest.approx(expected, abs=1e-3)
    assert t_ppf(1 - q, df) == pytest.approx(-expected, abs=1e-3)


@pytest.mark.parametrize(("t", "df"), [(0.3, 3), (2.0, 10), (-1.7, 5), (3.5, 40)])
def test_t_cdf_matches_numerical_integration(t, df):
    assert t_cdf(t, df) == pytest.approx(_t_cdf_numeric(t, df), abs=2e-4)


def test_paired_test_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([0.0, 2.0, 1.0, 1.0])
    d = a - b  # [1, 0, 2, 3]: mean 1.5, sd sqrt(5/3)
    res = paired_test(a, b)
    se = math.sqrt(5 / 3) / 2
    assert res.diff == pytest.approx(1.5)
    assert res.t == pytest.approx(1.5 / se)
    assert res.df == 3
    assert res.p_value == pytest.approx(2 * (1 - _t_cdf_numeric(1.5 / se, 3)), abs=1e-3)
    half = t_ppf(0.975, 3) * se
    assert (res.diff_low, res.diff_high) == pytest.approx((1.5 - half, 1.5 + half))
    assert res.relative_lift == pytest.approx(1.5 / b.mean())
    # The exact bootstrap law of mean(d*) over the 4**4 resamples: P(mean <= 0.25) = 5/256 < 2.5%
    # <= P(mean <= 0.5) = 15/256, and symmetrically at the top: the 95% percentile interval is
    # [0.5, 2.5]. The tolerance is under one lattice step (0.25) of the resampled means.
    assert (res.boot_low, res.boot_high) == pytest.approx((0.5, 2.5), abs=0.1)
    assert bootstrap_mean_ci(d, seed=0) == (res.boot_low, res.boot_high)  # it resamples the differences


def test_pairing_finds_a_small_shift_that_independent_intervals_miss():
    rng = np.random.default_rng(1)
    users = rng.normal(0.0, 1.0, 200)  # big between-user spread, shared by both arms
    b = users + rng.normal(0.0, 0.05, 200)
    a = users + 0.05 + rng.normal(0.0, 0.05, 200)
    ci_a, ci_b = mean_ci(a), mean_ci(b)
    assert ci_a.low < ci_b.high  # unpaired 95% intervals overlap
    res = paired_test(a, b)
    assert res.p_value < 1e-6 and res.diff_low > 0


def test_null_false_positive_rate_and_coverage_are_nominal():
    rng = np.random.default_rng(7)
    rejections, covered, reps = 0, 0, 400
    for _ in range(reps):
        a = rng.exponential(1.0, 30)  # skewed, like revenue
        b = rng.exponential(1.0, 30)
        rejections += paired_test(a, b, n_boot=100).p_value < 0.05
        ci = mean_ci(a)
        covered += ci.low <= 1.0 <= ci.high
    assert 0.02 <= rejections / reps <= 0.09
    assert 0.90 <= covered / reps <= 0.98


def test_identical_arms_are_not_significant_and_constant_shift_is():
    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert paired_test(x, x).p_value == 1.0
    assert paired_test(x + 1.0, x).p_value == 0.0


def test_bootstrap_interval_contains_the_mean_and_narrows_with_n():
    rng = np.random.default_rng(3)
    small, large = rng.normal(2.0, 1.0, 20), rng.normal(2.0, 1.0, 2000)
    lo_s, hi_s = bootstrap_mean_ci(small, seed=0)
    lo_l, hi_l = bootstrap_mean_ci(large, seed=0)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 5


def test_holm_by_hand():
    # sorted p: 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_test([1.0, 2.0], [1.0]), "equal lengths"),
        (lambda: paired_test([1.0], [2.0]), "at least 2"),
        (lambda: mean_ci([1.0, float("nan")]), "non-finite"),
        (lambda: mean_ci([1.0, 2.0], level=1.5), "level"),
        (lambda: t_ppf(1.0, 3), "q must be"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _sessions() -> list[SessionResult]:
    """Two users x two sessions x two arms, numbers chosen to check by hand."""
    rows = [
        # arm, user, session, steps, impressions, clicks, carts, purchases, revenue
        ("A", "u1", 0, 2, 10, 1, 0, 0, 0.0),
        ("A", "u1", 1, 1, 5, 0, 0, 0, 0.0),
        ("A", "u2", 0, 3, 15, 3, 1, 1, 20.0),
        ("A", "u2", 1, 2, 10, 1, 1, 0, 0.0),
        ("B", "u1", 0, 2, 10, 2, 1, 1, 10.0),
        ("B", "u1", 1, 2, 10, 2, 1, 1, 30.0),
        ("B", "u2", 0, 4, 20, 5, 2, 1, 50.0),
        ("B", "u2", 1, 1, 5, 0, 0, 0, 0.0),
    ]
    return [SessionResult(*r) for r in rows]


def test_summary_numbers_by_hand(tmp_path):
    summary = summarize(_sessions(), ["A", "B"])
    a, b = summary["arms"]["A"]["metrics"], summary["arms"]["B"]["metrics"]
    # per-user means, A: u1 ctr (0.1 + 0)/2 = 0.05, u2 (0.2 + 0.1)/2 = 0.15 -> 0.10
    assert a["ctr"]["mean"] == pytest.approx(0.10)
    assert b["ctr"]["mean"] == pytest.approx(((0.2 + 0.2) / 2 + (0.25 + 0.0) / 2) / 2)
    assert a["conversion_rate"]["mean"] == pytest.approx(0.25)
    assert b["conversion_rate"]["mean"] == pytest.approx(0.75)
    assert b["revenue_per_session"]["mean"] == pytest.approx(22.5)
    assert summary["arms"]["B"]["totals"]["purchases"] == 3
    (cmp,) = [c for c in summary["comparisons"] if c["metric"] == "revenue_per_session"]
    assert (cmp["a"], cmp["b"]) == ("B", "A")
    # user diffs: u1 20 - 0 = 20, u2 25 - 10 = 15
    assert cmp["diff"] == pytest.approx(17.5)
    assert cmp["t"] == pytest.approx(17.5 / (np.std([20.0, 15.0], ddof=1) / math.sqrt(2)))

    text = format_table(summary, {"B": latency_summary({"recommend": [1.0, 2.0, 3.0]})})
    assert "conversion rate" in text and "B vs A" in text and "p50 2.0 ms" in text
    png = plot_summary(summary, tmp_path / "ab.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = write_sessions_csv(_sessions(), tmp_path / "sessions.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 8 and set(METRICS) <= set(rows[0])
    assert float(rows[2]["ctr"]) == pytest.approx(0.2)


def test_summary_refuses_arms_with_different_users():
    sessions = _sessions()[:-2]  # arm B lost user u2
    with pytest.raises(ValueError, match="arms must share users"):
        summarize(sessions, ["A", "B"])
