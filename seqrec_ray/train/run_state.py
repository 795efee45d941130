"""What a training run carries from epoch to epoch and across restarts (no Ray).

Early stopping on the valid metric that picks the best epoch, the per-epoch history, and
``train_state.json``: the run state saved beside a checkpoint's ``optimizer.pt`` so a
restarted run continues at the next epoch with the same stopping state and curves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import load_optimizer_state, unwrap_encoder

SELECTION_METRIC = "ndcg@10"  # the valid metric that picks the best epoch and drives early stopping
OUTCOME_LOSS = "outcome_log_loss"  # the propensity / churn heads' valid log loss, when the model has them
SELECTION = "selection"  # the valid entry holding selection_score (Ray Train ranks checkpoints by it)


def selection_score(valid: dict) -> float:
    """The score that picks the best epoch (higher is better): valid NDCG@10, or, for a
    model with propensity / churn heads, minus their log loss at the validation cut-off:
    those runs are for the heads, and on sparse logs next-item quality peaks long before
    the heads have learned (Taobao: NDCG@10 best at epoch 1)."""
    return -valid[OUTCOME_LOSS] if OUTCOME_LOSS in valid else valid[SELECTION_METRIC]


def scored(valid: dict, outcome_loss_sum: float = 0.0, outcome_examples: int = 0) -> dict:
    """An epoch's valid metrics with the heads' mean log loss (when they had examples) and
    the ``selection`` score."""
    if outcome_examples:
        valid = {**valid, OUTCOME_LOSS: outcome_loss_sum / outcome_examples}
    return {**valid, SELECTION: selection_score(valid)}
TRAIN_STATE_FILE = "train_state.json"  # epoch, early-stopping state and curves, beside optimizer.pt


class EarlyStopping:
    """Tracks the best validation score; ``should_stop`` after ``patience`` epochs without
    improvement (patience 0 = never stop)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_score = float("-inf")
        self.best_epoch = 0
        self.last_epoch = 0

    def update(self, score: float, epoch: int) -> bool:
        """Record an epoch's score; True when it is a new best."""
        self.last_epoch = epoch
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.last_epoch - self.best_epoch >= self.patience


@dataclass
class RunState:
    """Where a run stands: ``epoch`` finished epochs (0 = a fresh run) and their history;
    ``optimizer_state`` and ``digest`` (of the restored weights) only after a restore."""

    epoch: int
    stopper: EarlyStopping
    history: list[dict] = field(default_factory=list)
    optimizer_state: dict | None = None
    digest: str | None = None

    @classmethod
    def fresh(cls, patience: int) -> RunState:
        return cls(0, EarlyStopping(patience))


def write_train_state(directory: str | Path, history: list[dict], stopper: EarlyStopping) -> None:
    """``train_state.json`` after the last epoch of ``history``."""
    state = {"epoch": history[-1]["epoch"], "best_score": stopper.best_score,
             "best_epoch": stopper.best_epoch, "history": history}
    (Path(directory) / TRAIN_STATE_FILE).write_text(json.dumps(state, indent=1))


def read_train_state(directory: str | Path) -> dict:
    """``{"epoch", "best_score", "best_epoch", "history"}`` as written by write_train_state."""
    return json.loads((Path(directory) / TRAIN_STATE_FILE).read_text())


def restore_run_state(task: torch.nn.Module, directory: str | Path, patience: int) -> RunState:
    """Load a checkpoint directory's weights into ``task`` (before DDP wraps it, so every
    rank starts from them); return the run state with the saved optimizer state."""
    directory = Path(directory)
    encoder = unwrap_encoder(task)
    encoder.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    state = read_train_state(directory)
    stopper = EarlyStopping(patience)
    stopper.best_score, stopper.best_epoch, stopper.last_epoch = state["best_score"], state["best_epoch"], state["epoch"]
    return RunState(state["epoch"], stopper, state["history"], load_optimizer_state(directory), state_digest(encoder))


def optimizer_step(optimizer: torch.optim.Optimizer) -> int:
    """Adam's step count as restored (proves the optimizer state came back, not just weights)."""
    steps = [int(state["step"]) for state in optimizer.state_dict()["state"].values() if "step" in state]
    return max(steps, default=0)


def state_digest(encoder: torch.nn.Module) -> str:
    """A short hash of an encoder's weights: lets a resumed run prove what it restored."""
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap_encoder(encoder).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
