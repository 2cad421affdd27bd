"""msrgb.snakemake.settings reads Snakemake's workflow object, which has no public API for it:
these tests pin what it reads to the Snakemake version it was written for."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import snakemake
from conftest import REPO, run_snakemake

from msrgb.snakemake import settings as smk

SNAKEFILE = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from msrgb.snakemake import settings as smk
print("SETTINGS", json.dumps({{
    "cluster": smk.is_cluster_run(workflow),
    "jobs": smk.parallel_jobs(workflow),
    "partition": smk.resource_setting(workflow, "work", "slurm_partition"),
    "mem_mb": smk.resource_setting(workflow, "work", "mem_mb"),
    "threads": smk.threads_setting(workflow, "work"),
    "executor": smk.executor_named(),
    "shared_fs": smk.shares_file_system(workflow),
    "no_metadata": smk.keeps_no_metadata(workflow),
    "report": smk.makes_a_report(),
}}), flush=True)

rule work:
    output: "x"
    shell: "touch x"
"""


def settings(tmp_path: Path, *args: str) -> dict:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--dry-run", *args],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"},
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SETTINGS ")]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[0].split(" ", 1)[1])


def test_written_for_this_snakemake():
    assert snakemake.__version__ == smk.TESTED_WITH, (
        "Snakemake changed: check msrgb/snakemake_settings.py against it, then update TESTED_WITH"
    )
    from snakemake.scheduling.job_scheduler import JobScheduler

    assert hasattr(JobScheduler, "_schedule_reevalutation")  # end_scheduler_timers' target
    importlib.import_module("snakemake.api")  # snakemake.workflow is imported through it
    from snakemake.workflow import Workflow

    # start_hook_in_module: the start hook Snakemake calls, and how a Snakefile registers one
    assert "self._onstart = func" in inspect.getsource(Workflow.onstart)
    assert "self._onstart(" in inspect.getsource(Workflow.execute)


def test_local_run(tmp_path: Path):
    got = settings(tmp_path, "--cores", "3")
    assert got == {
        "cluster": False, "jobs": 3, "partition": None, "mem_mb": None, "threads": None, "executor": None,
        "shared_fs": True, "no_metadata": False, "report": False,
    }  # fmt: skip


def test_cluster_run_with_profile_style_settings(tmp_path: Path):
    got = settings(
        tmp_path, "--executor", "cluster-generic", "--cluster-generic-submit-cmd", "true",
        "--jobs", "5", "--default-resources", "slurm_partition=batch", "mem_mb=3000",
        "--set-threads", "work=7",
    )  # fmt: skip
    assert got == {
        "cluster": True, "jobs": 5, "partition": "batch", "mem_mb": "3000", "threads": 7,
        "executor": "cluster-generic", "shared_fs": True, "no_metadata": False, "report": False,
    }  # fmt: skip
    got = settings(
        tmp_path, "--executor", "cluster-generic", "--cluster-generic-submit-cmd", "true",
        "--jobs", "5", "--default-resources", "slurm_partition=batch",
        "--set-resources", "work:slurm_partition=gpu",
    )  # fmt: skip
    assert got["partition"] == "gpu"  # the rule's own setting wins


def test_jobs_without_a_shared_file_system(tmp_path: Path):
    got = settings(
        tmp_path, "--executor=cluster-generic", "--cluster-generic-submit-cmd", "true", "--jobs", "2",
        "--shared-fs-usage", "none", "--default-storage-provider", "fs", "--default-storage-prefix", "remote",
    )  # fmt: skip
    assert got["executor"] == "cluster-generic" and got["shared_fs"] is False
    got = settings(tmp_path, "--cores", "1", "--shared-fs-usage", "persistence", "software-deployment")
    assert got["shared_fs"] is False  # input-output not shared: the jobs see no file of the run
    got = settings(tmp_path, "--cores", "1", "--shared-fs-usage", "input-output", "persistence")
    assert got["shared_fs"] is True


def test_executor_named():
    assert smk.executor_named(["snakemake", "-e", "slurm", "--jobs", "4"]) == "slurm"
    assert smk.executor_named(["snakemake", "--executor=slurm"]) == "slurm"
    assert smk.executor_named(["snakemake", "--executor", "cluster-generic"]) == "cluster-generic"
    assert smk.executor_named(["snakemake", "--profile", "profiles/slurm"]) is None
    assert smk.executor_named(["snakemake", "--executor"]) is None


def test_whether_snakemake_keeps_metadata(tmp_path: Path):
    """A small change runs as one job only where Snakemake neither records nor holds per-file
    metadata (msrgb.planning.changes): --drop-metadata, from the command line or a profile, and
    no record left by an earlier run that kept them."""
    assert settings(tmp_path, "--cores", "1")["no_metadata"] is False
    assert settings(tmp_path, "--cores", "1", "--drop-metadata")["no_metadata"] is True
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text("drop-metadata: true\n")
    assert settings(tmp_path, "--cores", "1", "--profile", str(profile))["no_metadata"] is True
    (profile / "config.yaml").write_text("drop-metadata: false\n")
    assert settings(tmp_path, "--cores", "1", "--profile", str(profile))["no_metadata"] is False
    records = tmp_path / ".snakemake" / "metadata"
    records.mkdir(parents=True, exist_ok=True)
    assert settings(tmp_path, "--cores", "1", "--drop-metadata")["no_metadata"] is True  # none yet
    (records / "b3V0").write_text("{}")  # an earlier run kept one
    assert settings(tmp_path, "--cores", "1", "--drop-metadata")["no_metadata"] is False
    assert smk.keeps_no_metadata(type("W", (), {"workflow_settings": None})()) is False  # not from the CLI
    assert smk.makes_a_report() is True  # not from the CLI: as if it did
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "1", "--report", "r.html"], cwd=tmp_path, capture_output=True, text=True
    )
    assert '"report": true' in proc.stdout, proc.stdout + proc.stderr


def test_the_exit_freezes_what_is_left_and_runs_every_other_exit_handler():
    """At the exit of a process that read the workflow, the objects still alive are frozen
    before the exit handlers registered earlier run (they still run), the collector is off,
    and the exit status is the process's own."""
    code = (
        "import atexit, gc, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "atexit.register(lambda: print('earlier handler', gc.get_freeze_count() > 0, gc.isenabled(), flush=True))\n"
        "from msrgb.snakemake.settings import no_cycle_collection_at_exit\n"
        "no_cycle_collection_at_exit()\n"
        "atexit.register(lambda: print('later handler', gc.get_freeze_count() > 0, flush=True))\n"
        "sys.exit(3)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == ["later handler False", "earlier handler True False"], proc.stdout


def test_reading_the_workflow_sets_up_that_exit(tmp_path: Path):
    """Snakemake's process that read msrgb's workflow (a dry run here) freezes what is left at
    exit: seen by an exit handler registered at the interpreter's start, which runs last."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0, file=sys.stderr, flush=True))\n"
    )
    env = {"PYTHONPATH": str(tmp_path / "site")}
    proc = run_snakemake(tmp_path, "-n", env=env, input_dir=str(REPO / "sample" / "eurosat"), output_dir=str(tmp_path / "out"))
    assert "frozen at exit: True" in proc.stderr, proc.stderr[-2000:]
