"""Products: presets, stretches, bit depth, nodata and validation, against independent numpy."""

from pathlib import Path

import numpy as np
import pytest
import rasterio

from msrgb import synth
from msrgb.config.parse import check_band_count, parse_products, products_from_dicts
from msrgb.config.presets import PRESETS
from msrgb.config.products import Product, ProductError
from msrgb.jobs.convert import Converter
from msrgb.render.pngenc import encode_png
from msrgb.render.stretch import product_lut, stretch
from msrgb.tile import Tile

EUROSAT = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A"]


def tile_array(seed: int = 1) -> np.ndarray:
    """A (rows, cols, 13) uint16 tile with values over the whole useful range."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 6000, size=(64, 64, 13), dtype=np.uint16)


def render(product: Product, ms: np.ndarray, nodata=None) -> np.ndarray:
    bands = {i: ms[..., i] for i in range(ms.shape[-1])}
    return Converter([product]).render(Tile(bands, nodata), product)


def test_truecolor_lut_equals_reference_formula_for_every_uint16_value():
    values = np.arange(65536, dtype=np.uint16)
    want = (255 * (values / 4000).clip(0, 1)).astype(np.uint8)
    (product,) = parse_products(["truecolor"])
    assert np.array_equal(product_lut(product), want)
    assert product.indices == (3, 2, 1)


def test_reference_gain_edges():
    v = np.array([0, 1, 3999, 4000, 4001, 65535], dtype=np.uint16)
    (product,) = parse_products(["truecolor"])
    assert stretch(v, 0, 4000, product).tolist() == [0, 0, 254, 255, 255, 255]


@pytest.mark.parametrize(
    "preset, bands",
    [
        ("truecolor", ("B04", "B03", "B02")),
        ("falsecolor", ("B08", "B04", "B03")),
        ("swir", ("B12", "B8A", "B04")),
        ("agriculture", ("B11", "B08", "B02")),
    ],
)
def test_each_preset_pixel_by_pixel(preset, bands):
    ms = tile_array()
    (product,) = parse_products([preset])
    idx = [EUROSAT.index(b) for b in bands]  # by name, in EuroSAT's file order
    want = (255 * (ms[..., idx] / 4000).clip(0, 1)).astype(np.uint8)
    assert np.array_equal(render(product, ms), want)


def test_b8a_is_the_13th_band():
    p = Product("nir", ("B8A", "B08", "B04"))
    assert p.indices == (12, 7, 3)


def test_range_stretch_like_the_official_eurosat_jpegs():
    ms = tile_array()
    (p,) = parse_products({"jpeg": {"preset": "truecolor", "stretch": {"type": "range", "min": 0, "max": 2750, "out_min": 1}}})
    v = ms[..., [3, 2, 1]].astype(np.float64)
    want = (1 + 254 * ((v - 0) / 2750).clip(0, 1)).astype(np.uint8)
    got = render(p, ms)
    assert np.array_equal(got, want)
    assert got.min() >= 1


def test_range_with_min_and_gamma():
    ms = tile_array(2)
    (p,) = parse_products({"g": {"bands": ["B04", "B03", "B02"], "stretch": {"type": "range", "min": 500, "max": 3500, "gamma": 2.2}}})
    t = ((ms[..., [3, 2, 1]].astype(np.float64) - 500) / 3000).clip(0, 1) ** (1 / 2.2)
    assert np.array_equal(render(p, ms), (255 * t).astype(np.uint8))


def test_per_image_percentile_stretch():
    ms = tile_array(3)
    (p,) = parse_products({"p": {"bands": ["B04", "B03", "B02"], "stretch": {"type": "percentile", "low": 2, "high": 98}}})
    want = np.empty((64, 64, 3), np.uint8)
    for c, band in enumerate([3, 2, 1]):
        v = ms[..., band].astype(np.float64)
        lo, hi = np.percentile(v, [2, 98])
        want[..., c] = (255 * ((v - lo) / (hi - lo)).clip(0, 1)).astype(np.uint8)
    assert np.array_equal(render(p, ms), want)


def test_dataset_percentile_uses_the_recorded_limits():
    ms = tile_array(4)
    (p,) = parse_products({"d": {"bands": ["B04", "B03", "B02"], "stretch": {"type": "percentile", "scope": "dataset"}}})
    limits = [(100.0, 3000.0), (200.0, 2500.0), (300.0, 2000.0)]
    p = p.with_limits(limits)
    want = np.stack(
        [(255 * ((ms[..., b] - lo) / (hi - lo)).clip(0, 1)).astype(np.uint8) for b, (lo, hi) in zip([3, 2, 1], limits)],
        axis=-1,
    )
    assert np.array_equal(render(p, ms), want)
    assert p.digest() != p.with_limits([(0, 1)] * 3).digest(), "new limits must redo the product"


def test_sixteen_bit_png_round_trip(tmp_path: Path):
    ms = tile_array(5)
    (p,) = parse_products({"t16": {"preset": "truecolor", "bit_depth": 16}})
    rgb = render(p, ms)
    want = (65535 * (ms[..., [3, 2, 1]] / 4000).clip(0, 1)).astype(np.uint16)
    assert rgb.dtype == np.uint16 and np.array_equal(rgb, want)
    png = tmp_path / "x.png"
    png.write_bytes(encode_png(rgb, 6, 0))
    with rasterio.open(png) as src:  # GDAL's PNG driver, independent of our encoder
        assert src.dtypes == ("uint16",) * 3
        assert np.array_equal(np.moveaxis(src.read(), 0, -1), want)


def test_nodata_pixels_are_transparent():
    ms = tile_array(6)
    ms[0, :5, 3] = 0  # nodata in the red band only
    ms[10, 10, :] = 0
    (p,) = parse_products({"a": {"preset": "truecolor", "nodata": 0}})
    rgba = render(p, ms)
    assert rgba.shape == (64, 64, 4)
    invalid = (ms[..., [3, 2, 1]] == 0).any(axis=-1)
    assert np.array_equal(rgba[..., 3], np.where(invalid, 0, 255))
    assert np.array_equal(rgba[..., :3], (255 * (ms[..., [3, 2, 1]] / 4000).clip(0, 1)).astype(np.uint8))
    (pf,) = parse_products({"f": {"preset": "truecolor", "nodata": "file"}})
    assert np.array_equal(render(pf, ms, nodata=0)[..., 3], rgba[..., 3])
    assert (render(pf, ms, nodata=None)[..., 3] == 255).all(), "no nodata in the file: all opaque"


def test_mapping_with_preset_and_override():
    (p,) = parse_products({"tc3000": {"preset": "truecolor", "stretch": {"max": 3000}}})
    assert p.name == "tc3000" and p.bands == ("B04", "B03", "B02") and p.max == 3000


@pytest.mark.parametrize(
    "spec, message",
    [
        (["nosuch"], "unknown product preset 'nosuch'"),
        ({"x": {"bands": ["B04", "B03", "B99"]}}, "product 'x': 'bands' has unknown band name(s) ['B99']"),
        ({"x": {"bands": ["B04", "B03"]}}, "product 'x': 'bands' needs exactly 3 names"),
        ({"x": {}}, "product 'x': 'bands' is missing"),
        ({"x": {"preset": "truecolor", "stretch": {"max": 0}}}, "product 'x': 'stretch.max' must be > 0"),
        ({"x": {"preset": "truecolor", "stretch": {"type": "range", "min": 3000, "max": 1000}}}, "product 'x': 'stretch.min' must be below 'stretch.max'"),
        ({"x": {"preset": "truecolor", "stretch": {"type": "range", "min": 5, "max": 5}}}, "'stretch.min' must be below"),
        ({"x": {"preset": "truecolor", "stretch": {"type": "percentile", "low": -1}}}, "product 'x': 'stretch.low' must be a percentile from 0 to 100"),
        ({"x": {"preset": "truecolor", "stretch": {"type": "percentile", "high": 101}}}, "'stretch.high' must be a percentile from 0 to 100"),
        ({"x": {"preset": "truecolor", "stretch": {"type": "percentile", "low": 60, "high": 40}}}, "'stretch.low' must be below 'stretch.high'"),
        ({"x": {"preset": "truecolor", "stretch": {"type": "magic"}}}, "product 'x': 'stretch.type' 'magic' is not one of"),
        ({"x": {"preset": "truecolor", "bit_depth": 12}}, "product 'x': 'bit_depth' must be 8 or 16"),
        ({"x": {"preset": "truecolor", "colour": 1}}, "product 'x': unknown key(s) ['colour']"),
    ],
)
def test_bad_specs_name_the_product_and_key(spec, message):
    with pytest.raises(ProductError) as err:
        parse_products(spec)
    assert message in str(err.value)


def test_band_beyond_the_files_band_count_is_named():
    (p,) = parse_products({"x": {"bands": ["B04", "B03", "B02"], "band_map": ["B02", "B03", "B04", "B08"]}})
    check_band_count([p], 4, "a.tif")
    with pytest.raises(ProductError, match=r"product 'x': 'bands' names B04, band 3 of the band map, but a.tif has only 2 band"):
        check_band_count([p], 2, "a.tif")


def test_digest_changes_with_every_pixel_setting_and_only_then():
    base = Product("a", ("B04", "B03", "B02"))
    assert base.digest() == Product("a", ("B04", "B03", "B02")).digest()
    assert base.digest() == Product("renamed", ("B04", "B03", "B02")).digest()
    for other in (
        Product("a", ("B04", "B03", "B02"), max=3000),
        Product("a", ("B08", "B03", "B02")),
        Product("a", ("B04", "B03", "B02"), png_compression="best"),
        Product("a", ("B04", "B03", "B02"), bit_depth=16),
        Product("a", ("B04", "B03", "B02"), nodata=0),
        Product("a", ("B04", "B03", "B02"), world_file=True),
        Product("a", ("B04", "B03", "B02"), gamma=2),
    ):
        assert base.digest() != other.digest(), other


def test_presets_are_valid():
    assert {p.name for p in parse_products(list(PRESETS))} == set(PRESETS)


def test_world_file_and_aux_xml_place_the_png_like_the_tif(tmp_path: Path):
    tif = tmp_path / "t.tif"
    synth.write_tile(tif, synth.make_tile("Forest", 1), (499980.0, 4000020.0), 32629)
    (p,) = parse_products({"geo": {"preset": "truecolor", "world_file": True}})
    png = tmp_path / "out" / "t.png"
    Converter([p]).convert(tif, {"geo": png})
    assert png.with_suffix(".pgw").exists() and (tmp_path / "out" / "t.png.aux.xml").exists()
    # GDAL as QGIS runs it: side-car (.aux.xml) reading on, whatever earlier tests set
    with rasterio.Env(GDAL_PAM_ENABLED="YES", GDAL_DISABLE_READDIR_ON_OPEN="FALSE"), rasterio.open(tif) as src, rasterio.open(png) as out:
        assert out.crs == src.crs
        assert out.transform.almost_equals(src.transform)


@pytest.mark.parametrize("wkt", ['GEOGCS["WGS 84",DATUM["a&b"]]', "x < y > z & 'q'", "&amp; &lt;", ""])
def test_aux_xml_holds_any_crs_text(wkt: str):
    """The CRS goes into .aux.xml as element text: any &, <, > or quote in it reads back as
    it was (an XML parser, as GDAL's)."""
    import xml.etree.ElementTree as ET

    from affine import Affine

    from msrgb.outputs.georef import aux_xml_text

    root = ET.fromstring(aux_xml_text(Affine(10, 0, 499980, 0, -10, 4000020), wkt))
    assert (root.find("SRS").text or "") == wkt


def test_field_names_are_the_config_keys_and_digests_stay_those_of_earlier_versions():
    """stretch.min/max and range are the fields min/max/range; a product's digest is computed
    under the names of versions before 0.6.0, so their images stay up to date, and their
    products.json (read by msrgb status) still loads."""
    (p,) = parse_products({"r": {"preset": "truecolor", "stretch": {"type": "range", "min": 100, "max": 3000}}})
    assert (p.min, p.max) == (100.0, 3000.0)
    (tc,) = parse_products(["truecolor"])
    assert tc.digest() == "c77d0ab0933966ac"  # the digest 0.5.0 gave the reference product
    old = {**tc.to_dict(), "vmin": 0.0, "vmax": 4000.0, "value_range": [-1.0, 1.0]}
    for key in ("min", "max", "range"):
        del old[key]
    assert products_from_dicts([old]) == [tc]
