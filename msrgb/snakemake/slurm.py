"""Slurm, from the main Snakemake process: how large the nodes of a partition are, and a watch
that ends a run whose jobs Slurm can never start instead of letting it wait forever.

Only Slurm's own command-line tools are used (``sinfo``, ``squeue``, ``scancel``); nothing here
runs when they are not installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from msrgb.errors import SlurmQueryError

log = logging.getLogger("msrgb")

#: Pending reasons that mean the job, as requested, can never start in its partition: it asks
#: for more than a node or the partition allows, or for an account/QOS it may not use.
NEVER_STARTS = frozenset(
    {
        "PartitionConfig",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "BadConstraints",
        "InvalidAccount",
        "InvalidQOS",
        "QOSMaxCpuPerJobLimit",
        "QOSMaxMemoryPerJob",
        "QOSMaxWallDurationPerJobLimit",
        "AssocMaxCpuPerJobLimit",
        "AssocMaxWallDurationPerJobLimit",
    }
)
#: Pending reasons that can be passing (nodes down or reserved for a while), or can mean the
#: request names nodes that do not exist: fatal only after they last ``STUCK_AFTER_S``.
STUCK_REASONS = frozenset({"ReqNodeNotAvail"})
STUCK_AFTER_S = 120.0

SQUEUE_FORMAT = "%i|%k|%r|%C|%m|%l|%P|%Z"


@dataclass(frozen=True)
class NodeSize:
    """The largest node of a partition: a job that asks for more can never start there."""

    partition: str
    cpus: int
    mem_mb: int


def available() -> bool:
    """True where Slurm's client tools are installed."""
    return shutil.which("sinfo") is not None and shutil.which("squeue") is not None


def _run(*cmd: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmQueryError(f"{' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise SlurmQueryError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def parse_sinfo(text: str, partition: str | None) -> NodeSize | None:
    """The largest node of ``partition`` (Slurm's default partition when None, the one sinfo
    marks with ``*``) from ``sinfo -h -o '%P|%c|%m'`` output; None if the partition is not
    listed."""
    sizes = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 3:
            continue
        name, cpus, mem = fields
        is_default = name.endswith("*")
        name = name.rstrip("*")
        if name == partition or (partition is None and is_default):
            sizes.append(NodeSize(name, int(cpus.rstrip("+")), int(mem.rstrip("+"))))
    if not sizes:
        return None
    return NodeSize(sizes[0].partition, max(s.cpus for s in sizes), max(s.mem_mb for s in sizes))


def node_size(partition: str | None) -> NodeSize:
    """Ask Slurm once for the largest node of ``partition`` (None: the default partition)."""
    size = parse_sinfo(_run("sinfo", "-h", "-o", "%P|%c|%m"), partition)
    if size is None:
        which = f"partition {partition!r}" if partition else "a default partition"
        raise SlurmQueryError(f"Slurm has no {which} (sinfo lists none)")
    return size


def check_request(size: NodeSize, threads: int, mem_mb: int | None, rule: str) -> None:
    """Raise :class:`SlurmQueryError` naming the setting to change when a job of ``rule`` with
    ``threads`` CPUs and ``mem_mb`` MB could never start on a node of ``size.partition``."""
    where = f"the largest node of Slurm partition {size.partition}"
    if threads > size.cpus:
        raise SlurmQueryError(
            f"{rule} jobs would ask for {threads} CPUs, but {where} has {size.cpus}: Slurm "
            "would keep them pending forever (reason PartitionConfig). Lower threads_per_shard "
            f"(--config) or --set-threads {rule}=N, or choose another partition "
            "(slurm_partition in the profile's default-resources)."
        )
    if mem_mb is not None and mem_mb > size.mem_mb:
        raise SlurmQueryError(
            f"{rule} jobs would ask for {mem_mb} MB of memory (mem_mb), but {where} has "
            f"{size.mem_mb} MB: Slurm would refuse them (\"Memory specification can not be "
            "satisfied\"). Lower mem_mb in the profile's default-resources or with "
            f"--set-resources {rule}:mem_mb=N, or choose another partition."
        )


@dataclass(frozen=True)
class PendingJob:
    """One line of ``squeue -o SQUEUE_FORMAT``."""

    job_id: str
    comment: str
    reason: str
    cpus: str
    memory: str
    time_limit: str
    partition: str
    workdir: str

    @classmethod
    def parse(cls, line: str) -> PendingJob | None:
        fields = line.strip().split("|")
        return cls(*fields) if len(fields) == 8 else None

    @property
    def rule(self) -> str:
        """The Snakemake rule, from the comment the Slurm executor plugin gives every job
        (``rule_<name>_wildcards_<values>``)."""
        return self.comment.removeprefix("rule_").split("_wildcards_")[0]

    @property
    def what(self) -> str:
        """The rule, and the shard for a convert_shard job (wildcards ``<n>_<shard>``)."""
        n, _, shard = self.comment.partition("_wildcards_")[2].partition("_")
        if self.rule == "convert_shard" and n.isdigit() and shard.isdigit():
            return f"rule convert_shard, shard {shard} of {n}"
        return f"rule {self.rule}"


def explain(job: PendingJob, size: NodeSize | None) -> str:
    """Why ``job`` will never start and which setting to change."""
    parts = [
        f"Slurm job {job.job_id} ({job.what}) can never start: Slurm's pending reason is "
        f"{job.reason}. It asks for {job.cpus} CPU(s), {job.memory} of memory and a time "
        f"limit of {job.time_limit} in partition {job.partition}"
    ]
    if size is not None and size.partition == job.partition:
        parts.append(f", whose largest node has {size.cpus} CPU(s) and {size.mem_mb} MB")
    parts.append(
        ". Lower the request: CPUs with threads_per_shard (--config) or "
        f"--set-threads {job.rule}=N; memory with mem_mb and the time limit with runtime "
        "(default-resources in the profile, or --set-resources "
        f"{job.rule}:mem_mb=N / {job.rule}:runtime=MINUTES); or choose another partition "
        "(slurm_partition in the profile's default-resources). msrgb cancelled the job."
    )
    return "".join(parts)


class PendingWatch(threading.Thread):
    """Every ``interval`` seconds, looks at this run's pending Slurm jobs (those submitted from
    ``workdir`` for a rule in ``rules``). A job whose pending reason says it can never start is
    cancelled, so Snakemake sees it fail and the run ends instead of waiting forever; the
    reason is reported through ``report`` and kept in :attr:`problems`."""

    def __init__(
        self,
        workdir: str,
        rules: tuple[str, ...],
        size: NodeSize | None = None,
        interval: float = 10.0,
        report: Callable[[str], None] | None = None,
    ):
        super().__init__(name="msrgb-slurm-watch", daemon=True)
        self.workdir = os.path.realpath(workdir)
        self.rules = rules
        self.size = size
        self.interval = interval
        self.report = report or (lambda text: print(f"msrgb: {text}", file=sys.stderr, flush=True))
        self.problems: list[str] = []
        self._stuck_since: dict[str, float] = {}
        self._cancelled: set[str] = set()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def watches(self, rule: str) -> bool:
        """True for one of ``rules``, also as a module's rule (``use rule * from msrgb as
        msrgb_*`` names it ``msrgb_convert_shard``)."""
        return any(rule == r or rule.endswith(f"_{r}") for r in self.rules)

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except SlurmQueryError as exc:  # squeue can fail for a moment; try again later
                log.warning("%s", exc)

    def check(self) -> list[PendingJob]:
        """One look at the queue; returns the jobs cancelled by this look."""
        text = _run("squeue", "--me", "-h", "-t", "PD", "-o", SQUEUE_FORMAT)
        now = time.monotonic()
        doomed = []
        for line in text.splitlines():
            job = PendingJob.parse(line)
            if job is None or job.job_id in self._cancelled or not self.watches(job.rule):
                continue
            if os.path.realpath(job.workdir) != self.workdir:
                continue  # another run's job
            if job.reason in STUCK_REASONS:
                first = self._stuck_since.setdefault(job.job_id, now)
                if now - first < STUCK_AFTER_S:
                    continue
            elif job.reason not in NEVER_STARTS:
                continue
            doomed.append(job)
        for job in doomed:
            message = explain(job, self.size)
            self.problems.append(message)
            self.report(message)
            self._cancelled.add(job.job_id)
            try:
                _run("scancel", job.job_id)
            except SlurmQueryError as exc:
                self.report(f"could not cancel Slurm job {job.job_id}: {exc}")
        return doomed
