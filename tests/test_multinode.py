"""Multi-node on one machine (tests/cluster_scripts/multinode.py): a two-node
ray.cluster_utils.Cluster of its own, in a subprocess so it never meets the session's Ray.

Featurize reads four input files (a real Taobao sample cut in four) as Ray Data tasks;
training runs two workers that cannot share a node (each node has 3 CPUs, a worker asks
for 2). Probes record the Ray node id each read and each worker ran on.
"""

from __future__ import annotations

import pytest
from cluster_scripts._procs import run_script
from conftest import shared_dataset

pytestmark = pytest.mark.slow  # real Ray/Serve end to end: minutes on 2 cores (CI runs it)

SAMPLE = "UserBehavior_head_fattydelivery.csv"


def test_featurize_reads_on_both_nodes_and_train_workers_run_on_different_nodes(tmp_path):
    lines = (shared_dataset("taobao-userbehavior") / SAMPLE).read_text().splitlines(keepends=True)
    inputs = tmp_path / "input"
    inputs.mkdir()
    quarter = -(-len(lines) // 4)
    for i in range(4):
        (inputs / f"part-{i}.csv").write_text("".join(lines[i * quarter:(i + 1) * quarter]))

    result = run_script("multinode.py", ["--input", str(inputs), "--format", "taobao"], tmp_path / "run", timeout_s=900)
    assert "error" not in result, result["error"]
    nodes = set(result["nodes"])
    assert len(nodes) == 2

    reads = [p for p in result["probes"] if p["name"].startswith("read-")]
    assert sorted(p["path"].rsplit("/", 1)[1] for p in reads) == [f"part-{i}.csv" for i in range(4)]
    assert {p["node_id"] for p in reads} == nodes, "featurize read every file on one node"
    assert result["featurize"]["rows_read"] == len(lines) and result["featurize"]["input_files"] == 4

    workers = {p["rank"]: p["node_id"] for p in result["probes"] if p["name"].startswith("train-")}
    assert sorted(workers) == [0, 1]
    assert workers[0] != workers[1] and set(workers.values()) == nodes
    assert result["train"]["epochs_run"] == 1 and result["train"]["valid_users"] == result["featurize"]["users"]

    from seqrec_ray.train.checkpoint import load_checkpoint

    assert load_checkpoint(result["train"]["checkpoint"]).meta["num_workers"] == 2
    assert result["left_behind"] == [], "processes of the test cluster outlived Cluster.shutdown()"
