"""STAC Items as inputs (``stac_items``): the real Sentinel-2 scene's per-band COGs listed in an
ItemCollection served from a real S3 server, Items with http:// assets and relative hrefs, the
``raster:bands`` scale and offset applied, and which asset is which band."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import SHARED_S2, converted_counts, run_engine
from s3server import FaultProxy, S3Server

from msrgb import synth
from msrgb.errors import PlanError
from msrgb.sources.stac import (
    StacItems,
    asset_band,
    asset_scaling,
    band_name,
    discover_items,
    parse_item,
)
from msrgb.storage.locations import HttpPath, S3Path

COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def formula(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The reference formula on the 0-10000 scale."""
    ms = np.stack([r, g, b], axis=-1).astype(np.float64)
    return (255 * (ms / 4000).clip(0, 1)).astype(np.uint8)


def planetary_computer_item(item_id: str, hrefs: dict[str, str]) -> dict:
    """An Item as Planetary Computer writes them: assets named by band, eo:bands with names."""
    common = {"B02": "blue", "B03": "green", "B04": "red"}
    assets = {
        band: {"href": href, "type": COG, "roles": ["data"], "eo:bands": [{"name": band, "common_name": common[band]}]}
        for band, href in hrefs.items()
    }
    assets["visual"] = {"href": "TCI.tif", "type": COG, "eo:bands": [{"name": b} for b in ("B04", "B03", "B02")]}
    assets["rendered_preview"] = {"href": "preview.png", "type": "image/png", "roles": ["overview"]}
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None, "properties": {}, "assets": assets}


def earth_search_item(item_id: str, hrefs: dict[str, str], scale: float | None, offset: float | None) -> dict:
    """An Item as Earth Search (v1) writes them: assets named by common name, raster:bands
    with scale and offset (processing baseline 04.00 and later), a JPEG 2000 copy of each."""
    names = {"B02": "blue", "B03": "green", "B04": "red"}
    assets = {}
    for band, href in hrefs.items():
        raster = [{"nodata": 0, "data_type": "uint16", **({"scale": scale, "offset": offset} if scale else {})}]
        assets[names[band]] = {"href": href, "type": COG, "roles": ["data", "reflectance"],
                               "eo:bands": [{"name": names[band], "common_name": names[band]}],
                               "raster:bands": raster}  # fmt: skip
        assets[f"{names[band]}-jp2"] = {"href": href[:-4] + ".jp2", "type": "image/jp2", "roles": ["data"],
                                        "eo:bands": [{"name": names[band], "common_name": names[band]}]}  # fmt: skip
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "geometry": None, "properties": {}, "assets": assets}


def collection(*items: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(items)}


@pytest.mark.skipif(not SHARED_S2.is_dir(), reason="the real scene (../shared/data/s2_29RKH) is not here")
def test_an_item_collection_over_the_real_scene_in_s3_gives_the_formula_on_dn_and_on_dn_scaled(
    s3: S3Server, tmp_path: Path
):
    scene = s3.root / "scenes" / "29RKH"
    scene.mkdir(parents=True)
    for band in ("B02", "B03", "B04"):
        shutil.copy(SHARED_S2 / f"{band}.tif", scene / f"{band}.tif")
    absolute = {b: f"s3://scenes/29RKH/{b}.tif" for b in ("B02", "B03", "B04")}
    relative = {b: f"29RKH/{b}.tif" for b in ("B02", "B03", "B04")}  # relative to items.json
    items = collection(
        planetary_computer_item("S2A_29RKH_20200219_pc", absolute),
        earth_search_item("S2A_29RKH_20200219_es", relative, 0.0001, -0.1),
    )
    (s3.root / "scenes" / "items.json").write_text(json.dumps(items))
    run_engine(tmp_path, env=s3.env(), stac_items="s3://scenes/items.json", output_dir="out")

    dn = {b: rasterio.open(SHARED_S2 / f"{b}.tif").read(1) for b in ("B04", "B03", "B02")}
    plain = iio.imread(tmp_path / "out" / "truecolor" / "S2A_29RKH_20200219_pc.png")
    np.testing.assert_array_equal(plain, formula(dn["B04"], dn["B03"], dn["B02"]))
    scaled = iio.imread(tmp_path / "out" / "truecolor" / "S2A_29RKH_20200219_es.png")
    offset = {b: v.astype(np.float64) * 0.0001 * 10000 - 1000 for b, v in dn.items()}  # DN * scale + offset
    assert all((v > 0).all() for v in dn.values())  # no no-data pixel in this scene: all opaque
    np.testing.assert_array_equal(scaled[..., :3], formula(offset["B04"], offset["B03"], offset["B02"]))
    recipe = (tmp_path / "out" / "truecolor" / "manifest.tsv").read_text()
    assert "STAC: raster:bands (no processing baseline stated)" in recipe and "-1000" in recipe

    mark = s3.mark()
    run_engine(tmp_path, env=s3.env(), stac_items="s3://scenes/items.json", output_dir="out")
    asked = s3.requests(mark)
    assert asked["GET OBJECT"] == 1 and asked["HEAD OBJECT"] == 0, asked  # the ItemCollection only

    # the catalogue drops the offset of one Item: that Item alone is made again, on DN
    items["features"][1] = earth_search_item("S2A_29RKH_20200219_es", relative, None, None)
    s3.write("scenes/items.json", json.dumps(items))
    run_engine(tmp_path, env=s3.env(), stac_items="s3://scenes/items.json", output_dir="out")
    assert converted_counts(tmp_path / "out") == 1
    again = iio.imread(tmp_path / "out" / "truecolor" / "S2A_29RKH_20200219_es.png")
    np.testing.assert_array_equal(again, plain)


class RangeHandler(SimpleHTTPRequestHandler):
    """A static file server that answers ``Range: bytes=a-b`` with 206 and counts the bytes it
    sends (``served``), as object stores and CDNs do."""

    served = [0]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        wanted = self.headers.get("Range", "")
        if not path.is_file() or not wanted.startswith("bytes="):
            RangeHandler.served[0] += path.stat().st_size if path.is_file() else 0
            return super().do_GET()
        data = path.read_bytes()
        first, _, last = wanted[len("bytes="):].partition("-")
        start = int(first) if first else max(0, len(data) - int(last))
        end = min(int(last), len(data) - 1) if first and last else len(data) - 1
        body = data[start : end + 1]
        RangeHandler.served[0] += len(body)
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (:class:`RangeHandler`, its count reset), and its URL."""
    folder = tmp_path / "www"
    folder.mkdir()
    RangeHandler.served[0] = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def assert_quicklook_is_the_local_one(tmp_path: Path, bands: Path, read: int) -> None:
    """The 256-pixel quicklook ``out/truecolor/scene.png`` equals the local band-folder run's of
    ``bands`` (B02-B04), from ``read`` bytes: more than none, under a quarter of the files."""
    run_engine(tmp_path, input_dir=str(bands), output_dir="local", layout="band_folders", max_size="256")
    made = iio.imread(tmp_path / "out" / "truecolor" / "scene.png")
    assert made.shape[:2] == (256, 256)
    np.testing.assert_array_equal(made, iio.imread(tmp_path / "local" / "truecolor" / f"{bands.name}.png"))
    whole = sum((bands / f"{b}.tif").stat().st_size for b in ("B02", "B03", "B04"))
    assert 0 < read < whole / 4, (read, whole)


@pytest.mark.skipif(not SHARED_S2.is_dir(), reason="the real scene (../shared/data/s2_29RKH) is not here")
def test_a_quicklook_of_http_assets_reads_the_overviews_only(http_folder: tuple[Path, str], tmp_path: Path):
    www, url = http_folder
    for band in ("B02", "B03", "B04"):
        shutil.copy(SHARED_S2 / f"{band}.tif", www / f"{band}.tif")
    hrefs = {b: f"{url}/{b}.tif" for b in ("B02", "B03", "B04")}
    (tmp_path / "items.json").write_text(json.dumps(collection(planetary_computer_item("scene", hrefs))))
    run_engine(tmp_path, stac_items=str(tmp_path / "items.json"), output_dir="out", max_size="256")
    assert_quicklook_is_the_local_one(tmp_path, www, RangeHandler.served[0])


def test_items_with_http_assets_and_relative_hrefs_in_a_folder_of_items(http_folder: tuple[Path, str], tmp_path: Path):
    """Items in a local folder, one per file (STAC 1.1 ``bands``): one with http:// assets,
    one with hrefs relative to its file; both equal the band-folder run of the same files."""
    www, url = http_folder
    synth.generate_bigearthnet(tmp_path / "patches", 2)
    names = [synth.patch_name(i) for i in range(2)]
    shutil.copytree(tmp_path / "patches" / names[0], www / names[0])
    items = tmp_path / "items"
    shutil.copytree(tmp_path / "patches" / names[1], items / "assets" / names[1])

    def item(item_id: str, href: str) -> dict:
        assets = {
            band.lower(): {"href": href.format(band=band), "type": COG,
                           "bands": [{"name": band, "eo:common_name": common}]}  # fmt: skip
            for band, common in (("B02", "blue"), ("B03", "green"), ("B04", "red"), ("B11", "swir16"), ("B12", "swir22"), ("B8A", "nir08"))
        }  # fmt: skip
        return {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": None, "properties": {}, "assets": assets}

    signed = f"{url}/{names[0]}/{names[0]}_{{band}}.tif?se=2030&sig=SIGNATURE42"  # a SAS token's shape
    (items / "a.json").write_text(json.dumps(item("over_http", signed)))
    (items / "b.json").write_text(json.dumps(item("relative", f"assets/{names[1]}/{names[1]}_{{band}}.tif")))
    (items / "notes.txt").write_text("not an item")
    run_engine(tmp_path, stac_items=str(items), output_dir="out", products="[truecolor,swir]")
    run_engine(tmp_path, input_dir=str(tmp_path / "patches"), output_dir="local", layout="band_folders", products="[truecolor,swir]")
    for product in ("truecolor", "swir"):
        for item_id, name in (("over_http", names[0]), ("relative", names[1])):
            made = iio.imread(tmp_path / "out" / product / f"{item_id}.png")
            np.testing.assert_array_equal(made, iio.imread(tmp_path / "local" / product / f"{name}.png"))
    # the signature of a signed URL is in no result, record or log (the run's plan holds the hrefs)
    plan = tmp_path / "out" / ".msrgb" / "shard_lists"
    leaked = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and plan not in p.parents
              and b"SIGNATURE42" in p.read_bytes()]  # fmt: skip
    assert not leaked, leaked


@pytest.mark.parametrize(
    "key, asset, band",
    [
        ("B04", {"eo:bands": [{"name": "B04", "common_name": "red"}]}, "B04"),
        ("red", {"eo:bands": [{"name": "red", "common_name": "red"}]}, "B04"),
        ("nir08", {"eo:bands": [{"name": "nir08", "common_name": "nir08"}]}, "B8A"),
        ("rededge2", {"eo:bands": [{"name": "rededge2", "common_name": "rededge"}]}, "B06"),
        ("x", {"bands": [{"name": "b", "eo:common_name": "swir22"}]}, "B12"),
        ("B8", {}, "B08"),
        ("visual", {"eo:bands": [{"name": "B04"}, {"name": "B03"}, {"name": "B02"}]}, None),
        ("thumbnail", {"type": "image/png", "roles": ["thumbnail"]}, None),
        ("red", {"type": "application/json"}, None),
        ("granule_metadata", {"type": "application/xml", "roles": ["metadata"]}, None),
        ("SCL", {"eo:bands": [{"name": "SCL"}]}, None),
    ],
)
def test_which_asset_is_which_band(key: str, asset: dict, band: str | None):
    assert asset_band(key, asset) == band


def test_names_scalings_and_the_tiff_of_several_assets():
    assert [band_name(x) for x in ("b4", "B8A", "b8a", "B13", "nir", 4)] == ["B04", "B8A", "B8A", None, "B08", None]
    assert asset_scaling({"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}) == ((0.0001, -0.1), "raster:bands")
    assert asset_scaling({"bands": [{"raster:scale": 2, "raster:offset": 0}]}) == ((2.0, 0.0), "bands")
    assert asset_scaling({"raster:scale": 0.0001, "raster:offset": -0.1}) == ((0.0001, -0.1), "raster:scale/raster:offset")
    assert asset_scaling({"raster:bands": [{"nodata": 0}]}) == (None, "")
    item = parse_item(earth_search_item("i", {"B04": "a/B04.tif"}, 0.0001, -0.1), "s3://b/p", "items.json")
    assert {b: (a.href, a.declared) for b, a in item.assets.items()} == {"B04": ("a/B04.tif", (0.0001, -0.1))}  # the GeoTIFF, not the JPEG 2000 copy


def test_hrefs_are_resolved_against_where_the_item_is_listed(tmp_path: Path):
    (tmp_path / "items.json").write_text(json.dumps(collection(planetary_computer_item("i", {"B04": "x.tif"}))))
    local = StacItems(str(tmp_path / "items.json"))
    assert local.resolve("i", "bands/B04.tif") == tmp_path / "bands" / "B04.tif"
    assert local.resolve("i", "../up/B04.tif") == tmp_path.parent / "up" / "B04.tif"
    assert local.resolve("i", "s3://b/k/B04.tif") == S3Path("b", "k/B04.tif")
    assert local.resolve("i", "https://h/x/B04.tif") == HttpPath("https://h/x/B04.tif")
    assert local.resolve("i", "file:///data/B04.tif") == Path("/data/B04.tif")
    remote_items = StacItems("s3://cat/2020/items.json")
    assert remote_items.resolve("nope", "../c/B04.tif") == S3Path("cat", "c/B04.tif")


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not JSON"),
        ('{"type": "Catalog"}', "not a STAC ItemCollection or Item"),
        ('{"type": "Feature", "assets": {}}', "without an id"),
        ('{"type": "Feature", "id": "x"}', "has no assets"),
        (json.dumps(collection(planetary_computer_item("a", {}), planetary_computer_item("a", {}))), "two Items have the id 'a'"),
    ],
)
def test_bad_item_files_are_named(tmp_path: Path, content: str, message: str):
    (tmp_path / "items.json").write_text(content)
    with pytest.raises(PlanError, match=message) as err:
        StacItems(str(tmp_path / "items.json")).items
    assert "items.json" in str(err.value)


def test_ids_that_cannot_name_a_file_are_problems(tmp_path: Path):
    items = collection(*(planetary_computer_item(i, {"B04": "x.tif"}) for i in ("good", "a/b", ".hidden")))
    (tmp_path / "items.json").write_text(json.dumps(items))
    problems: list[tuple[str, str]] = []
    found = discover_items(StacItems(str(tmp_path / "items.json")), ["B04"], problems)
    assert [f[0] for f in found] == ["good"] and [p[0] for p in problems] == ["a/b", ".hidden"]


@pytest.mark.skipif(not SHARED_S2.is_dir(), reason="the real scene (../shared/data/s2_29RKH) is not here")
def test_a_quicklook_of_s3_assets_reads_the_overviews_only(s3: S3Server, tmp_path: Path):
    """GDAL's /vsis3/ with msrgb's S3 settings, through a proxy that turns rclone's 200 answers to
    ranged GETs into S3's 206: the quicklook equals the local one, from a part of the files."""
    scene = s3.root / "scenes" / "29RKH"
    scene.mkdir(parents=True)
    for band in ("B02", "B03", "B04"):
        shutil.copy(SHARED_S2 / f"{band}.tif", scene / f"{band}.tif")
    hrefs = {b: f"s3://scenes/29RKH/{b}.tif" for b in ("B02", "B03", "B04")}
    (tmp_path / "items.json").write_text(json.dumps(collection(planetary_computer_item("scene", hrefs))))
    proxy = FaultProxy(s3.port, fix_ranges=True)
    try:
        run_engine(tmp_path, env=s3.env(proxy.endpoint), stac_items=str(tmp_path / "items.json"),
                      output_dir="out", max_size="256")  # fmt: skip
    finally:
        proxy.close()
    assert_quicklook_is_the_local_one(tmp_path, scene, proxy.counts["bytes"])
