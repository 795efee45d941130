"""cluster.yaml and serve_configs/*.yaml validate against the schemas that ship with Ray."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO_ROOT
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = REPO_ROOT / "cluster.yaml"


def _load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_ray_schema_validator():
    validate_config(prepare_config(_load_cluster()))


def test_validator_rejects_a_broken_copy():
    broken = copy.deepcopy(_load_cluster())
    broken["available_node_types"]["gpu_worker"]["min_workers"] = "two"
    with pytest.raises(Exception, match="min_workers|integer"):
        validate_config(prepare_config(broken))


def test_cluster_has_cpu_and_gpu_workers_and_token_auth():
    cfg = _load_cluster()
    types = cfg["available_node_types"]
    assert types["gpu_worker"]["resources"].get("GPU", 0) >= 1
    assert types["cpu_worker"]["resources"].get("CPU", 0) >= 1
    assert types["cpu_worker"]["max_workers"] > types["cpu_worker"]["min_workers"]
    start = " ".join(cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"])
    assert start.count("RAY_AUTH_MODE=token") == 2
    assert any("seqrec-ray" in cmd for cmd in cfg["setup_commands"])


@pytest.mark.parametrize("name", ["local.yaml", "cluster.yaml"])
def test_serve_configs_pass_serve_schema(name):
    from ray.serve.schema import ServeDeploySchema

    path = REPO_ROOT / "serve_configs" / name
    assert path.is_file(), f"{path} is missing"
    config = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    app = config.applications[0]
    assert app.import_path.endswith("build_app")
    assert {"checkpoint", "store"} <= set(app.args)


@pytest.mark.parametrize("name", ["local.yaml", "cluster.yaml"])
def test_serve_configs_give_the_proxy_the_same_start_timeouts_as_local_serve(name):
    from ray.serve.schema import ServeDeploySchema

    from seqrec_ray.serve.local import PROXY_TIMEOUTS

    config = ServeDeploySchema.model_validate(yaml.safe_load((REPO_ROOT / "serve_configs" / name).read_text()))
    assert config.controller_options.runtime_env["env_vars"] == PROXY_TIMEOUTS
