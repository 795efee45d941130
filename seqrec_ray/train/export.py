"""A finished run's output directory (no Ray): OUTPUT/best, OUTPUT/latest, curves and
``result.json`` with the best checkpoint's test metrics. The in-process loop writes
best/ and latest/ as it goes; the Ray path copies them out of Ray storage at the end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .batches import iterate_batches, table_to_tensors
from .checkpoint import load_checkpoint
from .config import TrainConfig
from .curves import save_curves
from .examples import eval_examples
from .loop import evaluate
from .progress import result_line
from .run_state import read_train_state


def export_run(best, latest, run_path: str, config: TrainConfig, data_dir: Path, output_dir: Path,
               progress: bool) -> dict:
    """Copy a run's ``best`` and ``latest`` checkpoints (anything with ``to_directory``, as
    ray.train.Checkpoint) to OUTPUT; write its curves (from the latest run state) and
    result.json with the best checkpoint's test metrics, the same as run_in_process."""
    for name, checkpoint in (("best", best), ("latest", latest)):
        shutil.rmtree(output_dir / name, ignore_errors=True)
        checkpoint.to_directory(str(output_dir / name))
    state = read_train_state(output_dir / "latest")
    save_curves(state["history"], output_dir)
    summary = finish_run(output_dir, config, state["history"], state["best_epoch"], _test_tensors(data_dir, config),
                         run_path=run_path, data_dir=data_dir)
    if progress:
        print(result_line(summary, output_dir / "best"), flush=True)
    return summary


def finish_run(
    output_dir: Path,
    config: TrainConfig,
    history: list[dict],
    best_epoch: int,
    test_tensors: dict[str, torch.Tensor],
    run_path: str | None = None,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
    data_dir: Path | None = None,
) -> dict:
    """Score OUTPUT/best on the test examples (one pass, no training) and write the run's
    summary to OUTPUT/result.json; returns it. A model with the propensity / churn heads
    also gets its calibration fitted on the validation cut-off (saved in OUTPUT/best) and
    their test report with baselines, plotted in OUTPUT/reliability-{purchase,churn}.png."""
    summary: dict = {"run_name": config.run_name}
    if run_path is not None:
        summary["run_path"] = run_path
    summary.update({
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "train_seconds": sum(h["seconds"] for h in history),
        "valid": history[best_epoch - 1]["valid"],
        "test": checkpoint_metrics(output_dir / "best", test_tensors, config, device, autocast_dtype),
        "best_checkpoint": str(output_dir / "best"),
    })
    if config.outcome_heads:
        if data_dir is None:
            raise ValueError("a model with propensity / churn heads needs data_dir to calibrate them")
        summary["outcomes"] = finish_outcomes(output_dir, config, data_dir, device)
    (output_dir / "result.json").write_text(json.dumps(summary, indent=2))
    return summary


def checkpoint_metrics(
    checkpoint_dir: Path,
    tensors: dict[str, torch.Tensor],
    config: TrainConfig,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> dict:
    """Full-ranking metrics (history masked) of a saved checkpoint on eval-example tensors."""
    if not tensors or len(tensors["target"]) == 0:
        return {"users": 0}
    model = load_checkpoint(checkpoint_dir, device=device).model
    batches = iterate_batches(tensors, config.eval_batch_size)
    return evaluate(model, batches, config.ks, True, device, autocast_dtype).to_dict()


def _test_tensors(data_dir: Path, config: TrainConfig) -> dict[str, torch.Tensor]:
    from seqrec_ray.data.artifacts import load_sequences

    return table_to_tensors(eval_examples(load_sequences(data_dir), "test", config.max_len))


def finish_outcomes(output_dir: Path, config: TrainConfig, data_dir: Path, device: torch.device | str = "cpu") -> dict:
    """Calibrate OUTPUT/best's propensity / churn heads on the validation cut-off, save the
    calibration beside its weights, and report them on the test cut-off."""
    from seqrec_ray.data.artifacts import load_manifest, load_sequences

    from .outcomes import (
        CALIBRATION_FILE,
        fit_calibration,
        labels_of,
        outcome_evaluation,
        outcome_logits,
        outcome_tensors,
    )

    cutoffs = config.outcome_cutoffs(load_manifest(data_dir))
    sequences = load_sequences(data_dir)
    model = load_checkpoint(output_dir / "best", device=device).model
    valid = outcome_tensors(cutoffs.examples(sequences, "valid", config.max_len))
    calibration = {**fit_calibration(outcome_logits(model, valid, config.eval_batch_size, device), labels_of(valid)),
                   "fitted_on": "valid", "valid_examples": int(len(valid["items"])), **cutoffs.describe()}
    (output_dir / "best" / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2))
    return outcome_evaluation(model, calibration, cutoffs, sequences, config.max_len, "test",
                              output_dir / "reliability-{outcome}.png", device, config.eval_batch_size)
