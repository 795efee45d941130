"""How every job connects to Ray: one rule, so all jobs behave alike.

- An explicit address (a job's ``--ray-address``/``--address`` flag, or ``RAY_ADDRESS``,
  which ``ray job submit`` sets for the driver) is joined; ``RAY_ADDRESS=auto`` joins a
  cluster started with ``ray start`` on this machine.
- Otherwise a private local Ray is started (``address="local"``), never silently joining
  another instance: a stale ``/tmp/ray`` address file would otherwise stall for minutes.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect or start Ray; returns True when a local instance was started here."""
    import ray

    if ray.is_initialized():
        return False
    # Jobs print their own progress (shards, buckets, epochs); Ray Data's per-operator
    # progress log every few seconds buries it. RAY_DATA_DISABLE_PROGRESS_BARS=0 restores it.
    quiet = os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "local":
        ray.init(address=address, logging_level="ERROR")
        return False
    # Workers import seqrec_ray from this checkout even when it is not pip-installed.
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath, "RAY_DATA_DISABLE_PROGRESS_BARS": quiet}})
    return True
