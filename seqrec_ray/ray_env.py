"""How every job connects to Ray: one rule, so all jobs behave alike.

- An explicit address (a job's ``--ray-address``/``--address`` flag, or ``RAY_ADDRESS``,
  which ``ray job submit`` sets for the driver) is joined; ``RAY_ADDRESS=auto`` joins a
  cluster started with ``ray start`` on this machine.
- Otherwise a private local Ray is started (``address="local"``), never silently joining
  another instance: a stale ``/tmp/ray`` address file would otherwise stall for minutes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def init_ray(address: str | None = None, num_cpus: int | None = None, *, log_to_driver: bool = True,
             env_vars: Mapping[str, str] | None = None, object_store_memory: int | None = None) -> bool:
    """Connect or start Ray; returns True when a local instance was started here.

    ``address="local"`` always starts a fresh instance, even with RAY_ADDRESS set (benchmarks,
    tests). ``log_to_driver=False`` keeps workers' output off this process's stdout;
    ``env_vars`` go to every worker of the job (e.g. Serve's proxy timeouts);
    ``object_store_memory`` (bytes) sizes a locally started instance's object store.
    """
    import ray

    if ray.is_initialized():
        return False
    # Jobs print their own progress (shards, buckets, epochs); Ray Data's per-operator
    # progress log every few seconds buries it. RAY_DATA_DISABLE_PROGRESS_BARS=0 restores it.
    quiet = os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "local":
        joined = {"runtime_env": {"env_vars": dict(env_vars)}} if env_vars else {}
        ray.init(address=address, logging_level="ERROR", log_to_driver=log_to_driver, **joined)
        return False
    # Workers import seqrec_ray from this checkout even when it is not pip-installed.
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    worker_env = {"PYTHONPATH": pythonpath, "RAY_DATA_DISABLE_PROGRESS_BARS": quiet, **(env_vars or {})}
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR",
             log_to_driver=log_to_driver, object_store_memory=object_store_memory,
             runtime_env={"env_vars": worker_env})
    return True
