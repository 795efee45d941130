"""Batch prediction for campaigns: every user's purchase propensity, churn risk and top
next-purchase items as of one time, written as Parquet.

``Predictor`` (one process or one Ray Data actor, loading the checkpoint once) turns
sequence rows (docs/contracts.md §2) into ``user_id, propensity, churn, items, scores``
with the checkpoint's heads and their calibration (train/outcomes.py), exactly as
``GET /users/{id}/predictions`` computes them: the inputs are the events strictly before
``at``, and the heads also read the time from the last of them to ``at``.
``run_batch_predict`` runs it over Ray Data with the batch jobs' shared driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from seqrec_ray.models import scoring
from seqrec_ray.models.heads import OUTCOMES
from seqrec_ray.schema import FIRST_ID_INDEX, SEQUENCE_FEATURES, USER_ID

from .batch_inference import BatchRecommendConfig, run_actor_pool, to_raw_lists
from .batches import trim_left_padding
from .outcomes import calibrated_probabilities, load_calibration, outcome_tensors
from .targets import cutoff_examples

READ_COLUMNS = (USER_ID, *SEQUENCE_FEATURES, "timestamps")
OUTPUT_SCHEMA = pa.schema([(USER_ID, pa.string()), ("propensity", pa.float32()), ("churn", pa.float32()),
                           ("items", pa.list_(pa.string())), ("scores", pa.list_(pa.float32()))])


@dataclass(frozen=True)
class BatchPredictConfig(BatchRecommendConfig):
    at: float | None = field(default=None, metadata={"help": (
        "score as of this time (epoch seconds or ISO 8601): only events before it are inputs (default: one "
        "second after the log's last event, so every user is scored on everything featurize saw)")})

    def check_paths(self) -> None:
        super().check_paths()
        load_calibration(self.checkpoint)  # FileNotFoundError: a model without calibrated heads


def log_end(data: str) -> float:
    """One second after the artifacts' last event (the default prediction time)."""
    from seqrec_ray.data.artifacts import load_manifest

    end = (load_manifest(data).get("time_range") or [None, None])[1]
    if end is None:
        raise ValueError(f"{data}: the manifest has no time range; give --at")
    return float(end) + 1.0


class Predictor:
    """The checkpoint's heads and its tied item table, for one process or one actor."""

    def __init__(self, checkpoint: str, k: int, at: float, exclude_seen: bool = False,
                 torch_threads: int | None = None) -> None:
        from .checkpoint import load_checkpoint

        if torch_threads:
            torch.set_num_threads(torch_threads)
        loaded = load_checkpoint(checkpoint)
        self.model, self.max_len = loaded.model.eval(), loaded.model_config.max_len
        self.calibration = load_calibration(checkpoint)
        self.item_embeddings = loaded.model.item_embeddings().detach().float()  # (V, D)
        self.item_raw_ids = np.asarray(loaded.vocab.item_raw_ids, dtype=object)
        self.k, self.at, self.exclude_seen = k, float(at), exclude_seen

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        # The label horizon is irrelevant here: only the inputs before ``at`` are used.
        examples = cutoff_examples(batch, self.at, 1.0, self.max_len)
        tensors = trim_left_padding(outcome_tensors(examples))
        if len(tensors["items"]) == 0:
            return OUTPUT_SCHEMA.empty_table()
        vectors, logits = self.model.predict_user(tensors)
        probabilities = calibrated_probabilities(logits.float().numpy(), self.calibration)
        scores = scoring.mask_unrankable(scoring.catalogue_scores(vectors, self.item_embeddings))  # (B, V)
        if self.exclude_seen:  # the items of the model's window before ``at``
            scores = scoring.mask_items(scores, tensors["items"])
        values, indices = scoring.top_k(scores, min(self.k, scores.shape[1] - FIRST_ID_INDEX))
        items, top_scores = to_raw_lists(values.numpy(), indices.numpy(), self.item_raw_ids)
        return pa.Table.from_arrays(
            [examples.column(USER_ID).combine_chunks().cast(pa.string()),
             pa.array(probabilities["purchase"], type=pa.float32()), pa.array(probabilities["churn"], type=pa.float32()),
             items, top_scores], schema=OUTPUT_SCHEMA)


def run_batch_predict(config: BatchPredictConfig, log: Callable[[str], None] = print) -> dict:
    """Ray Data: ``map_batches`` over ``num_actors`` Predictor actors into ``config.output``
    (Parquet, one row per user with an event before ``at``); returns the summary."""
    config.check_paths()
    at = log_end(config.data) if config.at is None else float(config.at)
    log(f"[batch_predict] {config.num_actors} actors x {config.cpus_per_actor} CPU, as of {at:.0f}, "
        f"k={config.k} -> {config.output}")
    calibration = load_calibration(config.checkpoint)
    summary = run_actor_pool(
        config, Predictor, READ_COLUMNS,
        {"checkpoint": str(Path(config.checkpoint).resolve()), "k": config.k, "at": at,
         "exclude_seen": config.exclude_seen, "torch_threads": max(1, int(config.cpus_per_actor))},
        {"at": at, "horizon_days": {name: calibration[f"{name}_horizon_days"] for name in OUTCOMES}})
    log(f"[batch_predict] {summary['users']} users in {summary['seconds']:.1f}s ({summary['users_per_s']} users/s)")
    return summary
