"""Multi-node on one machine: a two-node ray.cluster_utils.Cluster; featurize reads its
input files on both nodes, then a 2-worker training run places one worker per node.

    python tests/cluster_scripts/multinode.py --input DIR --format taobao --workdir DIR --result OUT.json

Each node has 3 CPUs and a training worker asks for 2, so two workers cannot share a
node: Ray must place them apart. Where work ran is recorded by probes: thin wrappers
around the real featurize read step and the real training loop that write the Ray node
id of the process they run in to a file, then call the wrapped function unchanged.
They are installed in this process only (as the module attributes the pipeline and
trainer look up when they submit work) and reach the workers pickled by value.

Ray's temp dir (and its "current cluster" address file) is RAY_TMPDIR, set by the
caller to a directory of this run: other people's `ray.init()` never finds this cluster,
and Cluster.shutdown() removes only this run's address file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from _procs import REPO_ROOT

NODE_CPUS = 3
WORKER_CPUS = 2


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--format", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--result", required=True)
    return p.parse_args()


def _record(probe_dir: str, name: str, info: dict) -> None:
    import ray

    info = {**info, "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    Path(probe_dir, f"{name}.json").write_text(json.dumps(info))


def install_probes(probe_dir: Path) -> None:
    """Wrap the featurize read step and the per-worker training loop (see module doc)."""
    from seqrec_ray.data import passes
    from seqrec_ray.train import ray_trainer

    read_step, train_loop, where = passes.read_validate_bucket, ray_trainer.train_loop_per_worker, str(probe_dir)

    def read_validate_probe(path, file_index, **kwargs):
        _record(where, f"read-{file_index}", {"path": path})
        return read_step(path=path, file_index=file_index, **kwargs)

    def train_loop_probe(loop_config):
        import ray.train

        context = ray.train.get_context()
        _record(where, f"train-rank{context.get_world_rank()}-{time.time_ns()}", {"rank": context.get_world_rank()})
        return train_loop(loop_config)

    passes.read_validate_bucket = read_validate_probe
    ray_trainer.train_loop_per_worker = train_loop_probe


def run(args: argparse.Namespace, workdir: Path, result: dict) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from seqrec_ray.data.pipeline import FeaturizeConfig, run_featurize
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig, fit

    probe_dir = workdir / "probes"
    probe_dir.mkdir(parents=True, exist_ok=True)
    node_args = {"num_cpus": NODE_CPUS, "object_store_memory": 150 * 1024 * 1024}
    cluster = Cluster(initialize_head=True, head_node_args={**node_args, "include_dashboard": False})
    try:
        cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO_ROOT)}})
        result["nodes"] = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        install_probes(probe_dir)
        started = time.monotonic()
        manifest = run_featurize(FeaturizeConfig(input=args.input, format=args.format, output=str(workdir / "artifacts"),
                                                 num_buckets=2), log=lambda line: None)
        result["featurize"] = {"rows_read": manifest["rows_read"], "input_files": manifest["input_files"],
                               "users": manifest["users"], "seconds": round(time.monotonic() - started, 1)}
        started = time.monotonic()
        config = TrainConfig(model="lstm", dim=16, hidden=32, epochs=1, batch_size=64, max_len=20, patience=0,
                             eval_batch_size=256, seed=0, torch_threads=1, lr=1e-2)
        ray_config = RayTrainConfig(num_workers=2, cpus_per_worker=WORKER_CPUS, run_name="multinode",
                                    storage_path=str(workdir / "ray_results"))
        summary = fit(config, ray_config, workdir / "artifacts", workdir / "train", progress=False)
        result["train"] = {"epochs_run": summary["epochs_run"], "valid_users": summary["valid"]["users"],
                           "checkpoint": summary["best_checkpoint"], "seconds": round(time.monotonic() - started, 1)}
        result["probes"] = [json.loads(p.read_text()) | {"name": p.stem} for p in sorted(probe_dir.glob("*.json"))]
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> int:
    args = parse_args()
    if not os.environ.get("RAY_TMPDIR"):
        print("error: set RAY_TMPDIR to a directory of this run (keeps the cluster invisible to others)", file=sys.stderr)
        return 2
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    try:
        run(args, workdir, result)
    except Exception:  # reported in the JSON: the test shows it
        result["error"] = traceback.format_exc()
    Path(args.result).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
