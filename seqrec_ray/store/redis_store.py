"""The networked profile and history store: Redis, for Serve replicas on many nodes.

Layout under a key prefix ``P`` (default ``seqrec``):

- ``P:profiles``: hash user_id -> profile JSON;
- ``P:history:<user_id>``: sorted set, score = timestamp, member = zero-padded global
  sequence number + ``|`` + event JSON. Members with equal scores sort by their bytes, so
  by sequence number: ties keep insertion order, as in SQLite;
- ``P:history_users`` (set), ``P:events`` (count of stored events), ``P:seq`` (counter);
- ``P:forgotten``: sorted set, member = user_id, score = when it was forgotten (seconds);
- the catalogue: ``P:item_seq`` (counter), ``P:items`` (hash item_id -> JSON
  ``{"item": row or null, "updated_at": seconds}``, deleted items included),
  ``P:item_log`` (sorted set, member = item_id, score = seq of its latest write) and
  ``P:items_live`` (set of the ids not deleted, for the count).

Appends run as one Lua script, so an append (with its trimming and counters) is atomic;
so does ``forget_user`` (delete the history and profile, record the deletion) and each
user's replacement in ``bulk_load``, which skips forgotten users; so does each catalogue
write (its seqs taken inside the script, so a reader that sees seq N sees every seq below)
and each ``item_updates`` read (the log and the rows from one instant). Forgotten data stays
in the server's append-only file until the next AOF rewrite (``BGREWRITEAOF``, or Redis's
automatic one): the operator's part of erasing it from disk.
Durability is the server's: an acknowledged append survives a server crash only with
``appendonly yes`` and ``appendfsync always``; ``stats().extra["durable"]`` says whether
the server runs that way, and a warning is logged when it does not.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from seqrec_ray.store.base import ItemUpdate, ProfileStore, StoredEvent, StoreStats

# The same validation and row layout as SQLite, so both backends accept the same input.
from seqrec_ray.store.sqlite_store import (
    _check_limit,
    _event_row,
    _item_ids,
    _item_rows,
    _profile_row,
    most_recent_per_user,
)

logger = logging.getLogger(__name__)

_FIELDS = ("user_id", "item_id", "event_type", "timestamp", "session_id", "category_id",
           "price", "query")

# KEYS: seq, users, events; ARGV: history key prefix, max_history (0 = keep all), then
# (user_id, timestamp, event JSON) triples.
_APPEND = """
local prefix, max = ARGV[1], tonumber(ARGV[2])
local n = (#ARGV - 2) / 3
local seq = redis.call('INCRBY', KEYS[1], n) - n
local touched, removed = {}, 0
for i = 0, n - 1 do
  local user, ts, body = ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i]
  seq = seq + 1
  redis.call('ZADD', prefix .. user, ts, string.format('%020d', seq) .. '|' .. body)
  redis.call('SADD', KEYS[2], user)
  touched[prefix .. user] = true
end
if max > 0 then
  for key, _ in pairs(touched) do
    removed = removed + redis.call('ZREMRANGEBYRANK', key, 0, -max - 1)
  end
end
redis.call('INCRBY', KEYS[3], n - removed)
return n
"""

# KEYS: seq, users, events, the user's history, forgotten, profiles; ARGV: user_id, profile
# JSON ('' = none), then (timestamp, JSON) pairs. A forgotten user is left alone: returns -1.
_REPLACE = """
if redis.call('ZSCORE', KEYS[5], ARGV[1]) then
  return -1
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
end
if #ARGV == 2 then
  return 0
end
local old = redis.call('ZCARD', KEYS[4])
redis.call('DEL', KEYS[4])
local n = (#ARGV - 2) / 2
local seq = redis.call('INCRBY', KEYS[1], n) - n
for i = 0, n - 1 do
  seq = seq + 1
  local member = string.format('%020d', seq) .. '|' .. ARGV[4 + 2 * i]
  redis.call('ZADD', KEYS[4], ARGV[3 + 2 * i], member)
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('INCRBY', KEYS[3], n - old)
return n
"""

# KEYS: users, events, the user's history, profiles, forgotten; ARGV: user_id, time.
_FORGET = """
local n = redis.call('ZCARD', KEYS[3])
redis.call('DEL', KEYS[3])
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DECRBY', KEYS[2], n)
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return n
"""


# KEYS: item seq, item log, items, live items; ARGV: (item_id, state JSON, '1' = live or
# '0' = deleted) triples.
_WRITE_ITEMS = """
local n = #ARGV / 3
local seq = redis.call('INCRBY', KEYS[1], n) - n
for i = 0, n - 1 do
  local id, state, live = ARGV[1 + 3 * i], ARGV[2 + 3 * i], ARGV[3 + 3 * i]
  seq = seq + 1
  redis.call('ZADD', KEYS[2], string.format('%d', seq), id)
  redis.call('HSET', KEYS[3], id, state)
  if live == '1' then
    redis.call('SADD', KEYS[4], id)
  else
    redis.call('SREM', KEYS[4], id)
  end
end
return n
"""

# KEYS: item log, items; ARGV: after_seq, limit (-1 = all). Returns (id, seq, state) triples.
_ITEM_UPDATES = """
local log = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'WITHSCORES',
                       'LIMIT', 0, ARGV[2])
local out = {}
for i = 1, #log, 2 do
  out[#out + 1] = log[i]
  out[#out + 1] = log[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], log[i])
end
return out
"""


@dataclass(frozen=True)
class RedisStoreConfig:
    url: str
    max_history: int | None = None
    prefix: str = "seqrec"
    socket_timeout_s: float = 10.0
    pipeline_size: int = 1000  # users per round trip in bulk loads

    def __post_init__(self) -> None:
        if not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must be redis://host:port/db, got {self.url!r}")
        if self.max_history is not None and self.max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {self.max_history}")
        if not self.prefix or ":" in self.prefix:
            raise ValueError(f"prefix must be non-empty without ':', got {self.prefix!r}")
        if not self.socket_timeout_s > 0 or self.pipeline_size < 1:
            raise ValueError(f"socket_timeout_s must be > 0 and pipeline_size >= 1, got "
                             f"{self.socket_timeout_s}, {self.pipeline_size}")


class RedisStore(ProfileStore):
    """ProfileStore on a Redis server; any number of processes may read and write."""

    def __init__(self, url: str, max_history: int | None = None, prefix: str = "seqrec",
                 socket_timeout_s: float = 10.0):
        self.config = RedisStoreConfig(url, max_history, prefix, socket_timeout_s)
        self._closed = False
        self._redis = redis.Redis.from_url(url, decode_responses=True,
                                           socket_timeout=socket_timeout_s)
        self._append = self._redis.register_script(_APPEND)
        self._replace = self._redis.register_script(_REPLACE)
        self._forget = self._redis.register_script(_FORGET)
        self._write_items_script = self._redis.register_script(_WRITE_ITEMS)
        self._item_updates = self._redis.register_script(_ITEM_UPDATES)
        p = prefix
        self._k_profiles, self._k_users = f"{p}:profiles", f"{p}:history_users"
        self._k_forgotten = f"{p}:forgotten"
        self._k_events, self._k_seq, self._k_history = f"{p}:events", f"{p}:seq", f"{p}:history:"
        self._k_item_seq, self._k_item_log = f"{p}:item_seq", f"{p}:item_log"
        self._k_items, self._k_items_live = f"{p}:items", f"{p}:items_live"
        self._durable = self._check_durability()

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        c = state["config"]
        self.__init__(c.url, c.max_history, c.prefix, c.socket_timeout_s)

    @property
    def _client(self) -> redis.Redis:
        # redis-py would silently reconnect after close(); a closed store must refuse.
        if self._closed:
            raise RuntimeError(f"store {self.config.url} is closed")
        return self._redis

    def _check_durability(self) -> bool | None:
        try:
            config = self._client.config_get("append*")
        except redis.ResponseError:  # managed servers may forbid CONFIG: unknown
            return None
        durable = config.get("appendonly") == "yes" and config.get("appendfsync") == "always"
        if not durable:
            logger.warning("redis at %s runs appendonly=%s appendfsync=%s: acknowledged "
                           "appends may be lost if the server crashes", self.config.url,
                           config.get("appendonly"), config.get("appendfsync"))
        return durable

    # -------------------------------------------------------------- profiles

    def put_profiles(self, profiles: Iterable[dict[str, Any]]) -> int:
        rows = [_profile_row(p) for p in profiles]
        chunk = self.config.pipeline_size * 10  # keeps each HSET command a few MB at most
        for start in range(0, len(rows), chunk):
            self._client.hset(self._k_profiles, mapping=dict(rows[start:start + chunk]))
        return len(rows)

    def get_profile(self, user_id: str) -> dict[str, Any] | None:
        raw = self._client.hget(self._k_profiles, str(user_id))
        return None if raw is None else json.loads(raw)

    # -------------------------------------------------------------- history

    def append_events(self, events: Sequence[StoredEvent]) -> int:
        args: list[Any] = [self._k_history, self.config.max_history or 0]
        for row in (_event_row(e) for e in events):
            args += [row[0], repr(row[3]), json.dumps(row)]
        if len(args) == 2:
            return 0
        return int(self._append(keys=[self._k_seq, self._k_users, self._k_events], args=args))

    def get_history(self, user_id: str, limit: int) -> list[StoredEvent]:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        members = self._client.zrevrange(self._k_history + str(user_id), 0, limit - 1)
        return [StoredEvent(*json.loads(m.split("|", 1)[1])) for m in reversed(members)]

    def bulk_load(self, profiles: Iterable[dict[str, Any]], events: Iterable[StoredEvent],
                  history_limit: int) -> tuple[int, int]:
        """Upsert profiles; replace each loaded user's history by their ``history_limit``
        most recent events; skip forgotten users (``forgotten_users``). Atomic per user,
        not across users (unlike SQLite)."""
        if history_limit < 1:
            raise ValueError(f"history_limit must be >= 1, got {history_limit}")
        rows = dict(_profile_row(p) for p in profiles)
        by_user = most_recent_per_user(events, history_limit)
        n_profiles, kept = 0, 0
        users = list(by_user) + [u for u in rows if u not in by_user]
        for start in range(0, len(users), self.config.pipeline_size):
            pipe = self._client.pipeline(transaction=False)
            for user in users[start:start + self.config.pipeline_size]:
                recent = by_user.get(user, [])
                args = [user, rows.get(user, "")]
                args += [x for r in recent for x in (repr(r[3]), json.dumps(r))]
                keys = [self._k_seq, self._k_users, self._k_events, self._k_history + user,
                        self._k_forgotten, self._k_profiles]
                self._replace(keys=keys, args=args, client=pipe)  # queued, sent below
            for user, loaded in zip(users[start:start + self.config.pipeline_size],
                                    pipe.execute()):
                if loaded >= 0:  # -1: a forgotten user, left out
                    n_profiles += user in rows
                    kept += loaded
        return n_profiles, kept

    # -------------------------------------------------------------- deletion

    def forget_user(self, user_id: str) -> int:
        user = str(user_id)
        keys = [self._k_users, self._k_events, self._k_history + user, self._k_profiles,
                self._k_forgotten]
        return int(self._forget(keys=keys, args=[user, repr(time.time())]))

    def forgotten_users(self) -> list[tuple[str, float]]:
        # Equal scores sort by member: the order is stable, oldest first.
        pairs = self._client.zrange(self._k_forgotten, 0, -1, withscores=True)
        return [(user, float(at)) for user, at in pairs]

    # -------------------------------------------------------------- catalogue

    def put_items(self, items: Sequence[dict[str, Any]]) -> int:
        now = time.time()
        # body is the row's JSON already (validated and encoded as SQLite does): wrap, not re-encode.
        return self._write_items([(item_id, f'{{"item": {body}, "updated_at": {now!r}}}', "1")
                                  for item_id, body in _item_rows(items)])

    def delete_items(self, item_ids: Sequence[str]) -> int:
        state = json.dumps({"item": None, "updated_at": time.time()})
        return self._write_items([(item_id, state, "0") for item_id in _item_ids(item_ids)])

    def _write_items(self, rows: list[tuple[str, str, str]]) -> int:
        if not rows:
            return 0
        args = [x for row in rows for x in row]
        keys = [self._k_item_seq, self._k_item_log, self._k_items, self._k_items_live]
        return int(self._write_items_script(keys=keys, args=args))

    def item_updates(self, after_seq: int = 0, limit: int | None = None) -> list[ItemUpdate]:
        _check_limit(limit)
        if limit == 0:
            return []
        flat = self._item_updates(keys=[self._k_item_log, self._k_items],
                                  args=[int(after_seq), -1 if limit is None else limit])
        updates = []
        for item_id, seq, raw in zip(flat[0::3], flat[1::3], flat[2::3]):
            state = json.loads(raw)
            updates.append(ItemUpdate(int(seq), item_id, state["item"], float(state["updated_at"])))
        return updates

    def latest_item_seq(self) -> int:
        return int(self._client.get(self._k_item_seq) or 0)

    # -------------------------------------------------------------- housekeeping

    def stats(self) -> StoreStats:
        pipe = self._client.pipeline(transaction=True)
        pipe.hlen(self._k_profiles).scard(self._k_users).get(self._k_events).scard(self._k_items_live)
        profiles, users, events, items = pipe.execute()
        return StoreStats(profiles, users, int(events or 0),
                          {"backend": "redis", "url": self.config.url, "durable": self._durable,
                           "items": items})

    def close(self) -> None:
        self._closed = True
        self._redis.close()
