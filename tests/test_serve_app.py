"""The Serve app end to end: a trained checkpoint, a real SQLite store, real HTTP on loopback.

One app is started for the whole module (about 30 s on 2 cores) with an API key read by
the replica from a key file, so every request below also proves the key is accepted; one
test sends none.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import shop_artifacts

from seqrec_ray.sim.demo_shop import DemoShop

APP_NAME = "seqrec-test"
API_KEY = "test-key-0123456789"
SHOP = DemoShop(users=60, categories=4, items_per_category=10, events_per_user=12)


def _train(artifacts, out, seed: int, epochs: int):
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    config = TrainConfig(model="lstm", dim=16, hidden=32, epochs=epochs, batch_size=16, lr=0.01, max_len=10,
                         patience=0, eval_batch_size=64, seed=seed, run_name=f"serve-test-{seed}", torch_threads=1,
                         max_item_tokens=8)
    return run_in_process(config, artifacts, out, progress=False)["best_checkpoint"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Artifacts and a loaded store from featurize, two trained checkpoints (no Ray needed)."""
    root = tmp_path_factory.mktemp("serve")
    events = SHOP.events()
    artifacts, store_url = shop_artifacts(root, SHOP, catalogue=True)  # the default: content from the catalogue
    return {
        "events": events,
        "artifacts": artifacts,
        "store": store_url,
        # 20 epochs: with the content-only loss a tiny model follows recent browsing from about epoch 12.
        "ckpt": _train(artifacts, root / "run0", seed=0, epochs=20),
        "ckpt2": _train(artifacts, root / "run1", seed=1, epochs=2),
    }


@pytest.fixture(scope="module")
def app(serve_local, world, tmp_path_factory):
    """The app on the session's local Serve; deleted afterwards."""
    from seqrec_ray.serve.app import build_app_graph
    from seqrec_ray.serve.config import ServeConfig

    key_file = tmp_path_factory.mktemp("secrets") / "api_key"
    key_file.write_text(API_KEY + "\n")
    config = ServeConfig(checkpoint=world["ckpt"], store=world["store"], api_key_file=str(key_file), max_k=50,
                         max_items=100, max_events=200, max_body_bytes=64 * 1024)
    graph = build_app_graph(config)
    url = serve_local.run(graph, APP_NAME)
    yield {"url": url, "config": config, "graph": graph}
    serve_local.delete(APP_NAME)


@pytest.fixture
def client(app):
    with httpx.Client(base_url=app["url"], headers={"X-API-Key": API_KEY}, timeout=60) as c:
        yield c


def _recommend(client, user, **kw):
    r = client.post("/recommend", json={"user_id": user, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def _history(world, user):
    return [e for e in world["events"] if e.user_id == user]


def test_recommendations_are_raw_ids_from_the_trained_vocab_with_reasons(client, world):
    body = _recommend(client, "user-5", k=5)
    assert body["cold_start"] is False and len(body["items"]) == 5
    catalogue = {e.item_id for e in world["events"]}
    seen = {e.item_id for e in _history(world, "user-5")}
    for item in body["items"]:
        assert item["item_id"] in catalogue  # raw ids, never an index, <pad> or <oov>
        assert item["reason"] and all(b["item_id"] in seen for b in item["because"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_purchased_items_never_come_back_unless_asked(client, world):
    everything = SHOP.categories * SHOP.items_per_category
    for user in ("user-0", "user-7", "user-13"):
        bought = {e.item_id for e in _history(world, user) if e.event_type == "purchase"}
        assert bought
        excluded = {i["item_id"] for i in _recommend(client, user, k=everything)["items"]}
        assert excluded and not excluded & bought
        assert len(excluded) == everything - len(bought)
        kept = {i["item_id"] for i in _recommend(client, user, k=everything, exclude_purchased=False)["items"]}
        assert bought <= kept


def test_category_filter_keeps_to_the_requested_categories(client):
    items = _recommend(client, "user-1", k=8, categories=["cat-2"])["items"]
    assert len(items) == 8 and all(i["item_id"].startswith("item-2-") for i in items)


def test_posted_events_change_the_next_recommendation(client, world):
    user = "user-1"
    current = _history(world, user)[-1].category_id
    target = next(c for c in range(SHOP.categories) if f"cat-{c}" != current)
    before = _recommend(client, user, k=5)
    # On the shop's clock, a minute apart as its users browse: a gap of months (time.time()
    # against the shop's 2023 log) is one the model never saw in training.
    now = _history(world, user)[-1].timestamp + 60
    events = [{"user_id": user, "item_id": f"item-{target}-{j}", "event_type": t, "timestamp": now + 60 * j}
              for j, t in enumerate(["view", "click", "view", "cart", "view", "click"])]
    r = client.post("/events", json=events)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 6, "users": 1}
    after = _recommend(client, user, k=5)
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]
    # The trained model follows the user into the newly browsed category.
    assert sum(i["item_id"].startswith(f"item-{target}-") for i in after["items"]) >= 3, after
    recent = client.get(f"/users/{user}/profile").json()["recent_events"]
    assert [e["item_id"] for e in recent[-6:]] == [e["item_id"] for e in events]


def test_unknown_user_gets_popular_items_flagged_as_cold_start(client, world):
    body = _recommend(client, "nobody-at-all", k=3)
    assert body["cold_start"] is True
    counts = {}
    for e in world["events"]:
        counts[e.item_id] = counts.get(e.item_id, 0) + 1
    # The most frequent items (ties in any order), scored by their count.
    assert [i["score"] for i in body["items"]] == sorted(counts.values(), reverse=True)[:3]
    assert all(counts[i["item_id"]] == i["score"] for i in body["items"])
    in_cat = _recommend(client, "nobody-at-all", k=4, categories=["cat-0"])
    assert in_cat["cold_start"] is True and all(i["item_id"].startswith("item-0-") for i in in_cat["items"])
    assert client.get("/users/nobody-at-all/profile").status_code == 404


def test_a_new_user_with_unknown_items_is_served_by_the_model(client):
    events = [{"user_id": "fresh-user", "item_id": "brand-new-item", "event_type": "view"},
              {"user_id": "fresh-user", "item_id": "item-2-4", "event_type": "cart", "category_id": "cat-2"},
              {"user_id": "fresh-user", "item_id": 123456, "event_type": "purchase"}]
    assert client.post("/events", json=events).status_code == 200
    body = _recommend(client, "fresh-user", k=5)
    assert body["cold_start"] is False and len(body["items"]) == 5
    assert all(i["item_id"] not in ("brand-new-item", "123456") for i in body["items"])
    profile = client.get("/users/fresh-user/profile").json()
    assert profile["profile"] is None and len(profile["recent_events"]) == 3


def test_concurrent_requests_batched_together_get_each_their_own_answer(app, client):
    """Concurrent /recommend requests travel the chain as batches: each answer must be the
    one that user gets alone (warm and cold users and different k mixed in one burst)."""
    import asyncio

    bodies = [{"user_id": f"user-{i}", "k": 3 + i % 4} for i in range(24)]
    bodies += [{"user_id": f"cold-{i}", "k": 2, "categories": ["cat-1"]} for i in range(4)]
    alone = [_recommend(client, b["user_id"], **{k: v for k, v in b.items() if k != "user_id"}) for b in bodies]

    async def burst():
        async with httpx.AsyncClient(base_url=app["url"], headers={"X-API-Key": API_KEY}, timeout=60) as ac:
            return await asyncio.gather(*(ac.post("/recommend", json=b) for b in bodies))

    together = asyncio.run(burst())
    assert all(r.status_code == 200 for r in together), [r.text for r in together if r.status_code != 200]
    for body, single, batched in zip(bodies, alone, (r.json() for r in together)):
        assert batched["user_id"] == body["user_id"] and batched["cold_start"] == single["cold_start"]
        assert [i["item_id"] for i in batched["items"]] == [i["item_id"] for i in single["items"]]
        assert len(batched["items"]) == body["k"]


def test_rank_returns_exactly_the_given_items(client):
    items = ["item-0-3", "not-in-catalogue", "item-1-2", "item-1-3", "also-unknown", "item-2-9"]
    body = client.post("/rank", json={"user_id": "user-1", "items": items, "query": "red shoes"}).json()
    ranked = [i["item_id"] for i in body["items"]]
    assert sorted(ranked) == sorted(items) and body["query"] == "red shoes" and body["cold_start"] is False
    assert ranked[-2:] == ["not-in-catalogue", "also-unknown"]  # unknown last, in given order
    assert [i["known"] for i in body["items"]] == [True] * 4 + [False] * 2
    scores = [i["score"] for i in body["items"][:4]]
    assert scores == sorted(scores, reverse=True)
    cold = client.post("/rank", json={"user_id": "nobody-at-all", "items": items}).json()
    assert cold["cold_start"] is True and sorted(i["item_id"] for i in cold["items"]) == sorted(items)
    assert all(i["relevance"] == 0.0 for i in body["items"])  # searched: "red shoes" matches none of them


def _search(client, user, query, **kw):
    r = client.post("/search", json={"user_id": user, "query": query, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_search_finds_the_products_the_query_names_ranked_with_the_history(client):
    _browse(client, "searcher-2", category=2, items=range(0, 4))
    body = _search(client, "searcher-2", "corvo lamp", k=20)  # category 2: "corvo lamp N"
    ids = [i["item_id"] for i in body["items"]]
    assert body["cold_start"] is False and body["matched"] == SHOP.items_per_category
    assert sorted(ids) == sorted(f"item-2-{j}" for j in range(SHOP.items_per_category))
    assert all(i["matched_terms"] == ["corvo", "lamp"] and i["reason"].startswith('matches "corvo", "lamp"')
               for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and any(i["because"] for i in body["items"])
    # Word order, typos and a half-typed last word find the same products.
    for query in ("lamp corvo", "corvo lmap", "crovo lam"):
        assert sorted(i["item_id"] for i in _search(client, "searcher-2", query, k=20)["items"]) == sorted(ids), query
    # The history never buries the product the shopper named: "lamp 7" is item-2-7 first.
    assert _search(client, "searcher-2", "lamp 7")["items"][0]["item_id"] == "item-2-7"
    assert _search(client, "searcher-2", "corvo lamp", categories=["cat-0"])["items"] == []
    # Another shopper of category 2, who browsed its other lamps, gets the same lamps in another order.
    _browse(client, "other-searcher-2", category=2, items=range(6, 10))
    other = [i["item_id"] for i in _search(client, "other-searcher-2", "corvo lamp", k=20)["items"]]
    assert sorted(other) == sorted(ids) and other != ids
    # And another query gives the same shopper other products.
    assert {i["item_id"] for i in _search(client, "searcher-2", "birch sneaker")["items"]} <= {
        f"item-1-{j}" for j in range(SHOP.items_per_category)}


def test_search_for_an_unknown_user_and_a_query_matching_nothing(client):
    cold = _search(client, "never-seen-searcher", "sneaker")  # category 1's product type
    assert cold["cold_start"] is True and cold["items"]
    assert all(i["item_id"].startswith("item-1-") and i["reason"] == 'matches "sneaker"' for i in cold["items"])
    empty = _search(client, "searcher-2", "zzzz qqqq")
    assert empty["matched"] == 0 and empty["items"] == []  # nothing matches: no fillers


def test_rank_with_a_query_puts_the_matching_items_first(client):
    items = ["item-0-1", "item-1-2", "item-2-4", "not-in-catalogue"]
    body = client.post("/rank", json={"user_id": "searcher-2", "items": items, "query": "lamp"}).json()
    first = body["items"][0]
    assert first["item_id"] == "item-2-4" and first["matched_terms"] == ["lamp"] and first["relevance"] > 0
    assert [i["relevance"] for i in body["items"][1:]] == [0.0, 0.0, 0.0]
    assert body["items"][-1]["item_id"] == "not-in-catalogue"


BAD_REQUESTS = [
    ("malformed json", "POST", "/recommend", b'{"user_id": "user-1", "k": ', 422, "malformed JSON"),
    ("wrong type", "POST", "/recommend", {"user_id": "user-1", "k": "ten"}, 422, "k"),
    ("string number", "POST", "/recommend", {"user_id": "user-1", "k": "5"}, 422, "k"),
    ("missing field", "POST", "/recommend", {"k": 5}, 422, "user_id"),
    ("k zero", "POST", "/recommend", {"user_id": "user-1", "k": 0}, 422, "k"),
    ("k over limit", "POST", "/recommend", {"user_id": "user-1", "k": 51}, 422, "less than or equal to 50"),
    ("misspelt field", "POST", "/recommend", {"user_id": "user-1", "exclude_purchase": False}, 422, "exclude_purchase"),
    ("body not an object", "POST", "/recommend", [1, 2], 422, "body"),
    ("too many items", "POST", "/rank", {"user_id": "u", "items": [f"i{j}" for j in range(101)]}, 422, "at most 100"),
    ("repeated items", "POST", "/rank", {"user_id": "u", "items": ["a", "b", "a"]}, 422, "distinct"),
    ("no items", "POST", "/rank", {"user_id": "u", "items": []}, 422, "items"),
    ("search without a query", "POST", "/search", {"user_id": "u"}, 422, "query"),
    ("empty query", "POST", "/search", {"user_id": "u", "query": ""}, 422, "query"),
    ("search k over limit", "POST", "/search", {"user_id": "u", "query": "lamp", "k": 51}, 422, "less than or equal to 50"),
    ("blank query", "POST", "/search", {"user_id": "u", "query": " \t "}, 422, "query"),
    ("control characters", "POST", "/search", {"user_id": "u", "query": "lamp\x00\x1b[2J"}, 422, "query"),
    ("huge query", "POST", "/search", {"user_id": "u", "query": "lamp " * 2000}, 422, "query"),
    ("unknown event type", "POST", "/events", [{"user_id": "u", "item_id": "i", "event_type": "like"}], 422, "event_type"),
    ("events not a list", "POST", "/events", {"user_id": "u", "item_id": "i", "event_type": "view"}, 422, "list"),
    ("no events", "POST", "/events", [], 422, "at least 1 item"),
    ("too many events", "POST", "/events", [{"user_id": "u", "item_id": "i", "event_type": "view"}] * 201, 422, "at most 200"),
    ("user id too long", "GET", "/users/" + "u" * 257 + "/profile", None, 422, "at most 256 characters"),
    ("nan timestamp", "POST", "/events", b'[{"user_id": "u", "item_id": "i", "event_type": "view", "timestamp": NaN}]', 422, "timestamp"),
    ("oversized body", "POST", "/events", b"[" + b" " * 70_000 + b"]", 413, "limit of 65536"),
    ("unknown route", "GET", "/nope", None, 404, "Not Found"),
    ("wrong method", "GET", "/recommend", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_naming_the_problem_and_the_service_keeps_serving(client, case):
    _, method, path, body, status, needle = case
    if isinstance(body, bytes):
        r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = client.request(method, path, json=body) if body is not None else client.request(method, path)
    assert r.status_code == status, r.text
    body = r.json()  # every 4xx: {"detail": one line, "errors": [{loc, msg, type}] for validation}
    assert set(body) == {"detail", "errors"} and needle in body["detail"], body
    assert bool(body["errors"]) == (status == 422)
    assert _recommend(client, "user-2", k=3)["items"]


def test_an_oversized_streamed_body_without_content_length_is_refused(client):
    def chunks():
        for _ in range(20):
            yield b" " * 8192  # 160 KiB in total, no Content-Length header (chunked)

    r = client.post("/events", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    assert _recommend(client, "user-2", k=3)["items"]


def test_requests_without_the_api_key_get_401(app):
    with httpx.Client(base_url=app["url"], timeout=30) as anonymous:
        assert anonymous.post("/recommend", json={"user_id": "user-1"}).status_code == 401
        assert anonymous.post("/events", json=[{"user_id": "u", "item_id": "i", "event_type": "view"}]).status_code == 401
        assert anonymous.get("/version", headers={"X-API-Key": "wrong-key-000"}).status_code == 401
        assert anonymous.delete("/users/user-3").status_code == 401
        assert anonymous.get("/version", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        assert anonymous.get("/healthz").json() == {"status": "ok"}  # probes need no key, and learn nothing else


def test_version_health_and_openapi(client, world):
    version = client.get("/version").json()
    manifest = json.loads((world["artifacts"] / "manifest.json").read_text())
    assert version["model"]["checkpoint"] == str(world["ckpt"]) and version["model"]["encoder"] == "lstm"
    assert version["data_version"] == manifest["data_version"]
    assert version["vocab"]["items"] == manifest["vocab_sizes"]["items"] and len(version["vocab"]["sha256"]) == 12
    assert version["store"]["users_with_profile"] >= SHOP.users and version["store"]["events"] > 0
    assert client.get("/healthz").json() == {"status": "ok"}
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/rank", "/events", "/users/{user_id}/profile", "/users/{user_id}", "/healthz",
            "/version", "/items", "/items/{item_id}", "/users/{user_id}/predictions"} <= set(paths)
    # This model has no propensity / churn heads (tests/test_outcomes.py serves one that has).
    known = world["events"][0].user_id
    missing = client.get(f"/users/{known}/predictions")
    assert missing.status_code == 404 and "no propensity / churn heads" in missing.json()["detail"]


def test_docs_and_schema_reveal_no_paths_versions_or_secrets(client, world):
    import fastapi
    import pydantic
    import ray
    import torch

    published = client.get("/openapi.json").text + client.get("/docs").text + client.get("/redoc").text
    secrets = [str(world["ckpt"]), str(world["artifacts"].parent), world["store"], API_KEY]
    versions = [ray.__version__, fastapi.__version__, pydantic.VERSION, torch.__version__.split("+")[0]]
    assert [s for s in secrets + versions if s in published] == []
    assert client.get("/openapi.json").json()["info"]["version"] == "1"  # the HTTP contract's, not a package's


def test_forgetting_a_user_removes_them_and_later_events_start_a_new_history(client):
    user = "user-40"
    before = client.get(f"/users/{user}/profile").json()
    assert before["profile"] is not None and before["recent_events"]
    r = client.delete(f"/users/{user}")
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": user, "forgotten": True, "events_removed": len(before["recent_events"])}
    assert client.get(f"/users/{user}/profile").status_code == 404
    assert _recommend(client, user, k=3)["cold_start"] is True
    assert client.post("/rank", json={"user_id": user, "items": ["item-0-1", "item-1-1"]}).json()["cold_start"] is True
    event = {"user_id": user, "item_id": "item-3-3", "event_type": "cart"}
    assert client.post("/events", json=[event]).status_code == 200
    after = client.get(f"/users/{user}/profile").json()
    assert after["profile"] is None and [e["item_id"] for e in after["recent_events"]] == ["item-3-3"]
    assert _recommend(client, user, k=3)["cold_start"] is False
    again = client.delete("/users/never-seen-anywhere")  # idempotent: an unknown user is forgotten too
    assert again.status_code == 200 and again.json()["events_removed"] == 0


def _session_log_files() -> list[Path]:
    import ray

    logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # no public API for it in Ray 2.60
    return [p for p in logs.rglob("*") if p.is_file()]


def _logs_containing(needle: str) -> list[str]:
    data = needle.encode()
    return [str(p) for p in _session_log_files() if data in p.read_bytes()]


def _log_count(needle: str) -> int:
    data = needle.encode()
    return sum(p.read_bytes().count(data) for p in _session_log_files())


def test_no_user_id_request_body_or_api_key_reaches_the_logs(client):
    """Serve's access log is off on the ingress and our own lines hash user ids: a distinctive
    id sent every way the API takes one appears in no file under the Ray session's logs."""
    canary = f"canary-{uuid.uuid4().hex}"
    item = f"item-{canary}"
    assert client.post("/events", json=[{"user_id": canary, "item_id": item, "event_type": "view",
                                         "query": f"query-{canary}"}]).status_code == 200
    assert client.get(f"/users/{canary}/profile").status_code == 200
    assert _recommend(client, canary, k=2)["items"] is not None
    assert client.post("/rank", json={"user_id": canary, "items": [item]}).status_code == 200
    assert client.post("/recommend", json={"user_id": canary, "k": "bad"}).status_code == 422
    audit_lines = _log_count("events removed")
    assert client.delete(f"/users/{canary}").status_code == 200
    assert client.get(f"/users/{canary}/profile").status_code == 404
    # This request's forget audit line (hashed id) shows the replica's log was flushed.
    deadline = time.time() + 30
    while _log_count("events removed") == audit_lines and time.time() < deadline:
        time.sleep(0.5)
    assert _log_count("events removed") > audit_lines, "the ProfileFetcher's audit line never reached the logs"
    assert _logs_containing(canary) == []
    assert _logs_containing(API_KEY) == []


def test_the_api_key_travels_in_no_deployment_arg_or_status(app):
    import cloudpickle
    from ray import serve

    assert API_KEY.encode() not in cloudpickle.dumps(app["graph"])  # what Serve stores for every replica
    assert API_KEY not in repr(app["config"]) and API_KEY not in str(serve.status())


NEW_ITEM = "item-2-new"  # a product listed after training, with the content of category 2


def _rank_of(client, user: str, item: str, k: int) -> int | None:
    items = [i["item_id"] for i in _recommend(client, user, k=k, exclude_purchased=False)["items"]]
    return items.index(item) if item in items else None


def _browse(client, user: str, category: int, items=range(3, 8)) -> None:
    now = SHOP.start_time + SHOP.users * 10_000  # the shop's clock, after its log
    events = [{"user_id": user, "item_id": f"item-{category}-{j}", "event_type": "view", "timestamp": now + 60 * n}
              for n, j in enumerate(items)]
    assert client.post("/events", json=events).status_code == 200


def test_a_posted_item_is_recommended_from_its_content_without_a_restart(client, world):
    everything = SHOP.categories * SHOP.items_per_category
    _browse(client, "shopper-of-2", category=2)
    _browse(client, "shopper-of-0", category=0)
    assert _rank_of(client, "shopper-of-2", NEW_ITEM, k=everything) is None  # not listed yet
    row = SHOP.item_row(2, NEW_ITEM)
    r = client.post("/items", json=[row])
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1}
    # The next request scores it from its content: near the top for a shopper of its category,
    # far lower for a shopper of another.
    body = _recommend(client, "shopper-of-2", k=everything + 1, exclude_purchased=False)
    ranked = [i["item_id"] for i in body["items"]]
    assert NEW_ITEM in ranked and len(ranked) == everything + 1
    new = body["items"][ranked.index(NEW_ITEM)]
    assert new["new_item"] is True and not any(i["new_item"] for i in body["items"] if i["item_id"] != NEW_ITEM)
    for_2, for_0 = ranked.index(NEW_ITEM), _rank_of(client, "shopper-of-0", NEW_ITEM, k=everything + 1)
    assert for_2 < SHOP.items_per_category + 5 and for_2 < for_0, (for_2, for_0, ranked)
    rank = client.post("/rank", json={"user_id": "shopper-of-2", "items": ["item-0-1", NEW_ITEM, "never-posted"]}).json()
    by_id = {i["item_id"]: i for i in rank["items"]}
    assert by_id[NEW_ITEM]["known"] is True and by_id[NEW_ITEM]["new_item"] is True
    assert by_id[NEW_ITEM]["score"] is not None and by_id[NEW_ITEM]["score"] > by_id["item-0-1"]["score"]
    assert by_id["never-posted"] == {"item_id": "never-posted", "score": None, "known": False, "new_item": False,
                                     "discontinued": False, "relevance": None, "matched_terms": []}
    assert client.get("/version").json()["live_items"] == 1
    # Searchable at once, by its own title word, on top of the category's other lamps.
    found = _search(client, "shopper-of-2", "corvo lamp new")["items"][0]
    assert found["item_id"] == NEW_ITEM and found["new_item"] is True and found["matched_terms"] == ["corvo", "lamp", "new"]


def test_a_history_holding_a_posted_item_is_encoded_from_its_content(client):
    """The encoder replica replays the catalogue too: a user who viewed only the new item is
    encoded from its content (a category-2 vector), not as an unknown item."""
    event = {"user_id": "saw-only-new", "item_id": NEW_ITEM, "event_type": "view", "timestamp": SHOP.start_time + 1e6}
    assert client.post("/events", json=[event]).status_code == 200
    top = [i["item_id"] for i in _recommend(client, "saw-only-new", k=5)["items"]]
    unknown = [i["item_id"] for i in _recommend(client, "saw-only-unknown", k=5)["items"]]  # cold start: popular
    assert sum(i.startswith("item-2-") for i in top) >= 3, top
    assert top != unknown


def test_posted_items_survive_a_replica_restart(client):
    from seqrec_ray.serve.local import replica_names, replica_pid

    (name,) = replica_names(APP_NAME, "Ranker")
    os.kill(replica_pid(name), signal.SIGKILL)  # a crash: the new replica replays the store's item log
    deadline = time.time() + 120
    while time.time() < deadline:
        r = client.post("/rank", json={"user_id": "shopper-of-2", "items": [NEW_ITEM]})
        if r.status_code == 200 and replica_names(APP_NAME, "Ranker"):
            break
        time.sleep(1)
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["new_item"] is True and r.json()["items"][0]["score"] is not None
    assert _rank_of(client, "shopper-of-2", NEW_ITEM, k=SHOP.items_per_category + 5) is not None


def test_a_deleted_item_is_never_recommended_and_posting_it_again_brings_it_back(client):
    everything = SHOP.categories * SHOP.items_per_category + 1
    for item in (NEW_ITEM, "item-2-5"):  # a live item and a trained one
        r = client.delete(f"/items/{item}")
        assert r.status_code == 200 and r.json() == {"item_id": item, "discontinued": True}
        assert _rank_of(client, "shopper-of-2", item, k=everything) is None
        ranked = client.post("/rank", json={"user_id": "shopper-of-2", "items": [item]}).json()["items"][0]
        assert ranked["discontinued"] is True and ranked["score"] is not None
    assert client.post("/items", json=[SHOP.item_row(2, "item-2-5")]).status_code == 200
    assert _rank_of(client, "shopper-of-2", "item-2-5", k=everything) is not None
    assert _rank_of(client, "shopper-of-2", NEW_ITEM, k=everything) is None  # still discontinued
    assert NEW_ITEM not in [i["item_id"] for i in _search(client, "shopper-of-2", "corvo lamp new", k=20)["items"]]


@pytest.mark.parametrize("row, field", [
    ({"title": "no id"}, "item_id"),
    ({"item_id": "x", "price": -1.0}, "price"),
    ({"item_id": "x", "price": "cheap"}, "price"),
    ({"item_id": "x", "attributes": "red"}, "attributes"),
    ({"item_id": "x", "colour": "red"}, "colour"),
    ({"item_id": "x" * 300}, "item_id"),
])
def test_a_bad_catalogue_row_gets_a_422_naming_the_field(client, row, field):
    r = client.post("/items", json=[row])
    assert r.status_code == 422, r.text
    body = r.json()
    assert field in body["detail"] and any(field in map(str, e["loc"]) for e in body["errors"])
    assert client.post("/items", json=[]).status_code == 422


def test_a_new_checkpoint_rolls_out_through_user_config_without_failed_requests(app, client, world):
    from ray import serve

    from seqrec_ray.serve.app import build_app_graph

    failures, models, done = [], [], threading.Event()

    def load():
        with httpx.Client(base_url=app["url"], headers={"X-API-Key": API_KEY}, timeout=60) as c:
            while not done.is_set():
                r = c.post("/recommend", json={"user_id": "user-9", "k": 5})
                if r.status_code == 200:
                    models.append(r.json()["model"])
                else:
                    failures.append(r.status_code)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        serve.run(build_app_graph(app["config"], user_config={"checkpoint": world["ckpt2"]}), name=APP_NAME, route_prefix="/")
        deadline = time.time() + 60
        while client.get("/version").json()["model"]["checkpoint"] != str(world["ckpt2"]) and time.time() < deadline:
            time.sleep(0.5)
    finally:
        done.set()
        thread.join()
    assert client.get("/version").json()["model"]["checkpoint"] == str(world["ckpt2"])
    assert failures == [] and models, "requests must keep succeeding during the roll-out"
    assert models[0].startswith("lstm:serve-test-0@")  # served by the old model until the swap
    assert _recommend(client, "user-9", k=5)["model"].startswith("lstm:serve-test-1@")
    # The new checkpoint replayed the live catalogue: the re-posted trained item is back and
    # the discontinued new one stays out (a deleted item the checkpoint lacks takes no row).
    ranked = client.post("/rank", json={"user_id": "shopper-of-2", "items": ["item-2-5", NEW_ITEM]}).json()["items"]
    assert {i["item_id"]: (i["known"], i["discontinued"]) for i in ranked} == {"item-2-5": (True, False),
                                                                               NEW_ITEM: (False, True)}
    assert client.get("/version").json()["live_items"] == 0
