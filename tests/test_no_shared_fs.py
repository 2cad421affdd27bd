"""Jobs that share no file system with the main process (``--shared-fs-usage none``, as on
Snakemake's cloud executors), with the cluster-generic executor: every job starts in a scratch
folder of its own holding a copy of the workflow (what a cloud executor deploys), Snakemake's
markers and logs go through its ``fs`` storage plugin, the images and the run's state through the
output_dir in a real S3 server (rclone serve s3). Checked: the same images and results as a run
on one machine, a no-op rerun submits no job, one new object makes one image, and a shard job
picks up the state an earlier job left (msrgb.jobs.runstore)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, assert_png_matches, pngs, run_snakemake
from s3server import S3Server, put_tree
from scratch_jobs import ScratchCluster

from msrgb.errors import PlanError
from msrgb.jobs import runstore
from msrgb.outputs.paths import OutputPaths

SAMPLE = REPO / "sample" / "eurosat"

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("snakemake_storage_plugin_fs") is None,
        reason="snakemake-storage-plugin-fs is not installed (requirements-test.txt)",
    ),
    pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (the fs storage plugin runs it)"),
]


class Cluster(ScratchCluster):
    """The main process in ``main`` (a copy of the workflow), its jobs in ``scratch``, with no
    shared file system; the S3 server's credentials for both."""

    def __init__(self, tmp_path: Path, s3: S3Server, products: dict):
        super().__init__(tmp_path, products)
        self.s3 = s3

    def run(self, check: bool = True, **config: str) -> subprocess.CompletedProcess[str]:
        cmd = self.command(False, "--config", *(f"{k}={v}" for k, v in config.items()))
        env = {**self.env(), **self.s3.env(), "LC_ALL": "C.UTF-8"}
        proc = subprocess.run(cmd, cwd=self.main, capture_output=True, text=True, env=env, timeout=600)
        if check and proc.returncode != 0:
            logs = "\n".join(f"--- {job}:\n{(job / 'out.txt').read_text()[-2000:]}" for job in self.jobs())
            raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n{logs}")
        return proc


PRODUCTS = {
    "truecolor": {"preset": "truecolor"},
    "p": {"preset": "truecolor", "stretch": {"type": "percentile", "scope": "dataset"}},
}


def test_jobs_without_a_shared_file_system_make_what_a_local_run_makes(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    (s3.root / "pngs").mkdir()
    cluster = Cluster(tmp_path, s3, PRODUCTS)
    local_config = tmp_path / "local.yaml"
    shutil.copy(cluster.main / "config" / "config.yaml", local_config)
    run_snakemake(tmp_path, "--configfile", str(local_config), input_dir=str(SAMPLE), output_dir="local")
    target = {"input_dir": "s3://data/eurosat", "output_dir": "s3://pngs/run", "shards": "2"}

    cluster.run(**target)
    bucket = s3.root / "pngs" / "run"
    assert [(job / "rc").read_text() for job in cluster.jobs()] == ["0\n", "0\n"]  # two shard jobs
    for product in PRODUCTS:
        assert pngs(bucket / product) == pngs(tmp_path / "local" / product), product
    for rel in ("errors.tsv", "p/manifest.tsv", "stretch/p.json", "histograms/truecolor.png",
                "contact_sheets/truecolor/overview.png", "contact_sheets/p/Cloud.png"):  # fmt: skip
        assert (bucket / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    summary = json.loads((bucket / "summary.json").read_text())
    assert summary["images"] == 20 and summary["converted"] == 20 and summary["shard_jobs"] == 2, summary
    # the jobs' state is in the bucket, and the main process has it for the next run's plan
    assert sorted(p.name for p in (bucket / ".msrgb" / "state" / "2").iterdir()) == ["0.tsv", "1.tsv"]
    work = cluster.main / "msrgb-work" / "pngs" / "run"
    for shard in ("0", "1"):
        state = work / ".msrgb" / "state" / "2" / f"{shard}.tsv"
        assert state.read_bytes() == (bucket / ".msrgb" / "state" / "2" / f"{shard}.tsv").read_bytes()

    proc = cluster.run(**target)
    assert "Nothing to be done" in proc.stderr and len(cluster.jobs()) == 2
    assert "truecolor: 0 to convert, 0 to remove, 20 up to date" in proc.stderr

    # one new object: a new sample for the dataset-wide stretch, so both shards run again; each
    # job reads the state its shard's earlier job left in the bucket, so the truecolor images
    # stay as they are (a job that did not would write every one of them again)
    shutil.copy(SAMPLE / "Cloud" / "Cloud_1.tif", s3.root / "data" / "eurosat" / "Cloud" / "Cloud_9.tif")
    before = {rel: (bucket / "truecolor" / rel).stat().st_mtime_ns for rel in pngs(bucket / "truecolor")}
    cluster.run(**target)
    assert len(cluster.jobs()) == 4
    assert_png_matches(bucket / "truecolor" / "Cloud" / "Cloud_9.png", SAMPLE / "Cloud" / "Cloud_1.tif")
    assert {rel: (bucket / "truecolor" / rel).stat().st_mtime_ns for rel in before} == before
    summary = json.loads((bucket / "summary.json").read_text())
    assert summary["images"] == 21 and summary["shard_jobs"] == 2, summary
    for path in [*work.rglob("*"), *bucket.rglob("*")]:
        if path.is_file():
            assert s3.secret.encode() not in path.read_bytes(), path


def test_a_work_folder_moves_to_jobs_without_a_shared_file_system_as_it_is(s3: S3Server, tmp_path: Path):
    """The first run with no shared file system puts the earlier states into the bucket: its
    jobs write no image again."""
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    (s3.root / "pngs").mkdir()
    cluster = Cluster(tmp_path, s3, {"truecolor": {"preset": "truecolor"}})
    target = {"input_dir": "s3://data/eurosat", "output_dir": "s3://pngs/run", "shards": "2"}
    run_snakemake(cluster.main, env=s3.env(), **target)  # one machine, the same work_dir
    bucket = s3.root / "pngs" / "run"
    before = {rel: (bucket / "truecolor" / rel).stat().st_mtime_ns for rel in pngs(bucket / "truecolor")}
    assert len(before) == 20 and not (bucket / ".msrgb").exists()

    cluster.run(**target)
    assert len(cluster.jobs()) == 2  # Snakemake's markers are in its storage now: the shards run
    assert {rel: (bucket / "truecolor" / rel).stat().st_mtime_ns for rel in pngs(bucket / "truecolor")} == before
    assert sorted(p.name for p in (bucket / ".msrgb" / "state" / "2").iterdir()) == ["0.tsv", "1.tsv"]


def test_a_job_that_fails_leaves_what_it_made_for_the_next_run(s3: S3Server, tmp_path: Path):
    """A shard job that fails (a bad input, on_error: fail: it makes everything else, then
    fails) puts what it made into the bucket before it ends; the next run's job, in another
    scratch folder, makes only the rest."""
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    (s3.root / "pngs").mkdir()
    bad = s3.root / "data" / "eurosat" / "ThinCirrus" / "ThinCirrus_3.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)  # a TIFF header and nothing else
    cluster = Cluster(tmp_path, s3, {"truecolor": {"preset": "truecolor"}})
    target = {"input_dir": "s3://data/eurosat", "output_dir": "s3://pngs/run", "on_error": "fail"}
    proc = cluster.run(check=False, **target)
    assert proc.returncode != 0
    bucket = s3.root / "pngs" / "run"
    made = {rel: (bucket / "truecolor" / rel).stat().st_mtime_ns for rel in pngs(bucket / "truecolor")}
    assert len(made) == 19 and "ThinCirrus/ThinCirrus_3.png" not in made  # everything else is made
    assert (bucket / ".msrgb" / "progress" / "1" / "0.tsv").exists()  # the failed job's checkpoint

    shutil.copy(SAMPLE / "ThinCirrus" / "ThinCirrus_3.tif", bad)
    cluster.run(**target)
    after = {rel: (bucket / "truecolor" / rel).stat().st_mtime_ns for rel in pngs(bucket / "truecolor")}
    assert len(after) == 20 and {rel: after[rel] for rel in made} == made
    assert not (bucket / ".msrgb" / "progress" / "1" / "0.tsv").exists()  # gone with the job's own
    for path in [*cluster.scratch.rglob("*"), *cluster.storage.rglob("*")]:
        if path.is_file():
            assert s3.secret.encode() not in path.read_bytes(), path


def test_local_folders_are_refused_without_a_shared_file_system(s3: S3Server, tmp_path: Path):
    """Jobs elsewhere could neither read a local input folder or ItemCollection nor write a
    local output folder: the run stops before any job, naming the setting."""
    cluster = Cluster(tmp_path, s3, {"truecolor": {"preset": "truecolor"}})
    (tmp_path / "items.json").write_text('{"type": "FeatureCollection", "features": []}')
    for config, message in (
        ({"input_dir": "s3://data/x", "output_dir": str(tmp_path / "out")}, "output_dir must be in S3"),
        ({"input_dir": str(SAMPLE), "output_dir": "s3://pngs/run"}, f"input_dir {str(SAMPLE)!r} is a local folder"),
        ({"stac_items": str(tmp_path / "items.json"), "output_dir": "s3://pngs/run"}, "is a local file, which jobs"),
    ):
        proc = cluster.run(check=False, **config)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert not cluster.jobs() and not (tmp_path / "out").exists() and not (s3.root / "pngs").exists()


def test_the_run_store_moves_a_shards_files_and_no_others(client: S3Server, tmp_path: Path):
    (client.root / "pngs").mkdir()
    main = OutputPaths(tmp_path / "main", "s3://pngs/run")
    job = OutputPaths(tmp_path / "job", "s3://pngs/run")
    # states of 2 and of 4 shards: shard 1 of 4 overlaps shard 1 of 2, shard 2 of 4 does not
    for path, text in ((main.state(2, 1), "two"), (main.state(4, 1), "four-1"), (main.state(4, 2), "four-2")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for n, shard in ((2, 1), (4, 1), (4, 2)):
        runstore.push_shard(main, n, shard)
        time.sleep(0.02)  # S3 times are milliseconds
    bucket = client.root / "pngs" / "run" / ".msrgb"
    assert sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*") if p.is_file()) == [
        "state/2/1.tsv", "state/4/1.tsv", "state/4/2.tsv",
    ]  # fmt: skip
    runstore.pull_shard(job, 2, 1)
    assert [p.read_text() for p in job.related_states(2, 1)] == ["two", "four-1"]  # oldest first
    assert not job.state(4, 2).exists() and not job.progress(2, 1).exists()

    # a job that ends without a checkpoint deletes the one an earlier job left above
    job.progress(2, 1).parent.mkdir(parents=True)
    job.progress(2, 1).write_text("checkpoint")
    runstore.push_shard(job, 2, 1)
    assert (bucket / "progress" / "2" / "1.tsv").read_text() == "checkpoint"
    job.progress(2, 1).unlink()
    runstore.push_shard(job, 2, 1)
    assert not (bucket / "progress" / "2" / "1.tsv").exists()

    # the summary's pull makes the main process's states those above; a stale one goes
    main.state(4, 3).write_text("stale")
    runstore.pull_states(main, 4)
    assert sorted(p.name for p in main.state(4, 0).parent.iterdir()) == ["1.tsv", "2.tsv"]

    with pytest.raises(PlanError, match=r"s3://pngs/run/\.msrgb/plan\.tsv is missing: the run's main process leaves it"):
        runstore.pull_plan(job)
