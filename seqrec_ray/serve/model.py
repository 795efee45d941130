"""One checkpoint as the serving deployments hold it: encoder, vocabulary, version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqrec_ray.data.vocab import Vocab

from .features import history_features, left_pad, profile_counts
from .live_items import CatalogueChanges, LiveCatalogue


@dataclass(frozen=True)
class ServingModel:
    key: str  # the resolved checkpoint path: encoder and ranker agree on a model through it
    encoder: torch.nn.Module  # eval mode, on ``device``
    vocab: Vocab
    info: dict[str, Any]  # what /version reports
    max_len: int
    device: str
    catalogue: LiveCatalogue  # the vocabulary plus items posted since (live_items.py)
    calibration: dict | None = None  # the propensity / churn heads' (train/outcomes.py); None without them

    def apply(self, changes: CatalogueChanges | None) -> None:
        """Give the encoder the content of items added or updated live."""
        if changes is None or not changes.vectors_changed:
            return
        content = self.encoder.embed.content
        if changes.added:
            content.extend(torch.from_numpy(changes.added_tokens).to(self.device))
        if changes.replaced:
            content.replace(torch.tensor(changes.replaced, dtype=torch.int64),
                            torch.from_numpy(changes.replaced_tokens).to(self.device))


def load_serving_model(path: str, device: str) -> ServingModel:
    """Load a checkpoint directory (weights_only) for serving on ``device``."""
    from seqrec_ray.train.checkpoint import load_checkpoint
    from seqrec_ray.train.content import token_config

    ckpt_dir = Path(path).expanduser().resolve()
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"checkpoint directory {ckpt_dir} does not exist")
    loaded = load_checkpoint(ckpt_dir, device=device, queries=False)  # /search tokenises the typed text
    vocab = loaded.vocab
    if vocab.num_items != loaded.model_config.num_items:
        raise ValueError(
            f"{ckpt_dir}: vocabulary has {vocab.num_items} items but the model was built for "
            f"{loaded.model_config.num_items}"
        )
    info = version_info(ckpt_dir, loaded.meta, loaded.model_config, vocab)
    tokens = token_config(loaded.model_config) if loaded.model_config.uses_content else None
    calibration = None
    if loaded.model.outcomes is not None:
        from seqrec_ray.train.outcomes import load_calibration

        calibration = load_calibration(ckpt_dir)  # a model with heads but no calibration is refused here
    return ServingModel(str(ckpt_dir), loaded.model, vocab, info, loaded.model_config.max_len, device,
                        LiveCatalogue(vocab, tokens), calibration)


def version_info(ckpt_dir: Path, meta: dict, model_config: Any, vocab: Vocab) -> dict[str, Any]:
    return {
        "checkpoint": str(ckpt_dir),
        "encoder": model_config.encoder,
        "dim": model_config.dim,
        "item_content": list(model_config.content_fields),
        "max_len": model_config.max_len,
        "run_name": meta.get("run_name"),
        "epoch": meta.get("epoch"),
        "created_at": meta.get("created_at"),
        "metrics": meta.get("metrics", {}),
        "data_version": meta.get("data_version"),
        "vocab": {
            "items": vocab.num_items,
            "categories": len(vocab.category_raw_ids),
            "sha256": _vocab_hash(ckpt_dir / "vocab"),
        },
    }


def model_label(info: dict[str, Any]) -> str:
    """Short name of a model for responses, e.g. ``lstm:run@3``."""
    return f"{info['encoder']}:{info.get('run_name')}@{info.get('epoch')}"


def _vocab_hash(vocab_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(vocab_dir.glob("*.parquet")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


@torch.inference_mode()
def encode_histories(model: ServingModel, histories: list[list[dict[str, Any]]]) -> np.ndarray:
    """Users' stored histories (oldest first, each non-empty) -> (B, D) float32 user vectors."""
    if any(len(h) == 0 for h in histories):
        raise ValueError("every history must hold at least one event (empty ones are a cold start)")
    rows = [history_features(h, model.catalogue, model.max_len) for h in histories]
    features = {k: v.to(model.device) for k, v in left_pad(rows).items()}  # (B, T)
    return model.encoder.encode(features).float().cpu().numpy()  # (B, D)


@torch.inference_mode()
def predict_outcomes(model: ServingModel, history: list[dict[str, Any]], at: float) -> dict[str, Any]:
    """A user's calibrated purchase propensity and churn risk as of ``at`` (seconds) from
    the events before it, and the vector to rank next purchases with
    (``SequenceEncoder.predict_user``). ``available`` is False (and nothing else is
    computed) for a model without the heads; ``history`` must hold an event before ``at``."""
    from seqrec_ray.train.outcomes import calibrated_probabilities

    before = [e for e in history if float(e["timestamp"]) < at]
    if not before:
        raise ValueError("no event before the prediction time")
    if model.calibration is None:
        return {"available": False}
    features = {k: v.to(model.device) for k, v in left_pad([history_features(before, model.catalogue, model.max_len)]).items()}
    features.update({name: torch.tensor([count], device=model.device) for name, count in profile_counts(before, at).items()})
    vector, logits = model.encoder.predict_user(features)
    out: dict[str, Any] = {"available": True, "vector": vector.float().cpu().numpy()[0], "checkpoint": model.key,
                           "used": min(len(before), model.max_len)}
    probabilities = calibrated_probabilities(logits.float().cpu().numpy().astype(np.float64), model.calibration)
    for name, horizon in (("purchase", "purchase_horizon_days"), ("churn", "churn_horizon_days")):
        out[name] = {"probability": float(probabilities[name][0]), "horizon_days": float(model.calibration[horizon])}
    return out
