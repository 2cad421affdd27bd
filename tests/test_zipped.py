"""Zipped Sentinel-2 products (``*.SAFE.zip``) read as they are: the PNG of the unzipped product,
byte for byte, locally and from S3; the zip's SHA-256 in the provenance; a damaged zip is one
bad input."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import pngs, run_engine

from msrgb import synth
from msrgb.radiometry.scaling import SAFE_BAND_IDS

BANDS = ("B02", "B03", "B04", "B08")


def product(root: Path, level: str, baseline: str, offsets: bool, seed: int = 0) -> Path:
    """A Sentinel-2 product of real-looking DN (a no-data corner) as ESA names and lays it out."""
    rng = np.random.default_rng(seed)
    shift = 1000 if offsets else 0
    bands = {b: (rng.integers(200, 5000, (48, 48)) + shift).astype(np.uint16) for b in BANDS}
    for values in bands.values():
        values[:3, :3] = 0
    return synth.write_safe_product(
        root, bands, level=level, baseline=baseline, offsets=dict.fromkeys(SAFE_BAND_IDS, -1000) if offsets else None
    )


def zip_product(safe: Path, into: Path, name: str | None = None, compression: int = zipfile.ZIP_STORED) -> Path:
    """``safe`` zipped as the hubs hand products out: the .SAFE folder at the top of the zip."""
    into.mkdir(parents=True, exist_ok=True)
    path = into / (name or f"{safe.name}.zip")
    with zipfile.ZipFile(path, "w", compression) as z:
        for f in sorted(safe.rglob("*")):
            z.write(f, f.relative_to(safe.parent))
    return path


KINDS = {
    "L2A 04.00": ("L2A", "04.00", True),
    "L1C 04.00": ("L1C", "04.00", True),
    "L2A 02.14": ("L2A", "02.14", False),
}
CONFIG = dict(layout="band_folders", products=["truecolor", "ndvi"], contact_sheets=False)


@pytest.mark.parametrize("kind", KINDS)
def test_a_zipped_product_gives_the_unzipped_products_images_byte_for_byte(tmp_path: Path, kind: str):
    safe = product(tmp_path / "unzipped", *KINDS[kind])
    zipped = zip_product(safe, tmp_path / "zipped", compression=zipfile.ZIP_DEFLATED)
    zip_product(safe, tmp_path / "zipped", name=safe.name.replace(".SAFE", ".zip").replace("T29RKH", "T29RKJ"))
    run_engine(tmp_path, input_dir="unzipped", output_dir="out1", **CONFIG)
    run_engine(tmp_path, input_dir="zipped", output_dir="out2", **CONFIG)
    one = {**pngs(tmp_path / "out1" / "truecolor"), **pngs(tmp_path / "out1" / "ndvi")}
    two = {**pngs(tmp_path / "out2" / "truecolor"), **pngs(tmp_path / "out2" / "ndvi")}
    assert len(one) == 1
    for name, data in one.items():
        assert two[name] == data, name  # the recipe names the same .SAFE
    # X.zip (no .SAFE in its name) is the product X.SAFE: read the same way
    assert {n.replace("T29RKJ", "T29RKH") for n in two} == set(one) and len(two) == 2
    manifest = (tmp_path / "out2" / "truecolor" / "manifest.tsv").read_text()
    assert hashlib.sha256(zipped.read_bytes()).hexdigest() in manifest and zipped.name in manifest


def test_a_damaged_zip_is_one_bad_input_and_nothing_converted_is_lost(tmp_path: Path):
    good = zip_product(product(tmp_path / "p1", "L2A", "05.10", True), tmp_path / "in")
    bad = zip_product(product(tmp_path / "p2", "L2A", "05.10", True, seed=1).rename(
        tmp_path / "p2" / "S2A_MSIL2A_20230101T000000_N0510_R001_T31UFU_20230101T000000.SAFE"), tmp_path / "in")  # fmt: skip
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated in transfer: no central directory
    empty = tmp_path / "in" / "S2B_MSIL1C_20230101T000000_N0510_R001_T31UFV_20230101T000000.SAFE.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("readme.txt", "no product here")
    first = run_engine(tmp_path, input_dir="in", output_dir="out", on_error="skip", **CONFIG)
    assert first.summary["converted"] == 1 and first.summary["skipped"] == 2
    errors = (tmp_path / "out" / "errors.tsv").read_text()
    assert f"{bad.name}: is not a readable zip file, it may be truncated or damaged" in errors, errors
    assert "the zip holds no Sentinel-2 product" in errors
    made = pngs(tmp_path / "out" / "truecolor")
    bad.write_bytes(data)  # the download repaired: converted, the first image kept
    again = run_engine(tmp_path, input_dir="in", output_dir="out", on_error="skip", **CONFIG)
    assert again.summary["converted"] == 1
    assert all(pngs(tmp_path / "out" / "truecolor")[name] == png for name, png in made.items())
    assert good.name.replace(".SAFE.zip", ".png") in {Path(n).name for n in made}


def test_a_zip_next_to_its_unzipped_product_is_left_out(tmp_path: Path):
    safe = product(tmp_path / "in", "L2A", "04.00", True)
    zip_product(safe, tmp_path / "in")
    run_engine(tmp_path, input_dir="in", output_dir="out", **CONFIG)
    errors = (tmp_path / "out" / "errors.tsv").read_text()
    assert f"the unzipped product {safe.name} is next to it" in errors
    assert len(pngs(tmp_path / "out" / "truecolor")) == 1


def test_a_zipped_product_in_s3_gives_the_same_images(tmp_path: Path, client):
    safe = product(tmp_path / "unzipped", "L2A", "05.10", True)
    zipped = zip_product(safe, client.root / "bucket" / "products")
    run_engine(tmp_path, input_dir="unzipped", output_dir="out1", **CONFIG)
    run_engine(tmp_path, input_dir="s3://bucket/products", output_dir="out2", **CONFIG)
    assert pngs(tmp_path / "out2" / "truecolor") == pngs(tmp_path / "out1" / "truecolor") != {}
    manifest = (tmp_path / "out2" / "truecolor" / "manifest.tsv").read_text()
    assert hashlib.sha256(zipped.read_bytes()).hexdigest() in manifest
