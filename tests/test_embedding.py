"""Inside other pipelines: use as a Snakemake module, and the provenance manifest + checker."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, assert_png_matches, run_engine, run_snakemake

from msrgb import cli, synth

HOST_SNAKEFILE = """
configfile: "host.yaml"


module msrgb:
    snakefile:
        "{snakefile}"
    config:
        config["msrgb"]


use rule * from msrgb as msrgb_*


rule all:
    default_target: True
    input:
        rules.msrgb_all.input,
        "train/ready.txt",


rule train:  # stands for the host's next step, which uses the PNGs
    input:
        rules.msrgb_all.input,
    output:
        "train/ready.txt",
    shell:
        "ls pngs/truecolor/Forest > {{output}}"


onstart:  # the host's own start hook: msrgb's must still run (it writes the plan)
    print("host onstart ran")
"""


def test_host_workflow_uses_msrgb_as_a_module(tmp_path: Path) -> None:
    tifs = tmp_path / "data" / "tif"
    synth.generate(tifs, 2)
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=REPO / "Snakefile"))
    (host / "host.yaml").write_text(
        f"msrgb:\n  input_dir: {tifs}\n  output_dir: pngs\n  products: [truecolor, falsecolor]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2"],
        cwd=host, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "host onstart ran" in proc.stdout + proc.stderr
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n"], cwd=host, capture_output=True, text=True)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr, dry.stderr[-3000:]
    for tif in tifs.rglob("*.tif"):
        assert_png_matches(host / "pngs" / "truecolor" / tif.relative_to(tifs).with_suffix(".png"), tif)
        assert (host / "pngs" / "falsecolor" / tif.relative_to(tifs).with_suffix(".png")).exists()
    assert "Forest_1.png" in (host / "train" / "ready.txt").read_text()
    assert not (REPO / "pngs").exists(), "nothing may be written into this repository"


def test_provenance_manifest_and_checker(tmp_path: Path, dataset: Path, capsys) -> None:
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    lines = (out / "truecolor" / "manifest.tsv").read_text().splitlines()
    assert lines[0].startswith("# msrgb provenance manifest v1")
    assert lines[1].startswith("# env\t") and "rasterio=" in lines[1] and "GDAL=" in lines[1]
    header = lines[2].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in lines[3:]]
    tifs = sorted(p for p in dataset.rglob("*") if p.suffix in (".tif", ".tiff"))
    assert len(rows) == len(tifs)
    for row in rows:
        png = out / "truecolor" / row["path"]
        assert hashlib.sha256(png.read_bytes()).hexdigest() == row["png_sha256"]
        source = next(t for t in tifs if t.relative_to(dataset).with_suffix(".png").as_posix() == row["path"])
        assert hashlib.sha256(source.read_bytes()).hexdigest() == row["source_sha256"]
        assert int(row["source_size"]) == source.stat().st_size
    assert cli.main(["verify", str(out), "--input", str(dataset)]) == 0

    # Every kind of difference is reported.
    first = out / "truecolor" / rows[0]["path"]
    first.write_bytes(first.read_bytes() + b"x")
    (out / "truecolor" / rows[1]["path"]).unlink()
    (out / "truecolor" / "stray.png").write_bytes(b"")
    source = dataset / rows[2]["path"].replace(".png", ".tif")
    source.write_bytes(source.read_bytes()[:-1] + b"\x01")
    capsys.readouterr()
    assert cli.main(["verify", str(out), "--input", str(dataset)]) == 1
    report = capsys.readouterr().out
    assert f"{first}: content differs" in report
    assert f"{rows[1]['path']}: missing" in report
    assert "stray.png: not in the manifest" in report
    assert f"{source}: source differs" in report
    assert "4 difference(s)" in report

    # The manifest follows the tree: a rerun after the changes makes it match again.
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    (out / "truecolor" / "stray.png").unlink()
    first.unlink()  # a corrupted PNG is not detected by a rerun; deleting it rebuilds it
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert cli.main(["verify", str(out), "--input", str(dataset)]) == 0


def test_a_small_change_in_a_host_that_keeps_snakemakes_metadata_runs_each_job(tmp_path: Path) -> None:
    """A host that keeps Snakemake's per-file metadata (its default): a small change runs a job
    per shard and the summary's job, as one job's markers would not match what Snakemake
    records, and the next run finds nothing to do; --drop-metadata later does not change that
    while records of the earlier runs remain (Snakemake still reads them)."""
    tifs = tmp_path / "data" / "tif"
    synth.generate(tifs, 2)
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(HOST_SNAKEFILE.format(snakefile=REPO / "Snakefile"))
    (host / "host.yaml").write_text(f"msrgb:\n  input_dir: {tifs}\n  output_dir: pngs\n  png_targets: false\n")

    def snakemake(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "--cores", "2", *args],
            cwd=host, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C.UTF-8"}, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    snakemake()
    for i, flags in enumerate([(), ("--drop-metadata",)]):
        synth.write_tile(tifs / "Forest" / f"new_{i}.tif", synth.make_tile("Forest", 80 + i), (500000.0, 5000000.0), 32632)
        ran = snakemake(*flags)
        assert "msrgb_convert_shard" in ran and "msrgb_summarize" in ran and "convert_changes" not in ran, ran[-3000:]
        if not flags:
            dry = snakemake("-n")
            assert "Nothing to be done" in dry, dry[-3000:]
        assert_png_matches(host / "pngs" / "truecolor" / "Forest" / f"new_{i}.png", tifs / "Forest" / f"new_{i}.tif")
