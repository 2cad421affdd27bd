"""Odd inputs that real collections contain never stop, corrupt or bloat a run: clashing
outputs, overlapping folders, images huge in pixels, deep paths, unreadable folders, hostile
expressions, product names that are msrgb's own files, settings that point the wrong way, and
mass deletions. Every case is a real Snakemake run checked the same way (check_run): no
traceback, the good images present and pixel-exact, summary.json and errors.tsv written; and
run_snakemake checks that the input folder is unchanged."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import FAULT_COUNTS, assert_png_matches, pngs, run_engine, run_snakemake
from rasterio.transform import from_origin

from msrgb import synth
from msrgb.config.expression import parse
from msrgb.config.parse import parse_products
from msrgb.config.presets import EUROSAT_BANDS
from msrgb.errors import ExpressionError, PlanError, ProductError, ReadInBlocks
from msrgb.readers.stacked import TileReader

BANDS = {"layout": "band_folders"}


def tile(path: Path, index: int = 1, cls: str = "Forest") -> Path:
    synth.write_tile(path, synth.make_tile(cls, index), (500000.0, 5000000.0), 32632)
    return path


def check_run(proc, out: Path, good: dict[str, Path], product: str = "truecolor") -> list[list[str]]:
    """What every case must show: no traceback anywhere, each good input's image present and
    equal to the formula, summary.json and errors.tsv written. Returns errors.tsv's rows."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for log in (out / "logs").rglob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log
    for rel, tif in good.items():
        assert_png_matches(out / product / rel, tif)
    assert json.loads((out / "summary.json").read_text())["images"] >= len(good)
    rows = [line.split("\t") for line in (out / "errors.tsv").read_text().splitlines()]
    FAULT_COUNTS["cases tried"] += 1
    FAULT_COUNTS["PNGs verified"] += len(good)
    return rows[1:]


def listed(rows: list[list[str]]) -> dict[str, str]:
    return {row[0]: row[1] for row in rows}


# 1. outputs that clash between inputs ---------------------------------------------------------

CLASHES = {
    # name: (clashing inputs, format of the product)
    "file beside a folder named like its image": (["a.tif", "a.png/b.tif"], "png"),
    "deeper": (["x/y.tif", "x/y.png/z/w.tif"], "png"),
    "same stem, two suffixes": (["s.tif", "s.TIFF"], "png"),
    "a folder named like a JPEG": (["j.tif", "j.jpg/k.tif"], "jpeg"),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_clashing_outputs_refused_or_skipped(tmp_path: Path, case: str):
    clashing, fmt = CLASHES[case]
    inp = tmp_path / "in"
    for i, rel in enumerate(clashing):
        tile(inp / rel, i + 1)
    good = tile(inp / "ok" / "c.tif", 9)
    products = '{"truecolor": {"preset": "truecolor", "format": "%s"}}' % fmt
    suffix = {"png": ".png", "jpeg": ".jpg"}[fmt]
    failed = run_engine(tmp_path, input_dir=str(inp), output_dir=str(tmp_path / "o1"), products=products, check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert all(rel in failed.stderr for rel in clashing), failed.stderr[-2000:]
    out = tmp_path / "o2"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), products=products, on_error="skip")
    rows = listed(check_run(proc, out, {} if fmt == "jpeg" else {"ok/c.png": good}))
    assert set(clashing) <= set(rows) and all("clash" in rows[r] or "both map" in rows[r] for r in clashing)
    assert (out / "truecolor" / "ok" / f"c{suffix}").exists()


def test_band_folders_whose_outputs_clash(tmp_path: Path):
    inp = tmp_path / "in"
    for rel in ("p", "p.png/q", "r"):
        for band, data in synth.make_patch(3).items():
            synth.write_band(inp / rel / f"{band}.tif", data, (300000.0, 5000000.0), 32632)
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), on_error="skip", **BANDS)
    rows = listed(check_run(proc, out, {}))
    assert {"p", "p.png/q"} <= set(rows)
    assert (out / "truecolor" / "r.png").exists()


def test_band_folders_named_like_the_settings_rows_of_a_shard_list_are_images(tmp_path: Path):
    """A shard list's settings rows begin ``# product`` and ``# on_error``: folders of band
    files named so are images like the others, at the top where their rows come first."""
    inp, out = tmp_path / "in", tmp_path / "out"
    for rel in ("# on_error", "# product", "# product.png", "a"):
        for band, data in synth.make_patch(3).items():
            synth.write_band(inp / rel / f"{band}.tif", data, (300000.0, 5000000.0), 32632)
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), **BANDS)
    check_run(proc, out, {})
    assert sorted(p.name for p in (out / "truecolor").glob("*.png")) == ["# on_error.png", "# product.png", "# product.png.png", "a.png"]
    assert not run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), **BANDS).shards


def test_a_folder_where_an_image_goes_is_that_images_error(tmp_path: Path):
    """EISDIR: a folder already sits where one image would be written; ENOTDIR: a file sits
    where a folder of images would be. Each is that image's error, the others are converted."""
    inp = tmp_path / "in"
    good = {f"g/{i}.png": tile(inp / "g" / f"{i}.tif", i) for i in range(1, 4)}
    tile(inp / "g" / "blocked.tif", 5)
    tile(inp / "h" / "under_a_file.tif", 6)
    out = tmp_path / "out"
    (out / "truecolor" / "g" / "blocked.png").mkdir(parents=True)
    (out / "truecolor" / "h").write_text("a file where a folder of images goes")
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), on_error="skip")
    rows = listed(check_run(proc, out, good))
    assert "g/blocked.tif" in rows and "h/under_a_file.tif" in rows, rows


# 2. input and output folders that overlap -----------------------------------------------------


@pytest.mark.parametrize("how", ["same", "output inside input", "input inside output", "through a link", "with .."])
def test_overlapping_folders_are_refused(tmp_path: Path, how: str):
    data = tmp_path / "data"
    tile(data / "in" / "t.tif")
    (data / "in" / "manifest.tsv").write_text("the user's own file\n")
    inp, out = data / "in", {
        "same": data / "in",
        "output inside input": data / "in" / "out",
        "input inside output": data,
        "through a link": tmp_path / "link" / "out",
        "with ..": data / "in" / "x" / ".." / "png",
    }[how]
    if how == "through a link":
        (tmp_path / "link").symlink_to(inp)
    if how == "input inside output":  # input_dir = OUTPUT/<product>
        inp = data / "in"
        out = data
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "input_dir" in proc.stderr and "output_dir" in proc.stderr, proc.stderr[-2000:]
    assert (data / "in" / "manifest.tsv").read_text() == "the user's own file\n"
    FAULT_COUNTS["cases tried"] += 1


def test_input_is_a_product_folder_of_the_output(tmp_path: Path):
    """The case of the issue: input_dir = OUTPUT/truecolor after a first run."""
    tile(tmp_path / "in" / "t.tif")
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out))
    tile(out / "truecolor" / "new.tif")
    proc = run_engine(tmp_path, input_dir=str(out / "truecolor"), output_dir=str(out), check=False)
    assert proc.returncode != 0 and "is inside 'output_dir'" in proc.stderr
    assert not (out / "truecolor" / "truecolor").exists()


# 3. images small on disk and huge in pixels ----------------------------------------------------


def sparse_tif(path: Path, size: int, count: int = 13) -> Path:
    """A deflate GeoTIFF of ``size`` x ``size`` pixels whose blocks are never written: a few
    MB on disk, all zeros when read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff", width=size, height=size, count=count, dtype="uint16", compress="deflate",
        tiled=True, blockxsize=512, blockysize=512, crs="EPSG:32632", transform=from_origin(0, 0, 10, 10),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile):
        pass
    return path


def header_claiming(path: Path, width: int, height: int) -> Path:
    """A real tile whose header claims another size (LONG width and length tags)."""
    data = bytearray(tile(path.with_suffix(".src.tif")).read_bytes())
    path.with_suffix(".src.tif").unlink()
    (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    for i in range(n):
        at = ifd + 2 + 12 * i
        tag, _, _ = struct.unpack("<HHI", data[at : at + 8])
        if tag in (256, 257):
            data[at + 2 : at + 4] = struct.pack("<H", 4)  # LONG
            data[at + 8 : at + 12] = struct.pack("<I", width if tag == 256 else height)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("claim", [(1_000_000, 1_000_000), (20_000, 20_000), (300_000, 1_000)])
def test_images_over_max_pixels_are_too_large_not_damaged(tmp_path: Path, claim):
    inp = tmp_path / "in"
    header_claiming(inp / "claims.tif", *claim)
    good = tile(inp / "good.tif", 2)
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), on_error="skip")
    rows = listed(check_run(proc, out, {"good.png": good}))
    assert "is too large" in rows["claims.tif"] and "max_pixels" in rows["claims.tif"], rows
    assert f"{claim[0]:,} x {claim[1]:,}" in rows["claims.tif"]


def test_a_huge_sparse_image_is_refused_or_made_a_quicklook(tmp_path: Path):
    inp = tmp_path / "in"
    sparse_tif(inp / "huge.tif", 20_000)
    good = tile(inp / "good.tif", 2)
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), on_error="skip")
    rows = listed(check_run(proc, out, {"good.png": good}))
    assert "20,000 x 20,000 pixels" in rows["huge.tif"]
    quick = tmp_path / "quick"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(quick), max_size="128")
    assert check_run(proc, quick, {}) == []
    assert iio.imread(quick / "truecolor" / "huge.png").shape == (128, 128, 3)


def test_small_on_disk_large_decoded_is_read_in_blocks(tmp_path: Path):
    """3,500 x 3,500 x 13 deflate: a few MB on disk, 74 MB of the three bands decoded: read
    in blocks of rows, pixel-exact."""
    inp = tmp_path / "in"
    path = inp / "wide.tif"
    inp.mkdir()
    rng = np.random.default_rng(3)
    data = np.zeros((13, 3500, 3500), np.uint16)
    data[1:4, ::7, ::5] = rng.integers(0, 6000, (3, 500, 700), dtype=np.uint16)
    with rasterio.open(
        path, "w", driver="GTiff", width=3500, height=3500, count=13, dtype="uint16", compress="deflate",
        crs="EPSG:32632", transform=from_origin(0, 0, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(data)
    assert path.stat().st_size < 64 * 2**20
    (product,) = parse_products(["truecolor"])
    with pytest.raises(ReadInBlocks):  # the whole read refuses it: decoded, it is too large
        TileReader([product]).read(path, path.read_bytes())
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), contact_sheets="false")
    check_run(proc, out, {"wide.png": path})


def test_outputs_over_pillows_bomb_limit_get_sheets_and_a_summary(tmp_path: Path):
    """An output of 182 million pixels (Pillow refuses 179 million as a decompression bomb)."""
    inp = tmp_path / "in"
    sparse_tif(inp / "big.tif", 13_500, count=3)
    out = tmp_path / "out"
    products = '{"rgb": {"bands": [B04, B03, B02], "band_map": [B04, B03, B02]}}'
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), products=products)
    check_run(proc, out, {}, product="rgb")
    assert (out / "contact_sheets" / "rgb" / "overview.png").exists()


# 4. deep and long folder paths -----------------------------------------------------------------


@pytest.mark.parametrize("levels, width", [(50, 12), (5, 75), (3, 120)])
def test_deep_and_long_paths(tmp_path: Path, levels: int, width: int):
    inp = tmp_path / "in"
    rel = Path(*[f"S2A_MSIL2A_{i}_" + "x" * (width - 12) for i in range(levels)])
    good = {str(rel / f"t{i}.png"): tile(inp / rel / f"t{i}.tif", i) for i in range(1, 3)}
    sibling = rel.parent / (rel.name[:-1] + "y")  # the same start: names must stay unique
    good[str(sibling / "u.png")] = tile(inp / sibling / "u.tif", 4)
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out))
    check_run(proc, out, good)
    sheets = [p for p in (out / "contact_sheets" / "truecolor").iterdir() if p.name != "overview.png"]
    assert len(sheets) == 2 and all(len(p.name.encode()) <= 255 for p in sheets)


# 5. folders that cannot be read ----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["stacked", "band_folders"])
@pytest.mark.parametrize("where", ["lost+found", "a/b/private"])
def test_unreadable_folders_are_reported_and_the_rest_converted(tmp_path: Path, layout: str, where: str):
    inp = tmp_path / "in"
    good = {}
    if layout == "stacked":
        good = {"a/t.png": tile(inp / "a" / "t.tif")}
        tile(inp / where / "hidden.tif", 3)
    else:
        for rel in ("a/p", where):
            for band, data in synth.make_patch(1).items():
                synth.write_band(inp / rel / f"{band}.tif", data, (300000.0, 5000000.0), 32632)
    (inp / where).chmod(0)
    out = tmp_path / "out"
    try:
        for on_error in ("fail", "skip"):
            run_out = out / on_error
            proc = run_snakemake(
                tmp_path, input_dir=str(inp), output_dir=str(run_out), on_error=on_error, as_user=True,
                layout=layout,
            )  # fmt: skip
            rows = listed(check_run(proc, run_out, good))
            assert "cannot be read" in rows[where], rows
            ends = [line for line in proc.stderr.splitlines() if "not converted, listed in errors.tsv" in line]
            assert ends and where in ends[-1], proc.stderr[-2000:]
            if layout == "band_folders":
                assert (run_out / "truecolor" / "a" / "p.png").exists()
    finally:
        (inp / where).chmod(0o755)


# 6. expressions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["B04 * (1/0)", "B04 + 10.0**400", "B04 * 10**10**10", "(B08 - B04) / (0 * B04)", "-(1/0) + B04"]
)
def test_constant_parts_that_are_undefined_give_no_data_not_an_error(text: str):
    values = {"B04": np.array([1.0, 2.0]), "B08": np.array([3.0, 0.0])}
    result = parse(text, EUROSAT_BANDS).evaluate(values)
    assert result.shape == (2,) and not np.isfinite(result).all()


def test_long_flat_sums_work_and_bounds_name_the_expression():
    values = {"B04": np.array([1.0, 2.0])}
    assert list(parse(" + ".join(["B04"] * 1200), EUROSAT_BANDS).evaluate(values)) == [1200.0, 2400.0]
    assert list(parse("-".join(["B04"] * 1500), EUROSAT_BANDS).evaluate(values)) == [-1498.0, -2996.0]
    for text, words in [
        (" + ".join(["B04"] * 5000), "characters long"),
        ("-" * 3000 + "B04", "nested"),
        ("B04" + "**B04" * 150, "nested"),
        ("(" * 250 + "B04" + ")" * 250, "not an arithmetic expression"),
        ("B04 + 1" + "0" * 400, "too large"),
    ]:
        with pytest.raises(ProductError, match=f"'expression'.*{words}"):
            parse_products({"x": {"expression": text}})
    with pytest.raises(ExpressionError):
        parse("B04 < 3", EUROSAT_BANDS)


def test_an_undefined_expression_runs_and_draws_no_data(tmp_path: Path):
    inp = tmp_path / "in"
    good = tile(inp / "t.tif")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "products:\n  truecolor:\n  nan:\n    expression: 'B04 * (1/0) - B04 * (1/0)'\n"
        f"  sum:\n    expression: '{' + '.join(['B04'] * 1200)}'\n    range: [0, 4800000]\n"
    )
    out = tmp_path / "out"
    proc = run_engine(tmp_path, "--configfile", str(cfg), input_dir=str(inp), output_dir=str(out))
    check_run(proc, out, {"t.png": good})
    assert (iio.imread(out / "nan" / "t.png")[..., 3] == 0).all()
    with rasterio.open(good) as src:
        b04 = src.read(4).astype(np.float64)
    t = (1200 * b04 / 4800000).clip(0, 1)
    assert np.array_equal(iio.imread(out / "sum" / "t.png")[..., 0], (t * 255 + 0.5).astype(np.uint8))


# 7. product names that are msrgb's own files ---------------------------------------------------


@pytest.mark.parametrize("name", ["errors.tsv", "summary.json", "manifest.tsv", "Summary.JSON", "LOGS", "report.html"])
def test_product_names_of_msrgbs_own_files_are_refused(tmp_path: Path, name: str):
    tile(tmp_path / "in" / "t.tif")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"products:\n  '{name}':\n    preset: truecolor\n")
    proc = run_engine(tmp_path, "--configfile", str(cfg), input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert name in proc.stderr and "products" in proc.stderr, proc.stderr[-1500:]
    assert not (tmp_path / "out" / name).exists()
    FAULT_COUNTS["cases tried"] += 1


# 8. messages that send users the right way ------------------------------------------------------


@pytest.mark.parametrize("bands", [3, 4])
def test_files_of_other_band_counts_name_band_map(tmp_path: Path, bands: int):
    inp = tmp_path / "in"
    synth.write_tile(inp / "rgb.tif", synth.make_tile("Forest", 1)[:bands], (0.0, 0.0), 32632)
    proc = run_snakemake(tmp_path, input_dir=str(inp), output_dir=str(tmp_path / "out"), check=False)
    assert proc.returncode != 0 and "band_map" in proc.stderr and "Traceback" not in proc.stderr
    FAULT_COUNTS["cases tried"] += 1


@pytest.mark.parametrize("kind", ["safe", "jp2", "zip"])
def test_band_files_without_band_folders_say_which_setting(tmp_path: Path, kind: str):
    inp = tmp_path / "in"
    if kind == "safe":
        synth.write_safe_product(inp, synth.make_patch(1), "L2A", "02.14", {}, "GTiff")
    elif kind == "jp2":
        synth.write_safe_product(inp / "x", synth.make_patch(1), "L1C", "02.14", {})
        for p in inp.rglob("*.jp2"):
            p.rename(inp / p.name)
    else:
        (inp).mkdir()
        (inp / "S2A_MSIL2A_20230101T101031_N0509_R022_T33UUP_20230101T120000.SAFE.zip").write_bytes(b"PK\x03\x04")
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(tmp_path / "out"), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "layout: band_folders" in proc.stderr, proc.stderr[-1500:]
    FAULT_COUNTS["cases tried"] += 1


def test_a_broken_zipped_product_among_band_folders_is_a_bad_input_naming_the_zip(tmp_path: Path):
    inp = tmp_path / "in"
    synth.write_safe_product(inp, synth.make_patch(1), "L2A", "02.14", {}, "GTiff")
    name = "S2B_MSIL1C_20230101T101031_N0509_R022_T33UUP_20230101T120000.zip"
    (inp / name).write_bytes(b"PK\x03\x04")
    out = tmp_path / "out"
    result = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), on_error="skip", contact_sheets=False, **BANDS)
    assert result.summary["converted"] == 1 and result.summary["skipped"] == 1
    rows = listed([line.split("\t") for line in (out / "errors.tsv").read_text().splitlines()])
    assert rows[name.replace(".zip", ".SAFE")].startswith(f"{name}: is not a readable zip file")
    FAULT_COUNTS["cases tried"] += 1


def test_a_band_folder_clashing_with_itself_is_named_once(tmp_path: Path):
    """input_dir 'scene' holds band files and a sub-folder 'scene' of band files: both images
    are named 'scene'."""
    inp = tmp_path / "scene"
    for folder in (inp, inp / "scene"):
        for band, data in synth.make_patch(2).items():
            synth.write_band(folder / f"{band}.tif", data, (300000.0, 5000000.0), 32632)
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(tmp_path / "out"), check=False, **BANDS)
    assert proc.returncode != 0 and "scene and scene" not in proc.stderr
    assert "directly in the input folder" in proc.stderr, proc.stderr[-1500:]
    FAULT_COUNTS["cases tried"] += 1


# 9. mass deletion --------------------------------------------------------------------------------


def test_a_second_batch_into_the_same_output_folder_stops_before_deleting(tmp_path: Path):
    for batch, count in (("batch1", 3), ("batch2", 2)):
        synth.generate(tmp_path / batch, 1)
        for extra in sorted((tmp_path / batch).rglob("*.tif"))[count:]:
            extra.unlink()
        for tif in (tmp_path / batch).rglob("*.tif"):
            tif.rename(tif.with_name(f"{batch}_{tif.name}"))
    config = dict(output_dir="out", contact_sheets=False)
    run_engine(tmp_path, input_dir="batch1", **config)
    first = pngs(tmp_path / "out" / "truecolor")
    assert len(first) == 3
    with pytest.raises(PlanError) as refused:
        run_engine(tmp_path, input_dir="batch2", **config)
    message = str(refused.value)
    assert str(tmp_path / "batch2") in message and str(tmp_path / "batch1") in message
    assert "remove_orphans" in message and "another output_dir" in message and "3 of 'truecolor'" in message
    assert pngs(tmp_path / "out" / "truecolor") == first  # nothing deleted
    synced = run_engine(tmp_path, input_dir="batch2", remove_orphans=True, **config)
    assert set(pngs(tmp_path / "out" / "truecolor")) == {
        p.relative_to(tmp_path / "batch2").with_suffix(".png").as_posix() for p in (tmp_path / "batch2").rglob("*.tif")
    }
    assert synced.summary["converted"] == 2
    # the folder moved, nothing to delete: a run goes on
    shutil.copytree(tmp_path / "batch2", tmp_path / "moved")
    assert not run_engine(tmp_path, input_dir="moved", **config).shards


@pytest.mark.parametrize("remove, total, stops", [(1, 20, False), (9, 20, False), (10, 20, True), (101, 1200, True)])
def test_removal_thresholds(tmp_path: Path, remove: int, total: int, stops: bool):
    tifs = synth.generate(tmp_path / "in", total // 10)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out), contact_sheets="false")
    for tif in tifs[:remove]:
        tif.unlink()
    proc = run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out), contact_sheets="false", check=False)
    assert (proc.returncode != 0) == stops, proc.stderr[-1500:]
    left = len(list((out / "truecolor").rglob("*.png")))
    assert left == (total if stops else total - remove)
    FAULT_COUNTS["cases tried"] += 1


def test_the_input_tree_is_checked_after_every_run(tmp_path: Path):
    """The suite's run helper fails a test whose run changed its input folder."""
    from conftest import snapshot

    tile(tmp_path / "in" / "t.tif")
    before = snapshot(tmp_path / "in")
    run_snakemake(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "out"))
    assert snapshot(tmp_path / "in") == before
    os.utime(tmp_path / "in" / "t.tif", ns=(1, 1))
    assert snapshot(tmp_path / "in") != before


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_jpeg_and_webp_of_an_image_read_in_blocks_equal_the_whole_read(tmp_path: Path, monkeypatch, fmt: str):
    """A JPEG or WebP is encoded whole after the blocks fill one array: the same bytes as the
    whole-image path."""
    from msrgb.jobs.convert import Converter
    from msrgb.readers.stacked import LargeImage

    tif = tile(tmp_path / "t.tif", 4)
    products = parse_products({"x": {"preset": "truecolor", "format": fmt}, "y": {"preset": "ndvi", "format": fmt}})
    monkeypatch.setattr(LargeImage, "BLOCK_BYTES", 3 * 4 * 64 * 2)  # a few strips a block
    made = []
    for limit in (2**30, 0):  # in memory, then in blocks
        dests = {p.name: tmp_path / f"{limit}" / f"{p.name}.{fmt}" for p in products}
        Converter(products, in_memory_bytes=limit).convert(tif, dests)
        made.append({name: path.read_bytes() for name, path in dests.items()})
    assert made[0] == made[1]


@pytest.mark.parametrize("how", ["a file", "a folder that cannot be written"])
def test_an_output_folder_that_cannot_be_one_is_named(tmp_path: Path, how: str):
    tile(tmp_path / "in" / "t.tif")
    if how == "a file":
        out = tmp_path / "out.png"
        out.write_text("not a folder")
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        out = tmp_path / "ro" / "out"
    proc = run_snakemake(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out), check=False, as_user=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"'output_dir' {str(out)!r}" in proc.stderr
    FAULT_COUNTS["cases tried"] += 1


@pytest.mark.parametrize("name", ["errors.tsv", "summary.json", "truecolor/manifest.tsv", "histograms/truecolor.png"])
def test_a_summary_file_that_cannot_be_written_is_named_and_the_images_are_kept(tmp_path: Path, name: str):
    """One of the summary's files is a folder: the run fails naming it and why, without a
    traceback, every image converted is kept and recorded, and once the folder is gone the
    next run makes the summary without converting anything again."""
    inp, out = tmp_path / "in", tmp_path / "out"
    good = {f"Forest/f{i}.png": tile(inp / "Forest" / f"f{i}.tif", i) for i in range(3)}
    (out / name / "x").mkdir(parents=True)
    config = {"input_dir": str(inp), "output_dir": str(out)}
    failed = run_engine(tmp_path, check=False, **config)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert f"{out / name}: Is a directory" in failed.stderr, failed.stderr[-2000:]
    for rel, tif in good.items():
        assert_png_matches(out / "truecolor" / rel, tif)
    shutil.rmtree(out / name)
    again = run_engine(tmp_path, **config)
    assert not again.shards and "summary" in again.parts
    check_run(again, out, {f"truecolor/{rel}": tif for rel, tif in good.items()}, product=".")
    FAULT_COUNTS["cases tried"] += 1


def test_the_summary_job_names_a_file_it_cannot_write(tmp_path: Path):
    """As the job Snakemake runs: its message in the run's output and its log, no traceback."""
    inp, out = tmp_path / "in", tmp_path / "out"
    tile(inp / "t.tif")
    (out / "errors.tsv" / "x").mkdir(parents=True)
    proc = run_snakemake(tmp_path, input_dir=str(inp), output_dir=str(out), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"{out / 'errors.tsv'}: Is a directory" in proc.stderr, proc.stderr[-3000:]
    logs = [log.read_text() for log in (out / "logs").rglob("*.log")]
    assert any(f"{out / 'errors.tsv'}: Is a directory" in text for text in logs)
    assert not any("Traceback" in text for text in logs)
    assert (out / "truecolor" / "t.png").exists()
