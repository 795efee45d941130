"""Serving's pure parts, without Ray: vocab maps, features, top-k, re-ranking, reasons, schemas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from seqrec_ray.data.vocab import Vocab
from seqrec_ray.serve.config import ServeConfig
from seqrec_ray.serve.features import gap_buckets, history_features, left_pad
from seqrec_ray.serve.live_items import LiveCatalogue
from seqrec_ray.serve.ranking import (
    Filter,
    RankerModel,
    RecommendQuery,
    explain,
    rank_items,
    reason_text,
    recommend_batch,
    top_k,
)
from seqrec_ray.serve.schemas import EventIn, RankRequest, RecommendRequest


def tiny_vocab() -> Vocab:
    # index: 0 pad, 1 oov, 2 "a"(cat x), 3 "b"(cat x), 4 "c"(cat y), 5 "d"(cat y)
    return Vocab(
        item_raw_ids=["<pad>", "<oov>", "a", "b", "c", "d"],
        item_category=np.array([0, 1, 2, 2, 3, 3]),
        item_counts=np.array([0, 0, 5, 9, 1, 7]),
        category_raw_ids=["<pad>", "<oov>", "x", "y"],
    )


def tiny_model(embeddings: torch.Tensor) -> RankerModel:
    vocab = tiny_vocab()
    return RankerModel(
        key="k", label="test", embeddings=embeddings,
        item_category=torch.from_numpy(vocab.item_category), counts=torch.from_numpy(vocab.item_counts),
        catalogue=LiveCatalogue(vocab),
    )


def test_vocab_maps_raw_ids_and_never_maps_to_pad_or_oov_rows():
    vocab = tiny_vocab()
    assert vocab.item_indices(["a", "d", "zzz", "<pad>", "<oov>"]).tolist() == [2, 5, 1, 1, 1]
    assert vocab.category_index("y") == 3 and vocab.category_index("nope") == 1
    assert vocab.known_categories(["y", "nope", "x", "y"]) == [2, 3]
    with pytest.raises(ValueError, match="item_counts has 2 rows"):
        Vocab(["<pad>", "<oov>", "a"], np.zeros(3), np.zeros(2), ["<pad>", "<oov>"])


def test_gap_buckets_follow_the_featurize_rule():
    # 1 for the first event; else 2 + floor(log2(1 + gap)), capped at 31.
    ts = np.array([100.0, 100.0, 101.0, 104.0, 1104.0, 1104.0 + 1e12, 50.0])
    assert gap_buckets(ts).tolist() == [1, 2, 3, 4, 11, 31, 2]  # a backwards clock counts as gap 0
    assert gap_buckets(np.array([])).tolist() == []


def test_history_features_map_unknown_items_to_oov_and_keep_the_latest_events():
    vocab = tiny_vocab()
    history = [
        {"item_id": "a", "event_type": "view", "timestamp": 0.0},
        {"item_id": "never-seen", "event_type": "cart", "timestamp": 3.0},
        {"item_id": "c", "event_type": "purchase", "timestamp": 10.0, "category_id": "x"},
    ]
    f = history_features(history, vocab, max_len=2)
    assert f["items"].tolist() == [1, 4]
    assert f["event_types"].tolist() == [3, 5]
    # As in featurize: an event's own category wins; without one, the item's category.
    assert f["categories"].tolist() == [1, 2]
    own_unknown = history_features([{"item_id": "a", "event_type": "view", "timestamp": 0.0, "category_id": "zz"}], vocab, 5)
    assert own_unknown["categories"].tolist() == [1]
    assert f["gap_buckets"].tolist() == [4, 5]  # gaps 3 s and 7 s, computed before truncation


def test_left_pad_puts_the_latest_event_in_the_last_column():
    rows = [
        {k: np.array([7, 8, 9]) for k in ("items", "event_types", "categories", "gap_buckets")},
        {k: np.array([5]) for k in ("items", "event_types", "categories", "gap_buckets")},
    ]
    out = left_pad(rows)
    assert out["items"].tolist() == [[7, 8, 9], [0, 0, 5]]
    assert out["items"].dtype == torch.int64


def test_top_k_never_returns_pad_oov_excluded_or_off_category_items():
    scores = torch.tensor([[100.0, 99.0, 1.0, 2.0, 3.0, 4.0]] * 3)  # pad and oov score highest
    filters = [Filter(np.array([], dtype=np.int64)), Filter(np.array([5])), Filter(np.array([], dtype=np.int64), np.array([2]))]
    picks = top_k(scores, [3, 10, 10], filters, torch.tensor([0, 1, 2, 2, 3, 3]))
    assert picks[0][0].tolist() == [5, 4, 3]
    assert picks[1][0].tolist() == [4, 3, 2]  # k above what is left: fewer come back
    assert picks[2][0].tolist() == [3, 2]
    assert picks[0][1].tolist() == [4.0, 3.0, 2.0]


def test_recommend_batch_scores_excludes_and_falls_back_to_popularity():
    emb = torch.zeros(6, 2)
    emb[2:] = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    model = tiny_model(emb)
    warm = RecommendQuery(k=2, vector=np.array([1.0, 0.0], dtype=np.float32), exclude=("a",), history=(("a", "purchase"), ("b", "view")))
    cold = RecommendQuery(k=2, vector=None, categories=("y",))
    cold_unknown_category = RecommendQuery(k=2, vector=None, categories=("nope",))
    out = recommend_batch(model, [warm, cold, cold_unknown_category], per_item=1)
    assert [r["item_id"] for r in out[0]] == ["b", "d"]  # "a" scores best but was purchased
    assert out[0][0]["because"][0]["item_id"] == "a"  # b's reason is a (never b itself)
    assert out[0][0]["reason"] == "bought a"
    assert [r["item_id"] for r in out[1]] == ["d", "c"]  # by count, only category y
    assert all(r["reason"] == "popular item" for r in out[1])
    assert out[2] == []


def test_rank_items_returns_exactly_the_given_items_unknown_last():
    emb = torch.zeros(6, 2)
    emb[2:] = torch.tensor([[1.0, 0.0], [0.5, 0.0], [0.0, 1.0], [2.0, 0.0]])
    model = tiny_model(emb)
    items = ["x1", "a", "b", "x2", "d"]
    ranked = rank_items(model, np.array([1.0, 0.0], dtype=np.float32), items)
    assert [r["item_id"] for r in ranked] == ["d", "a", "b", "x1", "x2"]
    assert [r["known"] for r in ranked] == [True, True, True, False, False]
    assert ranked[-1]["score"] is None and math.isclose(ranked[0]["score"], 2.0)
    cold = rank_items(model, None, ["c", "a", "b", "zz"])  # cold start: by popularity
    assert [r["item_id"] for r in cold] == ["b", "a", "c", "zz"]


def test_explain_picks_the_most_similar_history_items_under_their_strongest_event():
    emb = torch.tensor([[0, 0], [0, 0], [1.0, 0.0], [0.6, 0.8], [0.7, 0.7], [-1.0, 0.0]])
    history_items = np.array([2, 2, 3, 1, 5])
    history_types = ["view", "cart", "view", "cart", "view"]
    out = explain(np.array([4, 2]), history_items, history_types, emb, per_item=2)
    # Item 4 is closest to 3, then to 2 (under its strongest event, cart); oov (1) and the
    # opposite item 5 never count, and item 2 is not its own reason.
    assert [(h, t) for h, t, _ in out[0]] == [(3, "view"), (2, "cart")]
    assert [(h, t) for h, t, _ in out[1]] == [(3, "view")] and math.isclose(out[1][0][2], 0.6, rel_tol=1e-5)
    assert reason_text([("A", "view", 0.9), ("B", "cart", 0.5)]) == "viewed A, carted B"


def test_deployment_limits_are_schema_rules_with_json_schema_semantics():
    from seqrec_ray.serve.schemas import limited_models

    models = limited_models(max_k=5, max_items=3, max_categories=2)
    assert models.recommend(user_id="u", k=5.0).k == 5  # JSON Schema's integer: 5.0 is one
    assert models.recommend(user_id=7.0).user_id == "7"
    for bad in ({"k": 6}, {"k": True}, {"k": 2.5}, {"categories": ["a", "b", "c"]}):
        with pytest.raises(ValidationError):
            models.recommend(user_id="u", **bad)
    with pytest.raises(ValidationError, match="at most 3 items"):
        models.rank(user_id="u", items=["a", "b", "c", "d"])
    with pytest.raises(ValidationError, match="items must be distinct; repeated: \\['a'\\]"):
        models.rank(user_id="u", items=["a", "b", "a"])
    assert models.rank(user_id="u", items=["5", 5]).items == ["5", "5"]  # distinct JSON values, as uniqueItems
    schema = models.recommend.model_json_schema()["properties"]
    assert schema["k"]["maximum"] == 5 and schema["categories"]["anyOf"][0]["maxItems"] == 2
    assert models.rank.model_json_schema()["properties"]["items"]["uniqueItems"] is True
    for bad in (True, "1", "1e3"):
        with pytest.raises(ValidationError, match="price"):
            EventIn(user_id="u", item_id="i", event_type="view", price=bad)


def test_request_schemas_reject_wrong_types_unknown_fields_and_event_types():
    assert RecommendRequest(user_id=42).user_id == "42"  # int ids are kept as strings
    for bad in ({"user_id": "u", "k": "5"}, {"user_id": "u", "k": 0}, {"user_id": True},
                {"user_id": "u", "exclude_purchase": False}, {"user_id": "u", "categories": []}):
        with pytest.raises(ValidationError):
            RecommendRequest(**bad)
    with pytest.raises(ValidationError, match="event_type"):
        EventIn(user_id="u", item_id="i", event_type="like")
    with pytest.raises(ValidationError, match="timestamp"):
        EventIn(user_id="u", item_id="i", event_type="view", timestamp=float("nan"))
    with pytest.raises(ValidationError, match="items"):
        RankRequest(user_id="u", items=[])


def test_serve_config_names_the_bad_value():
    with pytest.raises(ValueError, match="max_k must be a positive int, got 0"):
        ServeConfig(checkpoint="c", store="s", max_k=0)
    with pytest.raises(ValueError, match="device must be one of"):
        ServeConfig(checkpoint="c", store="s", device="tpu")
    with pytest.raises(ValueError, match="api_key_env must be an environment variable name, or None; got 'not a name'"):
        ServeConfig(checkpoint="c", store="s", api_key_env="not a name")
    with pytest.raises(ValueError, match="api_key_file must be a path"):
        ServeConfig(checkpoint="c", store="s", api_key_file=" ")


def test_the_api_key_is_read_in_the_replica_from_a_file_or_the_environment(tmp_path, monkeypatch):
    from seqrec_ray.serve.privacy import read_api_key

    monkeypatch.delenv("SEQREC_API_KEY", raising=False)
    assert read_api_key(ServeConfig(checkpoint="c", store="s")) is None  # neither: an open endpoint
    monkeypatch.setenv("SEQREC_API_KEY", " from-the-env-0123\n")
    assert read_api_key(ServeConfig(checkpoint="c", store="s")) == "from-the-env-0123"
    assert read_api_key(ServeConfig(checkpoint="c", store="s", api_key_env=None)) is None
    key_file = tmp_path / "key"
    key_file.write_text("from-the-file-0123\n")
    assert read_api_key(ServeConfig(checkpoint="c", store="s", api_key_file=str(key_file))) == "from-the-file-0123"
    with pytest.raises(ValueError, match=f"api_key_file {tmp_path / 'missing'}: cannot read"):
        read_api_key(ServeConfig(checkpoint="c", store="s", api_key_file=str(tmp_path / "missing")))
    key_file.write_text("short")
    with pytest.raises(ValueError, match="shorter than 8 characters"):
        read_api_key(ServeConfig(checkpoint="c", store="s", api_key_file=str(key_file)))
    # The key is never a config value: ServeConfig has no field for it, the app args refuse one.
    assert "from-the" not in repr(ServeConfig(checkpoint="c", store="s", api_key_file=str(key_file)))


def test_app_args_refuse_a_plain_api_key_without_echoing_it():
    from seqrec_ray.serve.app import AppArgs

    assert {"api_key_file", "api_key_env", "log_user_ids"} <= set(AppArgs.model_fields)
    with pytest.raises(ValidationError, match="api_key_file: PATH.*api_key_env: VARIABLE_NAME") as err:
        AppArgs.model_validate({"checkpoint": "c", "store": "s", "api_key": "secret-value-0123"})
    assert "secret-value" not in str(err.value)


def test_user_ids_reach_logs_hashed_unless_asked():
    from seqrec_ray.serve.privacy import user_ref

    hashed = user_ref("alice@example.com")
    assert hashed.startswith("user#") and "alice" not in hashed
    assert user_ref("alice@example.com") == hashed != user_ref("bob@example.com")  # correlates within a process
    assert user_ref("alice@example.com", log_user_ids=True) == "'alice@example.com'"


def test_row_top_k_is_exact_on_large_rows_with_ties_and_masks():
    from seqrec_ray.models.scoring import top_k

    gen = torch.Generator().manual_seed(0)
    row = torch.randint(0, 1000, (300_001,), generator=gen).float()  # many ties
    row[torch.randint(0, 300_001, (50_000,), generator=gen)] = float("-inf")
    for k in (1, 10, 100):
        values, indices = top_k(row, k, chunk=256)
        assert torch.equal(values, torch.topk(row, k).values)
        assert torch.equal(row[indices], values) and len(set(indices.tolist())) == k


def test_bfloat16_catalogue_pass_returns_the_float32_top_k_with_exact_scores():
    from seqrec_ray.serve.ranking import catalogue_top_k, fast_table

    gen = torch.Generator().manual_seed(1)
    n = 50_000
    vocab = Vocab([f"i{j}" for j in range(n)], np.ones(n, dtype=np.int64), np.ones(n, dtype=np.int64), ["<pad>", "<oov>"])
    emb = torch.randn(n, 32, generator=gen)
    exact = RankerModel("k", "t", emb, torch.ones(n, dtype=torch.int64), torch.ones(n, dtype=torch.int64),
                        LiveCatalogue(vocab))
    fast = RankerModel("k", "t", emb, exact.item_category, exact.counts, LiveCatalogue(vocab),
                       fast_table=fast_table(emb, "bfloat16"))
    users = torch.randn(4, 32, generator=gen)
    filters = [Filter(np.array([5, 6, 7]))] * 4
    for (i32, s32), (ibf, sbf) in zip(catalogue_top_k(exact, users, [20] * 4, filters), catalogue_top_k(fast, users, [20] * 4, filters)):
        assert i32.tolist() == ibf.tolist()
        assert np.allclose(s32, sbf, rtol=1e-5)
    with pytest.raises(ValueError, match="score_dtype"):
        fast_table(emb, "int4")


def test_every_error_body_is_one_model_whoever_answers():
    """The ASGI guards, the validation and HTTP-exception handlers and an unexpected failure
    all answer an ErrorResponse; a failure's message stays in the replica's log."""
    from fastapi import HTTPException
    from fastapi.testclient import TestClient

    from seqrec_ray.serve.api import build_http_app
    from seqrec_ray.serve.schemas import ErrorResponse, HealthResponse

    class Stub:
        async def profile(self, user_id):
            raise HTTPException(404, "unknown user")

        async def forget(self, user_id):
            raise RuntimeError(f"store down while forgetting {user_id}")

        async def health(self):
            return HealthResponse(status="ok")

    key = "stub-key-0123"
    app = build_http_app(Stub(), ServeConfig(checkpoint="c", store="s", max_body_bytes=100), api_key=key)
    client = TestClient(app, raise_server_exceptions=False, headers={"X-API-Key": key})
    answers = {
        401: client.get("/users/u/profile", headers={"X-API-Key": "wrong-key-0123"}),
        413: client.post("/events", content=b"[" + b" " * 200 + b"]", headers={"Content-Type": "application/json"}),
        422: client.post("/recommend", content=b'{"user_id": ', headers={"Content-Type": "application/json"}),
        404: client.get("/users/u/profile"),
        405: client.put("/users/u/profile"),
        500: client.delete("/users/someone-0123"),
    }
    for status, r in answers.items():
        assert r.status_code == status, (status, r.text)
        body = ErrorResponse.model_validate(r.json())
        assert body.detail and (body.errors if status == 422 else body.errors == [])
    assert answers[405].headers["allow"] == "GET"
    assert "someone" not in answers[500].text and answers[500].json()["detail"] == "internal error"
    assert answers[422].json()["errors"][0]["loc"][0] == "body" and "malformed JSON" in answers[422].json()["detail"]
    anonymous = TestClient(app)
    assert anonymous.get("/openapi.json").status_code == 401
    assert anonymous.get("/healthz").json() == {"status": "ok"}  # probes need no key, and learn nothing else


def _update(seq, item_id, item):
    from seqrec_ray.store.base import ItemUpdate

    return ItemUpdate(seq=seq, item_id=item_id, item=item, updated_at=0.0)


def test_the_live_catalogue_replays_adds_updates_and_deletions_in_order():
    from seqrec_ray.data.catalogue import TokenConfig

    catalogue = LiveCatalogue(tiny_vocab(), TokenConfig(fields=("category", "brand"), buckets=64, max_tokens=4))
    changes = catalogue.apply([_update(1, "new", {"item_id": "new", "category_id": "y", "brand": "z"}),
                               _update(2, "b", {"item_id": "b", "brand": "q"}), _update(3, "c", None),
                               _update(4, "gone", None)])
    assert changes.added == [6] and changes.replaced == [3] and catalogue.seq == 4
    assert catalogue.item_indices(["new", "a", "nope"]).tolist() == [6, 2, 1]
    assert catalogue.raw_id(6) == "new" and catalogue.is_new(6) and not catalogue.is_new(5)
    assert catalogue.item_category.tolist() == [0, 1, 2, 2, 3, 3, 3]  # the new item's "y"
    assert catalogue.blocked().tolist() == [False] * 4 + [True, False, False]  # "c" discontinued
    assert catalogue.is_discontinued("gone", 1) and not catalogue.is_discontinued("nope", 1)
    again = catalogue.apply([_update(5, "c", {"item_id": "c"}), _update(6, "new", {"item_id": "new", "brand": "w"})])
    assert again.added == [] and again.replaced == [4, 6] and catalogue.blocked() is None
    assert catalogue.num_items == 7 and catalogue.live_items == 1


def test_an_id_only_catalogue_can_discontinue_items_but_adds_none():
    catalogue = LiveCatalogue(tiny_vocab())
    changes = catalogue.apply([_update(1, "new", {"item_id": "new"}), _update(2, "a", None)])
    assert not changes.vectors_changed and catalogue.item_index("new") == 1 and catalogue.num_items == 6
    assert catalogue.blocked().tolist() == [False, False, True, False, False, False]


def test_the_ranker_scores_live_items_from_the_encoders_content_vectors():
    from seqrec_ray.data.catalogue import TokenConfig, item_tokens
    from seqrec_ray.models import EncoderConfig, build_encoder
    from seqrec_ray.serve.model import ServingModel

    vocab = tiny_vocab()
    tokens = TokenConfig(fields=("category",), buckets=64, max_tokens=2)
    encoder = build_encoder(EncoderConfig("gru", num_items=6, dim=8, hidden=8, content_fields=("category",),
                                          content_buckets=64, max_item_tokens=2)).eval()
    rows = [{}, {}] + [{"category_id": c} for c in ("x", "x", "y", "y")]
    encoder.embed.content.set_items(torch.from_numpy(item_tokens(rows, tokens)), torch.ones(6, dtype=torch.bool))
    serving = ServingModel("k", encoder, vocab, {"encoder": "gru"}, 10, "cpu", LiveCatalogue(vocab, tokens))
    ranker = RankerModel.from_serving(serving)
    ranker.apply(serving.catalogue.apply([_update(1, "n", {"item_id": "n", "category_id": "y"})]))
    assert ranker.embeddings.shape == (7, 8) and ranker.counts.tolist()[-1] == 0
    with torch.no_grad():
        expected = encoder.embed.items.weight[1] + encoder.embed.content(torch.tensor([6]))[0]
    assert torch.allclose(ranker.embeddings[6], expected)  # OOV row + content: no ID of its own
    ranked = rank_items(ranker, np.ones(8, dtype=np.float32), ["n", "a", "zzz"])
    assert {r["item_id"]: (r["known"], r["new_item"]) for r in ranked} == {
        "n": (True, True), "a": (True, False), "zzz": (False, False)}
    # The new-item boost lifts the item without training events, and only it, everywhere.
    user = np.ones(8, dtype=np.float32)
    assert RankerModel.from_serving(serving, new_item_boost=0.0).boost is None
    assert ranker.new_item_boost == 1.0 and ranker.boost.tolist() == [0.0] * 6 + [1.0]
    with torch.no_grad():
        raw = (ranker.embeddings @ torch.from_numpy(user)).tolist()
    by_id = {r["item_id"]: r["score"] for r in ranked}
    assert by_id["n"] == pytest.approx(raw[6] + 1.0) and by_id["a"] == pytest.approx(raw[2])
    top = dict((i["item_id"], i["score"]) for i in recommend_batch(ranker, [RecommendQuery(k=5, vector=user)], 0)[0])
    assert top["n"] == pytest.approx(raw[6] + 1.0) and top["a"] == pytest.approx(raw[2])


def test_replicas_replaying_the_log_in_different_batches_answer_alike():
    """Two rankers of one checkpoint: one applied the item log as it grew, the other
    replayed it in one go after a restart. Live indices may differ; answers may not."""
    from seqrec_ray.data.catalogue import TokenConfig
    from seqrec_ray.models import EncoderConfig, build_encoder
    from seqrec_ray.serve.model import ServingModel

    vocab = tiny_vocab()
    tokens = TokenConfig(fields=("brand",), buckets=64, max_tokens=2)
    torch.manual_seed(3)
    state = build_encoder(EncoderConfig("gru", num_items=6, dim=8, hidden=8, content_fields=("brand",),
                                        content_buckets=64, max_item_tokens=2)).eval().state_dict()

    def replica() -> RankerModel:
        encoder = build_encoder(EncoderConfig("gru", num_items=6, dim=8, hidden=8, content_fields=("brand",),
                                              content_buckets=64, max_item_tokens=2)).eval()
        encoder.load_state_dict(state)
        return RankerModel.from_serving(ServingModel("k", encoder, vocab, {"encoder": "gru"}, 10, "cpu",
                                                     LiveCatalogue(vocab, tokens)))

    log = [_update(1, "n1", {"item_id": "n1", "brand": "p"}), _update(2, "n2", {"item_id": "n2", "brand": "q"}),
           _update(3, "a", None), _update(4, "n1", {"item_id": "n1", "brand": "r"}), _update(5, "n3", {"item_id": "n3"})]
    live, restarted = replica(), replica()
    for part in (log[:2], log[2:4], log[4:]):
        live.apply(live.catalogue.apply(part))
    latest = sorted({u.item_id: u for u in log}.values(), key=lambda u: u.seq)  # what item_updates(0) returns
    restarted.apply(restarted.catalogue.apply(latest))
    user = np.linspace(-1, 1, 8).astype(np.float32)
    query = RecommendQuery(k=7, vector=user)
    assert recommend_batch(live, [query], 0) == recommend_batch(restarted, [query], 0)
    items = ["n3", "a", "n1", "b", "n2"]
    assert rank_items(live, user, items) == rank_items(restarted, user, items)


def test_a_query_aware_model_ranks_and_searches_with_the_query():
    from seqrec_ray.models import EncoderConfig, build_encoder
    from seqrec_ray.models.query import token_matrix
    from seqrec_ray.serve.model import ServingModel
    from seqrec_ray.serve.ranking import SearchQuery, search_items

    vocab = tiny_vocab()
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig("gru", num_items=6, dim=8, hidden=8, query_buckets=256,
                                          max_query_tokens=8)).eval()
    ranker = RankerModel.from_serving(ServingModel("k", encoder, vocab, {"encoder": "gru"}, 10, "cpu",
                                                   LiveCatalogue(vocab)))
    user = np.linspace(-1, 1, 8).astype(np.float32)
    tokens = token_matrix(["red boots"], 256, 8)
    with torch.no_grad():
        expected = ranker.embeddings @ encoder.with_query(torch.from_numpy(user)[None], tokens)[0]
        cold = ranker.embeddings @ encoder.with_query(torch.zeros(1, 8), tokens)[0]
    items = ["a", "b", "c", "d"]
    by_id = {r["item_id"]: r["score"] for r in rank_items(ranker, user, items, text="red boots")}
    assert [by_id[i] for i in items] == pytest.approx(expected[2:].tolist(), rel=1e-5)
    plain = {r["item_id"]: r["score"] for r in rank_items(ranker, user, items)}
    assert [plain[i] for i in items] != pytest.approx(expected[2:].tolist(), rel=1e-5)  # no query: the plain vector
    # A shopper without history is scored from the query (the zero state), not by popularity.
    assert [r["score"] for r in rank_items(ranker, None, ["a"], text="red boots")] == pytest.approx([float(cold[2])])
    # /search: the matches' personal part is the query-aware score (equal relevance: its order).
    matches = tuple({"item_id": i, "relevance": 1.0, "matched_terms": ("red",)} for i in items)
    found = search_items(ranker, SearchQuery(RecommendQuery(k=4, vector=user), matches, text="red boots"), 3.0, 1)
    assert [r["item_id"] for r in found] == [items[j] for j in np.argsort(-expected[2:].numpy(), kind="stable")]
