"""Calibration of the user-level heads, on synthetic cases with known probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from seqrec_ray.train.calibration import (
    auc,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    log_loss,
    reliability_plot,
)


def known_case(n: int = 40_000, seed: int = 0):
    """True probabilities p, labels drawn from them, and over-confident logits (3x)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.98, n)
    labels = (rng.uniform(size=n) < p).astype(np.int8)
    return p, labels, 3.0 * logit(p)


def test_temperature_scaling_recovers_the_known_temperature_and_calibrates():
    p, labels, logits = known_case()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.05)
    before = calibration_report(logits, labels)
    after = calibration_report(logits, labels, temperature=t)
    truth = expected_calibration_error(p, labels)
    assert after["ece"] < 0.02 and before["ece"] > 0.05 and after["ece"] < truth + 0.01
    assert after["auc"] == pytest.approx(before["auc"])  # one parameter: the ranking is unchanged
    assert after["log_loss"] < before["log_loss"]


def test_hand_computed_values():
    # Two bins of 10: probabilities 0.05 (labels: 1 of 2) and 0.95 (labels: 2 of 2).
    probs, labels = np.array([0.05, 0.05, 0.95, 0.95]), np.array([1, 0, 1, 1])
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auc(np.array([1.0, 2.0]), np.array([1, 1])) is None
    assert log_loss(np.array([0.0]), np.array([1])) == pytest.approx(np.log(2))


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        log_loss(np.array([0.0]), np.array([2]))
    with pytest.raises(ValueError, match="equal-length"):
        auc(np.array([0.1, 0.2]), np.array([1]))
    p, labels, logits = known_case(2000)
    path = reliability_plot({"raw": (expit(logits), labels), "true": (p, labels)}, tmp_path / "r.png")
    assert path.stat().st_size > 5000
