import numpy as np
import pytest

from msrgb.products import PRESETS, Product, ProductError, parse_products, stretch_gain


def test_truecolor_lut_equals_reference_formula_for_every_uint16_value():
    values = np.arange(65536, dtype=np.uint16)
    want = (255 * (values / 4000).clip(0, 1)).astype(np.uint8)
    (product,) = parse_products(["truecolor"])
    assert np.array_equal(product.lut(), want)
    assert product.indices == (3, 2, 1)


def test_stretch_gain_edges():
    v = np.array([0, 1, 3999, 4000, 4001, 65535], dtype=np.uint16)
    assert stretch_gain(v, 4000).tolist() == [0, 0, 254, 255, 255, 255]


def test_b8a_is_the_13th_band():
    p = Product("nir", ("B8A", "B08", "B04"))
    assert p.indices == (12, 7, 3)


def test_mapping_with_preset_and_override():
    (p,) = parse_products({"tc3000": {"preset": "truecolor", "stretch": {"max": 3000}}})
    assert p.name == "tc3000" and p.bands == ("B04", "B03", "B02") and p.gain_max == 3000


@pytest.mark.parametrize(
    "spec, message",
    [
        (["nosuch"], "unknown product preset 'nosuch'"),
        ({"x": {"bands": ["B04", "B03", "B99"]}}, "product 'x': unknown band name(s) ['B99']"),
        ({"x": {"bands": ["B04", "B03"]}}, "product 'x': 'bands' needs exactly 3 names"),
        ({"x": {}}, "product 'x': 'bands' is missing"),
        ({"x": {"bands": ["B04", "B03", "B02"], "stretch": {"max": 0}}}, "'stretch.max' must be > 0"),
    ],
)
def test_bad_specs_name_the_product_and_key(spec, message):
    with pytest.raises(ProductError) as err:
        parse_products(spec)
    assert message in str(err.value)


def test_digest_changes_with_every_pixel_setting_and_only_then():
    base = Product("a", ("B04", "B03", "B02"))
    assert base.digest() == Product("a", ("B04", "B03", "B02")).digest()
    assert base.digest() != Product("a", ("B04", "B03", "B02"), gain_max=3000).digest()
    assert base.digest() != Product("a", ("B08", "B03", "B02")).digest()
    assert base.digest() != Product("a", ("B04", "B03", "B02"), png_compression="best").digest()


def test_presets_are_valid():
    assert {p.name for p in parse_products(list(PRESETS))} == set(PRESETS)
