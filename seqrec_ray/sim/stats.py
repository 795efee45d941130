"""Confidence intervals and paired significance tests for simulated A/B tests.

The unit of analysis is the simulated user: every arm sees the same users with the same
seeds (common random numbers), so arm A and arm B give one pair of per-user means per
user, and the test is a **paired t-test on the per-user differences** (two-sided,
``n - 1`` degrees of freedom). Per-arm intervals are Student-t intervals on the per-user
means. A paired bootstrap interval of the mean difference is given beside the t interval
as a check that does not assume normality. The distributions, the test and the
bootstrap are scipy.stats'; this module fixes the conventions (unit, sidedness, seeds)
and the degenerate cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import bootstrap, ttest_rel
from scipy.stats import t as student_t


@dataclass(frozen=True)
class MeanCI:
    mean: float
    low: float
    high: float
    std: float  # sample standard deviation of the per-unit values
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """Arm a minus arm b on the same units."""

    mean_a: float
    mean_b: float
    diff: float
    diff_low: float  # t interval of the mean difference
    diff_high: float
    boot_low: float  # paired bootstrap percentile interval of the mean difference
    boot_high: float
    relative_lift: float | None  # diff / mean_b; None when mean_b is 0
    t: float
    df: int
    p_value: float  # two-sided paired t-test
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    _check_df(df)
    return float(student_t.cdf(t, df))


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    _check_df(df)
    return float(student_t.ppf(q, df))


def mean_ci(values: np.ndarray, level: float = 0.95) -> MeanCI:
    """Mean of per-unit values with a Student-t interval (zero width when n < 2)."""
    values = _as_1d(values, "values")
    _check_level(level)
    n = len(values)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if n > 1 else 0.0
    half = t_ppf(0.5 + level / 2.0, n - 1) * std / math.sqrt(n) if n > 1 else 0.0
    return MeanCI(mean, mean - half, mean + half, std, n)


def paired_test(
    a: np.ndarray, b: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> PairedTest:
    """Paired two-sided t-test of mean(a - b) = 0, with t and bootstrap intervals.

    ``a[i]`` and ``b[i]`` must be the same unit (user) under two arms.
    """
    a, b = _as_1d(a, "a"), _as_1d(b, "b")
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired test needs at least 2 units, got {len(a)}")
    d = a - b
    ci = mean_ci(d, level)
    noise = _rounding_noise(a, b)
    if np.ptp(d) > noise:
        test = ttest_rel(a, b)
        t, p = float(test.statistic), float(test.pvalue)
    else:  # every difference identical (up to rounding): no evidence unless they are nonzero
        shifted = abs(ci.mean) > noise
        t = math.copysign(math.inf, ci.mean) if shifted else 0.0
        p = 0.0 if shifted else 1.0
    boot_low, boot_high = bootstrap_mean_ci(d, level, n_boot, seed)
    mean_b = float(b.mean())
    return PairedTest(
        mean_a=float(a.mean()),
        mean_b=mean_b,
        diff=ci.mean,
        diff_low=ci.low,
        diff_high=ci.high,
        boot_low=boot_low,
        boot_high=boot_high,
        relative_lift=ci.mean / mean_b if mean_b != 0 else None,
        t=t,
        df=ci.n - 1,
        p_value=min(1.0, max(0.0, p)),
        n=ci.n,
    )


def bootstrap_mean_ci(values: np.ndarray, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling units with replacement)."""
    values = _as_1d(values, "values")
    _check_level(level)
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100, got {n_boot!r}")
    if len(values) == 1:  # every resample is that one value (scipy refuses a single observation)
        return float(values[0]), float(values[0])
    result = bootstrap((values,), np.mean, n_resamples=n_boot, confidence_level=level, method="percentile",
                       random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over several comparisons)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _as_1d(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _check_df(df: float) -> None:
    if not df > 0:
        raise ValueError(f"df must be positive, got {df!r}")


def _rounding_noise(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two differences a[i] - b[i] can be from float rounding alone: a spread
    below this is no spread (a t statistic of it would be rounding error over rounding error)."""
    return 4.0 * np.finfo(np.float64).eps * max(float(np.abs(a).max()), float(np.abs(b).max()))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
