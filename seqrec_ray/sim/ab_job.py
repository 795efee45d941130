"""The A/B job: arms parsed from text, one policy per arm, the run and its report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .ab import ABConfig, make_env, oracle_policy, run_ab
from .ab_report import format_table, write_report
from .offline_online import offline_vs_online
from .policies import Policy

if TYPE_CHECKING:
    from seqrec_ray.sim.env import ShopperEnv


ARM_KINDS = ("random", "popularity", "recent", "checkpoint", "oracle", "http")


@dataclass(frozen=True)
class ArmSpec:
    """One arm: ``kind`` from ARM_KINDS; ``target`` is the checkpoint dir or the URL."""

    label: str
    kind: str
    target: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARM_KINDS:
            raise ValueError(f"unknown arm {self.kind!r}; arms are {', '.join(ARM_KINDS)}")
        if self.kind in ("checkpoint", "http") and not self.target:
            raise ValueError(f"arm {self.label!r}: {self.kind} needs a target (checkpoint:PATH, http:URL or --url)")
        if not self.label or any(c in self.label for c in ",=/ "):
            raise ValueError(f"arm label {self.label!r} must be non-empty without ',', '=', '/' or spaces")


def parse_arms(text: str, url: str | None = None) -> tuple[ArmSpec, ...]:
    """``random,popularity,e3=checkpoint:runs/e3/best,oracle`` -> ArmSpecs.

    An item is ``[LABEL=]KIND[:TARGET]``; labels default to the kind (numbered when a kind
    repeats). ``http`` without a target uses ``url``; a ``url`` with no http arm adds one.
    """
    specs: list[ArmSpec] = []
    seen: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        label, _, spec = item.partition("=") if "=" in item.split(":", 1)[0] else ("", "", item)
        kind, _, target = spec.partition(":")
        kind = kind.strip().lower()
        seen[kind] = seen.get(kind, 0) + 1
        default = kind if seen[kind] == 1 else f"{kind}{seen[kind]}"
        specs.append(ArmSpec(label or default, kind, target or (url if kind == "http" else None)))
    if url and not any(s.kind == "http" for s in specs):
        specs.append(ArmSpec("http", "http", url))
    labels = [s.label for s in specs]
    if len(specs) < 2:
        raise ValueError(f"an A/B test needs at least two arms, got {labels or 'none'}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"arm labels must be unique, got {labels} (name them LABEL=KIND:TARGET)")
    return tuple(specs)


@dataclass(frozen=True)
class ABJobConfig:
    sim_dir: str = field(metadata={"help": "organic logs + ground_truth/ written by jobs/simulate.py"})
    output: str = field(metadata={"help": "directory for the report"})
    arms: tuple[ArmSpec, ...]
    ab: ABConfig = ABConfig()
    exclude_purchased: bool = field(default=False, metadata={"help": (
        "checkpoint and http arms never show items the user bought (both alike, so they stay comparable)")})
    http_user_prefix: str | None = field(default=None, metadata={"help": (
        "prefix of user ids sent over HTTP (default: fresh per run, see HttpPolicy; '' = the simulator's ids)")})
    api_key: str | None = field(default=None, metadata={"help": "bearer key of the service behind an http arm"})
    offline_data: str | None = field(default=None, metadata={"help": (
        "featurize artifacts of the organic logs: report offline NDCG@10 of each checkpoint arm beside its online conversion")})
    offline_split: str = field(default="test", metadata={"help": "test | valid"})
    torch_threads: int = field(default=1, metadata={"help": (
        "torch threads of checkpoint arms: one small history per call, more threads only add overhead")})

    def __post_init__(self) -> None:
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads!r}")
        if not (Path(self.sim_dir) / "ground_truth" / "sim.json").is_file():
            raise ValueError(f"--sim-dir {self.sim_dir!r} holds no simulator ground truth (ground_truth/sim.json); "
                             "create it with jobs/simulate.py")
        if not self.output:
            raise ValueError("output directory must be given")
        for arm in self.arms:
            if arm.kind == "checkpoint" and not (Path(arm.target) / "model.json").is_file():
                raise ValueError(f"arm {arm.label!r}: {arm.target!r} is not a checkpoint directory (no model.json)")
        if self.offline_data is not None:
            if not (Path(self.offline_data) / "manifest.json").is_file():
                raise ValueError(f"--offline-data {self.offline_data!r} is not a featurize artifacts directory")
            if not any(a.kind == "checkpoint" for a in self.arms):
                raise ValueError("--offline-data needs at least one checkpoint arm")
        if self.offline_split not in ("valid", "test"):
            raise ValueError(f"offline split must be 'valid' or 'test', got {self.offline_split!r}")


def organic_item_counts(sim_dir: str | Path) -> dict[str, int]:
    """Events per item in the organic logs (the popularity a shop would know)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(Path(sim_dir).glob("part-*.parquet"))
    if not files:
        raise ValueError(f"{sim_dir!r} holds no organic log parts (part-*.parquet)")
    counts: dict[str, int] = {}
    for file in files:
        for row in pc.value_counts(pq.read_table(file, columns=["item_id"])["item_id"]).to_pylist():
            counts[row["values"]] = counts.get(row["values"], 0) + row["counts"]
    return counts


def build_policy(arm: ArmSpec, env: ShopperEnv, item_counts: dict[str, int], job: ABJobConfig, run_tag: str) -> Policy:
    from .policies import CheckpointPolicy, HttpPolicy, PopularityPolicy, RandomPolicy, RecentPolicy

    if arm.kind == "random":
        policy: Policy = RandomPolicy(env.item_ids)
    elif arm.kind == "popularity":
        policy = PopularityPolicy(item_counts)
    elif arm.kind == "recent":
        policy = RecentPolicy(item_counts)
    elif arm.kind == "checkpoint":
        policy = CheckpointPolicy(arm.target, exclude_purchased=job.exclude_purchased)
    elif arm.kind == "oracle":
        policy = oracle_policy(env)
    else:
        prefix = f"ab-{run_tag}-{arm.label}-" if job.http_user_prefix is None else job.http_user_prefix
        policy = HttpPolicy(arm.target, exclude_purchased=job.exclude_purchased, user_prefix=prefix, api_key=job.api_key)
    policy.name = arm.label
    return policy


def run_ab_job(job: ABJobConfig, log=print, progress: bool = True) -> dict:
    """The whole job: world + env from the sim dir, one policy per arm, the A/B run, and
    the report (table, JSON, sessions CSV, PNG; offline vs online when asked)."""
    import time

    from .logs import load_world

    if any(a.kind == "checkpoint" for a in job.arms) or job.offline_data:
        import torch

        torch.set_num_threads(job.torch_threads)
    world, sim_summary = load_world(job.sim_dir)
    env = make_env(world, sim_summary, job.ab)
    counts = organic_item_counts(job.sim_dir)
    run_tag = f"{job.ab.seed}-{int(time.time())}"
    policies = [build_policy(arm, env, counts, job, run_tag) for arm in job.arms]
    log(f"A/B: {len(policies)} arms x {job.ab.users} users x {job.ab.sessions_per_user} sessions, "
        f"slates of {job.ab.slate_size}, seed {job.ab.seed}, population {env.config.n_users} "
        f"(warm start {sim_summary['organic']['days']} days of organic history)")
    try:
        result = run_ab(env, policies, job.ab, progress=progress)
    finally:
        for policy in policies:
            policy.close()
    result["arms"] = [asdict(a) for a in job.arms]
    result["sim_dir"] = str(job.sim_dir)
    result["cold_start_responses"] = {p.name: p.cold_start_responses for p in policies if hasattr(p, "cold_start_responses")}
    if job.offline_data:
        ckpts = [(a.label, a.target) for a in job.arms if a.kind == "checkpoint"]
        result["offline_vs_online"] = offline_vs_online(ckpts, job.offline_data, result["summary"], job.offline_split)
    result["files"] = write_report(result, job.output)
    result["table"] = format_table(result["summary"], result["latency"])
    return result
