"""Secrets and personal data: where the API key is read, and how user ids reach logs.

The key is read in the replica that checks it, never carried in a ``ServeConfig`` (every
deployment gets the config as an init argument, which Serve keeps and shows in its
status and logs). User ids are personal data: our log lines show them as a keyed hash
unless ``ServeConfig.log_user_ids`` asks for raw ids while debugging.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
from pathlib import Path

from .config import MIN_API_KEY_LENGTH, ServeConfig


def read_api_key(config: ServeConfig) -> str | None:
    """The API key: ``api_key_file`` if given (it must be readable), else ``$api_key_env``
    if set and non-empty, else None (an open endpoint). Surrounding whitespace is dropped."""
    if config.api_key_file is not None:
        path = Path(config.api_key_file).expanduser()
        try:
            key, source = path.read_text().strip(), f"api_key_file {path}"
        except OSError as e:
            raise ValueError(f"api_key_file {path}: cannot read the API key ({e.strerror})") from None
    elif config.api_key_env is not None and os.environ.get(config.api_key_env, "").strip():
        key, source = os.environ[config.api_key_env].strip(), f"${config.api_key_env}"
    else:
        return None
    if len(key) < MIN_API_KEY_LENGTH:
        raise ValueError(f"the API key from {source} is shorter than {MIN_API_KEY_LENGTH} characters")
    return key


@functools.cache
def _log_salt() -> bytes:
    # Per process: a hashed id correlates the lines of one replica's log, and cannot be
    # recomputed from a guessed id by anyone reading the logs.
    return secrets.token_bytes(16)


def user_ref(user_id: str, log_user_ids: bool = False) -> str:
    """How a user id appears in our log lines: a keyed hash unless ``log_user_ids``."""
    if log_user_ids:
        return repr(user_id)
    digest = hashlib.blake2b(user_id.encode("utf-8", "surrogatepass"), key=_log_salt(), digest_size=6)
    return "user#" + digest.hexdigest()
