"""Purchase propensity and churn at time cut-offs (train/outcomes.py): where examples are
cut, that no label reads a later period, calibration, and the heads trained end to end on
real featurize output, in-process and on Ray Train, then evaluated with the baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_targets import timeline

from seqrec_ray.schema import EVENT_TYPE_INDEX as T
from seqrec_ray.schema import SECONDS_PER_DAY as DAY
from seqrec_ray.train.outcomes import OutcomeCutoffs, outcome_cutoffs, outcome_tensors, with_outcome_batches

V, P = T["view"], T["purchase"]
TEMPORAL = {"split": {"protocol": "temporal", "cutoff": 10 * DAY, "valid_cutoff": 8 * DAY},
            "time_range": [0.0, 13 * DAY]}


def test_cutoffs_step_back_one_horizon_from_the_validation_cutoff():
    cuts = outcome_cutoffs(TEMPORAL, None, None, train_cutoffs=3)
    assert (cuts.valid, cuts.test) == (8 * DAY, 10 * DAY)
    assert cuts.purchase_horizon_days == cuts.churn_horizon_days == 2.0  # the validation period
    assert cuts.train == (2 * DAY, 4 * DAY, 6 * DAY)  # each label window ends by the next cut-off
    short = outcome_cutoffs(TEMPORAL, 1.0, 2.0, train_cutoffs=5)
    assert short.train == (2 * DAY, 4 * DAY, 6 * DAY)  # one step = the longer horizon; day 0 is no cut-off
    assert (short.purchase_horizon_days, short.churn_horizon_days) == (1.0, 2.0)


@pytest.mark.parametrize("manifest, horizons, message", [
    ({"split": {"protocol": "leave_one_out"}}, (None, None), "--split temporal"),
    ({"split": {"protocol": "temporal", "cutoff": 10 * DAY, "valid_cutoff": None}}, (None, None), "--valid-cutoff"),
    (TEMPORAL, (3.0, None), "purchase_horizon_days .* longer than the validation period"),
    ({**TEMPORAL, "time_range": [0.0, 11 * DAY]}, (None, None), "before the test labels' window closes"),
    ({**TEMPORAL, "time_range": [7 * DAY, 13 * DAY]}, (None, None), "no training cut-off"),
])
def test_a_split_the_heads_cannot_use_is_refused_naming_why(manifest, horizons, message):
    with pytest.raises(ValueError, match=message):
        outcome_cutoffs(manifest, *horizons, train_cutoffs=2)


def test_train_examples_read_nothing_at_or_after_the_validation_cutoff():
    cuts = OutcomeCutoffs(train=(4 * DAY, 6 * DAY), valid=8 * DAY, test=10 * DAY,
                          purchase_horizon_days=2.0, churn_horizon_days=2.0)
    seq = timeline([
        ("a", [(2, V, 1), (3, V, 5), (4, P, 8), (5, P, 10.5)]),  # buys only from the validation period on
        ("b", [(6, V, 3), (7, P, 4.5)]),  # buys once in the first train window, then leaves
    ])
    train = cuts.examples(seq, "train", max_len=4).to_pylist()
    assert [(e["user_id"], e["purchase"], e["churn"]) for e in train] == [
        ("a", 0, 0),  # cut at day 4: views on day 5, no purchase before day 6
        ("b", 1, 0),  # cut at day 4: the purchase on day 4.5
        ("a", 0, 1),  # cut at day 6: nothing in [6, 8): the day-8 purchase is validation's
        ("b", 0, 1),
    ]
    for example in train:
        assert example["seconds_since_last_event"] > 0  # the last input lies strictly before the cut-off
        assert all(i in (0, 2, 3, 6, 7) for i in example["items"])  # never items 4 or 5 (day 8 and later)
    valid = cuts.examples(seq, "valid", max_len=4).to_pylist()
    assert [(e["user_id"], e["purchase"], e["churn"]) for e in valid] == [("a", 1, 0), ("b", 0, 1)]
    test = cuts.examples(seq, "test", max_len=4).to_pylist()
    assert test[0]["items"] == [0, 2, 3, 4] and test[0]["purchase"] == 1  # day-8 buy is an input now
    assert (test[0]["events_before"], test[0]["purchases_before"]) == (3, 1)


def test_serving_computes_the_same_profile_counts_as_the_training_examples():
    from seqrec_ray.models.heads import PROFILE_FEATURES
    from seqrec_ray.schema import EVENT_TYPES
    from seqrec_ray.serve.features import profile_counts

    C = T["cart"]
    events = [(1, V, 0.5), (2, C, 1.25), (3, P, 2), (2, P, 3.5), (4, V, 6)]  # the day-6 view is after the cut
    example = OutcomeCutoffs(train=(), valid=3 * DAY, test=4 * DAY, purchase_horizon_days=1.0,
                             churn_horizon_days=1.0).examples(timeline([("a", events)]), "test", max_len=4).to_pylist()[0]
    history = [{"item_id": str(item), "event_type": EVENT_TYPES[kind - 1], "timestamp": day * DAY}
               for item, kind, day in events if day < 4]
    served = profile_counts(history, 4 * DAY)
    assert served == {name: example[name] for name in PROFILE_FEATURES}
    assert (served["events_before"], served["purchases_before"], served["carts_before"]) == (4, 2, 1)
    assert served["seconds_since_first_event"] == int(3.5 * DAY)


def test_every_window_batch_carries_user_level_examples_cycling_through_them():
    import torch

    windows = [{"items": torch.ones(2, 3, dtype=torch.long), "targets": torch.ones(2, 3, dtype=torch.long)}] * 5
    examples = {"items": torch.arange(1, 4).view(3, 1), "purchase": torch.tensor([1, 0, 1]),
                "churn": torch.tensor([0, 1, 0]), "events_before": torch.tensor([5, 6, 7])}
    batches = list(with_outcome_batches(iter(windows), examples, batch_size=2, seed=0))
    assert len(batches) == 5 and all("outcome.items" in b and "items" in b for b in batches)
    first_pass = torch.cat([b["outcome.items"] for b in batches[:2]]).view(-1).tolist()
    assert sorted(first_pass) == [1, 2, 3]  # one full random pass before any repeat
    assert list(with_outcome_batches(iter(windows), None, 2, 0)) == windows


def test_platt_scaling_recovers_known_probabilities():
    from scipy.special import expit, logit

    from seqrec_ray.train.calibration import expected_calibration_error, fit_platt, platt_probabilities

    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.6, 40_000)
    labels = (rng.random(len(p)) < p).astype(float)
    scores = 2.5 * logit(p) - 1.0  # over-confident and shifted
    assert expected_calibration_error(expit(scores), labels) > 0.1
    a, b = fit_platt(scores, labels)
    assert a == pytest.approx(1 / 2.5, rel=0.05) and b == pytest.approx(1 / 2.5, abs=0.06)
    calibrated = platt_probabilities(scores, a, b)
    assert expected_calibration_error(calibrated, labels) < 0.015
    assert np.abs(calibrated - p).max() < 0.03


def _shoppers(users: int = 160, days: int = 12, seed: int = 0):
    """Two kinds of shopper over ``days`` days: loyal ones visit every day and buy most
    days; browsers view a few items on their first days and leave (the ground truth)."""
    from seqrec_ray.store.base import StoredEvent

    rng = np.random.default_rng(seed)
    start, events = 1.7e9, []
    for u in range(users):
        loyal = u % 2 == 0
        last_day = days if loyal else int(rng.integers(1, 4))
        for day in range(last_day):
            for j in range(int(rng.integers(2, 5))):
                t = start + day * DAY + 3600 * (1 + 3 * j) + float(rng.integers(0, 600))
                item = f"i{int(rng.integers(0, 30))}"
                kind = "purchase" if loyal and j == 1 and rng.random() < 0.8 else "view"
                events.append(StoredEvent(f"u{u}", item, kind, t, category_id="c"))
    return events, start


@pytest.fixture(scope="module")
def shop_timeline(tmp_path_factory):
    from seqrec_ray.data.pipeline import FeaturizeConfig, featurize_in_process
    from seqrec_ray.data.sequences import SequenceConfig
    from seqrec_ray.data.splits import SplitConfig

    events, start = _shoppers()
    root = tmp_path_factory.mktemp("outcomes")
    split = SplitConfig("temporal", cutoff=start + 9 * DAY, valid_cutoff=start + 7 * DAY)
    store = f"sqlite:///{root / 'store.db'}"
    config = FeaturizeConfig(input="-", format="events", output=str(root / "artifacts"), num_buckets=1,
                             sequence=SequenceConfig(split=split), store=store)
    featurize_in_process(events, str(root / "artifacts"), config=config)
    return {"artifacts": root / "artifacts", "store": store, "test_cutoff": start + 9 * DAY}


@pytest.fixture(scope="module")
def heads_run(shop_timeline, tmp_path_factory):
    """The propensity / churn heads trained in-process on the shoppers' log."""
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    config = TrainConfig(model="gru", dim=16, hidden=16, epochs=12, batch_size=32, lr=5e-3, outcome_loss=1.0,
                         purchase_loss=1.0, torch_threads=1, patience=0)
    out = tmp_path_factory.mktemp("heads") / "run"
    run_in_process(config, shop_timeline["artifacts"], out, progress=False)
    return out


def _check_outcome_run(out, data):
    from seqrec_ray.train.outcomes import CALIBRATION_FILE

    result = json.loads((out / "result.json").read_text())
    outcomes = result["outcomes"]
    assert outcomes["split"] == "test" and outcomes["examples"] == 160  # every user is active before day 9
    for name in ("purchase", "churn"):
        rows = outcomes[name]
        assert set(rows) == {"model (calibrated)", "model (raw)", "RFM logistic regression", "days since last event"}
        assert rows["model (calibrated)"]["auc"] > 0.9  # loyal shoppers buy and stay, browsers left
        assert rows["model (calibrated)"]["auc"] == pytest.approx(rows["model (raw)"]["auc"])  # Platt keeps the order
        assert (out / f"reliability-{name}.png").stat().st_size > 5_000
    calibration = json.loads((out / "best" / CALIBRATION_FILE).read_text())
    assert calibration["fitted_on"] == "valid" and calibration["valid_examples"] == 160
    assert calibration["churn_horizon_days"] == pytest.approx(2.0)
    return outcomes


def test_the_heads_train_in_process_and_evaluate_against_the_baselines(shop_timeline, heads_run, tmp_path):
    import subprocess
    import sys

    data = shop_timeline["artifacts"]
    _check_outcome_run(heads_run, data)
    plot = tmp_path / "eval.png"
    job = subprocess.run([sys.executable, "jobs/evaluate.py", "--data", str(data), "--checkpoint",
                          str(heads_run / "best"), "--reliability-plot", str(plot), "--output", str(tmp_path / "e.json")],
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr
    assert "churn within 2 days of the cut-off, test examples=160" in job.stdout
    assert "RFM logistic regression" in job.stdout and "days since last event" in job.stdout
    assert (tmp_path / "eval-churn.png").is_file() and (tmp_path / "eval-purchase.png").is_file()
    evaluated = json.loads((tmp_path / "e.json").read_text())["outcomes"]
    assert evaluated["churn"]["model (calibrated)"]["auc"] > 0.9


def test_predictions_over_http_rank_a_loyal_shopper_above_a_browser(serve_local, shop_timeline, heads_run):
    import httpx

    from seqrec_ray.serve.app import build_app_graph
    from seqrec_ray.serve.config import ServeConfig

    config = ServeConfig(checkpoint=str(heads_run / "best"), store=shop_timeline["store"], max_k=20)
    url = serve_local.run(build_app_graph(config), "seqrec-outcomes")
    at = shop_timeline["test_cutoff"]
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            loyal, browser = (client.get(f"/users/{u}/predictions", params={"k": 5, "at": at}) for u in ("u0", "u1"))
            assert loyal.status_code == 200 and browser.status_code == 200, (loyal.text, browser.text)
            loyal, browser = loyal.json(), browser.json()
            assert loyal["propensity"]["probability"] > 0.5 > browser["propensity"]["probability"]
            assert loyal["churn"]["probability"] < 0.5 < browser["churn"]["probability"]
            assert loyal["churn"]["horizon_days"] == pytest.approx(2.0) and loyal["at"] == at
            assert len(loyal["next_purchase"]) == 5 and all(i["item_id"].startswith("i") for i in loyal["next_purchase"])
            # Only events before ``at`` are inputs: before u1's first event there is nothing to score.
            early = client.get("/users/u1/predictions", params={"at": at - 30 * DAY})
            assert early.status_code == 404 and "no events before" in early.json()["detail"]
            for params, field in (({"k": 0}, "k"), ({"k": 21}, "k"), ({"at": "soon"}, "at"), ({"at": -1}, "at")):
                bad = client.get("/users/u0/predictions", params=params)
                assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", field], bad.text
            assert client.get("/users/nobody/predictions").status_code == 404
            assert client.get("/healthz").json() == {"status": "ok"}  # still serving
    finally:
        serve_local.delete("seqrec-outcomes")


def test_a_leave_one_out_split_is_refused_before_training(tmp_path):
    from seqrec_ray.data.pipeline import featurize_in_process
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    events, _ = _shoppers(users=20, days=4)
    featurize_in_process(events, str(tmp_path / "loo"), num_buckets=1)
    with pytest.raises(ValueError, match="--split temporal --cutoff T --valid-cutoff V"):
        run_in_process(TrainConfig(model="gru", outcome_loss=1.0, epochs=1), tmp_path / "loo", tmp_path / "run")


def test_the_heads_train_on_ray_train(ray_local, shop_timeline, tmp_path):
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig, fit

    config = TrainConfig(model="gru", dim=16, hidden=16, epochs=4, batch_size=32, lr=1e-2, outcome_loss=1.0,
                         patience=0)
    out = tmp_path / "run"
    fit(config, RayTrainConfig(num_workers=2, storage_path=str(tmp_path / "ray")), shop_timeline["artifacts"], out,
        progress=False)
    _check_outcome_run(out, shop_timeline["artifacts"])


def test_outcome_tensors_hold_the_model_inputs_and_labels_only():
    cuts = OutcomeCutoffs((4 * DAY,), 8 * DAY, 10 * DAY, 2.0, 2.0)
    tensors = outcome_tensors(cuts.examples(timeline([("a", [(2, V, 1), (3, P, 5)])]), "train", 3))
    assert {"items", "purchase", "churn", "seconds_since_last_event", "events_before"} <= set(tensors)
    assert "user_id" not in tensors and "days_since_last_event" not in tensors
    assert tensors["purchase"].tolist() == [1] and tensors["seconds_since_last_event"].tolist() == [3 * DAY]


def test_batch_predict_scores_every_user_as_the_endpoint_does(ray_local, shop_timeline, heads_run, tmp_path):
    import pyarrow.parquet as pq

    from seqrec_ray.serve.model import load_serving_model, predict_outcomes
    from seqrec_ray.train.batch_predict import BatchPredictConfig, run_batch_predict

    at = shop_timeline["test_cutoff"]
    config = BatchPredictConfig(data=str(shop_timeline["artifacts"]), checkpoint=str(heads_run / "best"),
                                output=str(tmp_path / "p"), k=5, at=at, num_actors=1, batch_size=64)
    summary = run_batch_predict(config, log=lambda _: None)
    rows = {r["user_id"]: r for r in pq.read_table(tmp_path / "p").to_pylist()}
    assert summary["users"] == len(rows) == 160  # one row per user
    assert summary["horizon_days"] == {"purchase": pytest.approx(2.0), "churn": pytest.approx(2.0)}
    assert all(0 <= r["propensity"] <= 1 and 0 <= r["churn"] <= 1 and len(r["items"]) == 5 for r in rows.values())
    loyal = [r["propensity"] for u, r in rows.items() if int(u[1:]) % 2 == 0]
    browsers = [r["propensity"] for u, r in rows.items() if int(u[1:]) % 2 == 1]
    assert min(loyal) > max(browsers) - 0.2 and np.mean(loyal) > 0.5 > np.mean(browsers)
    # The same numbers as the serving path computes from the user's raw events.
    events, _ = _shoppers()
    model = load_serving_model(str(heads_run / "best"), "cpu")
    for user in ("u0", "u1", "u7"):
        served = predict_outcomes(model, [e.as_dict() for e in events if e.user_id == user], at)
        assert rows[user]["propensity"] == pytest.approx(served["purchase"]["probability"], abs=1e-4)
        assert rows[user]["churn"] == pytest.approx(served["churn"]["probability"], abs=1e-4)


def test_batch_predict_refuses_a_model_without_heads_before_starting_ray(shop_timeline, tmp_path):
    import subprocess
    import sys

    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    plain = tmp_path / "plain"
    run_in_process(TrainConfig(model="gru", dim=8, hidden=8, epochs=1, torch_threads=1), shop_timeline["artifacts"],
                   plain, progress=False)
    job = subprocess.run([sys.executable, "jobs/batch_predict.py", "--data", str(shop_timeline["artifacts"]),
                          "--checkpoint", str(plain / "best"), "--output", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=120)
    assert job.returncode == 2 and "has no propensity / churn heads" in job.stderr and "Traceback" not in job.stderr
