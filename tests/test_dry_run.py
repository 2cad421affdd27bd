"""Reading the workflow is a question, not an action: dry runs, --lint, --list-rules, --summary
and --report leave the output folder as it was (docs/how-it-works.md, "Dry runs")."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, run_engine, run_snakemake, snapshot

from msrgb import synth

QUESTIONS = [
    pytest.param(["-n"], id="dry-run"),
    pytest.param(["--lint"], id="lint"),
    pytest.param(["--list-rules"], id="list-rules"),
    pytest.param(["--summary"], id="summary"),
    pytest.param(["--report", "{tmp}/report.html"], id="report"),
]


@pytest.mark.parametrize("args", QUESTIONS)
def test_questions_leave_a_new_output_folder_absent(tmp_path: Path, args: list[str]):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in args]
    proc = run_snakemake(tmp_path, *args, check=False, input_dir=str(REPO / "sample" / "eurosat"), output_dir=str(out))
    # --lint exits 1 when it has advice; --report before any run finds nothing to report
    # (Snakemake: "marked for report but does not exist"); what matters is what they write
    if "--report" in args and proc.returncode:
        assert "marked for report but does not exist" in proc.stderr, proc.stderr[-3000:]
    else:
        assert proc.returncode in ((0, 1) if "--lint" in args else (0,)), proc.stderr[-3000:]
    assert not out.exists(), f"{args} wrote into the output folder: {sorted(map(str, out.rglob('*')))[:10]}"


def test_dry_run_counts_and_changes_nothing_after_a_run(tmp_path: Path):
    out = tmp_path / "out"
    config = {"input_dir": str(REPO / "sample" / "eurosat"), "output_dir": str(out)}
    first = run_snakemake(tmp_path, "-n", **config)
    assert "truecolor: 20 to convert" in first.stderr
    run_engine(tmp_path, **config)
    before = snapshot(out)
    for args in (["-n"], ["--summary"], ["--list-rules"]):
        proc = run_snakemake(tmp_path, *args, **config)
        after = snapshot(out)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"{args} changed {changed[:10]}"
    assert "truecolor: 0 to convert, 0 to remove, 20 up to date" in proc.stderr or "-n" not in args
    dry = run_snakemake(tmp_path, "-n", **config)
    assert "truecolor: 0 to convert, 0 to remove, 20 up to date" in dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.parametrize("small_change", ["1000", "0"])
def test_dry_run_after_a_change_names_the_shard_and_writes_nothing(tmp_path: Path, dataset: Path, small_change: str):
    """A new input: the dry run counts it and lists the job that will make it (a small
    change's one job, or with small_change 0 the shard's job); a deleted image: the dry run
    lists its shard too (without touching the state, as planning once did)."""
    out = tmp_path / "out"
    config = {"input_dir": str(dataset), "output_dir": str(out), "small_change": small_change}
    run_engine(tmp_path, **config)
    synth.write_tile(dataset / "Forest" / "new.tif", synth.make_tile("Forest", 77), (500000.0, 5000000.0), 32632)
    next(out.glob("truecolor/River/*.png")).unlink()
    before = snapshot(out)
    dry = run_snakemake(tmp_path, "-n", **config)
    assert snapshot(out) == before
    assert "truecolor: 2 to convert" in dry.stderr
    if small_change == "0":
        assert re.search(r"^convert_shard\s+1$", dry.stdout, re.M), dry.stdout
        assert not re.search(r"^convert_changes", dry.stdout, re.M)
    else:  # nor the contact sheets' and the summary's own jobs: the change's job makes them
        assert re.search(r"^convert_changes\s+1$", dry.stdout, re.M), dry.stdout
        assert not re.search(r"^(convert_shard|summarize|contact_sheets)", dry.stdout, re.M), dry.stdout
        assert "msrgb: a small change: shard 0 of 1" in dry.stderr
    run_engine(tmp_path, **config)
    again = run_snakemake(tmp_path, "-n", **config)
    assert "truecolor: 0 to convert, 0 to remove, 32 up to date" in again.stderr
    assert "Nothing to be done" in again.stdout + again.stderr


def test_only_an_image_made_before_and_gone_reruns_an_unchanged_shard(tmp_path: Path, dataset: Path):
    """A new input changes its shard's manifest, which names the job's marker (no time
    appended); an image deleted by hand leaves the manifest as it was, so its shard is asked to
    run with the time appended to its token; an input skipped as bad has no image on purpose."""
    out = tmp_path / "out"
    config = {"input_dir": str(dataset), "output_dir": str(out), "shards": "1", "on_error": "skip", "small_change": "0"}
    (dataset / "Forest" / "bad.tif").write_bytes(b"not a tiff")
    run_engine(tmp_path, **config)

    def tokens() -> list[str]:
        dry = run_snakemake(tmp_path, "-n", **config)
        return re.findall(r"token=([0-9a-f]+(?:-\d+)?)", dry.stdout)

    assert tokens() == []  # the bad input has no image: nothing to do
    synth.write_tile(dataset / "Forest" / "new.tif", synth.make_tile("Forest", 77), (500000.0, 5000000.0), 32632)
    assert [bool(re.search(r"-\d+$", t)) for t in tokens()] == [False]
    run_engine(tmp_path, **config)
    next(out.glob("truecolor/River/*.png")).unlink()
    assert [bool(re.search(r"-\d+$", t)) for t in tokens()] == [True]


def wait_until_stopped(group: int) -> None:
    """Wait until every process of the process group ``group`` is stopped (state T)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process has ended
                continue
            if int(fields[2]) == group:  # fields: state, ppid, pgrp, ...
                states.append(fields[0])
        if states and all(state in "TtZ" for state in states):
            return
        time.sleep(0.01)
    raise AssertionError(f"process group {group} did not stop")


def test_dry_run_during_a_run_answers_and_does_not_disturb_it(tmp_path: Path):
    """The run is frozen (SIGSTOP) while one of its shard jobs works, the dry run asks, the run
    goes on (SIGCONT) and finishes with every image right."""
    inputs = tmp_path / "tif"
    synth.generate(inputs, 40)
    out = tmp_path / "out"
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
        str(REPO / "config" / "config.yaml"), "--cores", "1", "--config", f"input_dir={inputs}",
        f"output_dir={out}", "shards=2",
    ]  # fmt: skip
    run = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / ".msrgb" / "live").rglob("*.json")):
            assert run.poll() is None, run.stdout.read().decode()[-3000:] if run.stdout else ""
            assert time.monotonic() < deadline, "the run never started a shard job"
            time.sleep(0.02)
        os.killpg(run.pid, signal.SIGSTOP)
        try:
            wait_until_stopped(run.pid)  # a signal is delivered when each process next runs
            frozen = snapshot(out)
            dry = subprocess.run([*cmd[:7], "-n", *cmd[9:]], cwd=tmp_path, capture_output=True, text=True)
            assert snapshot(out) == frozen, "the dry run wrote into the folder of a running run"
        finally:
            os.killpg(run.pid, signal.SIGCONT)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert "truecolor:" in dry.stderr and "to convert" in dry.stderr
        assert run.wait(timeout=300) == 0, run.stdout.read().decode()[-3000:] if run.stdout else ""
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert len(list((out / "truecolor").rglob("*.png"))) == 400
    final = run_snakemake(tmp_path, "-n", input_dir=str(inputs), output_dir=str(out), shards="2")
    assert "truecolor: 0 to convert, 0 to remove, 400 up to date" in final.stderr


def test_a_change_that_moves_no_shard_still_reruns_the_job_it_concerns(tmp_path: Path):
    """Larger thumbnails change only the contact sheets: no shard job runs, the sheets are drawn
    again (their marker is named by a digest of their manifests; no Snakemake metadata needed,
    which the default profile drops)."""
    from PIL import Image

    out = tmp_path / "out"
    config = {"input_dir": str(REPO / "sample" / "eurosat"), "output_dir": str(out)}
    run_engine(tmp_path, **config)
    sheet = out / "contact_sheets" / "truecolor" / "BareSoil.png"
    width = Image.open(sheet).width
    dry = run_snakemake(tmp_path, "-n", thumbnail_size="64", **config)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, re.M))  # Snakemake's job stats
    assert jobs.get("contact_sheets_truecolor") == "1" and "convert_shard" not in jobs, dry.stdout
    run_engine(tmp_path, thumbnail_size="64", **config)
    assert Image.open(sheet).width < width
    again = run_snakemake(tmp_path, "-n", thumbnail_size="64", **config)
    assert "Nothing to be done" in again.stdout + again.stderr
