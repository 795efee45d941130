"""Fault 4a: a Ray Train worker process SIGKILLed mid-epoch; FailureConfig restarts the
worker group from the last checkpoint and the run finishes. Also runs the same config
uninterrupted, in the same Ray, for the comparison.

    python tests/cluster_scripts/fault_train.py --data ARTIFACTS --workdir DIR --result OUT.json

How the kill finds its target: a probe wraps the real per-worker training loop and, inside
each worker, the real ``train_epoch``, writing one progress line per batch (rank, PID,
epoch call, batch) to a file. When rank 1 of the first worker group is KILL_AFTER_BATCHES
batches into its second epoch it writes its PID to ``kill_target`` and waits there; a
watcher thread here waits until Ray Train has registered the epoch-1 checkpoint (its
``checkpoint_manager_snapshot.json`` lists it: Ray polls workers every 2 s, and a report
still queued on a dead worker is lost) and then SIGKILLs that PID - a crash in the middle
of an epoch, after a checkpoint. The probes change nothing else: the wrapped functions
run unchanged. They are installed in this process as the module attribute the trainer
looks up, reach the workers pickled by value, and are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

KILL_RANK = 1
KILL_EPOCH_CALL = 2  # the second train_epoch call of the first worker group = epoch 2
KILL_AFTER_BATCHES = 3


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--epochs", type=int, default=3)
    return p.parse_args()


def make_loop_probe(progress_file: str, target_file: str):
    """The per-worker loop, with train_epoch wrapped to log every batch (see module doc).

    Runs in the worker, where the module ``ray_trainer`` is the real one: only this
    process (the driver) ever swaps its loop for the probe.
    """

    def loop_probe(loop_config):
        import ray.train

        from seqrec_ray.train import ray_trainer

        rank, pid, calls = ray.train.get_context().get_world_rank(), os.getpid(), [0]
        train_epoch = ray_trainer.train_epoch

        def logged(batches, call):
            for i, batch in enumerate(batches):
                with open(progress_file, "a") as f:  # one short line per append: no torn lines
                    f.write(json.dumps({"rank": rank, "pid": pid, "call": call, "batch": i, "t": time.time()}) + "\n")
                if (rank, call, i) == (KILL_RANK, KILL_EPOCH_CALL, KILL_AFTER_BATCHES) and not os.path.exists(target_file):
                    Path(target_file).write_text(str(pid))
                    time.sleep(300)  # the watcher kills this process here; the test times out otherwise
                yield batch

        def train_epoch_probe(task, batches, *args, **kwargs):
            calls[0] += 1
            stats = train_epoch(task, logged(batches, calls[0]), *args, **kwargs)
            with open(progress_file, "a") as f:
                f.write(json.dumps({"rank": rank, "pid": pid, "call": calls[0], "done": True, "t": time.time()}) + "\n")
            return stats

        ray_trainer.train_epoch = train_epoch_probe  # in this worker process only
        return ray_trainer.train_loop_per_worker(loop_config)

    return loop_probe


def read_progress(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def watch_and_kill(target_file: Path, storage: Path, kill: dict, stop: threading.Event) -> None:
    """SIGKILL the PID rank 1 wrote, once the epoch-1 checkpoint is registered; record what was there."""
    snapshot = storage / "checkpoint_manager_snapshot.json"
    while not stop.is_set():
        registered = snapshot.exists() and "epoch_0001" in snapshot.read_text()
        if target_file.exists() and registered:
            pid = int(target_file.read_text())
            kill.update(pid=pid, t=time.time(), checkpoints_at_kill=sorted(p.name for p in storage.glob("epoch_*")))
            os.kill(pid, signal.SIGKILL)  # the worker's own PID, from its own report
            kill["latest_digest_at_kill"] = _digest(storage / kill["checkpoints_at_kill"][-1])
            return
        time.sleep(0.1)


def _digest(checkpoint_dir: Path) -> str:
    from seqrec_ray.train.checkpoint import load_checkpoint
    from seqrec_ray.train.run_state import state_digest

    return state_digest(load_checkpoint(checkpoint_dir).model)


def fit_run(name: str, data: Path, workdir: Path, epochs: int, max_failures: int) -> dict:
    from seqrec_ray.train.config import TrainConfig
    from seqrec_ray.train.ray_trainer import RayTrainConfig, fit

    config = TrainConfig(model="lstm", dim=32, hidden=64, dropout=0.0, emb_dropout=0.0, epochs=epochs, batch_size=16,
                         eval_batch_size=256, lr=5e-3, max_len=20, patience=0, seed=11, torch_threads=1)
    ray_config = RayTrainConfig(num_workers=2, run_name=name, storage_path=str(workdir / "ray_results"),
                                max_failures=max_failures)
    started = time.monotonic()
    summary = fit(config, ray_config, data, workdir / name, progress=False)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    summary["curves"] = json.loads((workdir / name / "curves.json").read_text())
    return summary


def reported_metrics(run_path: Path) -> list[dict]:
    """What every checkpointed report said (resumed_from_epoch, restored_digest, ...)."""
    import ray.train

    result = ray.train.Result.from_path(str(run_path))
    return sorted((m for _, m in result.best_checkpoints), key=lambda m: m["epoch"])


def run(args: argparse.Namespace, workdir: Path, result: dict) -> None:
    from seqrec_ray.ray_env import init_ray
    from seqrec_ray.train import ray_trainer

    init_ray("local", num_cpus=4, log_to_driver=False, object_store_memory=150 * 1024 * 1024)
    data = Path(args.data)
    result["baseline"] = fit_run("baseline", data, workdir, args.epochs, max_failures=0)
    progress, target = workdir / "progress.jsonl", workdir / "kill_target"
    storage = workdir / "ray_results" / "faulted"
    kill: dict = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_and_kill, args=(target, storage, kill, stop), daemon=True)
    original = ray_trainer.train_loop_per_worker
    ray_trainer.train_loop_per_worker = make_loop_probe(str(progress), str(target))
    watcher.start()
    try:
        result["faulted"] = fit_run("faulted", data, workdir, args.epochs, max_failures=1)
    finally:
        stop.set()
        ray_trainer.train_loop_per_worker = original
    result["kill"] = kill
    result["progress"] = read_progress(progress)
    result["reports"] = reported_metrics(storage)


def main() -> int:
    args = parse_args()
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    try:
        run(args, workdir, result)
    except Exception:  # reported in the JSON: the test shows it
        result["error"] = traceback.format_exc()
    finally:
        import ray

        ray.shutdown()
    Path(args.result).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
