"""The workflow on a real Slurm cluster, through profiles/slurm.

Starts a single-node Slurm (Debian's slurm-wlm, munge, slurmdbd, MariaDB) with
../shared/slurm/start_slurm.sh, so it runs only as root on Debian with that script present;
elsewhere it is skipped with the reason. Set MSRGB_SKIP_SLURM=1 to skip it on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_png_matches

from msrgb import synth

SLURM_SCRIPTS = REPO.parent / "shared" / "slurm"
PARTITION = "msrgbtest"  # created for the test, to prove the partition setting reaches sbatch
PARTITION_MAX_MINUTES = 30
DEFAULT_PARTITION = "debug"  # start_slurm.sh's


def _skip_reason() -> str | None:
    if os.environ.get("MSRGB_SKIP_SLURM"):
        return "MSRGB_SKIP_SLURM is set"
    if not (SLURM_SCRIPTS / "start_slurm.sh").exists():
        return f"{SLURM_SCRIPTS}/start_slurm.sh not found (only in the development checkout)"
    if os.geteuid() != 0:
        return "starting a Slurm cluster needs root"
    if not Path("/etc/debian_version").exists():
        return "start_slurm.sh installs Debian packages; this is not Debian"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def slurm():
    """A running single-node cluster with an extra partition; stopped afterwards if this test
    started it."""
    already_up = shutil.which("scontrol") and _run("scontrol", "ping").returncode == 0
    started = _run("bash", str(SLURM_SCRIPTS / "start_slurm.sh"), timeout=900)
    assert started.returncode == 0, started.stdout + started.stderr
    node = _run("sinfo", "-h", "-o", "%N").stdout.split()[0]
    _run("scontrol", "delete", f"PartitionName={PARTITION}")
    made = _run(
        "scontrol", "create", f"PartitionName={PARTITION}", f"Nodes={node}", "State=UP",
        f"MaxTime={PARTITION_MAX_MINUTES}",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    yield
    _run("scontrol", "delete", f"PartitionName={PARTITION}")
    if not already_up:
        _run("bash", str(SLURM_SCRIPTS / "stop_slurm.sh"), timeout=300)


#: shards of this many tiles instead of thousands: several jobs, each long enough to be seen
#: running, and few, since the executor checks job states every 12 s or so
SHARD_SIZE = 600


def snakemake_slurm(workdir: Path, *args: str) -> subprocess.Popen[str]:
    """The shipped profile as it is; only smaller shards than usual, so there are several."""
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config" / "config.yaml"),
        "--profile", str(REPO / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks", "2", *args,
        "--config", "input_dir=tif", "output_dir=out", f"cluster_shard_min_size={SHARD_SIZE}",
    ]  # fmt: skip
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    return subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def submitted(output: str) -> dict[str, str]:
    """Slurm job id of every shard job the run submitted, from Snakemake's output."""
    pattern = r"submitted with SLURM jobid (\d+) \(log: \S*/rule_convert_shard/(\d+_\d+)_[0-9a-f-]+/"
    return {f"convert_shard {shard}": job for job, shard in re.findall(pattern, output)}


def sacct(job: str, field: str) -> str:
    out = _run("sacct", "-n", "-X", "-P", "-j", job, "-o", field).stdout.strip()
    return out.splitlines()[0] if out else ""


def test_slurm_profile_runs_resumes_after_scancel(slurm, tmp_path: Path) -> None:
    synth.generate(tmp_path / "tif", 240)  # 2,400 tiles -> 4 shards of about 600
    tifs = sorted((tmp_path / "tif").rglob("*.tif"))
    out = tmp_path / "out" / "truecolor"

    # 1. a run with the shard jobs placed in another partition: one shard job per Slurm job,
    #    one of them cancelled while it runs; the run fails, the other shards' PNGs are right
    placed = ("--set-resources", f"convert_shard:slurm_partition={PARTITION}")
    first = snakemake_slurm(tmp_path, *placed)
    cancelled = None
    deadline = time.monotonic() + 600
    while cancelled is None and time.monotonic() < deadline and first.poll() is None:
        running = _run("squeue", "-h", "-t", "R", "-o", "%i").stdout.split()
        if running:
            cancelled = running[0]
            assert _run("scancel", cancelled).returncode == 0
        time.sleep(0.2)
    log1, _ = first.communicate(timeout=900)
    assert cancelled is not None, "no shard job was seen running"
    assert first.returncode != 0, "a run with a cancelled job must fail"
    jobs = submitted(log1)
    assert sorted(jobs) == [f"convert_shard 4_{i}" for i in range(4)], log1[-4000:]
    assert sacct(cancelled, "State").startswith("CANCELLED")
    assert sacct(cancelled, "Partition") == PARTITION
    lost = {job: rule for rule, job in jobs.items()}[cancelled]
    done_before = {png: png.stat().st_mtime_ns for png in out.rglob("*.png")}  # the other shards'
    for png in done_before:
        assert_png_matches(png, tmp_path / "tif" / png.relative_to(out).with_suffix(".tif"))

    # 2. the profile as shipped resumes: only the cancelled shard is submitted, in the default
    #    partition, with as many threads as the node has CPUs (auto asks for 4); every PNG is
    #    right and no other PNG is made again
    second = snakemake_slurm(tmp_path)
    log2, _ = second.communicate(timeout=900)
    assert second.returncode == 0, log2[-4000:]
    resumed = submitted(log2)
    assert list(resumed) == [lost], log2[-4000:]
    node_cpus = int(_run("sinfo", "-h", "-o", "%c").stdout.split()[0])
    assert sacct(resumed[lost], "Partition") == DEFAULT_PARTITION
    assert sacct(resumed[lost], "State") == "COMPLETED"
    assert sacct(resumed[lost], "AllocCPUS") == str(min(4, node_cpus))
    for tif in tifs:
        png = out / tif.relative_to(tmp_path / "tif").with_suffix(".png")
        assert_png_matches(png, tif)
        if png in done_before:
            assert png.stat().st_mtime_ns == done_before[png], f"{png} was converted again"


@pytest.mark.parametrize(
    "request_, slurm_says, setting",
    [
        # more CPUs or memory than the node has: found before anything is submitted
        (("--set-threads", "convert_shard=64"), "PartitionConfig", "--set-threads convert_shard"),
        (("--set-resources", "convert_shard:mem_mb=99000000"), "Memory specification", "mem_mb"),
        # over the partition's time limit: Slurm keeps the job pending; the watch cancels it
        (
            ("--set-resources", f"convert_shard:slurm_partition={PARTITION}",
             f"convert_shard:runtime={PARTITION_MAX_MINUTES * 10}"),
            "PartitionTimeLimit",
            "runtime",
        ),
    ],  # fmt: skip
    ids=["threads", "memory", "time-limit"],
)
def test_impossible_request_ends_the_run_with_slurms_reason(
    slurm, tmp_path: Path, request_: tuple[str, ...], slurm_says: str, setting: str
) -> None:
    """A job that can never start (larger than any node, longer than the partition allows)
    must end the run, non-zero, naming Slurm's reason and the setting to change."""
    synth.generate(tmp_path / "tif", 30)
    started = time.monotonic()
    run = snakemake_slurm(tmp_path, *request_)
    try:
        output, _ = run.communicate(timeout=300)
    finally:
        run.kill()
    assert time.monotonic() - started < 300
    assert run.returncode != 0, output[-4000:]
    assert slurm_says in output and setting in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    left = _run("squeue", "--me", "-h", "-o", "%i %Z").stdout
    assert str(tmp_path) not in left, f"jobs of the run are still queued:\n{left}"
