"""layout: band_folders: images made of one file per band (BigEarthNet patch folders, Sentinel-2
SAFE products, per-band COG folders), through the real workflow."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
import yaml
from conftest import (
    REPO,
    SHARED_S2,
    assert_walk_variant,
    run_engine,
    run_snakemake,
    run_totals,
    run_walk_variants,
)
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rasterio.warp import reproject

from msrgb import synth
from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter
from msrgb.readers.band_blocks import LargeBandImage
from msrgb.readers.band_image import BandImage
from msrgb.sources import bandfiles
from msrgb.sources.discovery import InputFormat, discover_inputs

BANDS = {"layout": "band_folders"}


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def formula(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference formula on three band arrays."""
    ms = np.stack([r, g, b], axis=-1)
    return (255 * (ms / 4000).clip(0, 1)).astype(np.uint8)


def patch_files(root: Path, index: int) -> dict[str, Path]:
    name = synth.patch_name(index)
    return {band: root / name / f"{name}_{band}.tif" for band in synth.BIGEARTHNET_BANDS}


@pytest.fixture
def bigearthnet(tmp_path: Path) -> Path:
    root = tmp_path / "BigEarthNet-S2"
    synth.generate_bigearthnet(root, 8)
    return root


def test_band_names_and_the_finest_resolution():
    pattern = bandfiles.compile_pattern(bandfiles.DEFAULT_BAND_PATTERN)
    assert bandfiles.band_of("B04.tif", pattern) == ("B04", 0)
    assert bandfiles.band_of("S2A_MSIL2A_20170613T101031_0_45_B8A.tif", pattern) == ("B8A", 0)
    assert bandfiles.band_of("T29RKH_20200219T112111_B04_10m.jp2", pattern) == ("B04", 10)
    assert bandfiles.band_of("t29rkh_b12_20m.JP2", pattern) == ("B12", 20)
    assert bandfiles.band_of("x_B02.TIFF", pattern) == ("B02", 0)
    for other in (
        "T29RKH_TCI_10m.jp2", "SCL.tif", "B04.png", "B13.tif", "xB04.tif", "B04_labels.json", "B04",
        "B04.tif.gz", "B04.", "B04.tif.aux.xml", "x_B04.jp2x",
    ):  # fmt: skip
        assert bandfiles.band_of(other, pattern) is None, other
    no_res = bandfiles.compile_pattern(r"_(?P<band>B\d\d)$")  # a pattern without a resolution group
    assert bandfiles.band_of("x_B05.tif", no_res) == ("B05", 0)
    files = [
        bandfiles.BandFile("B04", 20, "R20m/x_B04_20m.jp2", 1, 1),
        bandfiles.BandFile("B04", 10, "R10m/x_B04_10m.jp2", 1, 1),
        bandfiles.BandFile("B12", 20, "R20m/x_B12_20m.jp2", 1, 1),
        bandfiles.BandFile("B12", 60, "R60m/x_B12_60m.jp2", 1, 1),
    ]
    assert bandfiles.choose(files, ["B04", "B12", "B03"]) == [
        ("B04", "R10m/x_B04_10m.jp2"),
        ("B12", "R20m/x_B12_20m.jp2"),
    ]
    with pytest.raises(Exception, match="no group named 'band'"):
        bandfiles.compile_pattern(r"B\d\d")
    with pytest.raises(Exception, match="band_pattern"):
        bandfiles.compile_pattern(r"(?P<band>B\d\d")


def test_the_default_patterns_fast_reader_agrees_with_the_expression_for_any_name():
    """Band names under the default pattern are read without its regular expression (and
    remembered by the name's last part): the same (band, resolution) or None as the expression
    for names built from the pieces that matter (bands, resolutions, separators, case, Unicode
    digits and letters that fold to ASCII, line breaks, suffixes), each read twice in one
    reader, before and after its last part is remembered."""
    pattern = bandfiles.compile_pattern(bandfiles.DEFAULT_BAND_PATTERN)
    rng = random.Random(7)
    pieces = [
        "B04", "b8a", "B8A", "B13", "B00", "B1", "B012", "_", "_", "__", "x", "S2A", "10m", "20M", "m",
        "\u0661\u0660m", "\u00b2m", "0", "60", "\n", ".", "\u017f", "\u212a", "\u0130", "TCI", "-", " ",
    ]  # fmt: skip
    suffixes = [".tif", ".TIF", ".tiff", ".jp2", ".JP2", ".png", ".tif.aux.xml", "", ".tif_", ".t_if"]
    names = [
        "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) + rng.choice(suffixes)
        for _ in range(20_000)
    ]
    names += [f"{head}{band}{res}{suffix}" for head in ("", "_", "x_", "x") for band in ("B04", "b8a", "B13")
              for res in ("", "_10m", "_10M", "10m", "_m", "_\u00b2m", "_\u0661m") for suffix in suffixes]  # fmt: skip
    read = bandfiles.band_reader(pattern)
    other = bandfiles.band_reader(bandfiles.compile_pattern(r"_(?P<band>B\d\d)$"))
    for name in names + names[::-1]:
        assert read(name) == bandfiles.band_of(name, pattern), repr(name)
        assert other(name) == bandfiles.band_of(name, bandfiles.compile_pattern(r"_(?P<band>B\d\d)$")), repr(name)
    fresh = bandfiles.band_reader(pattern)  # names whose last parts differ by one character
    for name in ("a_B04.tif", "a_C04.tif", "aB04.tif", "B04.tif", "a_b04.TIF", "a_B04.tiff", "_B04_10m.tif", "a_10m.tif", "x_B4.tif"):
        assert fresh(name) == bandfiles.band_of(name, pattern), name
    found = [read(n) for n in names]
    assert sum(f is not None and f[1] == 0 for f in found) > 100  # the class is exercised, not only None
    assert sum(f is not None and f[1] > 0 for f in found) > 50
    assert bandfiles.band_of("x_B04\n.tif", pattern) == read("x_B04\n.tif") == ("B04", 0)
    assert read("x_B04_\u0661\u0660m.jp2") == ("B04", 10)


def test_choose_is_the_plain_rule_for_any_files():
    """The files chosen for the needed bands (one pass over an image's files) are those of the
    rule as written: every needed band present, at its finest resolution, each file of that
    resolution in path order."""
    rng = random.Random(3)
    for _ in range(2000):
        files = [
            bandfiles.BandFile(rng.choice(["B02", "B03", "B04", "B12"]), rng.choice([0, 10, 20, 60]), f"p/{rng.random()}", 1, 1)
            for _ in range(rng.randint(0, 8))
        ]  # fmt: skip
        needed = rng.sample(["B02", "B03", "B04", "B12", "B8A"], rng.randint(0, 5))
        plain = []
        for band in sorted(set(needed)):
            candidates = [f for f in files if f.band == band]
            if candidates:
                finest = min(f.resolution for f in candidates)
                plain += [(band, f.rel) for f in sorted(candidates, key=lambda f: f.rel) if f.resolution == finest]
        assert bandfiles.choose(files, needed) == plain


def test_bigearthnet_patches_truecolor_exact_swir_on_the_10m_grid(bigearthnet: Path, tmp_path: Path):
    """One exact truecolor PNG per patch folder, read from 3 of its 12 files (the others are
    broken here and nobody notices); SWIR (B12 and B8A at 20 m) resampled by GDAL onto B04's
    10 m grid; provenance lists the files used with their SHA-256, and verify checks them."""
    for i in range(8):  # bands no product reads: damaged on purpose
        patch_files(bigearthnet, i)["B01"].write_bytes(b"not a TIFF")
    out = tmp_path / "out"
    run_engine(
        tmp_path, input_dir=str(bigearthnet), output_dir=str(out), products='["truecolor","swir"]', **BANDS
    )
    for i in range(8):
        files = patch_files(bigearthnet, i)
        name = synth.patch_name(i)
        got = iio.imread(out / "truecolor" / f"{name}.png")
        want = formula(*(read_band(files[b]) for b in ("B04", "B03", "B02")))
        assert np.array_equal(got, want), name
        swir = iio.imread(out / "swir" / f"{name}.png")
        assert swir.shape == (120, 120, 3)
        expected = []
        for band in ("B12", "B8A"):  # GDAL's warper with the files' own CRS, done here
            with rasterio.open(files[band]) as src, rasterio.open(files["B04"]) as ref:
                dst = np.zeros((120, 120), np.uint16)
                reproject(
                    src.read(1), dst, src_transform=src.transform, src_crs=src.crs,
                    dst_transform=ref.transform, dst_crs=ref.crs, resampling=Resampling.bilinear,
                )  # fmt: skip
                expected.append(dst)
        assert np.array_equal(swir, formula(*expected, read_band(files["B04"]))), name
    rows = [line.split("\t") for line in (out / "truecolor" / "manifest.tsv").read_text().splitlines()]
    header = rows.index(["path", "source_size", "source_sha256", "png_sha256", "settings_digest", "env", "radiometry"])
    from msrgb.outputs.provenance_manifest import read_provenance_manifest

    first = read_provenance_manifest(out / "truecolor" / "manifest.tsv")[0]
    used = json.loads(first["source_sha256"])
    assert [Path(p).name[-7:] for p, _ in used] == ["B04.tif", "B03.tif", "B02.tif"]
    assert len(rows) - header - 1 == 8
    verify = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.verify", str(out), "--input", str(bigearthnet)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    status = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.status", str(out), "--input", str(bigearthnet)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    assert (out / "contact_sheets" / "truecolor" / "overview.png").exists()

    # incremental: a changed band file, a new and a removed folder redo just those images
    b03 = patch_files(bigearthnet, 2)["B03"]
    with rasterio.open(b03, "r+") as dst:
        dst.write(np.full((120, 120), 3000, np.uint16), 1)
    synth.generate_bigearthnet(bigearthnet, 1, start=8)
    shutil.rmtree(bigearthnet / synth.patch_name(5))
    run_engine(
        tmp_path, input_dir=str(bigearthnet), output_dir=str(out), products='["truecolor","swir"]', **BANDS
    )
    assert run_totals(out)["converted"] == 2
    assert not (out / "truecolor" / f"{synth.patch_name(5)}.png").exists()
    assert iio.imread(out / "truecolor" / f"{synth.patch_name(2)}.png")[..., 1].max() == 191  # 3000/4000
    verify = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.verify", str(out), "--input", str(bigearthnet)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    b03.write_bytes(b03.read_bytes()[:-10])  # changed behind the PNG's back: verify sees it
    verify = subprocess.run(
        [sys.executable, "-m", "msrgb.tools.verify", str(out), "--input", str(bigearthnet)],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert verify.returncode == 1 and f"{synth.patch_name(2)}_B03.tif: source differs" in verify.stdout


def test_bad_band_folders_are_bad_inputs(bigearthnet: Path, tmp_path: Path):
    """A missing band, a band twice, bands on different grids, a broken JPEG 2000 and a
    different data type are each a bad input naming the folder or file and the problem; the
    other patches are converted (skip), or converted and then listed (fail)."""
    files = [patch_files(bigearthnet, i) for i in range(8)]
    files[0]["B03"].unlink()
    shutil.copy(files[1]["B04"], files[1]["B04"].with_name("copy_B04.tif"))
    with rasterio.open(files[2]["B02"]) as src:
        profile, data = src.profile, src.read()
    profile["transform"] = from_origin(profile["transform"].c + 600, profile["transform"].f, 10, 10)
    with rasterio.open(files[2]["B02"], "w", **profile) as dst:
        dst.write(data)
    files[3]["B04"].unlink()
    (files[3]["B04"].with_suffix(".jp2")).write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 100)
    profile["transform"] = from_origin(300000.0, 5000000.0, 10, 10)
    with rasterio.open(files[4]["B02"]) as src:
        profile = {**src.profile, "dtype": "float32"}
        data = src.read().astype("float32")
    with rasterio.open(files[4]["B02"], "w", **profile) as dst:
        dst.write(data)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(bigearthnet), output_dir=str(out), on_error="skip", **BANDS)
    errors = dict(line.split("\t", 1) for line in (out / "errors.tsv").read_text().splitlines()[1:])
    names = [synth.patch_name(i) for i in range(5)]
    assert set(errors) == set(names), errors
    assert "no file for band B03" in errors[names[0]]
    assert "band B04 is in 2 files" in errors[names[1]] and "copy_B04.tif" in errors[names[1]]
    assert "do not cover the same area" in errors[names[2]]
    assert "_B04.jp2: cannot be read as a JPEG 2000 file" in errors[names[3]]
    assert "different data types" in errors[names[4]]
    made = sorted(p.stem for p in (out / "truecolor").glob("*.png"))
    assert made == [synth.patch_name(i) for i in range(5, 8)]

    failed = run_engine(tmp_path, input_dir=str(bigearthnet), output_dir=str(tmp_path / "o2"), check=False, **BANDS)
    assert failed.returncode != 0
    assert "no file for band B03" in failed.stderr
    assert len(list((tmp_path / "o2" / "truecolor").glob("*.png"))) == 3


def _safe_tree(root: Path, level: str) -> tuple[Path, dict[str, np.ndarray]]:
    """A Sentinel-2 product tree with lossless JPEG 2000 band files (bands of patch 3, at
    10/20/60 m): L2A with R10m/R20m/R60m folders (coarser copies of B02-B04 too), or L1C with
    all bands in IMG_DATA; masks named after bands in QI_DATA, which are not band files."""
    bands = synth.make_patch(3)
    safe = root / f"S2A_MSI{level}_20200219T112111_N0214_R037_T29RKH_20200219T115007.SAFE"
    granule = safe / "GRANULE" / "L2A_T29RKH_A024290_20200219T112109"
    (safe / "MTD_MSIL2A.xml").parent.mkdir(parents=True, exist_ok=True)
    (safe / "MTD_MSIL2A.xml").write_text("<metadata/>")
    stem = "T29RKH_20200219T112111"

    def write(path: Path, data: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        n = data.shape[0]
        with rasterio.open(
            path, "w", driver="JP2OpenJPEG", width=n, height=n, count=1, dtype="uint16",
            crs="EPSG:32629", transform=from_origin(199980, 2800020, 1200 / n, 1200 / n),
            QUALITY=100, REVERSIBLE="YES",
        ) as dst:  # fmt: skip
            dst.write(data, 1)

    img = granule / "IMG_DATA"
    for band, data in bands.items():
        res = {120: 10, 60: 20, 20: 60}[data.shape[0]]
        if level == "L1C":
            write(img / f"{stem}_{band}.jp2", data)
        else:
            write(img / f"R{res}m" / f"{stem}_{band}_{res}m.jp2", data)
            if res == 10:  # L2A keeps the 10 m bands at 20 m too
                write(img / "R20m" / f"{stem}_{band}_20m.jp2", data.reshape(60, 2, 60, 2).mean(axis=(1, 3)).astype(np.uint16))
    write(granule / "QI_DATA" / "MSK_DETFOO_B04.jp2", np.zeros((120, 120), np.uint16))
    return safe, bands


@pytest.mark.parametrize("level", ["L2A", "L1C"])
def test_safe_products_read_the_finest_jpeg2000_bands(tmp_path: Path, level: str):
    safe, bands = _safe_tree(tmp_path / "products", level)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(tmp_path / "products"), output_dir=str(out), **BANDS)
    png = out / "truecolor" / (safe.name[: -len(".SAFE")] + ".png")
    assert np.array_equal(iio.imread(png), formula(bands["B04"], bands["B03"], bands["B02"]))
    used = json.loads(_manifest_rows(out / "truecolor" / "manifest.tsv")[0]["source_sha256"])
    band_files = [p for p, _ in used if not p.endswith(".xml")]
    assert len(band_files) == 3, used
    assert all(("R10m/" in p) == (level == "L2A") and p.endswith(".jp2") for p in band_files), used
    # the product's metadata file, read for its radiometric offsets, is part of the provenance
    assert [p for p, _ in used if p.endswith(".xml")] == [f"{safe.name}/MTD_MSIL2A.xml"]


def _manifest_rows(path: Path) -> list[dict[str, str]]:
    from msrgb.outputs.provenance_manifest import read_provenance_manifest

    return read_provenance_manifest(path)


needs_s2 = pytest.mark.skipif(not SHARED_S2.is_dir(), reason=f"real Sentinel-2 scene not present at {SHARED_S2}")


@needs_s2
def test_real_scene_folder_full_size_and_quicklook(tmp_path: Path):
    """The real per-band COG folder is one image of B04's size, exact; max_size=256 makes a
    256 px quicklook close to the full image scaled down."""
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(SHARED_S2), output_dir=str(out), products='["truecolor","swir"]', **BANDS)
    full = iio.imread(out / "truecolor" / "s2_29RKH.png")
    want = formula(*(read_band(SHARED_S2 / f"{b}.tif") for b in ("B04", "B03", "B02")))
    assert np.array_equal(full, want)
    assert iio.imread(out / "swir" / "s2_29RKH.png").shape == (1098, 1098, 3)
    quick = tmp_path / "quick"
    run_engine(tmp_path, input_dir=str(SHARED_S2), output_dir=str(quick), max_size="256", **BANDS)
    small = iio.imread(quick / "truecolor" / "s2_29RKH.png")
    assert small.shape == (256, 256, 3)
    assert abs(small.astype(float).mean() - full.astype(float).mean()) < 3


@needs_s2
def test_blocks_give_the_same_bytes_as_a_whole_read(tmp_path: Path, monkeypatch):
    """A scene over the in-memory limit is read and rendered a block of rows at a time, bands of
    20 and 60 m resampled per block: the PNGs are byte for byte those of a whole read."""
    src = discover_inputs(SHARED_S2, InputFormat("band_folders"), ["B04", "B03", "B02", "B12", "B8A", "B01"])[0]
    image = BandImage.of(SHARED_S2, src)
    products = parse_products({"truecolor": None, "swir": None, "coastal": {"bands": ["B01", "B03", "B02"]}})
    whole = {p.name: tmp_path / "whole" / f"{p.name}.png" for p in products}
    blocks = {p.name: tmp_path / "blocks" / f"{p.name}.png" for p in products}
    Converter(products).convert(image, whole)
    monkeypatch.setattr(LargeBandImage, "BLOCK_BYTES", 100_000)  # blocks of 15 rows
    result = Converter(products, in_memory_bytes=1000).convert(image, blocks)
    for name in whole:
        assert whole[name].read_bytes() == blocks[name].read_bytes(), name
    assert {rel.rsplit("/", 1)[-1] for rel, _ in json.loads(result.source_of("swir"))} == {"B12.tif", "B8A.tif", "B04.tif"}


def test_a_custom_band_pattern(tmp_path: Path):
    """Files named B04_2023-06-01.tif: band_pattern finds the band at the start of the name."""
    root = tmp_path / "in" / "site1"
    for band, data in synth.make_patch(1).items():
        synth.write_band(root / f"{band}_2023-06-01.tif", data, (300000.0, 5000000.0), 32632)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out), band_pattern="^(?P<band>B[0-9][0-9A])_", **BANDS)
    bands = synth.make_patch(1)
    assert np.array_equal(iio.imread(out / "truecolor" / "site1.png"), formula(bands["B04"], bands["B03"], bands["B02"]))
    refused = run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(tmp_path / "o2"), check=False, **BANDS)
    assert refused.returncode != 0 and "found no band files" in refused.stderr


def test_dataset_stretch_and_png_targets_over_band_folders(bigearthnet: Path, tmp_path: Path):
    """A dataset-wide percentile stretch samples patch folders; a single patch's PNG can be a
    target (png_targets)."""
    out = tmp_path / "out"
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["products"] = {"p": {"preset": "truecolor", "stretch": {"type": "percentile", "scope": "dataset"}}}
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(config))
    run_engine(
        tmp_path, "--configfile", str(tmp_path / "dataset.yaml"), input_dir=str(bigearthnet),
        output_dir=str(out), **BANDS,
    )  # fmt: skip
    limits = json.loads((out / "stretch" / "p.json").read_text())
    assert limits["sample_files"] == 8 and limits["skipped_files"] == []
    assert len(list((out / "p").glob("*.png"))) == 8
    target = out / "truecolor" / f"{synth.patch_name(4)}.png"
    run_snakemake(  # a target on the command line: what only Snakemake does
        tmp_path, str(target), input_dir=str(bigearthnet), output_dir=str(out), png_targets="true", **BANDS
    )
    files = patch_files(bigearthnet, 4)
    assert np.array_equal(iio.imread(target), formula(*(read_band(files[b]) for b in ("B04", "B03", "B02"))))


def test_max_size_also_makes_quicklooks_of_stacked_files(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out), max_size="32")
    tif = sorted(dataset.rglob("*.tif"))[0]
    small = iio.imread(out / "truecolor" / tif.relative_to(dataset).with_suffix(".png"))
    assert small.shape == (32, 32, 3)
    full = formula(*(read_band_of(tif, b) for b in (4, 3, 2)))
    assert abs(small.astype(float).mean() - full.astype(float).mean()) < 3


def read_band_of(tif: Path, index: int) -> np.ndarray:
    with rasterio.open(tif) as src:
        return src.read(index)


def test_band_files_without_georeferencing(tmp_path: Path):
    """Band files with no CRS at all are taken to cover one area (and read); a world file
    cannot be made from them, which is a bad input, not a crash."""
    from msrgb.errors import InputError
    from msrgb.readers.bands import BandReader
    from msrgb.readers.gdal import gdal_env

    folder = tmp_path / "img"
    folder.mkdir()
    for band, n in (("B04", 8), ("B03", 8), ("B02", 4)):
        with rasterio.open(folder / f"{band}.tif", "w", driver="GTiff", width=n, height=n, count=1, dtype="uint16") as dst:
            dst.write(np.full((1, n, n), 1000, np.uint16))
    image = BandImage(folder, tuple((b, f"img/{b}.tif", folder / f"{b}.tif") for b in ("B04", "B03", "B02")))
    with gdal_env():
        tile, _ = BandReader(parse_products(["truecolor"])).read(image)
        assert tile.bands[1].shape == (8, 8) and (tile.bands[1] == 1000).all()  # B02 resampled
        with pytest.raises(InputError, match="no georeferencing"):
            BandReader(parse_products({"g": {"preset": "truecolor", "world_file": True}})).read(image)


PLAIN_KINDS = {
    # kind: (creation options of each band file, decoded without GDAL)
    "bigearthnet": ({}, True),
    "no-data": ({"nodata": 0}, True),
    "no-data differing per band": ({"nodata": {"B02": 7, "B03": 0, "B04": 3}}, True),
    "int16": ({"dtype": "int16"}, True),
    "float32 with NaN": ({"dtype": "float32", "nodata": float("nan")}, True),
    "deflate with predictor": ({"compress": "deflate", "predictor": 2}, True),
    "big-endian": ({"ENDIANNESS": "BIG"}, True),
    "strips of 5 rows": ({"blockysize": 5}, True),
    "one band coarser, resampled": ({"coarser": "B02"}, True),
    "scale and offset declared": ({"scales": (1e-4,), "offsets": (-0.1,)}, False),
    "lzw": ({"compress": "lzw"}, False),
    "tiled": ({"tiled": True, "blockxsize": 16, "blockysize": 16}, False),
}


@pytest.mark.parametrize("kind", sorted(PLAIN_KINDS))
def test_band_files_read_without_gdal_are_what_gdal_reads(tmp_path: Path, kind: str):
    """Band files that are plain TIFFs whose grids their GeoTIFF tags give (BigEarthNet's) are
    decoded without GDAL (msrgb.readers.tiff); whichever way, the tile holds what GDAL reads of
    each file (a coarser band resampled by GDAL's warper onto the finest grid), the no-data
    value of the finest (first) band, what the files declare of their scaling, and the SHA-256
    of every file read."""
    import hashlib
    from contextlib import ExitStack

    from msrgb.readers.bands import BandReader, PlainBandFile
    from msrgb.readers.gdal import gdal_env

    options, plain = PLAIN_KINDS[kind]
    options = dict(options)
    nodata, coarser = options.pop("nodata", None), options.pop("coarser", None)
    scales, offsets = options.pop("scales", None), options.pop("offsets", None)
    dtype = options.pop("dtype", "uint16")
    rng = np.random.default_rng(len(kind))
    folder = tmp_path / "patch"
    folder.mkdir()
    for band in ("B02", "B03", "B04"):
        n = 16 if band == coarser else 32
        data = rng.integers(0, 6000, (1, n, n)).astype(dtype)
        if dtype == "float32":
            data[0, 0, :3] = np.nan
        band_nodata = nodata[band] if isinstance(nodata, dict) else nodata
        profile = {
            "driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": dtype, "crs": "EPSG:32632",
            "transform": from_origin(300000.0, 5000000.0, 320 / n, 320 / n), "nodata": band_nodata, **options,
        }  # fmt: skip
        with rasterio.open(folder / f"{band}.tif", "w", **profile) as dst:
            dst.write(data)
            if scales is not None:
                dst.scales, dst.offsets = scales, offsets
    image = BandImage(folder, tuple((b, f"patch/{b}.tif", folder / f"{b}.tif") for b in ("B04", "B03", "B02")))
    reader = BandReader(parse_products(["truecolor"]))
    with gdal_env():
        with ExitStack() as stack:
            opened, _, _ = reader._open_all(image, stack, plain=True)
            assert [isinstance(b.src, PlainBandFile) for b in opened] == [plain] * 3
        tile, shas = reader.read(image)
    assert shas == {f"patch/{b}.tif": hashlib.sha256((folder / f"{b}.tif").read_bytes()).hexdigest() for b in ("B02", "B03", "B04")}
    with rasterio.open(folder / "B02.tif") as src:
        want_nodata = src.nodata
    assert (tile.nodata is None) == (want_nodata is None)
    if want_nodata is not None:
        assert tile.nodata == want_nodata or (np.isnan(tile.nodata) and np.isnan(want_nodata))
    for index, band in ((1, "B02"), (2, "B03"), (3, "B04")):
        want = read_band(folder / f"{band}.tif")
        if band == coarser:  # GDAL's warper with the files' own CRS, done here
            with rasterio.open(folder / f"{band}.tif") as src, rasterio.open(folder / "B04.tif") as ref:
                want = np.zeros((32, 32), want.dtype)
                reproject(
                    src.read(1), want, src_transform=src.transform, src_crs=src.crs,
                    dst_transform=ref.transform, dst_crs=ref.crs, resampling=Resampling.bilinear,
                )  # fmt: skip
        assert tile.bands[index].dtype == want.dtype
        assert np.array_equal(tile.bands[index], want, equal_nan=True), band
    assert bool(tile.scaling) == (scales is not None)


def test_an_image_fingerprint_stays_what_earlier_versions_recorded():
    """The fingerprint of a folder's band files is recorded in the state of every image made:
    a change of how it is computed would make every band-folder image again after an upgrade.
    The order of the files does not count; a name, size or time does."""
    from msrgb.sources.bandfiles import BandFile, fingerprint

    files = [
        BandFile("B04", 0, "p/p_B04.tif", 28800, 1700000000123456789),
        BandFile("B02", 0, "p/p_B02.tif", 28800, 1700000000000000000),
        BandFile("B03", 20, "p/é_B03.tif", -1, -1),
    ]
    assert fingerprint(files) == (57600, 3052484193063122531)
    assert fingerprint(files[::-1]) == fingerprint(files)
    for changed in (files[0]._replace(rel="p/q_B04.tif"), files[0]._replace(size=28801), files[0]._replace(mtime_ns=1)):
        assert fingerprint([changed, *files[1:]])[1] != fingerprint(files)[1]


# the walk shared between processes -------------------------------------------------------------

#: run as a separate program (without root's bypass, so that a folder can be unreadable): the
#: images and problems of the tree in argv[1], walked by one process and shared in many ways
WALK_VARIANTS = r"""
from msrgb.sources.discovery import InputFormat, discover_inputs

def walk(enough, processes, executable, with_problems, limit=None):
    parallel_walk.ENOUGH_FOLDERS, parallel_walk._processes = enough, lambda: processes
    sys.executable, started[:] = executable, []
    problems = [] if with_problems else None
    try:
        found = discover_inputs(
            Path(sys.argv[1]), InputFormat("band_folders"), ["B02", "B03", "B04"], problems=problems, processes=limit
        )
        return {"rows": [list(s) for s in found], "problems": problems, "helpers": len(started)}
    except PlanError as exc:
        return {"error": str(exc), "helpers": len(started)}

python = sys.executable
variants = [(e, p, x, w, None) for w in (True, False) for e, p in [(10**9, 1), (1, 2), (2, 3), (5, 2), (40, 4)] for x in (python, "")]
variants += [(1, 2, "/bin/false", True, None), (1, 2, "/nonexistent/python", True, None), (1, 3, python, True, 1), (1, 3, python, True, 2)]
Path(sys.argv[2]).write_text(json.dumps([[list(v), walk(*v)] for v in variants]))
"""


def _tree_of_band_folders(root: Path) -> None:
    """Band folders of every kind discovery knows, at several depths, with what it reports."""
    bands = ("B02", "B03", "B04", "B08")
    folders = [f"c{i}/p {j}/ü{k}" for i in range(3) for j in range(4) for k in range(3)] + ["deep/a/b/c/d", "x"]
    for folder in folders:
        for band in bands:
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{folder.rpartition('/')[2]}_{band}.tif").write_bytes(b"x" * len(folder))
    for band in ("B02_10m", "B02_20m", "B03_10m", "B04_20m"):  # a SAFE product; its zip next to it
        granule = root / "c1" / "S2A_MSIL2A_X.SAFE" / "GRANULE" / "L2A_T1" / "IMG_DATA" / f"R{band[-3:]}"
        granule.mkdir(parents=True, exist_ok=True)
        (granule / f"T29_{band}.jp2").write_bytes(b"j")
    (root / "c1" / "S2A_MSIL2A_X.SAFE.zip").write_bytes(b"z")
    (root / "c2" / "S2B_MSIL1C_Y.zip").write_bytes(b"zz")
    for band in bands:  # the input folder is an image too; hidden ones are not
        (root / f"{band}.tif").write_bytes(b"t")
        (root / ".cache" / "p").mkdir(parents=True, exist_ok=True)
        (root / ".cache" / "p" / f"{band}.tif").write_bytes(b"h")
        (root / "c0" / "locked" / "p").mkdir(parents=True, exist_ok=True)
        (root / "c0" / "locked" / "p" / f"{band}.tif").write_bytes(b"l")
    (root / "x" / "x_B05.tif").symlink_to(root / "nowhere.tif")  # dangling: kept, for the job to report


def test_a_walk_shared_between_processes_finds_what_one_process_finds(tmp_path: Path):
    """Whatever the share (from the first folder on, three processes, a helper that cannot start
    or that fails), the images, their fingerprints and files, and the problems are those of one
    process; an unreadable folder without a list of problems is the same error."""
    root = tmp_path / "in"
    _tree_of_band_folders(root)
    results = {tuple(v): r for v, r in run_walk_variants(WALK_VARIANTS, root, root / "c0" / "locked", tmp_path)}
    python = sys.executable
    one, one_error = results[(10**9, 1, python, True, None)], results[(10**9, 1, python, False, None)]
    rows = {r[0]: r for r in one["rows"]}
    assert len(rows) == 3 * 4 * 3 + 5 and "in" in rows and "c1/S2A_MSIL2A_X.SAFE" in rows, sorted(rows)
    assert "c2/S2B_MSIL1C_Y.SAFE" in rows and not any(".cache" in r for r in rows)
    assert rows["c1/S2A_MSIL2A_X.SAFE"][3][0][1].endswith("R10m/T29_B02_10m.jp2")
    assert [p[0] for p in one["problems"]] == ["c0/locked", "c1/S2A_MSIL2A_X.SAFE.zip"], one["problems"]
    assert "c0/locked" in one_error["error"] and "cannot be read" in one_error["error"]
    for (enough, processes, executable, with_problems, limit), got in results.items():
        n = min(processes, limit or processes)  # at most as many as the run's --cores
        shared = n > 1 and executable == python and enough < 40  # the tree has fewer folders
        assert_walk_variant(got, executable, one if with_problems else one_error, n - 1 if shared else 0)
