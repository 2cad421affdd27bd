"""The shard job without Snakemake: incremental decisions and error reporting."""

from pathlib import Path

import pytest
from conftest import assert_png_matches

from msrgb import plan, synth
from msrgb.products import parse_products
from msrgb.shard import ShardError, run_shard


def make(tmp_path: Path, products=None):
    tifs = tmp_path / "tif"
    synth.generate(tifs, 2, classes=("Forest", "River", "SeaLake"))
    products = products or parse_products(["truecolor"])
    layout = plan.Layout(tmp_path / "out")
    p = plan.write_plan(layout, plan.discover(tifs), 1, products)
    return tifs, layout, p, products


def test_second_run_converts_nothing_and_a_changed_file_alone(tmp_path: Path):
    tifs, layout, _, products = make(tmp_path)
    args = (layout.manifest(1, 0), layout.state(1, 0), tifs, products)
    assert run_shard(*args, threads=2).converted == 6
    assert run_shard(*args).converted == 0
    synth.write_tile(tifs / "River" / "River_2.tif", synth.make_tile("Forest", 9), (0.0, 0.0), 32632)
    plan.write_plan(layout, plan.discover(tifs), 1, products)
    result = run_shard(*args)
    assert (result.converted, result.up_to_date) == (1, 5)
    assert_png_matches(layout.png("truecolor", plan.Source("River/River_2.tif", 0, 0)), tifs / "River" / "River_2.tif")


def test_bad_files_are_all_listed_and_good_ones_kept(tmp_path: Path):
    tifs, layout, _, products = make(tmp_path)
    (tifs / "Forest" / "Forest_1.tif").write_text("this is not a tiff")
    (tifs / "SeaLake" / "empty.tif").write_bytes(b"")
    plan.write_plan(layout, plan.discover(tifs), 1, products)
    with pytest.raises(ShardError) as err:
        run_shard(layout.manifest(1, 0), layout.state(1, 0), tifs, products)
    msg = str(err.value)
    assert "2 of 7 input file(s)" in msg
    assert "Forest/Forest_1.tif" in msg and "SeaLake/empty.tif" in msg
    pngs = sorted(p.name for p in (layout.output_dir / "truecolor").rglob("*.png"))
    assert pngs == ["Forest_2.png", "River_1.png", "River_2.png", "SeaLake_1.png", "SeaLake_2.png"]
    assert not layout.state(1, 0).exists(), "a failed job does not write its Snakemake output"
    state = plan.read_state([layout.progress(1, 0)])
    assert len(state) == 5, "the good conversions are recorded for the next run"
    (tifs / "Forest" / "Forest_1.tif").unlink()
    (tifs / "SeaLake" / "empty.tif").unlink()
    plan.write_plan(layout, plan.discover(tifs), 1, products)
    result = run_shard(layout.manifest(1, 0), layout.state(1, 0), tifs, products)
    assert (result.converted, result.up_to_date) == (0, 5), "nothing converted twice"
    assert not layout.progress(1, 0).exists()


def test_changing_one_product_rerenders_only_that_product(tmp_path: Path):
    spec = {"a": {"preset": "truecolor"}, "b": {"preset": "truecolor", "stretch": {"max": 3000}}}
    tifs, layout, _, products = make(tmp_path, parse_products(spec))
    run_shard(layout.manifest(1, 0), layout.state(1, 0), tifs, products)
    a_png = layout.output_dir / "a" / "Forest" / "Forest_1.png"
    a_inode = a_png.stat().st_ino  # a rewrite (temporary file + rename) changes the inode
    spec["b"]["stretch"]["max"] = 2000
    products = parse_products(spec)
    plan.write_plan(layout, plan.discover(tifs), 1, products)
    result = run_shard(layout.manifest(1, 0), layout.state(1, 0), tifs, products)
    assert result.converted == 6
    assert a_png.stat().st_ino == a_inode, "product a must not be rewritten"
