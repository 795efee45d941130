"""The Serve application: ``build_app(args)``, referenced by serve_configs/*.yaml.

    import_path: seqrec_ray.serve.app:build_app
    args: {checkpoint: CKPT_DIR, store: sqlite:///path/store.db}

Serve validates ``args`` into ``AppArgs`` (the builder's annotated type) before calling it.
"""

# No `from __future__ import annotations` here: Serve reads build_app's parameter
# annotation at run time and needs the class itself, not its name as a string.

import dataclasses
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from ray.serve import Application
from ray.serve.schema import LoggingConfig

from .config import ServeConfig
from .encoder import UserEncoder
from .ingress import Ingress
from .profile_fetcher import ProfileFetcher
from .ranker import Ranker
from .retriever import Retriever


def _app_args_model() -> type[BaseModel]:
    """ServeConfig's fields as a pydantic model: a new ServeConfig field is a new app arg.
    ``checkpoint`` and ``store`` have no default, so they are required. A plain ``api_key``
    is refused: app args travel to every replica and show in Serve's status and logs."""
    hints = typing.get_type_hints(ServeConfig)
    fields = {}
    for f in dataclasses.fields(ServeConfig):
        if f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hints[f.name], Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
    return create_model(
        "AppArgs", __module__=__name__, __doc__="Application args: every field of ServeConfig.",
        # extra="forbid": a misspelt arg fails the deploy, loudly; hide_input_in_errors: a
        # refused api_key must not be echoed into Serve's logs by the error message.
        __config__=ConfigDict(extra="forbid", hide_input_in_errors=True),
        __validators__={"_no_plain_api_key": model_validator(mode="before")(_refuse_plain_api_key)},
        **fields,
    )


def _refuse_plain_api_key(cls: Any, values: Any) -> Any:
    if isinstance(values, dict) and "api_key" in values:
        raise ValueError(
            "api_key: a key in the app args would travel to every replica and show in Serve's status "
            "and logs; put it in a file and set api_key_file: PATH, or in the replicas' environment "
            "and set api_key_env: VARIABLE_NAME (default SEQREC_API_KEY)"
        )
    return values


AppArgs = _app_args_model()


def build_app(args: AppArgs) -> Application:
    """Ingress -> (ProfileFetcher, UserEncoder, Ranker, Retriever), all sharing one ServeConfig."""
    values = args.model_dump() if isinstance(args, BaseModel) else AppArgs.model_validate(args).model_dump()
    values["checkpoint"] = str(Path(values["checkpoint"]).expanduser().resolve())
    values["store"] = absolute_store_url(values["store"])
    if values["api_key_file"]:  # the replica reads it, perhaps from another working directory
        values["api_key_file"] = str(Path(values["api_key_file"]).expanduser().resolve())
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


def build_app_graph(config: ServeConfig, user_config: dict | None = None) -> Application:
    """The deployment graph. ``user_config`` ({"checkpoint": path}) goes to the encoder and
    ranker, as a config file's ``deployments[].user_config`` would: re-running the app with
    only that changed swaps the checkpoint inside the running replicas."""
    encoder, ranker, retriever, ingress = UserEncoder, Ranker, Retriever, Ingress
    if user_config is not None:
        encoder, ranker, retriever = (d.options(user_config=user_config) for d in (encoder, ranker, retriever))
    if config.log_user_ids:  # debugging: Serve's per-request access log of the ingress, back on
        ingress = ingress.options(logging_config=LoggingConfig(enable_access_log=True))
    return ingress.bind(ProfileFetcher.bind(config), encoder.bind(config), ranker.bind(config),
                        retriever.bind(config), config)
