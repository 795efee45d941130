"""Calibrated probabilities for the user-level heads (purchase propensity, churn).

``fit_temperature`` finds the temperature T that minimises the validation log loss of
``sigmoid(logit / T)`` (Guo et al. 2017, temperature scaling: one parameter, so the
ranking and the AUC are unchanged). ``fit_platt`` fits ``sigmoid(a * logit + b)`` (Platt
scaling, a > 0, so the ranking is unchanged too): the bias also moves the base rate, which
the heads need when the positive rate at the validation cut-off differs from training's.
``calibration_report`` gives AUC, log loss and the
expected calibration error over equal-width bins, and ``reliability_plot`` draws the bins.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

TEMPERATURE_BOUNDS = (0.05, 20.0)


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if scores.shape != labels.shape or scores.ndim != 1 or len(scores) == 0:
        raise ValueError(f"scores and labels must be equal-length non-empty vectors, got {scores.shape} and {labels.shape}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return scores, labels


def log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of ``sigmoid(logits)``, computed stably from the logits."""
    logits, labels = _check(logits, labels)
    return float(-np.mean(labels * log_expit(logits) + (1 - labels) * log_expit(-logits)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_BOUNDS minimising ``log_loss(logits / T, labels)``."""
    logits, labels = _check(logits, labels)
    result = minimize_scalar(lambda t: log_loss(logits / t, labels), bounds=TEMPERATURE_BOUNDS, method="bounded")
    return float(result.x)


PLATT_LOG_SCALE_BOUNDS = (-7.0, 7.0)  # a in [1e-3, 1e3]: separable validation data cannot blow it up
PLATT_BIAS_BOUNDS = (-30.0, 30.0)


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) with a > 0 (within PLATT_LOG_SCALE_BOUNDS) minimising ``log_loss(a * logits + b, labels)``."""
    from scipy.optimize import minimize

    logits, labels = _check(logits, labels)

    def loss(params: np.ndarray) -> float:
        return log_loss(np.exp(params[0]) * logits + params[1], labels)

    result = minimize(loss, x0=np.zeros(2), method="L-BFGS-B", bounds=[PLATT_LOG_SCALE_BOUNDS, PLATT_BIAS_BOUNDS])
    return float(np.exp(result.x[0])), float(result.x[1])


def platt_probabilities(logits: np.ndarray, scale: float, bias: float) -> np.ndarray:
    return expit(scale * np.asarray(logits, dtype=np.float64) + bias)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Sum over equal-width probability bins of (bin share) x |mean label - mean probability|."""
    probs, labels = _check(probs, labels)
    which = np.minimum((probs * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, labels, bins) - np.bincount(which, probs, bins))  # per-bin sums
    return float(gap.sum() / len(probs)) if counts.any() else 0.0


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC = Mann-Whitney U / (positives x negatives) (ties count one half); None when
    only one class is present."""
    from scipy.stats import mannwhitneyu

    scores, labels = _check(scores, labels)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    return float(mannwhitneyu(pos, neg).statistic / (len(pos) * len(neg)))


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> dict:
    """AUC, log loss and ECE of ``sigmoid(logits / temperature)``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    probs = expit(scaled)
    return {"examples": int(len(probs)), "positive_rate": float(np.mean(labels)), "auc": auc(scaled, labels),
            "log_loss": log_loss(scaled, labels), "ece": expected_calibration_error(probs, labels, bins),
            "temperature": float(temperature)}


def reliability_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, bins: int = 15,
                     title: str = "reliability") -> Path:
    """One line per name: mean label against mean predicted probability per bin (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfectly calibrated")
    for name, (probs, labels) in curves.items():
        probs, labels = _check(probs, labels)
        which = np.minimum((probs * bins).astype(np.int64), bins - 1)
        counts = np.bincount(which, minlength=bins)
        filled = counts > 0
        mean_p = np.bincount(which, probs, bins)[filled] / counts[filled]
        mean_y = np.bincount(which, labels, bins)[filled] / counts[filled]
        ece = expected_calibration_error(probs, labels, bins)
        ax.plot(mean_p, mean_y, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
