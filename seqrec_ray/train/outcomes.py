"""User-level targets at time cut-offs: purchase propensity and churn, their examples,
calibration, baselines and report.

The heads (models/heads.py ``OutcomeHeads``) need a global clock, so they need artifacts
featurized with the temporal split (``--split temporal --cutoff T --valid-cutoff V``).
With horizons Hp (purchase) and Hc (churn), H = max(Hp, Hc):

- **test** examples are cut at T: inputs are every event before T, labels come from
  [T, T + H), the test period;
- **valid** examples are cut at V: inputs before V (the training events), labels from
  [V, V + H), which must end by T, so validation never reads the test period; the
  calibration is fitted on them;
- **train** examples are cut at V - H, V - 2H, ... (``train_cutoffs`` of them): their
  label windows end by V, so training reads nothing of the validation or test period.

Each example is one user active before its cut-off (targets.cutoff_examples). The
baselines score the same examples: a logistic regression on recency / frequency /
monetary counts (scikit-learn), fitted on the train examples, and the days since the
last event (the churn heuristic; its negative for propensity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from seqrec_ray.models.heads import OUTCOMES, PROFILE_FEATURES
from seqrec_ray.models.losses import OUTCOME_PREFIX
from seqrec_ray.schema import SECONDS_PER_DAY

from .batches import iterate_batches, table_to_tensors, trim_left_padding
from .calibration import auc, calibration_report, fit_platt, platt_probabilities, reliability_plot
from .targets import cutoff_examples

CALIBRATION_FILE = "outcome_calibration.json"  # in a checkpoint directory
NO_OUTCOME_HEADS = ("no propensity / churn heads (train with --outcome-loss > 0 on artifacts featurized with "
                    "--split temporal)")


@dataclass(frozen=True)
class OutcomeCutoffs:
    """Where the user-level examples are cut (seconds) and what their labels cover (days)."""

    train: tuple[float, ...]
    valid: float
    test: float
    purchase_horizon_days: float
    churn_horizon_days: float

    def examples(self, sequences: pa.Table, split: str, max_len: int) -> pa.Table:
        """The examples of ``split`` (train: every training cut-off, oldest first)."""
        if split not in ("train", "valid", "test"):
            raise ValueError(f"split must be train, valid or test, got {split!r}")
        cuts = self.train if split == "train" else (self.valid if split == "valid" else self.test,)
        tables = [cutoff_examples(sequences, c, self.purchase_horizon_days, max_len, self.churn_horizon_days)
                  for c in cuts]
        return pa.concat_tables(tables) if tables else cutoff_examples(
            sequences.slice(0, 0), self.test, self.purchase_horizon_days, max_len, self.churn_horizon_days)

    def describe(self) -> dict:
        return {"train_cutoffs": list(self.train), "valid_cutoff": self.valid, "test_cutoff": self.test,
                "purchase_horizon_days": self.purchase_horizon_days, "churn_horizon_days": self.churn_horizon_days}

    @classmethod
    def from_description(cls, d: dict) -> OutcomeCutoffs:
        return cls(tuple(d["train_cutoffs"]), d["valid_cutoff"], d["test_cutoff"], d["purchase_horizon_days"],
                   d["churn_horizon_days"])


def outcome_cutoffs(manifest: dict, purchase_horizon_days: float | None, churn_horizon_days: float | None,
                    train_cutoffs: int) -> OutcomeCutoffs:
    """The cut-offs for an artifacts manifest; a horizon of None is the validation period's
    length (T - V). ValueError names what does not fit."""
    split = manifest.get("split") or {}
    if split.get("protocol") != "temporal" or split.get("valid_cutoff") is None:
        raise ValueError(
            "the propensity / churn heads need a global time split with a validation period: featurize with "
            f"--split temporal --cutoff T --valid-cutoff V (these artifacts have {split or 'no split'})")
    test, valid = float(split["cutoff"]), float(split["valid_cutoff"])
    period_days = (test - valid) / SECONDS_PER_DAY
    horizons = {}
    for name, value in (("purchase_horizon_days", purchase_horizon_days), ("churn_horizon_days", churn_horizon_days)):
        value = period_days if value is None else float(value)
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
        if value > period_days * (1 + 1e-9):
            raise ValueError(f"{name} ({value:g}) is longer than the validation period ({period_days:g} days, "
                             "valid-cutoff to cutoff): its labels would read the test period; shorten it or "
                             "featurize with an earlier --valid-cutoff")
        horizons[name] = value
    if not isinstance(train_cutoffs, int) or train_cutoffs < 1:
        raise ValueError(f"train_cutoffs must be a positive int, got {train_cutoffs!r}")
    step = max(horizons.values()) * SECONDS_PER_DAY
    first, last = (manifest.get("time_range") or [None, None])[:2]
    if last is not None and last < test + step - 1:
        raise ValueError(f"the log ends ({last:.0f}) before the test labels' window closes (cutoff {test:.0f} + "
                         f"{step / SECONDS_PER_DAY:g} days): every user would look churned; shorten the horizons "
                         "or featurize with an earlier --cutoff")
    train = tuple(valid - k * step for k in range(train_cutoffs, 0, -1))
    if first is not None:
        train = tuple(c for c in train if c > first)
    if not train:
        raise ValueError(f"no training cut-off falls inside the log: the first event ({first}) is later than "
                         f"valid-cutoff minus one horizon ({valid - step:.0f}); shorten the horizons")
    return OutcomeCutoffs(train, valid, test, horizons["purchase_horizon_days"], horizons["churn_horizon_days"])


NOT_MODEL_COLUMNS = ("user_id", "last_event_before", "days_since_last_event")


def outcome_tensors(examples: pa.Table) -> dict[str, torch.Tensor]:
    """The model's inputs and labels of an example table as int64 tensors."""
    return table_to_tensors(examples.drop_columns([c for c in NOT_MODEL_COLUMNS if c in examples.column_names]))


def outcome_examples_for_ray(sequences: pa.Table, cutoffs: OutcomeCutoffs, max_len: int, split: str) -> pa.Table:
    """Ray Data ``map_batches`` over sequence rows: their ``split`` examples, int columns only."""
    examples = cutoffs.examples(sequences, split, max_len)
    return examples.drop_columns([c for c in NOT_MODEL_COLUMNS if c in examples.column_names])


def with_outcome_batches(batches, outcomes: dict[str, torch.Tensor] | None, batch_size: int, seed: int):
    """Each training batch with a batch of user-level examples riding along (columns
    prefixed ``OUTCOME_PREFIX``), drawn in a fresh random order that repeats as often as
    the windows need; the batches as they are without examples."""
    if not outcomes or len(outcomes["items"]) == 0:
        yield from batches
        return
    cycle, drawn = 0, iter(())
    for batch in batches:
        part = next(drawn, None)
        if part is None:
            drawn, cycle = iterate_batches(outcomes, batch_size, shuffle=True, seed=seed * 7919 + cycle), cycle + 1
            part = next(drawn)
        yield {**batch, **{OUTCOME_PREFIX + k: v for k, v in trim_left_padding(part).items()}}


@torch.no_grad()
def outcome_logits(model: torch.nn.Module, tensors: dict[str, torch.Tensor], batch_size: int = 1024,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """(N, len(OUTCOMES)) logits of a model's heads on example tensors."""
    from .checkpoint import unwrap_encoder

    encoder = unwrap_encoder(model)
    was_training = encoder.training
    encoder.eval()
    try:
        parts = [encoder.outcome_logits({k: v.to(device) for k, v in trim_left_padding(b).items()}).float().cpu()
                 for b in iterate_batches(tensors, batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros((0, len(OUTCOMES)))


def outcome_loss_sum(model: torch.nn.Module, tensors: dict[str, torch.Tensor] | None, batch_size: int = 1024,
                     device: torch.device | str = "cpu") -> tuple[float, int]:
    """(sum over examples of the mean binary cross-entropy of both heads, examples) on
    example tensors: sums, so that shards on several ranks add up."""
    if not tensors or len(tensors["items"]) == 0:
        return 0.0, 0
    logits = torch.from_numpy(outcome_logits(model, tensors, batch_size, device))  # (N, 2) float64
    labels = torch.stack([tensors[name] for name in OUTCOMES], dim=1).double()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
    return float(loss.sum()), int(len(loss))


def labels_of(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: tensors[name].numpy().astype(np.float64) for name in OUTCOMES}


def fit_calibration(logits: np.ndarray, labels: dict[str, np.ndarray]) -> dict:
    """Per outcome, the Platt scaling (scale, bias) fitted on validation logits."""
    out = {}
    for i, name in enumerate(OUTCOMES):
        if len(np.unique(labels[name])) < 2:
            out[name] = {"scale": 1.0, "bias": 0.0, "fitted": False}  # one class: nothing to fit
            continue
        scale, bias = fit_platt(logits[:, i], labels[name])
        out[name] = {"scale": scale, "bias": bias, "fitted": True}
    return out


def calibrated_probabilities(logits: np.ndarray, calibration: dict) -> dict[str, np.ndarray]:
    return {name: platt_probabilities(logits[:, i], calibration[name]["scale"], calibration[name]["bias"])
            for i, name in enumerate(OUTCOMES)}


def rfm_matrix(tensors: dict[str, torch.Tensor]) -> np.ndarray:
    """log(1 + x) of the recency / frequency / monetary counts (the ones the heads read
    beside the state), (N, len(PROFILE_FEATURES))."""
    columns = [tensors[name].numpy().astype(np.float64) for name in PROFILE_FEATURES]
    return np.log1p(np.maximum(np.stack(columns, axis=1), 0.0))


def rfm_baseline(train: dict[str, torch.Tensor], evaluated: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Per outcome, the probabilities of a logistic regression on the RFM features fitted on
    the train examples (a constant at the train rate where train has one class)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_eval = rfm_matrix(train), rfm_matrix(evaluated)
    out = {}
    for name in OUTCOMES:
        y = train[name].numpy()
        if len(np.unique(y)) < 2:
            out[name] = np.full(len(x_eval), float(y.mean()) if len(y) else 0.5)
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        out[name] = model.fit(x_train, y).predict_proba(x_eval)[:, 1]
    return out


def outcome_evaluation(model: torch.nn.Module, calibration: dict, cutoffs: OutcomeCutoffs, sequences: pa.Table,
                       max_len: int, split: str = "test", plot: str | Path | None = None,
                       device: torch.device | str = "cpu", batch_size: int = 1024) -> dict:
    """AUC, log loss and ECE per outcome on ``split``'s examples: the model (calibrated and
    raw), the RFM logistic regression and the days-since-last-event heuristic; a
    reliability plot per outcome at ``plot`` (one PNG, ``{outcome}`` in the name)."""
    from scipy.special import logit as to_logit

    tensors = outcome_tensors(cutoffs.examples(sequences, split, max_len))
    result: dict = {"split": split, **cutoffs.describe(), "examples": int(len(tensors["items"]))}
    if not result["examples"]:
        return result
    logits = outcome_logits(model, tensors, batch_size, device)
    calibrated = calibrated_probabilities(logits, calibration)
    labels = labels_of(tensors)
    rfm = rfm_baseline(outcome_tensors(cutoffs.examples(sequences, "train", max_len)), tensors)
    recency_days = tensors["seconds_since_last_event"].numpy() / SECONDS_PER_DAY
    eps = 1e-6
    for i, name in enumerate(OUTCOMES):
        y = labels[name]
        # The heuristic is a ranking, not a probability: its AUC only (log loss / ECE need probabilities).
        heuristic = recency_days if name == "churn" else -recency_days
        rows = {
            "model (calibrated)": calibration_report(to_logit(np.clip(calibrated[name], eps, 1 - eps)), y),
            "model (raw)": calibration_report(logits[:, i], y),
            "RFM logistic regression": calibration_report(to_logit(np.clip(rfm[name], eps, 1 - eps)), y),
            "days since last event": {"examples": int(len(y)), "positive_rate": float(y.mean()),
                                      "auc": auc(heuristic, y)},
        }
        result[name] = rows
        if plot is not None:
            path = Path(str(plot).replace("{outcome}", name))
            reliability_plot({"model (calibrated)": (calibrated[name], y), "RFM logistic regression": (rfm[name], y)},
                             path, title=f"{name} within {horizon_text(getattr(cutoffs, name + '_horizon_days'))}, {split}")
            result[name + "_plot"] = str(path)
    return result


def horizon_text(days: float) -> str:
    """``2 days``, ``1 day`` or, under a day, ``20 minutes`` / ``6 hours``."""
    if days >= 1:
        return f"{days:g} day" + ("" if days == 1 else "s")
    hours = days * 24
    return f"{hours:.3g} hours" if hours >= 1 else f"{hours * 60:.3g} minutes"


def format_outcomes(result: dict) -> list[str]:
    """Table lines: per outcome, one row per scorer (AUC, log loss, ECE)."""
    lines = []
    for name in OUTCOMES:
        if name not in result:
            continue
        rows = result[name]
        first = next(iter(rows.values()))
        horizon = horizon_text(result[f"{name}_horizon_days"])
        lines.append(f"\n{name} within {horizon} of the cut-off, {result['split']} examples={first['examples']}, "
                     f"positive rate {first['positive_rate']:.4f}")
        width = max(len(n) for n in rows) + 2
        lines.append(" " * width + "".join(f"{k:>12s}" for k in ("auc", "log_loss", "ece")))
        for scorer, metrics in rows.items():
            cells = "".join("{:>12s}".format("-" if metrics.get(k) is None else f"{metrics[k]:.4f}")
                            for k in ("auc", "log_loss", "ece"))
            lines.append(f"{scorer:{width}s}{cells}")
    return lines


def load_calibration(checkpoint_dir: str | Path) -> dict:
    """The calibration (and the cut-offs and horizons) saved with a checkpoint's heads;
    ValueError for a checkpoint whose model has no such heads."""
    import json

    model = Path(checkpoint_dir) / "model.json"
    if model.is_file() and not json.loads(model.read_text()).get("config", {}).get("outcome_heads"):
        raise ValueError(f"checkpoint {checkpoint_dir}: the model has {NO_OUTCOME_HEADS}")
    path = Path(checkpoint_dir) / CALIBRATION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the propensity / churn heads of this checkpoint were never "
                                "calibrated (train.py writes it into OUT/best when the run finishes)")
    return json.loads(path.read_text())
