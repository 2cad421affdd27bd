"""The real workflow, run with real Snakemake on generated EuroSAT-format data."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import REPO, assert_png_matches, converted_counts, run_engine, run_snakemake

from msrgb import synth
from msrgb.errors import OutputError
from msrgb.planning.sharding import shard_of


def all_pngs(out: Path) -> list[Path]:
    return sorted((out / "truecolor").rglob("*.png"))


def check_tree(tifs: Path, out: Path) -> int:
    """Every TIFF has its PNG with the reference pixels, and there is nothing else."""
    expected = {
        p.relative_to(tifs).with_suffix(".png")
        for p in tifs.rglob("*")
        if p.suffix.lower() in (".tif", ".tiff")
    }
    pngs = all_pngs(out)
    assert {p.relative_to(out / "truecolor") for p in pngs} == expected
    assert not [p for p in (out / "truecolor").rglob(".*")], "temporary files left behind"
    for png in pngs:
        rel = png.relative_to(out / "truecolor")
        tif = next(t for t in (tifs / rel.with_suffix(".tif"), tifs / rel.with_suffix(".tiff")) if t.exists())
        assert_png_matches(png, tif)
    return len(pngs)


def mtimes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in all_pngs(out)}


def test_full_run_then_noop(tmp_path: Path, dataset: Path):
    """The whole workflow under Snakemake: every image, the summary at the end, and a second
    run that Snakemake finds nothing to do for. The in-process engine, which runs most other
    tests, writes the same files with the same bytes, and finds nothing to do either."""
    out = tmp_path / "out"
    proc = run_snakemake(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert "msrgb summary" in proc.stdout and re.search(r"converted this run +31\n", proc.stdout), proc.stdout
    assert check_tree(dataset, out) == 31
    before = mtimes(out)
    proc = run_snakemake(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert "Nothing to be done" in proc.stderr + proc.stdout
    assert mtimes(out) == before

    engine = run_engine(tmp_path, input_dir=str(dataset), output_dir=str(tmp_path / "engine"))
    assert engine.shards == [0] and "summary" in engine.parts
    assert same_results(out, tmp_path / "engine")
    # after a change too, Snakemake finds nothing to do where the engine ran
    synth.write_tile(dataset / "Forest" / "new.tif", synth.make_tile("Forest", 77), (500000.0, 5000000.0), 32632)
    next((tmp_path / "engine" / "truecolor" / "River").glob("*.png")).unlink()
    assert run_engine(tmp_path, input_dir=str(dataset), output_dir=str(tmp_path / "engine")).shards == [0]
    dry = run_snakemake(tmp_path, "-n", input_dir=str(dataset), output_dir=str(tmp_path / "engine"))
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
    (dataset / "Forest" / "new.tif").unlink()
    again = run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert not again.shards and not again.parts, "the engine would redo what Snakemake made"


def same_results(a: Path, b: Path) -> bool:
    """The results in ``a`` and ``b`` are the same files with the same bytes (summary.json
    but for its timings; the state folder and the jobs' logs, which only Snakemake writes, are
    not compared)."""
    def files(root: Path) -> dict[str, bytes]:
        found = {}
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not rel.startswith((".msrgb/", "logs/")):
                found[rel] = p.read_bytes()
        return found

    left, right = files(a), files(b)
    assert sorted(left) == sorted(right)
    untimed = ("wall_seconds", "images_per_second", "finished", "started")
    for rel in left:
        if rel == "summary.json":
            one, two = (json.loads(x[rel]) for x in (left, right))
            assert {k: v for k, v in one.items() if k not in untimed} == {k: v for k, v in two.items() if k not in untimed}
        else:
            assert left[rel] == right[rel], rel
    return True


def test_deleted_png_is_rebuilt_alone(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    before = mtimes(out)
    victim = out / "truecolor" / "Forest" / "Forest_2.png"
    victim.unlink()
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert converted_counts(out) == 1
    after = mtimes(out)
    assert victim in after
    assert {p: t for p, t in after.items() if p != victim} == {
        p: t for p, t in before.items() if p != victim
    }
    check_tree(dataset, out)


def test_deleted_pngs_are_rebuilt_in_shards_that_change_and_in_those_that_do_not(tmp_path: Path, dataset: Path):
    """A rerun with a new TIFF (its shard's manifest changes, so that job runs anyway) and one
    PNG deleted in every shard (the other shards' manifests are unchanged: planning must send
    them to run again) rebuilds every deleted PNG and touches nothing else."""
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), shards="4")
    before = mtimes(out)
    def rel(png: Path) -> str:
        return png.relative_to(out / "truecolor").with_suffix(".tif").as_posix()

    victims = {shard: next(p for p in before if shard_of(rel(p), 4) == shard) for shard in range(4)}
    synth.generate(dataset, 1, classes=("SeaLake",), start=100)
    new_shard = shard_of("SeaLake/SeaLake_100.tif", 4)
    for victim in victims.values():
        victim.unlink()
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), shards="4")
    assert converted_counts(out) == 5, f"new file in shard {new_shard}"
    after = mtimes(out)
    assert all(v in after for v in victims.values())
    assert {p: t for p, t in after.items() if p in before and p not in victims.values()} == {
        p: t for p, t in before.items() if p not in victims.values()
    }
    check_tree(dataset, out)
    proc = run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), shards="4")
    assert not proc.shards and not proc.parts


def test_new_and_changed_tiffs_rerun_only_those(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    synth.generate(dataset, 2, classes=("SeaLake",), start=100)  # 2 new files
    changed = dataset / "River" / "River_1.tif"
    time.sleep(0.01)
    synth.write_tile(changed, synth.make_tile("Industrial", 5), (0.0, 0.0), 32632)
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert converted_counts(out) == 3
    assert check_tree(dataset, out) == 33


def test_deleted_tiff_removes_its_png(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    (dataset / "Pasture" / "Pasture_3.tif").unlink()
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    assert not (out / "truecolor" / "Pasture" / "Pasture_3.png").exists()
    assert check_tree(dataset, out) == 30


def test_changed_setting_reconverts_and_same_setting_does_not(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), png_compression="best")
    assert converted_counts(out) == 31
    check_tree(dataset, out)  # pixels are the same whatever the compression
    proc = run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), png_compression="best")
    assert not proc.shards and not proc.parts


def test_png_is_a_buildable_target(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    target = out / "truecolor" / "Forest" / "Forest_3.png"
    folders = {"input_dir": str(dataset), "output_dir": str(out), "png_targets": "True"}
    run_snakemake(tmp_path, str(target), **folders)
    assert_png_matches(target, dataset / "Forest" / "Forest_3.tif")
    target.unlink()
    run_snakemake(tmp_path, str(target), **folders)
    assert target.exists()


def test_png_declaring_rules_exist_only_when_wanted(tmp_path: Path, dataset: Path):
    """png_targets: auto (not a module) leaves out the rules that declare every PNG (they cost
    Snakemake time and memory at scale); true/false force it."""
    folders = {"input_dir": str(dataset), "output_dir": str(tmp_path / "out")}
    listed = run_snakemake(tmp_path, "--list-rules", **folders).stdout
    assert "convert_shard\n" in listed and "convert_pngs_" not in listed
    listed = run_snakemake(tmp_path, "--list-rules", png_targets="True", **folders).stdout
    assert "convert_pngs_0" in listed
    target = str(tmp_path / "out" / "truecolor" / "River" / "River_1.png")
    proc = run_snakemake(tmp_path, target, "--dry-run", png_targets="True", **folders)
    assert "convert_pngs_0" in proc.stdout
    for setting in ("auto", "False"):
        proc = run_snakemake(tmp_path, target, "--dry-run", check=False, png_targets=setting, **folders)
        assert proc.returncode != 0 and "No rule to produce" in proc.stdout + proc.stderr


def test_cores_shard_and_thread_settings_give_identical_bytes(tmp_path: Path, dataset: Path):
    """Same inputs, settings and libraries: the same PNG bytes (and provenance manifests),
    whatever --cores, shard count, thread count or read-ahead."""
    settings = [("1", "1", "1", "64"), ("2", "4", "3", "0"), ("2", "auto", "auto", "1")]
    outs = []
    for cores, shards, threads, ahead in settings:
        out = tmp_path / f"c{cores}-s{shards}-t{threads}-r{ahead}"
        run_engine(tmp_path, "--cores", cores, input_dir=str(dataset), output_dir=str(out), shards=shards, threads_per_shard=threads, read_ahead=ahead, products="[truecolor,swir]")
        outs.append(out)
    def images(out: Path) -> dict[Path, bytes]:
        return {p.relative_to(out): p.read_bytes() for name in ("truecolor", "swir") for p in (out / name).rglob("*.png")}

    first = images(outs[0])
    assert len(first) == 2 * 31
    for out in outs[1:]:
        other = images(out)
        assert other == first, out
        for product in ("truecolor", "swir"):
            assert (out / product / "manifest.tsv").read_text() == (outs[0] / product / "manifest.tsv").read_text()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"no_such_key": "1"}, "no_such_key"),
        ({"png_compression": "zip"}, "zip"),
        ({"shards": "3"}, "not a power of two"),
        ({"input_dir": "/nonexistent/folder"}, "folder '/nonexistent/folder' does not exist"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(tmp_path: Path, dataset: Path, config, message):
    settings = {"input_dir": str(dataset), "output_dir": str(tmp_path / "out"), **config}
    proc = run_engine(tmp_path, check=False, **settings)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


def test_output_inside_input_is_rejected(tmp_path: Path, dataset: Path):
    proc = run_engine(tmp_path, check=False, input_dir=str(dataset), output_dir=str(dataset / "png"))
    assert proc.returncode != 0 and "inside 'input_dir'" in proc.stderr
    assert not (dataset / "png").exists()


def recorded_images(out: Path) -> int:
    """Images on disk that a shard's state or progress file records as made (a progress file
    the run deletes while it is read counts for none)."""
    count = 0
    for state in [*(out / ".msrgb" / "state").rglob("*.tsv"), *(out / ".msrgb" / "progress").rglob("*.tsv")]:
        try:
            lines = state.read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        count += sum(1 for line in lines if not line.startswith("!") and (out / "truecolor" / line.split("\t")[0]).with_suffix(".png").exists())
    return count


def test_kill_and_resume(tmp_path: Path):
    """kill -9 of the whole run in the middle, then the documented resume command."""
    tifs = tmp_path / "tif"
    synth.generate(tifs, 60)  # 600 files
    out = tmp_path / "out"
    # 8 shards on 2 cores: four waves of jobs, so that the run is still going for several job
    # start-ups after the first wave's PNGs exist (converting 600 tiles alone takes a blink)
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
        "--configfile", str(REPO / "config" / "config.yaml"), "--config", f"input_dir={tifs}", f"output_dir={out}", "shards=8", "threads_per_shard=1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # Kill once a first shard's work is on record (its state, or a checkpoint of a shard still
    # going): PNGs alone can all exist while no shard has written its state yet.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and recorded_images(out) > 0:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(all_pngs(out))
    assert 0 < done_before < 600, f"kill came too late or too early ({done_before} PNGs)"
    for png in all_pngs(out):  # whatever is there is complete and right
        rel = png.relative_to(out / "truecolor").with_suffix(".tif")
        assert_png_matches(png, tifs / rel)
    # Work recorded in the shards' state files (checkpointed every second) is not redone.
    recorded = recorded_images(out)
    assert recorded > 0, "no checkpoint was written before the kill"
    # The documented resume: unlock (the killed run left its lock), then run again.
    run_snakemake(tmp_path, "--unlock", input_dir=str(tifs), output_dir=str(out))
    run_snakemake(tmp_path, input_dir=str(tifs), output_dir=str(out))
    assert converted_counts(out) == 600 - recorded
    assert check_tree(tifs, out) == 600


PRODUCTS_CONFIG = """
products:
  truecolor:
  falsecolor:
  ds:
    preset: truecolor
    stretch: {type: percentile, low: 2, high: 98, scope: dataset, sample: 12}
  geo16:
    preset: swir
    bit_depth: 16
    nodata: 0
    world_file: true
"""


def test_several_products_in_one_run(tmp_path: Path, dataset: Path):
    cfg = tmp_path / "products.yaml"
    cfg.write_text(PRODUCTS_CONFIG)
    out = tmp_path / "out"
    run_engine(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), str(cfg), input_dir=str(dataset), output_dir=str(out))
    tifs = sorted(p for p in dataset.rglob("*") if p.suffix in (".tif", ".tiff"))
    # the dataset-wide limits: independent percentiles over the recorded sample
    sample = json.loads((out / ".msrgb" / "samples" / "ds.json").read_text())["files"]
    assert len(sample) == 12
    pixels = []
    for rel in sample:
        with rasterio.open(dataset / rel) as src:
            pixels.append(src.read([4, 3, 2]).reshape(3, -1))
    want_limits = np.percentile(np.concatenate(pixels, axis=1).astype(np.float64), [2, 98], axis=1).T
    record = json.loads((out / "stretch" / "ds.json").read_text())
    assert np.allclose(record["limits"], want_limits)
    for tif in tifs:
        rel = tif.relative_to(dataset).with_suffix(".png")
        with rasterio.open(tif) as src:
            ms = np.moveaxis(src.read(), 0, -1).astype(np.float64)
            crs, transform = src.crs, src.transform
        assert np.array_equal(iio.imread(out / "truecolor" / rel), (255 * (ms[..., (3, 2, 1)] / 4000).clip(0, 1)).astype(np.uint8))
        assert np.array_equal(iio.imread(out / "falsecolor" / rel), (255 * (ms[..., (7, 3, 2)] / 4000).clip(0, 1)).astype(np.uint8))
        ds = np.stack(
            [(255 * ((ms[..., b] - lo) / (hi - lo)).clip(0, 1)).astype(np.uint8) for b, (lo, hi) in zip((3, 2, 1), record["limits"])],
            axis=-1,
        )
        assert np.array_equal(iio.imread(out / "ds" / rel), ds)
        with rasterio.Env(GDAL_PAM_ENABLED="YES", GDAL_DISABLE_READDIR_ON_OPEN="FALSE"), rasterio.open(out / "geo16" / rel) as png:  # as QGIS
            assert png.count == 4 and png.dtypes[0] == "uint16"
            assert png.crs == crs and png.transform.almost_equals(transform)
            got = np.moveaxis(png.read(), 0, -1)
        swir = (65535 * (ms[..., (11, 12, 3)] / 4000).clip(0, 1)).astype(np.uint16)
        assert np.array_equal(got[..., :3], swir)
        assert np.array_equal(got[..., 3], np.where((ms[..., (11, 12, 3)] == 0).any(axis=-1), 0, 65535))

    # Changing one product's settings redoes that product only.
    inodes = {p: p.stat().st_ino for p in out.rglob("*.png")}
    cfg.write_text(PRODUCTS_CONFIG.replace("swir", "agriculture"))
    run_engine(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), str(cfg), input_dir=str(dataset), output_dir=str(out))
    parts = [p.relative_to(out).parts for p, ino in inodes.items() if p.stat().st_ino != ino]
    per_product = ("contact_sheets", "clipping", "histograms", "legends")
    changed = {Path(x[1]).stem if x[0] in per_product else x[0] for x in parts}
    assert changed == {"geo16"}, "only the changed product (and its sheets and histogram) is redone"


def test_one_shard_rule_takes_snakemake_overrides(tmp_path: Path, dataset: Path):
    """Every shard job comes from one rule, convert_shard, so Snakemake's own per-rule settings
    reach all of them."""
    folders = {"input_dir": str(dataset), "output_dir": str(tmp_path / "out")}
    proc = run_snakemake(tmp_path, "--dry-run", "--set-resources", "convert_shard:runtime=77",
                         "--set-threads", "convert_shard=2", shards="2", **folders)  # fmt: skip
    jobs = proc.stdout.split("rule convert_shard:")[1:]
    assert len(jobs) == 2, proc.stdout
    for job in jobs:
        job = job.split("\n[")[0]  # up to the next job's time stamp
        assert "runtime=77" in job and "threads: 2" in job, job


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"shards": 3}, "config 'shards': 3 is not a power of two"),
        ({"products": {"x": {"bands": ["B04", "B03", "B99"]}}}, "has unknown band name(s) ['B99']"),
        ({"threads_per_shard": 0}, "threads_per_shard"),
    ],
    ids=["shards", "products", "threads"],
)
def test_a_wrong_setting_writes_nothing(tmp_path: Path, dataset: Path, setting, message):
    """Every setting is checked before the run writes anything: no lock, plan or state."""
    out = tmp_path / "out"
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(json.dumps({"input_dir": str(dataset), "output_dir": str(out), **setting}))
    config = ("--configfile", str(REPO / "config" / "config.yaml"), str(cfg))
    proc = run_engine(tmp_path, *config, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-3000:]
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


def job_counts(proc: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The jobs a Snakemake run ran, by rule, from its job stats."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.MULTILINE) if m[1] != "total"}


def test_a_small_change_runs_as_one_job_with_the_results_of_a_job_per_shard(tmp_path: Path, dataset: Path):
    """New, changed and deleted inputs and an image deleted by hand, in some of four shards: one
    job (convert_changes) converts them and makes the contact sheets and the summary, and the
    results are byte for byte those of a job per shard (small_change 0); the next run finds
    nothing to do, under Snakemake and in the engine."""

    def config(out: Path, **more: str) -> dict[str, str]:
        return {"input_dir": str(dataset), "output_dir": str(out), "shards": "4", "products": "[truecolor,ndvi]", **more}

    one, apart = tmp_path / "one", tmp_path / "apart"
    for out in (one, apart):
        run_engine(tmp_path, **config(out))
    synth.write_tile(dataset / "Forest" / "new.tif", synth.make_tile("Forest", 77), (500000.0, 5000000.0), 32632)
    synth.write_tile(dataset / "River" / "River_1.tif", synth.make_tile("River", 55), (500000.0, 5000000.0), 32632)
    (dataset / "Pasture" / "Pasture_2.tif").unlink()
    for out in (one, apart):
        (out / "truecolor" / "SeaLake" / "SeaLake_1.png").unlink()
    rels = ["Forest/new.tif", "River/River_1.tif", "Pasture/Pasture_2.tif", "SeaLake/SeaLake_1.tif"]
    due = sorted({shard_of(rel, 4) for rel in rels})
    assert len(due) < 4, "the test needs a shard left alone"

    proc = run_snakemake(tmp_path, **config(one))
    assert job_counts(proc) == {"convert_changes": 1, "all": 1}, proc.stdout
    shards = "shards" if len(due) > 1 else "shard"
    assert f"msrgb: a small change: {shards} {', '.join(map(str, due))} of 4," in proc.stderr
    apart_proc = run_snakemake(tmp_path, **config(apart, small_change="0"))
    assert job_counts(apart_proc)["convert_shard"] == len(due) and job_counts(apart_proc)["summarize"] == 1
    assert same_results(one, apart)
    for rel in ("Forest/new.tif", "River/River_1.tif", "SeaLake/SeaLake_1.tif"):
        assert_png_matches(one / "truecolor" / Path(rel).with_suffix(".png"), dataset / rel)
    assert not (one / "truecolor" / "Pasture" / "Pasture_2.png").exists()
    summary = json.loads((one / "summary.json").read_text())
    assert summary["converted"] == 3 and summary["shard_jobs"] == len(due), summary

    for out, more in ((one, {}), (apart, {"small_change": "0"})):
        dry = run_snakemake(tmp_path, "-n", **config(out, **more))
        assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
        again = run_engine(tmp_path, **config(out, **more))
        assert not again.shards and not again.parts, "the engine would redo what Snakemake made"


@pytest.mark.parametrize("fails", ["in a shard", "after its shards"])
def test_inputs_back_as_an_earlier_change_left_them_after_a_failed_change_are_run_again(tmp_path: Path, dataset: Path, fails: str):
    """New files added, then taken away (two small changes), then added again with the
    change's job failing (a bad input, on_error fail; or errors.tsv that cannot be written, after
    every shard is done), then all taken away again: the inputs are as the second change left
    them, but neither its marker nor the shards' own stand for them, as the failed job changed
    the shards' records and images since: the images of the inputs taken away are deleted."""
    config = {"input_dir": str(dataset), "output_dir": str(tmp_path / "out"), "shards": "4"}
    out = tmp_path / "out"
    new = [dataset / "Forest" / f"new_{i}.tif" for i in range(6)]
    run_engine(tmp_path, **config)
    for round in ("added", "taken away", "added again"):
        for i, tif in enumerate(new):
            if round.startswith("added"):
                synth.write_tile(tif, synth.make_tile("Forest", 70 + i), (500000.0, 5000000.0), 32632)
            else:
                tif.unlink()
        if round == "added again" and fails == "in a shard":
            (dataset / "River" / "broken.tif").write_bytes(b"II*\x00 not a tiff")
        if round == "added again" and fails == "after its shards":
            (out / "errors.tsv").unlink()
            (out / "errors.tsv").mkdir()
        if round == "added again" and fails == "after its shards":
            with pytest.raises(OutputError, match="errors.tsv: Is a directory"):
                run_engine(tmp_path, **config)
            continue
        result = run_engine(tmp_path, check=False, **config)
        assert result.returncode == (round == "added again"), round
        assert result.returncode or result.prepared.changes, f"{round}: a small change"
    assert all((out / "truecolor" / "Forest" / f"new_{i}.png").exists() for i in range(6))
    for tif in new:
        tif.unlink()
    (dataset / "River" / "broken.tif").unlink(missing_ok=True)
    if (out / "errors.tsv").is_dir():
        (out / "errors.tsv").rmdir()
    proc = run_snakemake(tmp_path, **config)
    assert job_counts(proc) == {"convert_changes": 1, "all": 1}, proc.stdout
    assert not list((out / "truecolor" / "Forest").glob("new_*")), "the images of inputs taken away are deleted"
    assert check_tree(dataset, out) == 31
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n", **config).stdout


def test_a_small_change_with_a_bad_input_fails_naming_it_and_keeps_the_rest(tmp_path: Path, dataset: Path):
    """on_error fail: the job of a small change converts every shard it can, fails naming the
    bad file, and leaves neither its marker nor a summary of that run; once the file is gone,
    the next run finishes the change."""
    config = {"input_dir": str(dataset), "output_dir": str(tmp_path / "out"), "shards": "4"}
    out = tmp_path / "out"
    run_engine(tmp_path, **config)
    summary = (out / "summary.json").read_bytes()
    for i in range(6):  # in several shards: the shards run side by side in the job
        synth.write_tile(dataset / "Forest" / f"new_{i}.tif", synth.make_tile("Forest", 70 + i), (500000.0, 5000000.0), 32632)
    (dataset / "River" / "broken.tif").write_bytes(b"II*\x00 not a tiff")
    proc = run_snakemake(tmp_path, check=False, **config)
    assert proc.returncode != 0 and "convert_changes" in proc.stdout + proc.stderr
    assert "River/broken.tif" in proc.stderr, proc.stderr[-3000:]
    for i in range(6):
        assert_png_matches(out / "truecolor" / "Forest" / f"new_{i}.png", dataset / "Forest" / f"new_{i}.tif")
    assert (out / "summary.json").read_bytes() == summary
    assert not list((out / ".msrgb" / "done").glob("changes/*"))
    (dataset / "River" / "broken.tif").unlink()
    proc = run_snakemake(tmp_path, **config)
    assert job_counts(proc) == {"convert_changes": 1, "all": 1}, proc.stdout
    assert json.loads((out / "summary.json").read_text())["images"] == 37
    assert "Nothing to be done" in run_snakemake(tmp_path, "-n", **config).stdout
