"""Self-describing checkpoint directories (docs/contracts.md §3).

    CKPT/model.pt        encoder state_dict (torch.load(..., weights_only=True))
    CKPT/model.json      {"encoder", "config" (EncoderConfig), "train_config", "checkpoint_version"}
    CKPT/vocab/          copy of the artifacts' vocab/ (items.parquet, categories.parquet)
    CKPT/search/         copy of the artifacts' search/ when they have one (data/search_index.py)
    CKPT/meta.json       {"epoch", "metrics", "artifacts_dir", "data_version", "forget_list_version",
                          "created_at", "run_name", ...}
    CKPT/optimizer.pt    optional: optimizer state for resuming (weights_only loadable)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqrec_ray.data.search_index import SEARCH_DIR
from seqrec_ray.models import EncoderConfig, SequenceEncoder, build_encoder

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class LoadedCheckpoint:
    model: SequenceEncoder  # eval mode
    vocab: Any  # seqrec_ray.data.artifacts.Vocab
    meta: dict
    model_config: EncoderConfig


def save_checkpoint(
    path: str | Path,
    encoder: torch.nn.Module,
    config: Any,
    artifacts_dir: str | Path,
    meta: dict,
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """Write a checkpoint directory; ``config`` is the training config (a dataclass).

    ``encoder`` may be wrapped (DDP ``.module``, a task's ``.encoder``): the bare encoder
    is what gets saved, so serving never needs the training code's wrappers.
    """
    path = Path(path)
    encoder = unwrap_encoder(encoder)
    artifacts_dir = Path(artifacts_dir)
    vocab_src = artifacts_dir / "vocab"
    if not vocab_src.is_dir():
        raise FileNotFoundError(f"artifacts dir {artifacts_dir} has no vocab/ to copy into the checkpoint")
    path.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, path / "model.pt")
    model_json = {
        "encoder": encoder.config.encoder,
        "config": dataclasses.asdict(encoder.config),
        "train_config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None,
        "checkpoint_version": CHECKPOINT_VERSION,
    }
    _write_json(path / "model.json", model_json)
    shutil.copytree(vocab_src, path / "vocab", dirs_exist_ok=True)
    if (artifacts_dir / SEARCH_DIR).is_dir():  # the product search index, served with this model
        shutil.rmtree(path / SEARCH_DIR, ignore_errors=True)
        # Hard links where the file system allows: every epoch's checkpoint would otherwise
        # copy the whole index, and tantivy never rewrites a segment file in place.
        shutil.copytree(artifacts_dir / SEARCH_DIR, path / SEARCH_DIR, copy_function=_link_or_copy)
    full_meta = {
        "epoch": None,
        "metrics": {},
        "artifacts_dir": str(artifacts_dir.resolve()),
        "data_version": _data_version(artifacts_dir),
        # The deletion list the artifacts were made after (docs/contracts.md §2): which
        # forgotten users this model has never seen.
        "forget_list_version": _forget_list_version(artifacts_dir),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_name": getattr(config, "run_name", None),
    }
    full_meta.update(meta)
    _write_json(path / "meta.json", full_meta)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), path / "optimizer.pt")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", queries: bool = True) -> LoadedCheckpoint:
    """Rebuild the encoder from the directory alone; returned in eval mode on ``device``.
    ``queries``: install the training log's queries (for scoring stored query hashes
    offline); serving tokenises the typed text and skips them."""
    from seqrec_ray.data.vocab import load_vocab

    from .queries import install_directory_queries

    path = Path(path)
    model_json = _read_json(path / "model.json")
    version = model_json.get("checkpoint_version")
    if version != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint_version {version!r} is not supported (expected {CHECKPOINT_VERSION})")
    model_config = EncoderConfig(**model_json["config"])
    model = build_encoder(model_config)
    state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    if queries:
        install_directory_queries(model, path)  # the training log's queries, from CKPT/search/
    model.to(device).eval()
    return LoadedCheckpoint(model, load_vocab(path), _read_json(path / "meta.json"), model_config)


def load_optimizer_state(path: str | Path) -> dict | None:
    """The optimizer state saved with a checkpoint, or None when it has none."""
    file = Path(path) / "optimizer.pt"
    return torch.load(file, map_location="cpu", weights_only=True) if file.exists() else None


def load_train_config(path: str | Path) -> dict | None:
    """The training config a checkpoint was written with, as a plain dict (for resuming)."""
    return _read_json(Path(path) / "model.json").get("train_config")


def unwrap_encoder(module: torch.nn.Module) -> SequenceEncoder:
    """The bare encoder inside DDP / loss-task wrappers."""
    while not isinstance(module, SequenceEncoder):
        if hasattr(module, "module"):
            module = module.module
        elif hasattr(module, "encoder"):
            module = module.encoder
        else:
            raise TypeError(f"{type(module).__name__} is not and does not wrap a SequenceEncoder")
    return module


def _data_version(artifacts_dir: Path) -> str | None:
    manifest = artifacts_dir / "manifest.json"
    return _read_json(manifest).get("data_version") if manifest.exists() else None


def _forget_list_version(artifacts_dir: Path) -> str | None:
    manifest = artifacts_dir / "manifest.json"
    return _read_json(manifest).get("forget_list_version") if manifest.exists() else None


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a checkpoint directory?")
    return json.loads(path.read_text())


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(src, dst)
