"""python -m msrgb.tools.status: per product, what is up to date, stale, missing, bad or to remove."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_engine, run_snakemake

from msrgb import synth


def status(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "msrgb.tools.status", str(out), *args],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip


def test_status_before_and_after_a_rerun(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    assert status(out).returncode == 2, "no run yet: not an msrgb output folder"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    done = status(out, "--input", str(dataset))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("truecolor: 31 up to date, 0 stale, 0 missing, 0 bad, 0 to remove")

    (out / "truecolor" / "Forest" / "Forest_1.png").unlink()
    (out / "truecolor" / "River" / "River_2.png").unlink()
    synth.write_tile(dataset / "SeaLake" / "SeaLake_1.tif", synth.make_tile("Forest", 5), (0.0, 0.0), 32632)
    os.utime(dataset / "SeaLake" / "SeaLake_1.tif", ns=(1, 1))  # another mtime for sure
    synth.write_tile(dataset / "New" / "new.tif", synth.make_tile("River", 5), (0.0, 0.0), 32632)
    (dataset / "Highway" / "Highway_3.tif").unlink()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    proc = status(out, "--input", str(dataset))
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first == "truecolor: 27 up to date, 1 stale, 3 missing, 0 bad, 1 to remove", proc.stdout
    assert "missing: " + str(out / "truecolor" / "New" / "new.png") in proc.stdout
    assert "stale: " + str(out / "truecolor" / "SeaLake" / "SeaLake_1.png") in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before, "it wrote"
    # without --input only the inputs of the last run's plan are looked at
    assert status(out).stdout.startswith("truecolor: 29 up to date, 0 stale, 2 missing")

    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert status(out, "--input", str(dataset)).returncode == 0


def test_status_counts_bad_inputs_skipped(tmp_path: Path, dataset: Path):
    (dataset / "Forest" / "broken.tif").write_text("not a tiff")
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), on_error="skip")
    proc = status(out, "--input", str(dataset), "--list", "0")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "truecolor: 31 up to date, 0 stale, 0 missing, 1 bad, 0 to remove",
        "  ... and 1 more bad",
    ]


def test_damaged_stretch_limits_count_as_not_computed(tmp_path: Path, dataset: Path):
    """A dataset-wide stretch whose limits file is damaged: its images are stale for status
    and to convert for the next run's counts, and nobody fails on it."""
    out = tmp_path / "out"
    products = '{"ds": {"preset": "truecolor", "stretch": {"type": "percentile", "scope": "dataset"}}}'
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), products=products)
    assert status(out).returncode == 0
    (out / "stretch" / "ds.json").write_text('{"limits": [[0, 1], ')  # cut short
    proc = status(out)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("ds: 0 up to date, 31 stale, 0 missing"), proc.stdout
    dry = run_snakemake(tmp_path, "-n", input_dir=str(dataset), output_dir=str(out), products=products)
    assert "msrgb: ds: 31 to convert, 0 to remove, 0 up to date" in dry.stderr, dry.stderr[-2000:]
