from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import SHARED_S2, assert_png_matches

from msrgb import synth
from msrgb.convert import PNG_COMPRESSION, Converter, InputError, enter_thread_gdal_env, write_atomic
from msrgb.products import parse_products


@pytest.fixture(autouse=True)
def _gdal_env():
    enter_thread_gdal_env()


def test_convert_matches_reference_pixel_by_pixel(tmp_path: Path):
    tifs = synth.generate(tmp_path / "in", 1)
    conv = Converter(parse_products(["truecolor"]))
    for tif in tifs:
        png = tmp_path / "out" / (tif.stem + ".png")
        conv.convert(tif, {"truecolor": png})
        assert_png_matches(png, tif)


@pytest.mark.parametrize("compression", sorted(PNG_COMPRESSION))
def test_every_png_compression_keeps_the_pixels(tmp_path: Path, compression: str):
    (tif,) = synth.generate(tmp_path / "in", 1, classes=("River",))
    conv = Converter(parse_products(["truecolor"], png_compression=compression))
    png = tmp_path / "x.png"
    conv.convert(tif, {"truecolor": png})
    assert_png_matches(png, tif)


def test_write_atomic_never_leaves_a_partial_file(tmp_path: Path):
    target = tmp_path / "a" / "b.png"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.png"]


def test_text_file_named_tif_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(InputError, match=r"bad\.tif: is not a TIFF file"):
        Converter(parse_products(["truecolor"])).read(bad)


def test_too_few_bands_is_a_clear_error(tmp_path: Path):
    data = synth.make_tile("Forest", 1)[:3]
    path = tmp_path / "three.tif"
    synth.write_tile(path, data, (0.0, 0.0), 32632)
    with pytest.raises(InputError, match=r"three\.tif: has 3 band\(s\), but product 'truecolor' expects 13 \(B01 "):
        Converter(parse_products(["truecolor"])).read(path)


@pytest.mark.skipif(not SHARED_S2.is_dir(), reason="real Sentinel-2 test scene not available")
def test_real_sentinel2_tile(tmp_path: Path):
    """A EuroSAT-order 13-band stack cut from a real L2A scene (10 m bands at 100 m)."""
    import rasterio

    bands = {}
    with rasterio.open(SHARED_S2 / "B04.tif") as ref:
        window = rasterio.windows.Window(300, 300, 64, 64)
        transform = ref.window_transform(window)
        crs = ref.crs
    for name in ("B02", "B03", "B04", "B08"):
        with rasterio.open(SHARED_S2 / f"{name}.tif") as src:
            bands[name] = src.read(1, window=window)
    stack = np.stack([bands.get(b, np.zeros((64, 64), np.uint16)) for b in synth.EUROSAT_BANDS])
    tif = tmp_path / "s2.tif"
    with rasterio.open(
        tif, "w", driver="GTiff", width=64, height=64, count=13, dtype="uint16",
        crs=crs, transform=transform,
    ) as dst:  # fmt: skip
        dst.write(stack)
    png = tmp_path / "s2.png"
    Converter(parse_products(["truecolor"])).convert(tif, {"truecolor": png})
    assert_png_matches(png, tif)
    rgb = iio.imread(png)
    assert rgb.std() > 5, "a real scene has contrast"
