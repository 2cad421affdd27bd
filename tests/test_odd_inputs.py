"""Inputs real collections contain: float and 32-bit data, NaN, images too large to hold whole,
and file names at the limits (issue: one odd file must never stop a whole dataset)."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import assert_png_matches, run_engine

from msrgb import cli, synth
from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter
from msrgb.outputs.provenance_manifest import read_provenance_manifest
from msrgb.readers.gdal import enter_thread_gdal_env
from msrgb.readers.stacked import LargeImage
from msrgb.storage import tsv


@pytest.fixture(autouse=True)
def _gdal_env():
    enter_thread_gdal_env()


def write(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    """A 13-band GeoTIFF of ``data`` (bands, rows, cols), strips of 4 rows like EuroSAT."""
    synth.write_tile(path, data, (500000.0, 5000000.0), 32632)
    if nodata is not None:
        with rasterio.open(path, "r+") as dst:
            dst.nodata = nodata
    return path


def reflectance(rows: int = 64, cols: int = 64, seed: int = 1) -> np.ndarray:
    """EuroSAT-like values as float32 reflectance 0-1 (DN / 10000)."""
    tile = synth.make_tile("River", seed)
    reps = (1, -(-rows // tile.shape[1]), -(-cols // tile.shape[2]))
    return (np.tile(tile, reps)[:, :rows, :cols] / 10000).astype(np.float32)


def rgb_of(png: Path) -> np.ndarray:
    return iio.imread(png)


def test_float_reflectance_with_a_gain_for_it(tmp_path: Path):
    """stretch gain max 0.4 on reflectance 0-1 is the reference formula on the values as they
    are; NaN is no data: black without a nodata setting, transparent with nodata: file."""
    ms = reflectance()
    ms[:, 5, 7] = np.nan
    ms[3, 9, 9] = np.inf
    tif = write(tmp_path / "refl.tif", ms, nodata=float("nan"))
    spec = {"refl": {"preset": "truecolor", "stretch": {"type": "gain", "max": 0.4}}}
    (product,) = parse_products(spec)
    png = tmp_path / "refl.png"
    result = Converter([product]).convert(tif, {"refl": png})
    assert result.notes == []
    got = rgb_of(png)
    with np.errstate(invalid="ignore"):
        want = (255 * (np.moveaxis(ms, 0, -1)[..., (3, 2, 1)] / 0.4).clip(0, 1)).astype(np.uint8)
    bad = ~np.isfinite(np.moveaxis(ms, 0, -1)[..., (3, 2, 1)]).all(axis=-1)
    want[bad] = 0
    assert bad.sum() == 2 and np.array_equal(got, want)
    # with nodata taken from the file (NaN): the same colours, transparent where not finite
    (transparent,) = parse_products({"t": {**spec["refl"], "nodata": "file"}})
    Converter([transparent]).convert(tif, {"t": tmp_path / "t.png"})
    rgba = rgb_of(tmp_path / "t.png")
    assert np.array_equal(rgba[..., :3], want) and np.array_equal(rgba[..., 3] == 0, bad)


def test_float_percentiles_leave_out_nan(tmp_path: Path):
    ms = reflectance()
    ms[:, :10, :] = np.nan
    tif = write(tmp_path / "p.tif", ms)
    (product,) = parse_products({"p": {"preset": "truecolor", "stretch": {"type": "percentile"}}})
    Converter([product]).convert(tif, {"p": tmp_path / "p.png"})
    got = rgb_of(tmp_path / "p.png")
    for c, band in enumerate((3, 2, 1)):
        values = ms[band][10:].astype(np.float64)
        lo, hi = np.nanpercentile(values, [2, 98])
        want = (255 * ((ms[band][10:] - lo) / (hi - lo)).clip(0, 1)).astype(np.uint8)
        assert np.array_equal(got[10:, :, c], want)
    assert not got[:10].any(), "rows of NaN are black"


def test_reflectance_under_a_stretch_for_dn_gives_a_note(tmp_path: Path):
    tif = write(tmp_path / "r.tif", reflectance())
    (product,) = parse_products(["truecolor"])
    result = Converter([product]).convert(tif, {"truecolor": tmp_path / "r.png"})
    assert len(result.notes) == 1 and "stretch: {type: gain, max: 0.4}" in result.notes[0]
    dn = write(tmp_path / "dn.tif", reflectance() * 10000)  # DN stored as float: no note
    assert Converter([product]).convert(dn, {"truecolor": tmp_path / "dn.png"}).notes == []
    assert_png_matches(tmp_path / "dn.png", dn)


@pytest.mark.parametrize("dtype", ["int32", "uint32"])
def test_32_bit_integers(tmp_path: Path, dtype: str):
    tif = write(tmp_path / "i.tif", synth.make_tile("Forest", 3).astype(dtype))
    (product,) = parse_products(["truecolor"])
    Converter([product]).convert(tif, {"truecolor": tmp_path / "i.png"})
    assert_png_matches(tmp_path / "i.png", tif)


BLOCK_PRODUCTS = {
    "truecolor": {"preset": "truecolor"},
    "pct": {"preset": "swir", "stretch": {"type": "percentile", "low": 1, "high": 99}},
    "alpha16": {"preset": "falsecolor", "bit_depth": 16, "nodata": 0},
    "geo": {"preset": "truecolor", "world_file": True, "stretch": {"type": "range", "min": 200, "max": 3000, "gamma": 1.3}},
}


@pytest.mark.parametrize("kind", ["uint16", "float32-nan"])
def test_large_images_in_blocks_give_the_same_bytes(tmp_path: Path, monkeypatch, kind: str):
    """A file over in_memory_bytes is read and rendered a block of rows at a time: every
    product's bytes (percentiles, 16-bit, alpha, world files) equal the whole-image path's."""
    rows, cols = 203, 150  # blocks of 4-row strips, the last one short
    tile = synth.make_tile("Industrial", 5)
    ms = np.tile(tile, (1, 4, 3))[:, :rows, :cols].copy()
    ms[:, 50:60, 20:40] = 0  # nodata for alpha16
    if kind == "float32-nan":
        ms = ms.astype(np.float32)
        ms[:, 100, :] = np.nan
    tif = write(tmp_path / "big.tif", ms)
    products = parse_products(BLOCK_PRODUCTS)
    monkeypatch.setattr(LargeImage, "BLOCK_BYTES", 3 * 4 * cols * 2)  # a few strips a block
    outputs = {}
    for limit in (2**30, 0):  # in memory, then in blocks
        out = tmp_path / f"out{limit}"
        dests = {p.name: out / f"{p.name}.png" for p in products}
        result = Converter(products, in_memory_bytes=limit).convert(tif, dests)
        outputs[limit] = ({f.name: f.read_bytes() for f in sorted(out.iterdir())}, result)
    assert outputs[0] == outputs[2**30]
    assert len(outputs[0][0]) == 6  # 4 PNGs, a world file and an .aux.xml


def test_block_rows_follow_the_strips(tmp_path: Path):
    tif = write(tmp_path / "s.tif", synth.make_tile("Forest", 1))
    (product,) = parse_products(["truecolor"])
    with Converter([product]).reader.open_large(tif) as image:
        assert image.block_rows % 4 == 0
        assert sum(b.bands[3].shape[0] for b in image.blocks()) == 64


def odd_names() -> list[str]:
    """File names at the limits of what a Linux file system allows (255 bytes a name)."""
    nfc = unicodedata.normalize("NFC", "Zürich_é")
    nfd = unicodedata.normalize("NFD", "Zürich_é")
    return [
        "a" * 251 + ".tif",  # 255 bytes, and 255 again as .png
        "b" * 250 + ".tiff",  # 255 bytes; 254 as .png
        "tab\there.tif",
        "line\nbreak.tif",
        "carriage\rreturn.tif",
        f"{nfc}.tif",
        f"{nfd}.tif",  # the same letters, another byte sequence: another file
        "-leading-dash.tif",
        "back\\slash.tif",
        'double "quotes".tif',
        "single 'quotes'.tif",
        '"starts with a quote.tif',
        "# looks like a comment.tif",
        "ü" * 125 + ".tif",  # 254 bytes in UTF-8
    ]


def test_odd_file_names_convert_and_stay_parseable(tmp_path: Path):
    """Every name the file system allows converts, and state files, errors.tsv, manifest.tsv,
    summary.json and verify read them back."""
    root = tmp_path / "tif"
    names = odd_names()
    assert all(len(n.encode()) <= 255 for n in names)
    for i, name in enumerate(names):
        write(root / "Odd" / name, synth.make_tile("Forest", i))
    (root / "Odd" / ("bad\nname.tif")).write_text("not a tiff")
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(root), output_dir=str(out), on_error="skip")
    for name in names:
        png = out / "truecolor" / "Odd" / (name[: name.rfind(".")] + ".png")
        assert_png_matches(png, root / "Odd" / name)
    errors = list(tsv.rows(out / "errors.tsv"))
    assert errors == [["file", "reason"], ["Odd/bad\nname.tif", errors[1][1]]]
    rows = read_provenance_manifest(out / "truecolor" / "manifest.tsv")
    assert sorted(r["path"] for r in rows) == sorted(f"Odd/{n[: n.rfind('.')]}.png" for n in names)
    assert cli.main(["verify", str(out), "--input", str(root)]) == 0
    assert json.loads((out / "summary.json").read_text())["skipped"] == 1
    proc = run_engine(tmp_path, input_dir=str(root), output_dir=str(out), on_error="skip")
    assert not proc.shards and not proc.parts, "the state read back fully: nothing to do"
    assert not [p for p in out.rglob("*.tmp")]


def test_an_output_name_the_file_system_refuses_is_one_bad_file(tmp_path: Path):
    """A 255-byte name whose .png.aux.xml (world_file) is 263 bytes: that image fails alone,
    under on_error, and every other image is made."""
    root = tmp_path / "tif"
    synth.generate(root, 3, classes=("Forest", "River"))
    long_name = "L" * 251 + ".tif"
    write(root / "Forest" / long_name, synth.make_tile("Forest", 9))
    cfg = tmp_path / "geo.yaml"
    cfg.write_text(json.dumps({"products": {"geo": {"preset": "truecolor", "world_file": True}}}))
    out = tmp_path / "out"
    args = ("--configfile", str(Path(__file__).parent.parent / "config" / "config.yaml"), str(cfg))
    proc = run_engine(tmp_path, *args, check=False, input_dir=str(root), output_dir=str(out))
    assert proc.returncode != 0
    assert "File name too long" in proc.stderr and long_name[:-4] in proc.stderr, proc.stderr[-3000:]
    made = sorted(p.name for p in (out / "geo").rglob("*.png"))
    assert len(made) == 6, made  # every other image, though they share the shard
    proc = run_engine(tmp_path, *args, input_dir=str(root), output_dir=str(out), on_error="skip")
    errors = list(tsv.rows(out / "errors.tsv"))
    assert [row[0] for row in errors[1:]] == [f"Forest/{long_name}"]
    assert "File name too long" in errors[1][1]


def test_mixed_folder_with_default_settings(tmp_path: Path):
    """The issue's case: a 250-byte name, a line break in a name, a float tile and ordinary
    tiles convert completely with the default settings, and a reflectance tile under the
    default stretch gets one warning for the whole run."""
    root = tmp_path / "tif"
    synth.generate(root, 2, classes=("Forest", "River", "SeaLake"))
    write(root / "Mixed" / ("n" * 246 + ".tif"), synth.make_tile("River", 7))
    write(root / "Mixed" / "two\nlines.tif", synth.make_tile("Forest", 8))
    write(root / "Mixed" / "dn_float.tif", synth.make_tile("SeaLake", 1).astype(np.float32))
    for i in range(3):
        write(root / f"Refl{i}" / "reflectance.tif", reflectance(seed=i))
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(root), output_dir=str(out), shards=2)
    for tif in root.rglob("*.tif"):
        png = out / "truecolor" / tif.relative_to(root).with_suffix(".png")
        if "Refl" not in str(tif):
            assert_png_matches(png, tif)
        assert png.exists()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["notes"]) == 1 and "max: 0.4" in summary["notes"][0]
    assert (proc.stdout + proc.stderr).count("float input values all lie in 0-1") == 1
    assert os.listdir(out / "truecolor" / "Mixed")
