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

    # 1. a full run with the profile as shipped: one Slurm job per shard, in the default
    #    partition, with as many threads as the node has CPUs (auto asks for 4), every PNG right
    first = snakemake_slurm(tmp_path)
    log1, _ = first.communicate(timeout=900)
    assert first.returncode == 0, log1[-4000:]
    jobs = submitted(log1)
    assert sorted(jobs) == [f"convert_shard 4_{i}" for i in range(4)], log1[-4000:]
    node_cpus = int(_run("sinfo", "-h", "-o", "%c").stdout.split()[0])
    for job in jobs.values():
        assert sacct(job, "Partition") == DEFAULT_PARTITION
        assert sacct(job, "State") == "COMPLETED"
        assert sacct(job, "AllocCPUS") == str(min(4, node_cpus))
    for tif in tifs:
        assert_png_matches(out / tif.relative_to(tmp_path / "tif").with_suffix(".png"), tif)

    # 2. every PNG deleted, then, in another partition, one running shard job cancelled
    shutil.rmtree(out)
    placed = ("--set-resources", f"convert_shard:slurm_partition={PARTITION}")
    second = snakemake_slurm(tmp_path, *placed)
    cancelled = None
    deadline = time.monotonic() + 600
    while cancelled is None and time.monotonic() < deadline and second.poll() is None:
        running = _run("squeue", "-h", "-t", "R", "-o", "%i").stdout.split()
        if running:
            cancelled = running[0]
            assert _run("scancel", cancelled).returncode == 0
        time.sleep(0.2)
    log2, _ = second.communicate(timeout=900)
    assert cancelled is not None, "no shard job was seen running"
    assert second.returncode != 0, "a run with a cancelled job must fail"
    assert sacct(cancelled, "State").startswith("CANCELLED")
    assert sacct(cancelled, "Partition") == PARTITION
    shard_of_job = {job: rule for rule, job in submitted(log2).items()}
    lost = shard_of_job[cancelled]
    done_before = {
        png: png.stat().st_mtime_ns for png in out.rglob("*.png")
    }  # what the other shards made

    # 3. the rerun submits only the cancelled shard and leaves every other PNG alone
    third = snakemake_slurm(tmp_path, *placed)
    log3, _ = third.communicate(timeout=900)
    assert third.returncode == 0, log3[-4000:]
    assert list(submitted(log3)) == [lost], log3[-4000:]
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
