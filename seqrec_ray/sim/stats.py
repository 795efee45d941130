"""Confidence intervals and paired significance tests for simulated A/B tests (numpy only).

The unit of analysis is the simulated user: every arm sees the same users with the same
seeds (common random numbers), so arm A and arm B give one pair of per-user means per
user, and the test is a **paired t-test on the per-user differences** (two-sided,
``n - 1`` degrees of freedom). Per-arm intervals are Student-t intervals on the per-user
means. A paired bootstrap interval of the mean difference is given beside the t interval
as a check that does not assume normality.

Student's t distribution is computed here (regularised incomplete beta, continued
fraction as in Numerical Recipes §6.4) to avoid a scipy dependency.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


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
    if df <= 0:
        raise ValueError(f"df must be positive, got {df!r}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """The q-quantile of Student's t (bisection on ``t_cdf``; accurate to ~1e-10)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < q:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if t_cdf(mid, df) < q:
            low = mid
        else:
            high = mid
        if high - low < 1e-12:
            break
    return 0.5 * (low + high)


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
    se = ci.std / math.sqrt(ci.n)
    if se > 0:
        t = ci.mean / se
        p = 2.0 * (1.0 - t_cdf(abs(t), ci.n - 1))
    else:  # every difference identical: no evidence unless they are all nonzero
        t = 0.0 if ci.mean == 0 else math.copysign(math.inf, ci.mean)
        p = 1.0 if ci.mean == 0 else 0.0
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
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))  # (n_boot, n)
    means = values[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


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


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h
