"""Recommendation policies for simulated A/B tests, all behind one interface.

A policy sees what a deployed recommender would see: the user's id and raw-id event
history (``StoredEvent``, oldest first). It returns a slate of raw item ids and is told
afterwards what the shopper did (``observe``), which the HTTP policy forwards to
``POST /events`` so the service's real-time path is part of the experiment.

Policies never see the simulator's hidden state, except the oracle, which exists to show
how much better a policy could do.
"""

from __future__ import annotations

import abc
import http.client
import json
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from seqrec_ray.store.base import StoredEvent


class ServiceError(RuntimeError):
    """The recommendation service answered a call with an HTTP error."""


class Policy(abc.ABC):
    """``recommend`` a slate of ``k`` distinct raw item ids; ``observe`` the response."""

    name: str = "policy"

    @abc.abstractmethod
    def recommend(self, user_id: str, history: Sequence[StoredEvent], k: int, rng: np.random.Generator) -> list[str]:
        """``history`` is the user's events so far, oldest first; ``rng`` is the arm's stream."""

    def begin(self, user_id: str, history: Sequence[StoredEvent]) -> None:
        """A user's first session in this arm starts; ``history`` is their pre-experiment past."""

    def observe(self, user_id: str, events: Sequence[StoredEvent]) -> None:
        """What the shopper did since the last call (in-process policies keep no state)."""

    def latencies_ms(self) -> dict[str, list[float]]:
        """Per-endpoint call latencies (only remote policies have any)."""
        return {}

    def close(self) -> None:
        """Release connections or models."""


class RandomPolicy(Policy):
    """k distinct items uniformly from the catalogue."""

    name = "random"

    def __init__(self, item_ids: Sequence[str]) -> None:
        if len(item_ids) == 0:
            raise ValueError("RandomPolicy needs a non-empty catalogue")
        self.item_ids = list(item_ids)

    def recommend(self, user_id, history, k, rng):
        picks = rng.choice(len(self.item_ids), size=min(k, len(self.item_ids)), replace=False)
        return [self.item_ids[i] for i in picks]


class PopularityPolicy(Policy):
    """The k items with the most organic events, the same slate for everyone."""

    name = "popularity"

    def __init__(self, item_counts: dict[str, int]) -> None:
        if not item_counts:
            raise ValueError("PopularityPolicy needs item counts from the organic logs")
        # Ties broken by id so the ranking is deterministic.
        self.ranked = [item for item, _ in sorted(item_counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    def recommend(self, user_id, history, k, rng):
        return self.ranked[:k]


class RecentPolicy(Policy):
    """The user's own most recent distinct items, then popular items to fill the slate."""

    name = "recent"

    def __init__(self, item_counts: dict[str, int]) -> None:
        self.popular = PopularityPolicy(item_counts)

    def recommend(self, user_id, history, k, rng):
        slate: list[str] = []
        for event in reversed(history):
            if event.item_id and event.item_id not in slate:
                slate.append(event.item_id)
                if len(slate) == k:
                    return slate
        return _fill(slate, self.popular.ranked, k)


class CheckpointPolicy(Policy):
    """A trained encoder in-process, ranked through exactly the serving code path.

    The history is cut to the service's ``history_limit`` (what the profile fetcher would
    return), encoded by ``seqrec_ray.serve.model.encode_histories`` and ranked by
    ``seqrec_ray.serve.ranking.recommend_batch`` with the query ``recommend_query`` builds,
    as the HTTP arm's ingress and ranker do; only the HTTP hop and the store are missing.
    """

    def __init__(self, checkpoint_dir: str, name: str = "checkpoint", exclude_purchased: bool = False,
                 history_limit: int | None = None) -> None:
        from seqrec_ray.serve.config import ServeConfig
        from seqrec_ray.serve.model import load_serving_model
        from seqrec_ray.serve.ranking import RankerModel

        self.model = load_serving_model(str(checkpoint_dir), device="cpu")
        self.ranker = RankerModel.from_serving(self.model)
        self.name = name
        self.exclude_purchased = exclude_purchased
        self.history_limit = history_limit or ServeConfig.__dataclass_fields__["history_limit"].default

    def recommend(self, user_id, history, k, rng):
        from seqrec_ray.serve.model import encode_histories
        from seqrec_ray.serve.ranking import recommend_batch, recommend_query

        events = [e.as_dict() for e in history[-self.history_limit:]]
        vector = encode_histories(self.model, [events])[0] if events else None  # (D,); None = cold start
        used = min(len(events), self.model.max_len)
        query = recommend_query(k, events, self.exclude_purchased, vector=vector, used=used)
        (items,) = recommend_batch(self.ranker, [query], per_item=0)
        return [entry["item_id"] for entry in items]


class OraclePolicy(Policy):
    """Knows the simulator's true preferences: ``score_fn(user_id, history) -> {item: utility}``.

    The simulator side supplies ``score_fn`` (see ``ab.oracle_scores``), so this class
    stays independent of how the world model is parameterised.
    """

    name = "oracle"

    def __init__(self, score_fn: Callable[[str, Sequence[StoredEvent]], tuple[Sequence[str], np.ndarray]]) -> None:
        self.score_fn = score_fn

    def recommend(self, user_id, history, k, rng):
        item_ids, scores = self.score_fn(user_id, history)
        top = np.argsort(-np.asarray(scores), kind="stable")[:k]
        return [item_ids[i] for i in top]


class HttpPolicy(Policy):
    """A deployed model: ``POST /recommend`` for slates, ``POST /events`` for feedback.

    Keeps one persistent HTTP connection (like a real front end) and records each call's
    wall-clock latency as the simulated shopper saw it. With a ``user_prefix`` (the job
    makes a fresh one per run) the service sees new user ids, so events left in its store
    by an earlier run cannot leak into this one; their pre-experiment history is posted
    once, before their first slate, and timed apart from the shopper's calls.
    """

    def __init__(
        self,
        url: str,
        name: str = "http",
        exclude_purchased: bool = False,
        user_prefix: str = "",
        seed_events: int = 200,
        max_events_per_post: int = 500,
        api_key: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"url must look like http://HOST:PORT, got {url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.name = name
        self.exclude_purchased = exclude_purchased
        self.user_prefix = user_prefix
        self.seed_events = seed_events
        self.max_events_per_post = max_events_per_post
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s
        self.conn: http.client.HTTPConnection | None = None
        self.latency: dict[str, list[float]] = {"recommend": [], "events": [], "seed": []}
        self.seeded: set[str] = set()
        self.cold_start_responses = 0

    def recommend(self, user_id, history, k, rng):
        remote = self.user_prefix + user_id
        body = {"user_id": remote, "k": k, "exclude_purchased": self.exclude_purchased}
        reply = self._call("POST", "/recommend", body, "recommend")
        if reply.get("cold_start"):
            self.cold_start_responses += 1
        return [entry["item_id"] for entry in reply["items"]][:k]

    def observe(self, user_id, events):
        if events:
            remote = self.user_prefix + user_id
            self._call("POST", "/events", [_event_json(e, remote) for e in events], "events")

    def latencies_ms(self):
        return {name: list(values) for name, values in self.latency.items()}

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def begin(self, user_id, history):
        """Give the service the user's pre-experiment history, unless it already has one."""
        remote = self.user_prefix + user_id
        if remote in self.seeded or not history:
            return
        self.seeded.add(remote)
        if not self.user_prefix:  # bare ids: the store may hold this user already
            profile = self._call("GET", f"/users/{quote(remote, safe='')}/profile", None, "seed")
            if profile.get("recent_events"):
                return
        recent = [_event_json(e, remote) for e in history[-self.seed_events :]]
        for start in range(0, len(recent), self.max_events_per_post):
            self._call("POST", "/events", recent[start : start + self.max_events_per_post], "seed")

    def _call(self, method: str, path: str, body: Any, endpoint: str) -> dict:
        payload = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):  # one reconnect: the server may close an idle keep-alive
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            start = time.perf_counter()
            try:
                self.conn.request(method, self.prefix + path, payload, self.headers)
                response = self.conn.getresponse()
                data = response.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
                continue
            self.latency[endpoint].append((time.perf_counter() - start) * 1000.0)
            if response.status >= 400:
                raise ServiceError(f"{method} {path} -> HTTP {response.status}: {data[:300]!r}")
            return json.loads(data) if data else {}
        raise AssertionError("unreachable")


def _fill(slate: list[str], ranked: Sequence[str], k: int) -> list[str]:
    for item in ranked:
        if len(slate) >= k:
            break
        if item not in slate:
            slate.append(item)
    return slate


def _event_json(event: StoredEvent, user_id: str) -> dict:
    body = {key: value for key, value in event.as_dict().items() if value is not None}
    body["user_id"] = user_id
    return body
