"""The HTTP API against its own published schema, by an independent fuzzer (schemathesis).

The real app (a trained checkpoint, a real SQLite store, Serve on loopback, an API key
from a key file) is fuzzed from its /openapi.json with every schemathesis check on: no
5xx, only declared status codes and content types, responses that match their schemas,
schema-valid requests accepted, schema-violating ones rejected, the key enforced, 405 for
undeclared methods, and (stateful, along the schema's links) a forgotten user's profile
gone. Examples per operation are bounded and derandomised, so the run is repeatable and
takes about a minute on 2 cores; a change to the API or its schema that breaks the
contract fails here.
"""

from __future__ import annotations

import pytest
import schemathesis
from conftest import shop_artifacts
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from seqrec_ray.sim.demo_shop import DemoShop

APP_NAME = "seqrec-contract"
API_KEY = "contract-key-0123456789"
EXAMPLES = 40  # per operation and generation mode; the coverage phase adds its boundary cases
SHOP = DemoShop(users=30, categories=3, items_per_category=8, events_per_user=10)
# Small limits keep generated bodies small; they are in the schema, so fuzzed too.
LIMITS = {"max_k": 20, "max_items": 30, "max_events": 30, "max_categories": 5, "max_body_bytes": 32 * 1024}
# 413 is how the service refuses a body over max_body_bytes, whatever it holds: a size the
# schema cannot state, so it is a proper answer to valid and invalid data alike.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
ACCEPTED = ["2xx", "401", "403", "404", "409", "413", "429"]
CONFIG = schemathesis.Config.from_dict({
    "auth": {"openapi": {"ApiKey": {"api_key": API_KEY}}},
    "checks": {
        "enabled": True,  # every check, as `schemathesis run --checks all`
        "negative_data_rejection": {"expected-statuses": REJECTED},
        "positive_data_acceptance": {"expected-statuses": ACCEPTED},
    },
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    "generation": {"max-examples": EXAMPLES},
})
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))


def published_schema() -> dict:
    """The schema the app publishes with LIMITS and a key, built by the app's own code:
    pytest parametrizes at collection, before any Serve runs. The served /openapi.json is
    checked to be exactly this one (test_the_running_app_serves_this_schema)."""
    from seqrec_ray.serve.api import build_http_app
    from seqrec_ray.serve.config import ServeConfig

    config = ServeConfig(checkpoint="unused", store="unused", **LIMITS)
    return build_http_app(None, config, api_key=API_KEY).openapi()  # type: ignore[arg-type]


schema = schemathesis.openapi.from_dict(published_schema(), config=CONFIG)


@pytest.fixture(scope="module")
def contract_app(serve_local, tmp_path_factory):
    from seqrec_ray.serve.app import build_app_graph
    from seqrec_ray.serve.config import ServeConfig
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.loop import run_in_process

    root = tmp_path_factory.mktemp("contract")
    # With the shop's catalogue: a search index, so /search and /rank with a query answer
    # their 200 bodies (checked against the schema) and not only the documented 404.
    artifacts, store = shop_artifacts(root, SHOP, catalogue=True)
    train = TrainConfig(model="gru", dim=8, hidden=16, epochs=1, batch_size=16, max_len=10, patience=0, max_item_tokens=8,
                        eval_batch_size=64, seed=0, run_name="contract", torch_threads=1)
    checkpoint = run_in_process(train, artifacts, root / "run", progress=False)["best_checkpoint"]
    key_file = root / "api_key"
    key_file.write_text(API_KEY)
    config = ServeConfig(checkpoint=checkpoint, store=store, api_key_file=str(key_file), **LIMITS)
    url = serve_local.run(build_app_graph(config), APP_NAME)
    yield url
    serve_local.delete(APP_NAME)


def test_the_running_app_serves_this_schema(contract_app):
    import httpx

    served = httpx.get(f"{contract_app}/openapi.json", headers={"X-API-Key": API_KEY}, timeout=60)
    assert served.status_code == 200 and served.json() == published_schema()


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_keeps_its_published_contract(case, contract_app):
    case.call_and_validate(base_url=contract_app, timeout=60)


def test_the_schema_publishes_the_service_rules():
    raw = published_schema()
    paths, components = raw["paths"], raw["components"]["schemas"]
    assert paths["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]["minItems"] == 1
    assert components["RecommendRequest"]["properties"]["k"]["maximum"] == LIMITS["max_k"]
    assert components["RankRequest"]["properties"]["items"]["uniqueItems"] is True
    assert "HTTPValidationError" not in components  # FastAPI's default 422 body is not what we answer
    error_body = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in paths.items():
        for method, op in operations.items():
            statuses = set(op["responses"])
            assert ("401" in statuses) == (path != "/healthz"), (method, path)  # the key is required but for probes
            if op.get("requestBody") or op.get("parameters"):
                assert {"422"} <= statuses, (method, path)
            if op.get("requestBody"):
                assert {"400", "413"} <= statuses, (method, path)
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    assert response["content"]["application/json"]["schema"] == error_body, (method, path, status)
    assert "404" in paths["/users/{user_id}/profile"]["get"]["responses"]
    assert {"ApiKey", "Bearer"} <= set(raw["components"]["securitySchemes"])


def test_stateful_sequences_along_the_schema_links(contract_app):
    """POST /events -> GET profile -> DELETE -> GET profile (404 after a delete: use_after_free)."""

    class Machine(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": contract_app, "timeout": 60}

    run_state_machine_as_test(Machine, settings=settings(max_examples=15, stateful_step_count=6, deadline=None,
                                                         derandomize=True, database=None,
                                                         suppress_health_check=list(HealthCheck)))
