"""How images look: index products with colour maps, refused expressions, the optimized natural
colour, equalization and CLAHE, JPEG/WebP, recipes inside the files, clip figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
import yaml
from conftest import REPO, SHARED_S2, reference_rgb, run_engine
from PIL import Image

from msrgb import synth
from msrgb.config.colormaps import colormap_lut
from msrgb.config.parse import parse_products
from msrgb.errors import ProductError
from msrgb.render.pngenc import PNG_COMPRESSION, encode_png
from msrgb.render.render import ClipCounter, Renderer, clip_figures
from msrgb.tile import Tile


def write_config(tmp_path: Path, products: dict, **settings: object) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(products=products, **settings)
    path = tmp_path / "looks.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('touch PWNED')",
        "B04.real",
        "B04[0]",
        "abs(B04)",
        "B04 if B03 else B02",
        "(lambda: B04)()",
        "B04 > B03",
        "B99 + 1",
        "'B04'",
        "B04 @ B03",
    ],
)
def test_expressions_other_than_arithmetic_are_refused(expression: str):
    with pytest.raises(ProductError, match="'expression'"):
        parse_products({"x": {"expression": expression}})


def test_a_refused_expression_stops_the_run_before_anything_is_written(tmp_path: Path, dataset: Path):
    config = write_config(tmp_path, {"evil": {"expression": "__import__('os').system('touch PWNED')"}})
    proc = run_engine(
        tmp_path, "--configfile", str(config), check=False, input_dir=str(dataset), output_dir=str(tmp_path / "out")
    )
    assert proc.returncode != 0 and "'expression'" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists() and not (tmp_path / "PWNED").exists()
    assert not (REPO / "PWNED").exists()


def test_colour_map_ends_middle_and_division_by_zero():
    """[-1, 1] onto the map: -1 the first colour, 1 the last, 0 the middle; 0/0 and a nodata
    value transparent; values beyond the range clipped to the ends."""
    (ndvi,) = parse_products({"ndvi": {"preset": "ndvi", "nodata": 7}})
    b08 = np.array([[0, 3000, 1000, 0, 50, 7]], np.uint16)
    b04 = np.array([[3000, 0, 1000, 0, 50, 100]], np.uint16)
    tile = Tile({7: b08, 3: b04})
    image = Renderer([ndvi]).render(tile, ndvi)
    lut = colormap_lut("RdYlGn")
    assert image.shape == (1, 6, 4)
    assert np.array_equal(image[0, 0, :3], lut[0]) and np.array_equal(image[0, 1, :3], lut[255])
    assert np.array_equal(image[0, 2, :3], lut[128]) and np.array_equal(image[0, 4, :3], lut[128])
    assert list(image[0, :, 3]) == [255, 255, 255, 0, 255, 0]  # 0/0, then B08 == nodata
    figures = clip_figures(image, ndvi)
    # of the four pixels with a value, one at each end of the range: the index's clipping
    assert figures[:6] == pytest.approx((0.25,) * 6)
    assert figures[6] == pytest.approx(image[0, [0, 1, 2, 4], :3].mean())


def reference_clip_figures(image: np.ndarray, top: int) -> tuple[float, ...]:
    """clip_figures as its docstring says, pixel by pixel."""
    rgb = image[..., :3][image[..., 3] > 0] if image.shape[-1] == 4 else image.reshape(-1, 3)
    n = max(1, len(rgb))
    low = [float((rgb[:, c] == 0).sum() / n) for c in range(3)]
    high = [float((rgb[:, c] == top).sum() / n) for c in range(3)]
    return (*low, *high, float(rgb.astype(np.float64).mean()) if len(rgb) else 0.0)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("alpha", [False, True])
def test_clip_figures_equal_a_pixel_by_pixel_count(bits: int, alpha: bool):
    """Random images with no pixel at an end, with ends in one channel only, all at an end, and
    fully transparent; whole and in blocks of rows (as a large image is counted)."""
    (product,) = parse_products({"t": {"preset": "truecolor", "bit_depth": bits, **({"nodata": 0} if alpha else {})}})
    top = product.top
    rng = np.random.default_rng(bits + alpha)
    dtype = np.uint8 if bits == 8 else np.uint16
    for case in range(40):
        image = rng.integers(1, top, (rng.integers(1, 40), rng.integers(1, 40), 4 if alpha else 3), dtype=dtype)
        if case % 4 == 1:  # one channel touches an end
            c = rng.integers(3)
            image[..., c].flat[rng.integers(image[..., c].size, size=3)] = rng.choice([0, top])
        elif case % 4 == 2:
            image[..., :3] = rng.choice([0, top], image[..., :3].shape)
        if alpha:
            image[..., 3] = 0 if case % 4 == 3 else rng.choice([0, top], image.shape[:2])
        want = reference_clip_figures(image, top)
        assert clip_figures(image, product) == pytest.approx(want, abs=1e-12)
        counter = ClipCounter(product)
        for start in range(0, image.shape[0], 7):
            counter.add(image[start : start + 7])
        assert counter.figures() == pytest.approx(want, abs=1e-12)


needs_s2 = pytest.mark.skipif(not SHARED_S2.is_dir(), reason=f"real Sentinel-2 scene not present at {SHARED_S2}")


@needs_s2
def test_index_values_equal_the_formula_on_a_real_scene(tmp_path: Path):
    """NDVI of the real scene with the gray map over [-1, 1]: each pixel's gray level is
    255 * (ndvi + 1) / 2 rounded half up, computed here from the band files with numpy; pixels
    without a value (0 in both bands; this scene has none) transparent. The preset ndvi draws
    the same levels with RdYlGn."""
    config = write_config(
        tmp_path,
        {"gray_ndvi": {"expression": "(B08 - B04) / (B08 + B04)", "colormap": "gray", "range": [-1, 1]}, "ndvi": None},
        layout="band_folders",
    )
    out = tmp_path / "out"
    run_engine(tmp_path, "--configfile", str(config), input_dir=str(SHARED_S2), output_dir=str(out))
    with rasterio.open(SHARED_S2 / "B08.tif") as a, rasterio.open(SHARED_S2 / "B04.tif") as b:
        nir, red = a.read(1).astype(np.float64), b.read(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (nir - red) / (nir + red)
    valid = np.isfinite(ndvi)
    level = np.floor(255 * (np.clip(ndvi, -1, 1) + 1) / 2 + 0.5)
    got = iio.imread(out / "gray_ndvi" / "s2_29RKH.png")
    assert got.shape == (*ndvi.shape, 4)
    assert np.array_equal(got[..., 0][valid], level[valid]) and np.array_equal(got[..., 3] == 255, valid)
    rdylgn = iio.imread(out / "ndvi" / "s2_29RKH.png")
    assert np.array_equal(rdylgn[..., :3][valid], colormap_lut("RdYlGn")[level[valid].astype(int)])
    legend = out / "legends" / "ndvi.png"
    assert legend.exists() and Image.open(legend).width >= 256


def _optimized_pixel(r: float, g: float, b: float) -> list[int]:
    """Sentinel Hub's L2A optimized true colour script, pixel by pixel, as written in
    JavaScript (custom-scripts, sentinel-2/l2a_optimized/script.js)."""
    max_r, mid_r, sat, gamma = 3.0, 0.13, 1.2, 1.8

    def clip(s: float) -> float:
        return 0.0 if s < 0 else 1.0 if s > 1 else s

    def adj(a: float, tx: float, ty: float, max_c: float) -> float:
        ar = clip(a / max_c)
        return ar * (ar * (tx / max_c + ty - 1) - ty) / (ar * (2 * tx / max_c - 1) - tx / max_c)

    g_off = 0.01
    g_off_pow = g_off**gamma
    g_off_range = (1 + g_off) ** gamma - g_off_pow

    def s_adj(a: float) -> float:
        return ((adj(a, mid_r, 1, max_r) + g_off) ** gamma - g_off_pow) / g_off_range

    lin = [s_adj(r), s_adj(g), s_adj(b)]
    avg = sum(lin) / 3.0 * (1 - sat)
    enhanced = [clip(avg + c * sat) for c in lin]
    srgb = [12.92 * c if c <= 0.0031308 else 1.055 * c**0.41666666666 - 0.055 for c in enhanced]
    return [int(255 * c) for c in srgb]


def test_optimized_natural_colour_follows_the_sentinel_hub_script(dataset: Path):
    (product,) = parse_products(["truecolor_optimized"])
    tif = sorted(dataset.rglob("*.tif"))[0]
    with rasterio.open(tif) as src:
        ms = src.read()
    image = Renderer([product]).render(Tile({i: ms[i] for i in range(13)}), product)
    rows, cols = np.nonzero(np.ones(image.shape[:2], bool))
    for y, x in list(zip(rows, cols))[::97]:
        want = _optimized_pixel(ms[3, y, x] / 1e4, ms[2, y, x] / 1e4, ms[1, y, x] / 1e4)
        assert np.abs(image[y, x].astype(int) - want).max() <= 1, (y, x, image[y, x], want)


def test_equalization_and_clahe_are_scikit_image_on_each_band(dataset: Path):
    from skimage import exposure

    products = parse_products(["truecolor_equalized", "truecolor_clahe"])
    tif = sorted(dataset.rglob("*.tif"))[3]
    with rasterio.open(tif) as src:
        ms = src.read()
    renderer = Renderer(products)
    tile = Tile({i: ms[i] for i in range(13)})
    eq, cl = (renderer.render(tile, p) for p in products)
    for c, band in enumerate((3, 2, 1)):
        assert np.array_equal(eq[..., c], (255 * exposure.equalize_hist(ms[band], nbins=256)).astype(np.uint8))
        t = (ms[band] / 4000).clip(0, 1)
        assert np.array_equal(cl[..., c], (255 * exposure.equalize_adapthist(t, clip_limit=0.01)).astype(np.uint8))


def test_formats_recipes_and_byte_identical_reruns(tmp_path: Path, dataset: Path):
    """JPEG and WebP decode close to the PNG of the same product; every file carries its
    recipe; a rerun from scratch writes the same bytes; verify checks the recipes; the
    truecolor pixels and image data are those of before (the recipe is a chunk of its own)."""
    products = {
        "truecolor": None,
        "tc_jpeg": {"preset": "truecolor", "format": "jpeg", "quality": 95},
        "tc_webp": {"preset": "truecolor", "format": "webp", "quality": 90},
        "eurosat_rgb_jpeg": None,
    }
    config = write_config(tmp_path, products)
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        run_engine(tmp_path, "--configfile", str(config), input_dir=str(dataset), output_dir=str(out))
    tifs = sorted(p for p in dataset.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
    for tif in tifs[:6]:
        rel = tif.relative_to(dataset)
        png = outs[0] / "truecolor" / rel.with_suffix(".png")
        want = reference_rgb(tif)
        assert np.array_equal(iio.imread(png), want)
        data, before = png.read_bytes(), encode_png(want, *PNG_COMPRESSION["huffman"])
        assert data[data.index(b"IDAT") - 4 :] == before[before.index(b"IDAT") - 4 :]  # same image data
        recipe = json.loads(Image.open(png).text["msrgb"])
        assert recipe["source"] == rel.as_posix() and recipe["product"] == "truecolor"
        assert recipe["spec"]["bands"] == ["B04", "B03", "B02"]
        for name, suffix, tolerance in (("tc_jpeg", ".jpg", 3.0), ("tc_webp", ".webp", 4.0)):
            image = outs[0] / name / rel.with_suffix(suffix)
            assert np.abs(iio.imread(image).astype(float) - want).mean() < tolerance, image
        jpeg_recipe = json.loads(Image.open(outs[0] / "tc_jpeg" / rel.with_suffix(".jpg")).info["comment"])
        assert (jpeg_recipe["product"], jpeg_recipe["source"]) == ("tc_jpeg", rel.as_posix())
        assert jpeg_recipe["spec"]["format"] == "jpeg" and jpeg_recipe["spec"]["quality"] == 95
        eurosat = iio.imread(outs[0] / "eurosat_rgb_jpeg" / rel.with_suffix(".jpg")).astype(float)
        with rasterio.open(tif) as src:
            ms = src.read([4, 3, 2]).astype(float)
        expected = 1 + 254 * (np.moveaxis(ms, 0, -1) / 2750).clip(0, 1)
        assert np.abs(eurosat - expected).mean() < 3
    for name, suffix in (("truecolor", ".png"), ("tc_jpeg", ".jpg"), ("tc_webp", ".webp"), ("eurosat_rgb_jpeg", ".jpg")):
        files = sorted((outs[0] / name).rglob(f"*{suffix}"))
        assert len(files) == len(tifs)
        for f in files:
            assert f.read_bytes() == (outs[1] / f.relative_to(outs[0])).read_bytes(), f
    verify = [sys.executable, "-m", "msrgb.tools.verify", str(outs[0])]
    assert subprocess.run(verify, cwd=REPO, capture_output=True).returncode == 0
    with_sources = subprocess.run([*verify, "--input", str(dataset)], cwd=REPO, capture_output=True, text=True)
    assert with_sources.returncode == 0, with_sources.stdout
    png = outs[0] / "truecolor" / tifs[0].relative_to(dataset).with_suffix(".png")
    Image.open(png).save(png)  # the same pixels, no recipe any more
    proc = subprocess.run(verify, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "content differs" in proc.stdout


def test_clip_figures_in_state_summary_and_sheets(tmp_path: Path):
    """A constructed tile: a quarter of its red pixels at 0, a tenth of its green pixels at or
    above 4000 (255): the summary lists it as the most clipped with those shares."""
    data = synth.make_tile("Forest", 1)
    data[3, :16, :] = 0  # B04 (red): 16 of 64 rows at 0
    data[2, :, :6] = 4200  # B03 (green): 6 of 64 columns clipped high
    synth.write_tile(tmp_path / "in" / "A" / "clipped.tif", data, (300000.0, 5000000.0), 32632)
    synth.write_tile(tmp_path / "in" / "A" / "plain.tif", synth.make_tile("Forest", 2), (300000.0, 5000000.0), 32632)
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(tmp_path / "in"), output_dir=str(out))
    summary = json.loads((out / "summary.json").read_text())
    top = summary["clipping"]["truecolor"]["most_clipped"][0]
    assert top["image"] == "A/clipped.png"
    assert top["clipped_low"][0] == pytest.approx(0.25, abs=1e-4)
    assert top["clipped_high"][1] == pytest.approx(6 / 64, abs=1e-4)
    assert summary["clipping"]["truecolor"]["images_clipped_over_5_percent"] == 1
    assert (out / "clipping" / "truecolor.png").exists() and (out / "histograms" / "truecolor.png").exists()
    state = "".join(p.read_text() for p in (out / ".msrgb" / "state").rglob("*.tsv"))
    assert "0.2500 0.0000 0.0000 0.0000 0.0938 0.0000" in state


def test_dataset_wide_equalization_uses_the_recorded_quantiles(tmp_path: Path, dataset: Path):
    config = write_config(tmp_path, {"eq": {"preset": "truecolor_equalized", "stretch": {"type": "equalize", "scope": "dataset"}}})
    out = tmp_path / "out"
    run_engine(tmp_path, "--configfile", str(config), input_dir=str(dataset), output_dir=str(out))
    quantiles = json.loads((out / "stretch" / "eq.json").read_text())["limits"]
    assert [len(q) for q in quantiles] == [1025] * 3
    tif = sorted(dataset.rglob("*.tif"))[5]
    with rasterio.open(tif) as src:
        ms = src.read([4, 3, 2]).astype(np.float64)
    want = np.stack(
        [(255 * np.interp(ms[c], quantiles[c], np.linspace(0, 1, 1025))).astype(np.uint8) for c in range(3)], axis=-1
    )
    assert np.array_equal(iio.imread(out / "eq" / tif.relative_to(dataset).with_suffix(".png")), want)


def test_verify_reports_a_recipe_that_does_not_match_the_manifest(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    manifest = out / "truecolor" / "manifest.tsv"
    digest = json.loads(Image.open(next((out / "truecolor").rglob("*.png"))).text["msrgb"])["settings"]
    manifest.write_text(manifest.read_text().replace(digest, "0123456789abcdef"))
    proc = subprocess.run([sys.executable, "-m", "msrgb.tools.verify", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and f"its recipe names product 'truecolor' with settings {digest}" in proc.stdout
