"""The Serve application: ``build_app(args)``, referenced by serve_configs/*.yaml.

    import_path: seqrec_ray.serve.app:build_app
    args: {checkpoint: CKPT_DIR, store: sqlite:///path/store.db}

Serve validates ``args`` into ``AppArgs`` (the builder's annotated type) before calling it.
"""

# No `from __future__ import annotations` here: Serve reads build_app's parameter
# annotation at run time and needs the class itself, not its name as a string.

import os
from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict
from ray.serve import Application

from .config import ServeConfig
from .encoder import SequenceEncoder
from .ingress import API_KEY_ENV, Ingress
from .profile_fetcher import ProfileFetcher
from .ranker import Ranker


class AppArgs(BaseModel):
    """Application args; every field of ServeConfig, the two locations required."""

    model_config = ConfigDict(extra="forbid")  # a misspelt arg fails the deploy, loudly

    checkpoint: str
    store: str
    api_key: Optional[str] = None  # default: the SEQREC_API_KEY environment variable
    device: str = "auto"
    history_limit: int = 200
    max_k: int = 100
    max_items: int = 1000
    max_events: int = 1000
    max_categories: int = 100
    max_body_bytes: int = 1 << 20
    reasons_per_item: int = 2
    ingress_batch_size: int = 32
    ingress_batches_in_flight: int = 2
    encoder_batch_size: int = 32
    batch_wait_s: float = 0.0
    torch_threads: Optional[int] = None
    score_dtype: str = "float32"


def build_app(args: AppArgs) -> Application:
    """Ingress -> (ProfileFetcher, SequenceEncoder, Ranker), all sharing one ServeConfig."""
    values = args.model_dump() if isinstance(args, BaseModel) else AppArgs.model_validate(args).model_dump()
    if not values["api_key"]:
        values["api_key"] = os.environ.get(API_KEY_ENV) or None
    values["checkpoint"] = str(Path(values["checkpoint"]).expanduser().resolve())
    values["store"] = absolute_store_url(values["store"])
    if not Path(values["checkpoint"]).is_dir():
        raise FileNotFoundError(f"checkpoint directory {values['checkpoint']} does not exist (args.checkpoint)")
    return build_app_graph(ServeConfig(**values))


def absolute_store_url(url: str) -> str:
    """A relative SQLite location made absolute here, where the config was given: replicas
    may run with another working directory. Other URLs are returned as they are."""
    if "://" not in url:
        return str(Path(url).expanduser().resolve())
    if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
        path, sep, query = url[len("sqlite://"):].partition("?")
        return f"sqlite://{Path(path).expanduser().resolve()}{sep}{query}"
    return url


def build_app_graph(config: ServeConfig, user_config: Optional[dict] = None) -> Application:
    """The deployment graph. ``user_config`` ({"checkpoint": path}) goes to the encoder and
    ranker, as a config file's ``deployments[].user_config`` would: re-running the app with
    only that changed swaps the checkpoint inside the running replicas."""
    encoder, ranker = SequenceEncoder, Ranker
    if user_config is not None:
        encoder, ranker = encoder.options(user_config=user_config), ranker.options(user_config=user_config)
    return Ingress.bind(ProfileFetcher.bind(config), encoder.bind(config), ranker.bind(config), config)
