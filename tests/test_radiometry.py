"""Radiometric offsets and scales: Sentinel-2 products of processing baseline 04.00 and later
(BOA_ADD_OFFSET, RADIO_ADD_OFFSET in the product's metadata file), GDAL's per-band scale and
offset in GeoTIFFs, and the offset/scale settings for data that lost its metadata. Every image
must equal the formula on DN + offset, pixel for pixel, through the real workflow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import REPO, SHARED_S2, reference_rgb, run_engine, run_totals
from PIL import Image
from rasterio.transform import from_origin

from msrgb import synth
from msrgb.config.colormaps import colormap_lut
from msrgb.config.parse import parse_products
from msrgb.errors import InputError
from msrgb.outputs.provenance_manifest import read_provenance_manifest
from msrgb.radiometry.scaling import Scaling, from_gdal, looks_like_offset_data, read_safe_metadata
from msrgb.render.render import optimized

BANDS = {"layout": "band_folders"}
THREE = ("B02", "B03", "B04", "B08")


def scene_values() -> dict[str, np.ndarray]:
    """Reflectance x 10000 of one 1.2 km scene (BigEarthNet-shaped bands), at least 1, with a
    corner of no data (0) in every band."""
    bands = synth.make_patch(5)
    for data in bands.values():
        np.maximum(data, 1, out=data)
        n = data.shape[0] // 10
        data[:n, :n] = 0
    return bands


def stored(values: dict[str, np.ndarray], offsets: dict[str, int]) -> dict[str, np.ndarray]:
    """The DN a product of the given offsets stores for ``values``: value - offset, 0 stays 0."""
    return {b: np.where(v == 0, 0, v.astype(np.int64) - offsets.get(b, 0)).astype(np.uint16) for b, v in values.items()}


def on_value_scale(dn: np.ndarray, offset: float, scale: float = 1.0) -> np.ndarray:
    """DN * scale + offset as float64, no data (DN 0) as NaN where an offset applies."""
    values = dn.astype(np.float64) * scale + offset
    if offset:
        values[dn == 0] = np.nan
    return values


def formula(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference formula on three arrays on the 0-10000 scale (NaN: black)."""
    ms = np.nan_to_num(np.stack([r, g, b], axis=-1), nan=0.0)
    return (255 * (ms / 4000).clip(0, 1)).astype(np.uint8)


OFFSET_1000 = {b: -1000 for b in synth.BIGEARTHNET_BANDS}
#: baseline 05.09 with a different offset for B02: each band's own must be used
OFFSET_0509 = {**OFFSET_1000, "B02": -900}

#: name -> (level, baseline, offsets, band file driver): the same scene four times
PRODUCTS = {
    "0214": ("L2A", "02.14", {}, "GTiff"),
    "0400": ("L2A", "04.00", OFFSET_1000, "JP2OpenJPEG"),
    "0509": ("L2A", "05.09", OFFSET_0509, "GTiff"),
    "L1C": ("L1C", "04.00", OFFSET_1000, "JP2OpenJPEG"),
}


@pytest.fixture(scope="module")
def safe_run(tmp_path_factory) -> tuple[Path, Path, dict[str, tuple[Path, dict[str, int]]]]:
    """The four products in one input folder, converted to truecolor, ndvi and
    truecolor_optimized by one run."""
    root = tmp_path_factory.mktemp("safe")
    values = scene_values()
    made = {}
    for key, (level, baseline, offsets, driver) in PRODUCTS.items():
        folder = root / "in" / key
        safe = synth.write_safe_product(folder, stored(values, offsets), level, baseline, offsets, driver)
        made[key] = (safe, offsets)
    out = root / "out"
    run_engine(
        root, input_dir=str(root / "in"), output_dir=str(out),
        products='["truecolor","ndvi","truecolor_optimized"]', **BANDS,
    )  # fmt: skip
    return root, out, made


def image_of(out: Path, product: str, safe: Path, key: str) -> np.ndarray:
    return iio.imread(out / product / key / (safe.name[: -len(".SAFE")] + ".png"))


def dn_of(safe: Path, band: str) -> np.ndarray:
    (path,) = [p for p in safe.rglob(f"*_{band}*") if p.suffix in (".jp2", ".tif")]
    with rasterio.open(path) as src:
        return src.read(1)


@pytest.mark.parametrize("key", list(PRODUCTS))
def test_safe_products_of_every_baseline_give_the_formula_on_dn_plus_offset(safe_run, key):
    _, out, made = safe_run
    safe, offsets = made[key]
    v = {b: on_value_scale(dn_of(safe, b), offsets.get(b, 0)) for b in THREE}
    assert np.array_equal(image_of(out, "truecolor", safe, key), formula(v["B04"], v["B03"], v["B02"]))
    # ndvi on DN + offset: undefined (no data) transparent, the colour map elsewhere
    with np.errstate(invalid="ignore"):  # 0 / 0 in the no-data corner of the 02.14 product
        ndvi = (v["B08"] - v["B04"]) / (v["B08"] + v["B04"])
    got = image_of(out, "ndvi", safe, key)
    valid = np.isfinite(ndvi)
    assert np.array_equal(got[..., 3] > 0, valid)
    t = ((ndvi[valid] + 1) / 2).clip(0, 1)
    assert np.array_equal(got[valid][:, :3], colormap_lut("RdYlGn")[(t * 255 + 0.5).astype(np.intp)])
    (opt,) = parse_products(["truecolor_optimized"])
    stack = np.nan_to_num(np.stack([v["B04"], v["B03"], v["B02"]], axis=-1), nan=0.0)
    want = optimized(stack, opt)
    want[~np.isfinite(v["B04"])] = 0
    assert np.array_equal(image_of(out, "truecolor_optimized", safe, key), want)


def test_the_same_reflectance_gives_the_same_images_whatever_the_baseline(safe_run):
    """Products that store one scene with and without the offset look the same; before, the
    baseline 04.00 ones came out about 64 grey levels too bright."""
    _, out, made = safe_run
    for product in ("truecolor", "ndvi", "truecolor_optimized"):
        old = image_of(out, product, made["0214"][0], "0214")
        for key in ("0400", "0509", "L1C"):
            assert np.array_equal(image_of(out, product, made[key][0], key), old), (product, key)


def test_recipes_and_the_manifest_record_the_offsets_and_verify_passes(safe_run):
    root, out, made = safe_run
    rows = {Path(r["path"]).name: r for r in read_provenance_manifest(out / "truecolor" / "manifest.tsv")}
    for key, (safe, offsets) in made.items():
        png = out / "truecolor" / key / (safe.name[: -len(".SAFE")] + ".png")
        recipe = json.loads(Image.open(png).text["msrgb"])
        row = rows[png.name]
        if not offsets:
            assert "radiometry" not in recipe and row["radiometry"] == ""
            continue
        level = PRODUCTS[key][0]
        want = {b: {"scale": 1, "offset": offsets[b], "from": f"MTD_MSI{level}.xml"} for b in ("B02", "B03", "B04")}
        assert recipe["radiometry"] == want
        assert json.loads(row["radiometry"]) == want
        # the metadata file is among the files the image was made from
        used = [p for p, _ in json.loads(row["source_sha256"])]
        assert f"{key}/{safe.name}/MTD_MSI{level}.xml" in used
    verify = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.verify", str(out), "--input", str(root / "in")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def write_cog_folder(folder: Path, dn: dict[str, np.ndarray], scale: float | None, offset: float | None) -> None:
    """Per-band tiled GeoTIFFs with overviews; GDAL's scale and offset set when given."""
    folder.mkdir(parents=True, exist_ok=True)
    for band, data in dn.items():
        n = data.shape[0]
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
            folder / f"{band}.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16",
            crs="EPSG:32629", transform=from_origin(199980, 2800020, 1200 / n, 1200 / n),
            tiled=True, blockxsize=64, blockysize=64, compress="deflate", nodata=0,
        ) as dst:  # fmt: skip
            dst.write(data, 1)
            if scale is not None:
                dst.scales, dst.offsets = (scale,), (offset,)


def test_cog_folders_with_gdal_scale_offset_or_the_setting_equal_the_safe_product(safe_run, tmp_path: Path):
    """Reflectance = DN * 0.0001 - 0.1 as COG producers write it, and a folder that lost it but
    has 'offset: -1000' in the config, give the PNG of the SAFE product byte for byte in
    pixels."""
    _, out, made = safe_run
    values = scene_values()
    dn = stored(values, OFFSET_1000)
    write_cog_folder(tmp_path / "in" / "tagged", dn, 0.0001, -0.1)
    write_cog_folder(tmp_path / "bare" / "untagged", dn, None, None)
    safe_png = image_of(out, "truecolor", made["0400"][0], "0400")
    o1, o2 = tmp_path / "o1", tmp_path / "o2"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(o1), **BANDS)
    run_engine(tmp_path, input_dir=str(tmp_path / "bare"), output_dir=str(o2), offset="-1000", **BANDS)
    tagged = o1 / "truecolor" / "tagged.png"
    assert np.array_equal(iio.imread(tagged), safe_png)
    assert np.array_equal(iio.imread(o2 / "truecolor" / "untagged.png"), safe_png)
    recipe = json.loads(Image.open(tagged).text["msrgb"])
    assert recipe["radiometry"]["B04"] == {"scale": 1, "offset": -1000, "from": "GeoTIFF"}
    recipe = json.loads(Image.open(o2 / "truecolor" / "untagged.png").text["msrgb"])
    assert recipe["radiometry"]["B04"] == {"scale": 1, "offset": -1000, "from": "config"}


def test_stacked_geotiffs_with_scale_and_offset(tmp_path: Path):
    """A 13-band tile with GDAL scale/offset per band (one band with its own) renders from
    DN * scale + offset (x 10000 for a reflectance scale); a tile without stays the formula."""
    cube = synth.make_tile("Forest", 3)
    cube[:, :4, :4] = 0
    stored_cube = np.where(cube == 0, 0, cube + 1000).astype(np.uint16)
    tagged, plain = tmp_path / "in" / "tagged.tif", tmp_path / "in" / "plain.tif"
    synth.write_tile(tagged, stored_cube, (300000.0, 5000000.0), 32632)
    synth.write_tile(plain, cube, (300000.0, 5000000.0), 32632)
    with rasterio.open(tagged, "r+") as dst:
        dst.scales = tuple([0.0001] * 13)
        dst.offsets = tuple([-0.1] * 3 + [-0.09] + [-0.1] * 9)  # B04: its own offset
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out))
    r = on_value_scale(stored_cube[3], -900)
    g = on_value_scale(stored_cube[2], -1000)
    b = on_value_scale(stored_cube[1], -1000)
    assert np.array_equal(iio.imread(out / "truecolor" / "tagged.png"), formula(r, g, b))
    assert np.array_equal(iio.imread(out / "truecolor" / "plain.png"), reference_rgb(plain))


def test_the_setting_per_band_and_per_product(tmp_path: Path):
    (p,) = parse_products({"t": {"preset": "truecolor", "offset": {"B04": -1000}}}, offset=-500)
    assert p.radiometry == (("B04", 1.0, -1000.0),)
    (q,) = parse_products(["truecolor"], offset=-1000, scale={"B02": 2})
    assert q.radiometry == (("B04", 1.0, -1000.0), ("B03", 1.0, -1000.0), ("B02", 2.0, -1000.0))
    (plain,) = parse_products(["truecolor"])
    assert plain.radiometry == () and plain.digest() == parse_products(["truecolor"], offset=0)[0].digest()
    assert q.digest() != plain.digest()  # a changed setting reconverts the product
    # only the product's bands count: an offset for B08 leaves truecolor as it is
    assert parse_products(["truecolor"], offset={"B08": -1000})[0].digest() == plain.digest()
    from msrgb.errors import ProductError

    with pytest.raises(ProductError, match="offset.B99"):
        parse_products(["truecolor"], offset={"B99": -1000})
    with pytest.raises(ProductError, match="'scale' must be a number above 0"):
        parse_products(["truecolor"], scale=0)
    with pytest.raises(ProductError, match="'offset' must be a number"):
        parse_products(["truecolor"], offset="lots")


def test_old_outputs_are_reconverted_once_and_the_run_says_why(tmp_path: Path):
    """Outputs and state of a version that applied no offsets: the baseline 04.00 product is
    converted again once, with a message; the 02.14 product and EuroSAT tiles are left alone."""
    values = scene_values()
    inp = tmp_path / "in"
    new = synth.write_safe_product(inp / "p", stored(values, OFFSET_1000), "L2A", "04.00", OFFSET_1000, "GTiff")
    old = synth.write_safe_product(inp / "q", values, "L2A", "02.14", {}, "GTiff")
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), **BANDS)
    png_new = out / "truecolor" / "p" / (new.name[:-5] + ".png")
    png_old = out / "truecolor" / "q" / (old.name[:-5] + ".png")
    right = png_new.read_bytes()
    # as an earlier msrgb left it: states and manifests of format v2 without the radiometry
    # column, and the too-bright image of the stored DN
    for state in (out / ".msrgb" / "state").rglob("*.tsv"):
        lines = state.read_text().splitlines()
        lines = ["# msrgb shard state v2"] + ["\t".join(line.split("\t")[:9]) for line in lines[1:]]
        state.write_text("\n".join(lines) + "\n")
    for manifest in (out / ".msrgb" / "shard_lists").rglob("*.tsv"):
        manifest.write_text(manifest.read_text().replace("manifest v3", "manifest v2"))
    shutil.rmtree(out / ".msrgb" / "done")  # versions before 0.6.0 left no markers
    dn = {b: dn_of(new, b) for b in ("B04", "B03", "B02")}
    iio.imwrite(png_new, formula(*(d.astype(np.float64) for d in dn.values())))
    assert not np.array_equal(iio.imread(png_new), iio.imread(png_old))
    before_old = png_old.read_bytes()
    status = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.status", str(out), "--input", str(inp), "--list", "5"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert "truecolor: 1 up to date, 1 stale" in status.stdout and new.name[:-5] in status.stdout, status.stdout
    proc = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), **BANDS)
    assert "1 image(s) made by an earlier msrgb are converted again" in proc.stderr
    assert png_new.read_bytes() == right
    assert png_old.read_bytes() == before_old
    assert run_totals(out)["converted"] == 1
    again = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), **BANDS)
    assert "converted again" not in again.stderr and "truecolor: 0 to convert" in again.stderr
    verify = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.verify", str(out), "--input", str(inp)], cwd=REPO, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize(
    "xml, problem",
    [
        ("<n1:Level-2A_User_Product><unclosed>", "cannot be read as XML"),
        (synth.safe_metadata_xml("L2A", "04.00", {"B04": -1000}).replace('band_id="3"', 'band_id="13"'), "band_id '13'"),
        (synth.safe_metadata_xml("L1C", "04.00", {"B04": -1000}).replace(">-1000<", ">n/a<"), "RADIO_ADD_OFFSET is not a number"),
    ],
)
def test_bad_metadata_is_a_bad_input_naming_the_product_and_file(tmp_path: Path, xml: str, problem: str):
    values = scene_values()
    inp = tmp_path / "in"
    bad = synth.write_safe_product(inp, stored(values, OFFSET_1000), "L2A", "04.00", OFFSET_1000, "GTiff")
    good = synth.write_safe_product(inp, values, "L1C", "02.14", {}, "GTiff")
    (bad / "MTD_MSIL2A.xml").write_text(xml)
    out = tmp_path / "out"
    failed = run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), check=False, **BANDS)
    assert failed.returncode != 0
    assert f"{bad / 'MTD_MSIL2A.xml'}" in failed.stderr and problem in failed.stderr
    assert "Traceback" not in failed.stderr
    assert (out / "truecolor" / (good.name[:-5] + ".png")).exists()
    run_engine(tmp_path, input_dir=str(inp), output_dir=str(out), on_error="skip", **BANDS)
    errors = (out / "errors.tsv").read_text()
    assert bad.name in errors and problem in errors
    assert (out / "truecolor" / (good.name[:-5] + ".png")).exists()


def test_names_of_baseline_04_data_without_an_offset_get_one_note(tmp_path: Path):
    """BigEarthNet-style patch folders cut from 2022 products lost the offset: the run says so
    once and names the setting; with the setting the images are right and the note is gone."""
    values = scene_values()
    dn = stored(values, OFFSET_1000)
    names = ["S2A_MSIL2A_20220613T101031_N0400_R022_T33UUP_26_57", "S2B_MSIL2A_20230101T101031_N0509_R022_T33UUP_1_2"]
    for name in names:
        for band, data in dn.items():
            synth.write_band(tmp_path / "in" / name / f"{name}_{band}.tif", data, (300000.0, 5000000.0), 32632)
    proc = run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o1"), **BANDS)
    notes = [line for line in proc.stderr.splitlines() if "processing baseline 04.00" in line]
    assert len(notes) == 1 and "offset: -1000" in notes[0], proc.stderr[-3000:]
    proc = run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o2"), offset="-1000", **BANDS)
    assert "processing baseline 04.00" not in proc.stderr
    v = {b: on_value_scale(dn[b], -1000) for b in ("B04", "B03", "B02")}
    for name in names:
        assert np.array_equal(iio.imread(tmp_path / "o2" / "truecolor" / f"{name}.png"), formula(v["B04"], v["B03"], v["B02"]))


def test_metadata_files_of_every_kind():
    """ESA's band ids (B8A is id 8), L2A's BOA_ and L1C's RADIO_ offsets, a quantification value
    other than 10000, and older baselines without offsets."""
    from tempfile import TemporaryDirectory

    bands = list(synth.S2_RESOLUTION)
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "MTD_MSIL2A.xml"
        path.write_text(synth.safe_metadata_xml("L2A", "05.09", {"B8A": -1000, "B09": -500}))
        found = read_safe_metadata(path, bands)
        assert found == {"B8A": Scaling(1.0, -1000.0, "MTD_MSIL2A.xml"), "B09": Scaling(1.0, -500.0, "MTD_MSIL2A.xml")}
        path.write_text(synth.safe_metadata_xml("L1C", "04.00", dict.fromkeys(bands, -1000), quantification=1000))
        assert read_safe_metadata(path, ["B04"]) == {"B04": Scaling(10.0, -10000.0, "MTD_MSIL2A.xml")}
        path.write_text(synth.safe_metadata_xml("L1C", "02.09", {}))
        assert read_safe_metadata(path, bands) == {}
        path.write_text("<Level-1C_User_Product/>")  # nothing declared: as stored
        assert read_safe_metadata(path, bands) == {}
        path.write_text(synth.safe_metadata_xml("L2A", "04.00", {"B04": -1000}, quantification=0))
        with pytest.raises(InputError, match="QUANTIFICATION_VALUE must be above 0"):
            read_safe_metadata(path, bands)


def test_gdal_scale_offset_and_names():
    assert from_gdal(1.0, 0.0) is None and from_gdal(None, None) is None
    assert from_gdal(0.0001, 0.0) is None  # reflectance x 10000 is the DN: nothing to apply
    assert from_gdal(0.0001, -0.1) == Scaling(1.0, -1000.0, "GeoTIFF")
    assert from_gdal(1.0, -1000.0) == Scaling(1.0, -1000.0, "GeoTIFF")
    assert from_gdal(2.75e-05, -0.2) == Scaling(2.75e-05 * 10000, -2000.0, "GeoTIFF")  # Landsat C2 L2
    assert from_gdal(float("nan"), 0.0) is None
    for name in (
        "S2A_MSIL2A_20220315T112111_N0400_R037_T29RKH_20220315T150338.SAFE",
        "S2B_MSIL1C_20190101T000000_N0500_R037_T29RKH_20230101T000000.SAFE",  # Collection-1
        "patches/S2A_MSIL2A_20220613T101031_26_57/B04.tif",  # BigEarthNet v1 name, 2022
    ):
        assert looks_like_offset_data(name), name
    for name in (
        "S2A_MSIL2A_20200219T112111_N0214_R037_T29RKH_20200219T115007.SAFE",
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57",
        "AnnualCrop/AnnualCrop_1.tif",
    ):
        assert not looks_like_offset_data(name), name
    dn = np.array([0, 1000, 1500], np.uint16)
    values = Scaling(1.0, -1000.0).apply(dn)
    assert np.isnan(values[0]) and list(values[1:]) == [0.0, 500.0]


needs_s2 = pytest.mark.skipif(not SHARED_S2.is_dir(), reason=f"real Sentinel-2 scene not present at {SHARED_S2}")


@needs_s2
def test_the_real_scene_as_a_baseline_04_product_equals_the_plain_scene(tmp_path: Path):
    """The real (pre-04.00) scene stored as an L2A 04.00 product (DN + 1000, BOA_ADD_OFFSET
    -1000, lossless JPEG 2000) gives the same truecolor and ndvi as the scene itself."""
    bands = {}
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(SHARED_S2 / f"{band}.tif") as src:
            data = src.read(1)
        bands[band] = np.where(data == 0, 0, data.astype(np.int64) + 1000).astype(np.uint16)
    synth.write_safe_product(
        tmp_path / "in", bands, "L2A", "04.00", dict.fromkeys(bands, -1000), origin=(199980.0, 2800020.0), metres=109800.0
    )
    out, plain = tmp_path / "out", tmp_path / "plain"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out), products='["truecolor","ndvi"]', **BANDS)
    run_engine(tmp_path, input_dir=str(SHARED_S2), output_dir=str(plain), products='["truecolor","ndvi"]', **BANDS)
    for product in ("truecolor", "ndvi"):
        (got,) = list((out / product).glob("*.png"))
        assert np.array_equal(iio.imread(got), iio.imread(plain / product / "s2_29RKH.png")), product
