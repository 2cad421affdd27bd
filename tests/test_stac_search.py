"""STAC API searches as inputs (``stac_search``), against a local STAC API server (item search by
POST or GET, a page of two Items at a time with "next" links as Earth Search and Planetary
Computer write them) whose Items list band files it serves over HTTP: one image per Item found,
``max_items`` honoured, pages followed, hrefs relative to the Item resolved, the found Items
saved for the jobs, and a server that does not answer named."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
import yaml
from conftest import REPO, converted_counts, run_engine, run_snakemake

from msrgb import synth

PAGE = 2
CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
]


class StacApi:
    """A STAC API on 127.0.0.1: the landing page, ``/search`` (POST and GET, paged by a token in
    the "next" link: a POST body, or a GET query), and the band files under ``/data/``."""

    def __init__(self, data: Path, methods: tuple[str, ...] = ("POST", "GET")):
        self.items: list[dict] = []
        self.searches: list[tuple[str, dict]] = []  # (method, parameters) of every page asked
        self.data, self.methods = data, methods
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def reply(self, body: bytes, kind: str = "application/json", status: int = 200) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path in ("", "/"):
                    return self.reply(json.dumps(api.landing()).encode())
                if url.path == "/search" and "GET" in api.methods:
                    query = {k: v[0] for k, v in parse_qs(url.query).items()}
                    for key in ("collections", "ids"):
                        if key in query:
                            query[key] = query[key].split(",")
                    return self.reply(json.dumps(api.search("GET", query)).encode())
                if url.path.startswith("/data/") and (api.data / url.path[len("/data/") :]).is_file():
                    return self.reply((api.data / url.path[len("/data/") :]).read_bytes(), "image/tiff")
                self.reply(b'{"code": "NotFound"}', status=404)

            def do_POST(self) -> None:
                if urlparse(self.path).path != "/search" or "POST" not in api.methods:
                    return self.reply(b'{"code": "NotFound"}', status=404)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self.reply(json.dumps(api.search("POST", body)).encode(), "application/geo+json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def landing(self) -> dict:
        links = [{"rel": "self", "href": self.url}, {"rel": "root", "href": self.url}]
        links += [{"rel": "search", "href": f"{self.url}/search", "method": m, "type": "application/geo+json"} for m in self.methods]
        return {"type": "Catalog", "id": "test", "stac_version": "1.0.0", "description": "msrgb tests",
                "conformsTo": CONFORMS, "links": links}  # fmt: skip

    def search(self, method: str, parameters: dict) -> dict:
        self.searches.append((method, parameters))
        found = [i for i in self.items if i["collection"] in parameters.get("collections", [i["collection"]])]
        if "ids" in parameters:
            found = [i for i in found if i["id"] in parameters["ids"]]
        start, limit = int(parameters.get("token", 0)), min(int(parameters.get("limit", PAGE)), PAGE)
        page = found[start : start + limit]
        links = []
        if start + limit < len(found):
            after = {**parameters, "token": start + limit}
            if method == "POST":
                links.append({"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": after, "merge": False})
            else:
                query = "&".join(f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in after.items())
                links.append({"rel": "next", "href": f"{self.url}/search?{query}", "method": "GET"})
        return {"type": "FeatureCollection", "features": page, "links": links, "numberMatched": len(found)}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def item(api: StacApi, item_id: str, collection: str, offset: float | None, relative: bool) -> dict:
    """An Item as Earth Search writes them: assets by common name, raster:bands scale/offset,
    hrefs absolute or relative to the Item's own URL (its "self" link)."""
    self_href = f"{api.url}/collections/{collection}/items/{item_id}"
    assets = {}
    for band, name in (("B04", "red"), ("B03", "green"), ("B02", "blue")):
        href = f"../../../../data/{band}.tif" if relative else f"{api.url}/data/{band}.tif"
        raster = {"data_type": "uint16", **({"scale": 0.0001, "offset": offset} if offset is not None else {})}
        assets[name] = {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"],
                        "eo:bands": [{"name": name, "common_name": name}], "raster:bands": [raster]}  # fmt: skip
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection, "geometry": None,
            "bbox": [-8.1, 31.5, -7.9, 31.7], "properties": {"datetime": "2024-06-01T11:00:00Z"},
            "links": [{"rel": "self", "href": self_href}], "assets": assets}  # fmt: skip


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, np.ndarray]:
    """Three band files (a synthetic BigEarthNet patch) that every Item lists."""
    (tmp_path / "data").mkdir()
    bands = synth.make_patch(0)
    for band in ("B02", "B03", "B04"):
        synth.write_band(tmp_path / "data" / f"{band}.tif", bands[band], (500000.0, 3500000.0), 32629)
    return {b: rasterio.open(tmp_path / "data" / f"{b}.tif").read(1) for b in ("B02", "B03", "B04")}


@pytest.fixture(params=[("POST", "GET"), ("GET",)], ids=["post", "get"])
def api(request: pytest.FixtureRequest, tmp_path: Path, scene: dict) -> Iterator[StacApi]:
    server = StacApi(tmp_path / "data", request.param)
    try:
        yield server
    finally:
        server.stop()


def formula(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    ms = np.stack([r, g, b], axis=-1).astype(np.float64)
    return (255 * (ms / 4000).clip(0, 1)).astype(np.uint8)


def search_config(tmp_path: Path, search: dict) -> Path:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["stac_search"] = search
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_search_follows_pages_up_to_max_items(api: StacApi, tmp_path: Path, scene: dict):
    api.items = [item(api, f"S2_{i}", "sentinel-2-l2a", -0.1, relative=i % 2 == 1) for i in range(5)]
    api.items.insert(2, item(api, "L8_0", "landsat", None, relative=False))
    config = search_config(tmp_path, {"url": api.url, "collections": ["sentinel-2-l2a"], "max_items": 4})
    run_engine(tmp_path, "--configfile", str(config), output_dir="out")

    out = tmp_path / "out" / "truecolor"
    assert sorted(p.name for p in out.glob("*.png")) == ["S2_0.png", "S2_1.png", "S2_2.png", "S2_3.png"]
    assert len({method for method, _ in api.searches}) == 1 and len(api.searches) >= 2  # pages followed
    # DN * 0.0001 - 0.1 on the 0-10000 scale, for absolute and relative hrefs alike
    scaled = {b: v.astype(np.float64) - 1000 for b, v in scene.items()}
    for name in ("S2_0.png", "S2_1.png"):
        np.testing.assert_array_equal(iio.imread(out / name)[..., :3], formula(scaled["B04"], scaled["B03"], scaled["B02"]))
    saved = json.loads((tmp_path / "out" / ".msrgb" / "stac-search.json").read_text())
    assert [f["id"] for f in saved["features"]] == ["S2_0", "S2_1", "S2_2", "S2_3"]
    assert saved["features"][1]["assets"]["red"]["href"] == f"{api.url}/data/B04.tif"  # made absolute

    # a rerun searches again and converts nothing; an Item whose offset changed is made again
    api.searches.clear()
    proc = run_engine(tmp_path, "--configfile", str(config), output_dir="out")
    assert not proc.shards and not proc.parts and api.searches
    api.items[0] = item(api, "S2_0", "sentinel-2-l2a", None, relative=False)
    run_engine(tmp_path, "--configfile", str(config), output_dir="out")
    assert converted_counts(tmp_path / "out") == 1
    np.testing.assert_array_equal(iio.imread(out / "S2_0.png")[..., :3], formula(scene["B04"], scene["B03"], scene["B02"]))


def test_a_dry_run_searches_but_writes_nothing(api: StacApi, tmp_path: Path):
    api.items = [item(api, "S2_0", "sentinel-2-l2a", -0.1, relative=False)]
    config = search_config(tmp_path, {"url": api.url, "collections": ["sentinel-2-l2a"]})
    proc = run_snakemake(tmp_path, "--configfile", str(config), "--dry-run", output_dir="out")
    assert "truecolor: 1 to convert" in proc.stderr and api.searches
    assert not (tmp_path / "out").exists()


def test_a_search_that_fails_or_finds_nothing_is_named(tmp_path: Path, scene: dict):
    api = StacApi(tmp_path / "data")
    url = api.url
    try:
        config = search_config(tmp_path, {"url": url, "collections": ["nothing-here"]})
        proc = run_engine(tmp_path, "--configfile", str(config), output_dir="out", check=False)
        assert proc.returncode != 0 and f"stac_search {url} found no STAC Items" in proc.stderr, proc.stderr[-2000:]
    finally:
        api.stop()
    proc = run_engine(tmp_path, "--configfile", str(config), output_dir="out", check=False)
    assert proc.returncode != 0 and f"stac_search {url}: the search failed" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out").exists()

    config = search_config(tmp_path, {"url": url, "bbox": [1, 2]})
    proc = run_engine(tmp_path, "--configfile", str(config), output_dir="out", check=False)
    assert proc.returncode != 0 and "bbox" in proc.stderr, proc.stderr[-2000:]
    both = search_config(tmp_path, {"url": url})
    proc = run_engine(tmp_path, "--configfile", str(both), output_dir="out", stac_items="items.json", check=False)
    assert proc.returncode != 0 and "give 'stac_items' or 'stac_search', not both" in proc.stderr
