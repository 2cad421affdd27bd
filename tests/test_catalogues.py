"""Sentinel-2 from every catalogue comes out right: real STAC Items as Earth Search v1
(``sentinel-2-l2a`` with ``earthsearch:boa_offset_applied`` true and false,
``sentinel-2-c1-l2a``), Planetary Computer and Copernicus Data Space serve them
(tests/data/stac/README.md says where each comes from), with the band assets pointed at local
files of known DN: every truecolor, ndvi and truecolor_optimized image equals msrgb's image of
the reflectance the catalogue really stores, and the recipe names the rule that applied."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import REPO, run_engine, run_snakemake
from rasterio.transform import from_origin

from msrgb import api
from msrgb.config.presets import EUROSAT_BANDS
from msrgb.outputs.state import read_state_full, state_text
from msrgb.radiometry.decide import (
    SHIFTED_SHARE,
    StacAsset,
    StacFacts,
    parse_baseline,
    recorded_differs,
    stac_rule,
)
from msrgb.sources.stac import asset_band, parse_item

ITEMS = REPO / "tests" / "data" / "stac"
ES_L2A = "earth-search-v1-sentinel-2-l2a_S2A_39QTA_20230628_0_L2A.json"
ES_C1 = "earth-search-v1-sentinel-2-c1-l2a_S2B_T38XNF_20250422T091553_L2A.json"
PC_2019 = "planetary-computer-sentinel-2-l2a_S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
PC_N0510 = "planetary-computer-sentinel-2-l2a_S2B_MSIL2A_20230101T102339_R065_T32UPC_20240806T223544.json"
CDSE = "copernicus-data-space-v1-sentinel-2-l2a_S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914.json"

PRODUCTS = ["truecolor", "ndvi", "truecolor_optimized"]
NEEDED = ("B02", "B03", "B04", "B08")


def item(name: str) -> dict:
    return json.loads((ITEMS / name).read_text())


def es_flag_false(shifted_id: str = "S2A_39QTA_20220628_0_L2A") -> dict:
    """The real Earth Search Item with the flag false on baseline 04.00, as Earth Search serves
    its Items of early 2022 (tests/data/stac/README.md)."""
    found = copy.deepcopy(item(ES_L2A))
    found["id"] = shifted_id
    found["properties"]["earthsearch:boa_offset_applied"] = False
    found["properties"]["s2:processing_baseline"] = "04.00"
    return found


def reflectance(tile: str = "BareSoil_1") -> dict[str, np.ndarray]:
    """Real reflectance x 10000 (a tile of the bundled sample, cut from a real L2A scene of
    baseline 02.x) of the bands the products need, with a corner of no data (0)."""
    with rasterio.open(REPO / "sample" / "eurosat" / tile.split("_")[0] / f"{tile}.tif") as src:
        ms = src.read()
    bands = {b: ms[EUROSAT_BANDS.index(b)].astype(np.uint16) for b in ("B01", "B02", "B03", "B04", "B08", "B11", "B12")}
    for values in bands.values():
        values[:4, :4] = 0
    return bands


def write_band(path: Path, data: np.ndarray) -> None:
    """A band file: lossless JPEG 2000 for a .jp2 name, else a GeoTIFF."""
    jp2 = path.suffix == ".jp2"
    options = {"driver": "JP2OpenJPEG", "QUALITY": 100, "REVERSIBLE": "YES"} if jp2 else {"driver": "GTiff"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
        path, "w", width=data.shape[1], height=data.shape[0], count=1, dtype="uint16",
        crs="EPSG:32629", transform=from_origin(199980, 2800020, 100, 100), **options,
    ) as dst:  # fmt: skip
        dst.write(data, 1)


def localise(feature: dict, folder: Path, dn: dict[str, np.ndarray]) -> dict:
    """The Item with the href of every asset of a band in ``dn`` pointed at a local file of
    those DN (a .jp2 where the asset is JPEG 2000), everything else as served."""
    feature = copy.deepcopy(feature)
    for key, asset in feature["assets"].items():
        band = asset_band(key, asset)
        if band not in dn:
            continue
        suffix = ".jp2" if "jp2" in str(asset.get("type", "")) else ".tif"
        path = folder / feature["id"] / f"{key}{suffix}"
        write_band(path, dn[band])
        asset["href"] = str(path)
    return feature


def expected(values: dict[str, np.ndarray], product: str, nodata_is_zero: bool) -> np.ndarray:
    """msrgb's image of ``product`` from the reflectance x 10000 the catalogue really stores:
    a (rows, cols, 13) array in EuroSAT's band order, no data NaN unless it is stored as 0."""
    shape = next(iter(values.values())).shape
    ms = np.full((*shape, len(EUROSAT_BANDS)), np.nan)
    for band, v in values.items():
        ms[..., EUROSAT_BANDS.index(band)] = v
    if not nodata_is_zero:
        ms[:4, :4, :] = np.nan
    return api.to_rgb(ms, product)


def recipe(png: Path) -> dict:
    from PIL import Image

    with Image.open(png) as im:
        return json.loads(im.text["msrgb"])


# What each catalogue stores, and what msrgb must apply: (Item, DN written = reflectance + shift,
# the rule's words in the recipe)
CASES = {
    "earth_search_l2a_offset_applied": (lambda: item(ES_L2A), 0, "earthsearch:boa_offset_applied is true"),
    "earth_search_l2a_flag_false_raw": (es_flag_false, 1000, "earthsearch:boa_offset_applied is false, raw data checked"),
    "earth_search_l2a_flag_false_shifted": (es_flag_false, 0, "the data are already shifted"),
    "earth_search_c1_l2a": (lambda: item(ES_C1), 1000, "raster:bands, processing baseline 05.11 (from s2:processing_baseline)"),
    "planetary_computer_2019": (lambda: item(PC_2019), 0, "processing baseline 02.12 (from s2:processing_baseline): no offset"),
    "copernicus_data_space": (lambda: item(CDSE), 1000, "raster:scale/raster:offset, processing baseline 05.11 (from processing:version)"),
}


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One run over an ItemCollection holding every case: (output folder, case -> (Item id,
    stored reflectance, shift))."""
    root = tmp_path_factory.mktemp("catalogues")
    features, cases = [], {}
    for name, (make, shift, _) in CASES.items():
        feature = make()
        feature["id"] = f"{name}_{feature['id']}"
        true = reflectance()
        dn = {b: np.where(v > 0, v + shift, 0).astype(np.uint16) for b, v in true.items()}
        features.append(localise(feature, root / "assets", dn))
        cases[name] = (feature["id"], true, shift)
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    result = run_engine(root, stac_items="items.json", output_dir="out", products=PRODUCTS, contact_sheets=False)
    assert result.summary is not None and result.summary["failed"] == 0
    return root / "out", {"cases": cases, "summary": result.summary}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("product", PRODUCTS)
def test_every_catalogue_gives_the_image_of_the_reflectance_it_stores(catalogue_run, case: str, product: str):
    out, run = catalogue_run
    item_id, true, shift = run["cases"][case]
    png = out / product / f"{item_id}.png"
    got = iio.imread(png)
    want = expected({b: true[b] for b in NEEDED}, product, nodata_is_zero=shift == 0)
    assert got.shape == want.shape, (case, product)
    np.testing.assert_array_equal(got, want, err_msg=f"{case} {product}")
    if product == "truecolor":  # and the reference formula itself, on the stored reflectance
        ms = np.stack([true[b] for b in ("B04", "B03", "B02")], axis=-1).astype(np.float64)
        formula = (255 * (ms / 4000).clip(0, 1)).astype(np.uint8)
        np.testing.assert_array_equal(got[4:, 4:], formula[4:, 4:])
    rule = CASES[case][2]
    made = recipe(png)["radiometry"]
    assert set(made) == set(api.product_of(product).bands), made
    assert all(rule in r["from"] and r["from"].startswith("STAC: ") for r in made.values()), made
    assert all(r["offset"] == (-1000 if shift else 0) for r in made.values()), made


def test_the_closing_lines_count_the_items_whose_declared_offset_was_overridden(catalogue_run):
    _, run = catalogue_run
    overrides = run["summary"]["scaling_overrides"]
    assert overrides == {
        "raster:bands offset ignored, earthsearch:boa_offset_applied is false but the data are already shifted": 1,
        "raster:bands offset ignored, earthsearch:boa_offset_applied is true": 1,
    }, overrides
    from msrgb.outputs.summary import override_lines

    assert "1 Item: raster:bands offset ignored, earthsearch:boa_offset_applied is true" in override_lines(run["summary"])


def test_provenance_manifest_records_where_each_scaling_came_from(catalogue_run):
    out, run = catalogue_run
    text = (out / "truecolor" / "manifest.tsv").read_text()
    for case, (item_id, _, _) in run["cases"].items():
        line = next(row for row in text.splitlines() if row.startswith(f"{item_id}.png\t"))
        assert CASES[case][2].replace('"', '""') in line, (case, line)


def test_the_rules_on_the_real_items_as_served():
    """The decisions for the Items as the catalogues serve them, their hrefs untouched."""

    def rules(feature: dict) -> dict:
        parsed = parse_item(feature, ".", "test")
        return {b: parsed.rule(b) for b in NEEDED if b in parsed.assets}

    es = rules(item(ES_L2A))
    assert {b: (r.scaling.scale, r.scaling.offset) for b, r in es.items()} == dict.fromkeys(NEEDED, (1.0, 0.0))
    assert all(r.override and "earthsearch:boa_offset_applied is true" in r.override for r in es.values())
    assert all(r.check_data and not r.override for r in rules(es_flag_false()).values())
    c1 = rules(item(ES_C1))
    assert {(r.scaling.scale, r.scaling.offset) for r in c1.values()} == {(1.0, -1000.0)}
    assert all(r.override is None for r in c1.values())
    pc = rules(item(PC_2019))
    assert {(r.scaling.scale, r.scaling.offset) for r in pc.values()} == {(1.0, 0.0)}
    cdse = parse_item(item(CDSE), ".", "test")
    assert {b: cdse.assets[b].key for b in NEEDED} == {"B02": "B02_10m", "B03": "B03_10m", "B04": "B04_10m", "B08": "B08_10m"}
    assert {(r.scaling.scale, r.scaling.offset) for r in rules(item(CDSE)).values()} == {(1.0, -1000.0)}
    # the Planetary Computer Item whose properties lack the baseline: _N0510_ in the hrefs
    pc_n0510 = parse_item(item(PC_N0510), ".", "test")
    rule = pc_n0510.rule("B11")
    assert (rule.scaling.scale, rule.scaling.offset) == (1.0, -1000.0)
    assert "_N0510_ in the href" in rule.scaling.source and rule.override


def test_copernicus_data_space_template_offset_is_not_applied_before_baseline_04():
    old = item(CDSE)
    old["properties"]["processing:version"] = "02.14"
    parsed = parse_item(old, ".", "test")
    rule = parsed.rule("B04")
    assert (rule.scaling.scale, rule.scaling.offset) == (1.0, 0.0)
    assert rule.override == "raster:scale/raster:offset offset ignored, processing baseline 02.14 is before 04.00"


def test_the_baseline_is_read_in_this_order():
    asset = StacAsset("B04", "x/S2A_MSIL2A_20230101T102339_N0510_R065_T32UPC.SAFE/B04.tif")
    facts = lambda **p: StacFacts(baseline=None, **p)  # noqa: E731
    from msrgb.radiometry.decide import item_baseline

    assert item_baseline({"s2:processing_baseline": "03.01", "processing:version": "05.00"}, "x").version == "03.01"
    assert item_baseline({"processing:version": "5.9"}, "x").version == "05.09"
    assert item_baseline({"s2:product_uri": "S2A_MSIL2A_20230101T102339_N0400_R065_T32UPC_2023.SAFE"}, "x").where == (
        "_N0400_ in s2:product_uri"
    )
    assert item_baseline({}, "S2B_MSIL2A_20220101T000000_N0400_R001_T01ABC_20220101T000000").where == "_N0400_ in the Item id"
    assert item_baseline({}, "S2A_29RKH_20200219_0_L2A") is None
    assert "_N0510_ in the href" in stac_rule(facts(), asset).scaling.source
    waiting = stac_rule(facts(metadata_href="MTD_MSIL2A.xml"), StacAsset("B04", "B04.tif"))
    assert waiting.needs_baseline and waiting.scaling is None
    assert parse_baseline("N9999", "x") is None and parse_baseline("bogus", "x") is None


def test_an_item_without_a_baseline_reads_it_from_its_product_metadata_asset(tmp_path: Path):
    from msrgb import synth

    feature = copy.deepcopy(item(PC_2019))
    feature["id"] = "pc_no_baseline"
    del feature["properties"]["s2:processing_baseline"]
    del feature["properties"]["s2:product_uri"]
    true = reflectance("BareSoil_10")
    dn = {b: np.where(v > 0, v + 1000, 0).astype(np.uint16) for b, v in true.items()}
    feature = localise(feature, tmp_path / "assets", dn)
    for asset in feature["assets"].values():  # no _N0212_ in any href
        asset["href"] = asset["href"].replace("_N0212_", "_")
    xml = tmp_path / "MTD_MSIL2A.xml"
    xml.write_text(synth.safe_metadata_xml("L2A", "05.10", {}))
    feature["assets"]["product-metadata"]["href"] = str(xml)
    (tmp_path / "items.json").write_text(json.dumps(feature))
    run_engine(tmp_path, stac_items="items.json", output_dir="out", products=["truecolor"], contact_sheets=False)
    png = tmp_path / "out" / "truecolor" / "pc_no_baseline.png"
    np.testing.assert_array_equal(iio.imread(png), expected({b: true[b] for b in NEEDED}, "truecolor", False))
    assert "the product metadata asset" in recipe(png)["radiometry"]["B04"]["from"]
    manifest = (tmp_path / "out" / "truecolor" / "manifest.tsv").read_text()
    assert "product-metadata" not in manifest and str(xml.name) in manifest  # its SHA-256 is recorded


def test_the_data_check_threshold_separates_raw_and_shifted_real_tiles():
    """Measured on the bundled sample (real L2A reflectance of a desert, the hardest case):
    shifted, 17 of its 20 tiles have a share of valid DN below 1000 at or over the threshold
    (the three others are bright sand, cloud and cirrus, which no check of the values can
    tell apart); raw (+1000), none has any (docs/object-storage.md)."""
    from msrgb.radiometry.decide import shifted_share

    shares = []
    for tif in sorted((REPO / "sample" / "eurosat").rglob("*.tif")):
        with rasterio.open(tif) as src:
            ms = src.read()
        visible = {b: ms[EUROSAT_BANDS.index(b)] for b in ("B02", "B03", "B04")}
        assert shifted_share({b: v + 1000 for b, v in visible.items()}) == 0.0
        shares.append(shifted_share(visible))
    assert sum(s >= SHIFTED_SHARE for s in shares) >= 17, shares


def test_a_record_of_the_old_rules_is_converted_again_only_where_the_scaling_changes():
    es = parse_item(item(ES_L2A), ".", "t")
    c1 = parse_item(item(ES_C1), ".", "t")
    bands = ("B04", "B03", "B02")
    old = json.dumps({b: {"scale": 1, "offset": -1000, "from": "STAC raster:bands"} for b in bands})
    assert recorded_differs({b: es.rule(b) for b in bands}, bands, old)  # was too dark
    assert not recorded_differs({b: c1.rule(b) for b in bands}, bands, old)  # was right
    assert recorded_differs({b: parse_item(item(PC_N0510), ".", "t").rule("B11") for b in bands}, bands, None)
    pending = {b: parse_item(es_flag_false(), ".", "t").rule(b) for b in bands}
    assert recorded_differs(pending, bands, old)  # decided by the old rules: checked again
    new = json.dumps({b: {"scale": 1, "offset": 0, "from": "STAC: ... already shifted"} for b in bands})
    assert not recorded_differs(pending, bands, new)


def test_earlier_images_stay_up_to_date_unless_their_scaling_changes(tmp_path: Path):
    """A run of the old rules (its records rewritten as that version made them): only the
    images whose scaling changes are converted, once, and the run says why."""
    features = []
    for name in (ES_L2A, ES_C1):
        true = reflectance("BareSoil_10")
        shift = 0 if name == ES_L2A else 1000
        dn = {b: np.where(v > 0, v + shift, 0).astype(np.uint16) for b, v in true.items()}
        features.append(localise(item(name), tmp_path / "assets", dn))
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    config = dict(stac_items="items.json", output_dir="out", products=["truecolor"], contact_sheets=False)
    run_engine(tmp_path, **config)
    old = json.dumps({b: {"from": "STAC raster:bands", "offset": -1000, "scale": 1} for b in ("B02", "B03", "B04")},
                     sort_keys=True, separators=(",", ":"))  # fmt: skip
    for path in (tmp_path / "out" / ".msrgb" / "state").rglob("*.tsv"):
        state = read_state_full([path])
        state.radiometry = dict.fromkeys(state.records, old)
        path.write_text(state_text(**vars(state)))
    again = run_engine(tmp_path, **config)
    assert again.shards and "1 image(s) of STAC Items are converted again" in again.stderr, again.stderr
    assert again.summary["converted"] == 1
    third = run_engine(tmp_path, **config)
    assert not third.shards and "1 to convert" not in third.stderr


def test_a_real_run_ends_with_the_count_of_items_whose_offset_was_overridden(tmp_path: Path):
    """What only Snakemake shows: the closing lines of a run (rules/common.smk)."""
    true = reflectance("BareSoil_10")
    features = [localise(item(ES_L2A), tmp_path / "assets", true), localise(item(ES_C1), tmp_path / "assets", {
        b: np.where(v > 0, v + 1000, 0).astype(np.uint16) for b, v in true.items()})]  # fmt: skip
    (tmp_path / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    proc = run_snakemake(tmp_path, stac_items=str(tmp_path / "items.json"), output_dir="out", contact_sheets="false")
    assert "msrgb: 1 Item: raster:bands offset ignored, earthsearch:boa_offset_applied is true" in proc.stderr, proc.stderr[-2000:]
    assert "look like Sentinel-2 data of processing baseline 04.00" not in proc.stderr
