"""The shopper simulator: env contract, reproducibility, behaviour, organic logs, the job."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from seqrec_ray import schema as S
from seqrec_ray.sim import ENV_ID
from seqrec_ray.sim.env import EnvConfig, ShopperEnv
from seqrec_ray.sim.organic import OrganicConfig, simulate_block
from seqrec_ray.sim.world import SimConfig, World

SMALL = SimConfig(seed=11, n_items=600, n_categories=20, user_block=256)


@pytest.fixture(scope="module")
def organic_logs() -> tuple[World, pa.Table]:
    """Two blocks (512 users) x 30 days of organic behaviour, generated in-process."""
    world = World(SMALL)
    ocfg = OrganicConfig(users=512, days=30)
    return world, pa.concat_tables([simulate_block(world, ocfg, b) for b in range(2)])


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(S.USER_ID, "ascending"), (S.TIMESTAMP, "ascending"), (S.EVENT_TYPE, "ascending")])


# ---------------------------------------------------------------- env contract


def test_check_env_passes_without_warnings():
    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV_ID, config=EnvConfig(sim=SMALL, n_users=30, slate_size=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium reports soft failures as warnings
        check_env(env.unwrapped)
    # The registered id builds this env with the config given: its spaces follow it.
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and env.action_space.shape == (5,)
    assert env.unwrapped.config.n_users == 30 and type(env.unwrapped) is ShopperEnv


def test_configs_name_the_bad_value():
    with pytest.raises(ValueError, match="n_items=10"):
        SimConfig(n_items=10)
    with pytest.raises(ValueError, match="'clicks'"):
        EnvConfig(reward="clicks")
    with pytest.raises(ValueError, match="slate_size=700"):
        EnvConfig(sim=SMALL, slate_size=700)
    with pytest.raises(ValueError, match="days"):
        OrganicConfig(users=5, days=0)
    env = ShopperEnv(EnvConfig(sim=SMALL, n_users=5, slate_size=3))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([1, 2, 3]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="3 item indices"):
        env.step(np.array([1, 2, 600]))
    with pytest.raises(ValueError, match="population"):
        env.reset(options={"user_id": "u5"})


def _play(env: ShopperEnv, user: int, slates) -> list[dict]:
    _, info = env.reset(options={"user": user})
    events = list(info["events"])
    for slate in slates:
        _, _, term, trunc, info = env.step(slate)
        events += info["events"]
        if term or trunc:
            break
    return events


def test_env_is_reproducible_with_common_random_numbers():
    cfg = EnvConfig(sim=SMALL, n_users=20, slate_size=6)
    slates = [np.arange(6) * 50 + i for i in range(20)]
    a, b = ShopperEnv(cfg), ShopperEnv(cfg)
    a.reset(seed=5)
    b.reset(seed=5)
    # Different visiting order: user 7's first session still draws the same random numbers.
    run_a = [_play(a, u, slates) for u in (7, 3)]
    run_b = [_play(b, u, slates) for u in (3, 7)]
    assert run_a[0] == run_b[1] and run_a[1] == run_b[0]
    assert len(run_a[0]) > 0
    c = ShopperEnv(cfg)
    c.reset(seed=6)
    assert _play(c, 7, slates) != run_a[0]
    # Events carry raw ids consistent with the catalogue and the schema's event types.
    for e in run_a[0]:
        assert e["user_id"] == "u7" and e["item_id"] in set(a.item_ids)
        assert e["event_type"] in S.EVENT_TYPES and e["session_id"].startswith("u7-")
    times = [e["timestamp"] for e in run_a[0]]
    assert times == sorted(times)


def test_preferred_slates_convert_more_than_random_ones():
    """Over many sessions, the user's top items by true utility beat a random slate clearly."""
    env = ShopperEnv(EnvConfig(sim=SMALL, n_users=200, slate_size=8, max_steps=10))
    rng = np.random.default_rng(0)
    results = {}
    for arm in ("preferred", "random"):
        env.reset(seed=123)  # same users, same random numbers per session in both arms
        steps = clicks = purchases = 0
        views_by_position = np.zeros(8)
        for user in range(200):
            env.reset(options={"user": user})
            done = False
            while not done:
                if arm == "preferred":
                    slate = np.argsort(-env.true_scores(), kind="stable")[:8]
                else:
                    slate = rng.choice(env.world.catalogue.n_items, 8, replace=False)
                _, _, term, trunc, info = env.step(slate)
                steps += 1
                clicks += info["clicked"] is not None
                purchases += info["purchases"]
                for e in info["events"]:
                    if e["event_type"] == "view":
                        views_by_position[list(slate).index(int(e["item_id"][1:]))] += 1
                done = term or trunc
        results[arm] = (steps, clicks, purchases, views_by_position)
    (s_p, c_p, b_p, v_p), (s_r, c_r, b_r, v_r) = results["preferred"], results["random"]
    ctr_p, ctr_r = c_p / s_p, c_r / s_r
    se = np.sqrt(ctr_p * (1 - ctr_p) / s_p + ctr_r * (1 - ctr_r) / s_r)
    assert ctr_p - ctr_r > 5 * se, (ctr_p, ctr_r, se)
    assert b_p / 200 > 3 * max(b_r / 200, 0.02), (b_p, b_r)
    # Position bias: the first slot is looked at far more often than the last.
    views = v_p + v_r
    assert views[0] > 2 * views[-1] and views[0] == views.max()


def test_warm_start_history_matches_the_organic_logs(organic_logs):
    world, table = organic_logs
    env = ShopperEnv(EnvConfig(sim=SMALL, n_users=512, warm_start_days=30), world=world)
    env.reset(seed=1, options={"user": 300})
    logged = table.filter(pc.equal(table[S.USER_ID], "u300")).to_pylist()
    assert len(logged) > 0
    history = env.history(300)
    assert history[: len(logged)] == logged
    assert env.true_scores().shape == (SMALL.n_items,)


# ---------------------------------------------------------------- organic logs


def test_organic_logs_same_seed_same_rows_other_seed_differs(organic_logs):
    world, table = organic_logs
    again = simulate_block(World(SMALL), OrganicConfig(users=512, days=30), 1)
    first_block_dropped = table.filter(pc.is_in(table[S.USER_ID], again[S.USER_ID].unique()))
    assert _sorted(again).equals(_sorted(first_block_dropped))
    other = simulate_block(World(SimConfig(**{**SMALL.to_dict(), "seed": 12})), OrganicConfig(users=512, days=30), 1)
    assert not _sorted(other).equals(_sorted(again))
    # A user's rows do not depend on how many users are simulated in total.
    fewer = simulate_block(World(SMALL), OrganicConfig(users=300, days=30), 1)
    assert _sorted(fewer).equals(_sorted(again.filter(pc.is_in(again[S.USER_ID], fewer[S.USER_ID].unique()))))


def test_organic_logs_follow_the_schema_with_a_sane_mix(organic_logs):
    world, table = organic_logs
    assert table.schema.equals(S.EVENT_SCHEMA)
    for name in S.REQUIRED_COLUMNS + (S.SESSION_ID, S.CATEGORY_ID, S.PRICE):
        assert table[name].null_count == 0, name
    counts = {c["values"]: c["counts"] for c in pc.value_counts(table[S.EVENT_TYPE]).to_pylist()}
    assert set(counts) == set(S.EVENT_TYPES)
    assert counts["view"] > counts["click"] > counts["cart"] > counts["purchase"] > 0
    assert counts["search"] > 0 and counts["fav"] > 0
    is_search = pc.equal(table[S.EVENT_TYPE], "search")
    assert pc.all(pc.equal(pc.is_valid(table[S.QUERY]), is_search)).as_py()
    names = set(world.catalogue.cat_names)
    assert set(pc.unique(pc.filter(table[S.QUERY], is_search)).to_pylist()) <= names
    assert pc.min(table[S.PRICE]).as_py() > 0
    ts = table[S.TIMESTAMP].to_numpy()
    assert ts.min() >= SMALL.start_time and ts.max() < SMALL.start_time + 31 * 86_400
    users = np.array([int(u[1:]) for u in table[S.USER_ID].to_pylist()])
    assert np.all(np.diff(users) >= 0) and np.all(np.diff(ts)[np.diff(users) == 0] > 0)  # sorted by user, time
    assert len(np.unique(users)) > 450  # nearly every one of 512 users is active in 30 days


def _columns(world: World, table: pa.Table) -> dict[str, np.ndarray]:
    return {
        "user": np.array([int(u[1:]) for u in table[S.USER_ID].to_pylist()]),
        "item": np.array([int(i[1:]) for i in table[S.ITEM_ID].to_pylist()]),
        "type": np.array([S.EVENT_TYPE_INDEX[t] for t in table[S.EVENT_TYPE].to_pylist()]),
        "session": np.array(table[S.SESSION_ID].to_pylist()),
        "time": table[S.TIMESTAMP].to_numpy(),
    }


def test_sequential_structure_complements_intent_and_repurchases(organic_logs):
    world, table = organic_logs
    cat = world.catalogue
    c = _columns(world, table)
    rng = np.random.default_rng(0)

    # After a purchase, the user's next 10 events hit the purchased item's complements
    # far more often than the complements of some other purchased item.
    buys = np.flatnonzero(c["type"] == S.EVENT_TYPE_INDEX["purchase"])
    shuffled = rng.permutation(c["item"][buys])

    def hit_rate(anchor_items):
        hits = 0
        for pos, anchor in zip(buys, anchor_items):
            nxt = slice(pos + 1, pos + 11)
            same_user = c["user"][nxt] == c["user"][pos]
            hits += np.isin(c["item"][nxt][same_user], cat.complements[anchor]).any()
        return hits / len(buys)

    real, chance = hit_rate(c["item"][buys]), hit_rate(shuffled)
    assert len(buys) > 500 and real > 4 * chance and real > 0.1, (real, chance)

    # Consecutive clicks within a session share a category far above the chance rate.
    clicks = np.flatnonzero(c["type"] == S.EVENT_TYPE_INDEX["click"])
    pair = c["session"][clicks[1:]] == c["session"][clicks[:-1]]
    ccat = cat.category[c["item"][clicks]]
    same = np.mean(ccat[1:][pair] == ccat[:-1][pair])
    share = np.bincount(ccat, minlength=len(cat.cat_names)) / len(ccat)
    assert same > 3 * np.sum(share**2) and same > 0.5, (same, np.sum(share**2))

    # Consumables get bought again by the same user; durables almost never.
    bought = np.stack([c["user"][buys], c["item"][buys]], axis=1)
    pairs, counts = np.unique(bought, axis=0, return_counts=True)
    consumable = cat.cycle_days[pairs[:, 1]] > 0
    repeat_consumable = np.mean(counts[consumable] > 1)
    repeat_durable = np.mean(counts[~consumable] > 1)
    assert consumable.sum() > 50 and repeat_consumable > 3 * repeat_durable + 0.02, (repeat_consumable, repeat_durable)


# ---------------------------------------------------------------- the product catalogue


def test_catalogue_has_one_row_per_item_with_the_logs_ids_and_prices(organic_logs):
    from seqrec_ray.data.catalogue import CATALOGUE_SCHEMA
    from seqrec_ray.sim.catalogue import catalogue_table

    world, table = organic_logs
    items = catalogue_table(world)
    assert items.schema.equals(CATALOGUE_SCHEMA) and items.num_rows == SMALL.n_items
    assert items[S.ITEM_ID].to_pylist() == world.catalogue.item_ids
    assert all(items[name].null_count == 0 for name in items.column_names)
    # Same seed, same rows; another seed, other content.
    assert catalogue_table(World(SMALL)).equals(items)
    assert not catalogue_table(World(SimConfig(**{**SMALL.to_dict(), "seed": 12})))["title"].equals(items["title"])
    # Every logged item is a row, with the category and price its events carry.
    logged = table.group_by(S.ITEM_ID).aggregate([(S.CATEGORY_ID, "min"), (S.CATEGORY_ID, "max"), (S.PRICE, "min")])
    rows = {r[S.ITEM_ID]: r for r in items.to_pylist()}
    for r in logged.to_pylist():
        row = rows[r[S.ITEM_ID]]
        assert row[S.CATEGORY_ID] == r[f"{S.CATEGORY_ID}_min"] == r[f"{S.CATEGORY_ID}_max"]
        assert row[S.PRICE] == r[f"{S.PRICE}_min"]
    assert all(str(row["title"]).startswith(row["brand"] + " ") for row in rows.values())


def _content_features(items: pa.Table, fields) -> np.ndarray:
    """(n, V) one-hot of the tokens the project's own tokeniser reads from each row."""
    from seqrec_ray.data.catalogue import row_tokens

    per_row = [row_tokens(r, fields) for r in items.to_pylist()]
    vocab = {t: j for j, t in enumerate(sorted({t for tokens in per_row for t in tokens}))}
    x = np.zeros((len(per_row), len(vocab)))
    for i, tokens in enumerate(per_row):
        x[i, [vocab[t] for t in tokens]] = 1.0
    return x


def test_catalogue_content_reveals_the_hidden_structure():
    """Brands stay within their category, and content read by the project's tokeniser
    predicts the taste of items held out of the fit far better than the category alone."""
    from seqrec_ray.data.catalogue import CONTENT_FIELDS
    from seqrec_ray.sim.catalogue import catalogue_table

    world = World(SimConfig(seed=5, n_items=3_000, n_categories=20))
    cat, items = world.catalogue, catalogue_table(world)
    # Two items of one brand share a category far more often than two random items.
    brand = np.unique(np.array(items["brand"].to_pylist()), return_inverse=True)[1]
    pairs = np.bincount(brand * len(cat.cat_names) + cat.category)
    same_brand = np.bincount(brand)
    rate = np.sum(pairs * (pairs - 1)) / np.sum(same_brand * (same_brand - 1))
    chance = np.sum((np.diff(cat.cat_start) / cat.n_items) ** 2)
    assert rate > 0.5 and rate > 5 * chance, (rate, chance)

    # Ridge regression of the true item embedding on content tokens, fitted on 80% of the
    # items; on the other 20%, how well do predicted tastes order users' preferences?
    held = np.random.default_rng(0).random(cat.n_items) < 0.2
    taste = world.users(np.arange(300)).taste.astype(np.float64)  # (U, d)
    emb = cat.emb.astype(np.float64)

    def predict(x: np.ndarray) -> np.ndarray:
        w = np.linalg.solve(x[~held].T @ x[~held] + np.eye(x.shape[1]), x[~held].T @ emb[~held])
        return x[held] @ w  # (held, d)

    def user_correlation(true: np.ndarray, pred: np.ndarray) -> float:
        """Mean over held-out items of the correlation, across users, of taste . embedding."""
        a, b = taste @ true.T, taste @ pred.T  # (U, held)
        a, b = a - a.mean(0), b - b.mean(0)
        return float(np.mean(np.sum(a * b, 0) / np.sqrt(np.sum(a * a, 0) * np.sum(b * b, 0))))

    content = _content_features(items, CONTENT_FIELDS)
    by_category = predict(_content_features(items, ("category",)))
    by_content = predict(content)
    shuffled = predict(content[np.random.default_rng(1).permutation(cat.n_items)])
    overall = {name: user_correlation(emb[held], p) for name, p in
               (("category", by_category), ("content", by_content), ("shuffled", shuffled))}
    # Within a category (the taste its mean leaves open), content alone tells users apart.
    within = user_correlation(emb[held] - by_category, by_content - by_category)
    print(f"same-category rate {rate:.3f} vs chance {chance:.3f}; user correlation "
          + ", ".join(f"{k} {v:.3f}" for k, v in overall.items()) + f"; within category {within:.3f}")
    assert overall["category"] > overall["shuffled"] + 0.4, overall
    assert overall["content"] > overall["category"] + 0.02, overall
    assert within > 0.3, within


# ---------------------------------------------------------------- the job on real Ray


def test_simulate_job_writes_shards_and_ground_truth(ray_local, tmp_path, capsys):
    import importlib.util

    from seqrec_ray.data.readers import read_events
    from seqrec_ray.sim.logs import load_world

    spec = importlib.util.spec_from_file_location("simulate_job", os.path.join(os.path.dirname(__file__), "..", "jobs", "simulate.py"))
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    args = ["--users", "1200", "--days", "5", "--seed", "4", "--items", "300", "--categories", "12"]
    out1, out2 = str(tmp_path / "a"), str(tmp_path / "b")
    assert job.main(args + ["--output", out1, "--shards", "1"]) == 0
    capsys.readouterr()
    assert job.main(args + ["--output", out2, "--shards", "3"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "[2/2] shard" in captured.err  # progress as shards finish
    parts1 = sorted(os.listdir(out1))
    parts2 = sorted(p for p in os.listdir(out2) if p.endswith(".parquet"))
    assert [p for p in parts1 if p.endswith(".parquet")] == ["part-00000.parquet"]
    assert parts2 == ["part-00000.parquet", "part-00001.parquet"]  # 2 blocks of 1024 users: at most 2 shards
    a, b = (pa.concat_tables([pq.read_table(os.path.join(d, p)) for p in sorted(os.listdir(d)) if p.endswith(".parquet")])
            for d in (out1, out2))
    assert a.num_rows > 10_000 and _sorted(a).equals(_sorted(b))  # same seed, other sharding: same rows
    # The project's own reader accepts every row (searches included) as valid.
    read = read_events(out2, "events")
    assert read.num_rows == b.num_rows and read[S.INVALID_REASON].null_count == read.num_rows

    world, meta = load_world(out2)
    assert meta["events"] == summary["events"] == b.num_rows and meta["users"] == 1200 and world.cfg.seed == 4
    users = pq.read_table(os.path.join(out2, "ground_truth", "users"))
    assert users.num_rows == 1200 and sorted(users["index"].to_pylist()) == list(range(1200))
    np.testing.assert_allclose(np.stack(users.sort_by("index")["taste"].to_numpy(zero_copy_only=False)),
                               world.users(np.arange(1200)).taste)
    items = pq.read_table(os.path.join(out2, "ground_truth", "items.parquet"))
    assert items.num_rows == 300 and set(pc.unique(b[S.ITEM_ID]).to_pylist()) <= set(items[S.ITEM_ID].to_pylist())
    assert pq.read_table(os.path.join(out2, "ground_truth", "categories.parquet")).num_rows == 12

    # User errors: a clear message and exit status 2, no traceback.
    assert job.main(args + ["--output", out1]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert job.main(["--users", "0", "--days", "5", "--output", str(tmp_path / "c")]) == 2
    assert "users must be >= 1" in capsys.readouterr().err


def test_simulate_job_writes_the_catalogue_beside_the_logs(ray_local, tmp_path, capsys):
    import importlib.util

    from seqrec_ray.data.catalogue import CATALOGUE_SCHEMA
    from seqrec_ray.data.readers import read_events

    spec = importlib.util.spec_from_file_location("simulate_job", os.path.join(os.path.dirname(__file__), "..", "jobs", "simulate.py"))
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    args = ["--users", "100", "--days", "3", "--seed", "2", "--items", "90", "--categories", "6"]
    logs = tmp_path / "run" / "logs"
    assert job.main(args + ["--output", str(logs)]) == 0
    summary = json.loads(capsys.readouterr().out)
    path = tmp_path / "run" / "logs.items.parquet"
    assert summary["items_output"] == str(path) and path.is_file()
    items = pq.read_table(path)
    assert items.schema.equals(CATALOGUE_SCHEMA) and items.num_rows == 90
    events = read_events(str(logs), "events")  # the catalogue is not read as events
    assert events[S.INVALID_REASON].null_count == events.num_rows
    assert set(pc.unique(events[S.ITEM_ID]).to_pylist()) <= set(items[S.ITEM_ID].to_pylist())
    # Another place on request; never inside the logs directory; no silent replacement.
    elsewhere = tmp_path / "catalogues" / "shop.parquet"
    assert job.main(args + ["--output", str(tmp_path / "b"), "--items-output", str(elsewhere)]) == 0
    capsys.readouterr()
    assert pq.read_table(elsewhere).equals(items)
    assert job.main(args + ["--output", str(tmp_path / "c"), "--items-output", str(tmp_path / "c" / "items.parquet")]) == 2
    assert "must not be in the logs directory" in capsys.readouterr().err
    assert job.main(args + ["--output", str(tmp_path / "d"), "--items-output", str(elsewhere)]) == 2
    assert "already exists" in capsys.readouterr().err
