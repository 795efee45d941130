"""Profile and history stores: ``open_store(url)`` picks the backend from the URL."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from seqrec_ray.store.base import ProfileStore, StoredEvent, StoreStats

SCHEMES = ("sqlite", "redis")

__all__ = ["ProfileStore", "StoredEvent", "StoreStats", "open_store", "SCHEMES"]


def open_store(url: str) -> ProfileStore:
    """A store from a URL.

    - ``sqlite:///abs/path.db`` (three slashes then the absolute path), ``sqlite://rel.db``
      or a plain path -> SQLite; ``?max_history=N&busy_timeout_s=S`` set its options.
    - ``redis://host:port/db`` -> Redis; ``?max_history=N`` likewise.
    """
    url = str(url)
    if "://" not in url:
        return _sqlite(url, {})
    scheme, rest = url.split("://", 1)
    if scheme == "sqlite":
        path, _, query = rest.partition("?")
        if path.startswith("//"):  # sqlite:////abs/path.db, SQLAlchemy's absolute form
            path = path[1:]
        return _sqlite(path, dict(parse_qsl(query)))
    if scheme in ("redis", "rediss"):
        from seqrec_ray.store.redis_store import RedisStore  # redis-py only when asked for

        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        base_url = parts._replace(query="").geturl()
        return RedisStore(base_url, **_options(options, {"max_history": int}, url))
    raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}; "
                     f"known: {', '.join(SCHEMES)} (or a plain file path for SQLite)")


def _sqlite(path: str, options: dict[str, str]) -> ProfileStore:
    from seqrec_ray.store.sqlite_store import SQLiteStore

    if not path:
        raise ValueError("an SQLite store URL needs a file path, e.g. sqlite:///tmp/store.db")
    kinds = {"max_history": int, "busy_timeout_s": float}
    return SQLiteStore(path, **_options(options, kinds, path))


def _options(options: dict[str, str], kinds: dict[str, type], url: str) -> dict:
    unknown = sorted(set(options) - set(kinds))
    if unknown:
        raise ValueError(f"unknown store option(s) {unknown} in {url!r}; known: {sorted(kinds)}")
    try:
        return {name: kinds[name](value) for name, value in options.items()}
    except ValueError as err:
        raise ValueError(f"bad store option in {url!r}: {err}") from None
