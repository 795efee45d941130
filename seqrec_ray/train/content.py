"""What a model with item content needs from the artifacts, and growing an older checkpoint.

``load_item_content`` tokenises the artifacts' catalogue (and each item's category from
the log) for the vocabulary's rows and marks which items have a trained ID row;
``build_task`` installs it in the encoder. ``init_from_checkpoint`` copies an older
checkpoint of the same model into a task built for a grown vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seqrec_ray.schema import FIRST_ID_INDEX

from .config import TrainConfig

# Encoder settings an --init-from run may change: the vocabulary sizes grow, and the
# regularisation is a training choice, not part of the weights' shape or meaning.
FREE_TO_DIFFER = ("num_items", "num_categories", "dropout", "emb_dropout", "id_dropout")


MIN_BUCKETS, MAX_BUCKETS = 1 << 10, 1 << 20
BUCKETS_PER_TOKEN = 8


@dataclass(frozen=True)
class ItemContentInputs:
    fields: tuple[str, ...]
    buckets: int  # the hashed token table's rows
    item_tokens: np.ndarray  # (V, L) int32 hashed token ids, 0 = none
    has_id: np.ndarray  # (V,) bool: the item has train-split events, so a trained ID row


def token_config(encoder_config):
    """The catalogue tokeniser's settings for an EncoderConfig (one source of truth)."""
    from seqrec_ray.data.catalogue import TokenConfig

    return TokenConfig(fields=encoder_config.content_fields, buckets=encoder_config.content_buckets,
                       max_tokens=encoder_config.max_item_tokens)


def has_catalogue(data_dir: str | Path) -> bool:
    from seqrec_ray.data.artifacts import load_manifest

    return load_manifest(str(data_dir)).get("catalogue") is not None


def load_item_content(config: TrainConfig, data_dir: str | Path, train_counts: np.ndarray) -> ItemContentInputs | None:
    """The content inputs for ``config`` on ``data_dir``, or None when it uses no content."""
    from seqrec_ray.data.catalogue import TokenConfig, category_tokens, load_catalogue, vocab_item_tokens
    from seqrec_ray.data.vocab import load_vocab

    fields = config.content_fields(has_catalogue(data_dir))
    if not fields:
        return None
    vocab = load_vocab(str(data_dir))
    catalogue = load_catalogue(str(data_dir))
    raw_categories = [None if c < FIRST_ID_INDEX else vocab.category_raw_ids[c] for c in vocab.item_category]
    # A run that continues a checkpoint keeps its table (the tokens must hash alike).
    buckets = (config.content_buckets or (_model_config(Path(config.init_from)).get("content_buckets")
                                          if config.init_from else None)
               or auto_buckets(catalogue, raw_categories, fields))
    tokens_config = TokenConfig(fields=fields, buckets=buckets, max_tokens=config.max_item_tokens)
    tokens = vocab_item_tokens(catalogue, vocab.num_items, tokens_config)
    tokens = category_tokens(raw_categories, tokens, tokens_config)
    counts = np.asarray(train_counts)
    if len(counts) != vocab.num_items:
        raise ValueError(f"train_counts has {len(counts)} rows, the vocabulary {vocab.num_items}")
    return ItemContentInputs(fields, buckets, tokens, counts > 0)


def auto_buckets(catalogue, raw_categories, fields: tuple[str, ...]) -> int:
    """A token table ``BUCKETS_PER_TOKEN`` times the distinct tokens, as a power of two:
    few collisions now and room for the words of products listed later, without paying
    (in optimizer steps and memory) for a table far larger than the catalogue's words."""
    from seqrec_ray.data.catalogue import category_token, row_tokens

    distinct = {category_token(c) for c in raw_categories if c is not None} if "category" in fields else set()
    if catalogue is not None:
        for row in catalogue.to_pylist():
            distinct.update(row_tokens(row, fields))
    wanted = max(1, len(distinct)) * BUCKETS_PER_TOKEN
    return int(min(MAX_BUCKETS, max(MIN_BUCKETS, 1 << (wanted - 1).bit_length())))


def install_item_content(encoder: torch.nn.Module, content: ItemContentInputs) -> None:
    encoder.embed.content.set_items(torch.from_numpy(content.item_tokens), torch.from_numpy(content.has_id))


def init_from_checkpoint(encoder: torch.nn.Module, path: str | Path, item_raw_ids: tuple[str, ...]) -> dict:
    """Copy an older checkpoint's weights into ``encoder`` (built for the current data).

    The checkpoint must be of the same model (encoder, sizes, content switches) and its
    item vocabulary a prefix of ``item_raw_ids`` (old ids keep their indices, as
    ``featurize --base-vocab`` guarantees). Tables that grew keep the old rows and their
    fresh initialisation for the new ones; content buffers stay the current data's.
    Returns what was copied and grown, for the run's log.
    """
    from seqrec_ray.data.vocab import load_vocab

    path = Path(path)
    old_vocab = load_vocab(str(path))
    old_ids = old_vocab.item_raw_ids
    if tuple(item_raw_ids[: len(old_ids)]) != tuple(old_ids):
        raise ValueError(f"--init-from {path}: its {len(old_ids)} items are not the first items of this data's "
                         "vocabulary (featurize the new log with --base-vocab pointing at the old artifacts "
                         "or checkpoint, so that old items keep their indices)")
    old_config = _model_config(path)
    new_config = encoder.config
    differs = [k for k in old_config if k not in FREE_TO_DIFFER and k in new_config.__dict__
               and _normalised(old_config[k]) != _normalised(getattr(new_config, k))]
    if differs:
        what = ", ".join(f"{k}: {old_config[k]!r} there, {getattr(new_config, k)!r} here" for k in differs)
        raise ValueError(f"--init-from {path}: a different model ({what})")
    state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    own = encoder.state_dict()
    copied, grown = [], []
    with torch.no_grad():
        for name, old in state.items():
            if name not in own or name.startswith("embed.content.") and name != "embed.content.tokens.weight":
                continue  # buffers (item tokens, has_id) describe the current data
            new = own[name]
            if old.shape == new.shape:
                new.copy_(old)
                copied.append(name)
            elif old.dim() == new.dim() and old.shape[1:] == new.shape[1:] and old.shape[0] <= new.shape[0]:
                new[: old.shape[0]].copy_(old)
                grown.append(f"{name} {old.shape[0]} -> {new.shape[0]}")
            else:
                raise ValueError(f"--init-from {path}: {name} has shape {tuple(old.shape)} there, "
                                 f"{tuple(new.shape)} here")
    return {"init_from": str(path), "copied": len(copied), "grown": grown}


def _model_config(path: Path) -> dict:
    import json

    return json.loads((path / "model.json").read_text())["config"]


def _normalised(value):
    return tuple(value) if isinstance(value, list) else value
