"""Inputs from a STAC catalogue (``stac_items``): one image per STAC Item, named by its id, read
from the Item's per-band assets (Cloud-Optimized GeoTIFFs) like a folder of band files.

``stac_items`` is a STAC ItemCollection (GeoJSON FeatureCollection) or a single Item, as a
local file, an ``s3://`` object or an ``http(s)://`` URL; or a local folder of such files. An
asset is the file of a Sentinel-2 band when its one band (``eo:bands``, or STAC 1.1 ``bands``)
is named like one (``B04``, Planetary Computer) or has the common name of one (``red``, Earth
Search), or failing that its key does; of several assets of a band the GeoTIFF wins (Earth
Search lists a JPEG 2000 copy too), then the finest. Hrefs may be ``s3://``, ``http(s)://``,
absolute paths or relative to the file that lists the Item. How each band's values are scaled
(``raster:bands``, ``earthsearch:boa_offset_applied``, the processing baseline) is decided by
:func:`msrgb.radiometry.decide.stac_rule`.

An Item's fingerprint (the "size" and "mtime" that decide whether its images are up to date) is
a digest of the Item's JSON: an Item that changes is converted again; its assets are not asked.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from msrgb.errors import InputError, PlanError
from msrgb.radiometry.decide import Rule, StacAsset, StacFacts, item_baseline, stac_rule
from msrgb.radiometry.scaling import SAFE_METADATA_NAMES
from msrgb.storage import remote
from msrgb.storage.files import Problems
from msrgb.storage.locations import HttpPath, S3Path, is_remote, is_url, location

#: common names (eo:common_name) of the Sentinel-2 bands, and Earth Search's band names
COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
    "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09",
    "cirrus": "B10", "swir16": "B11", "swir22": "B12",
}  # fmt: skip
_BAND = re.compile(r"^B(0?[1-9]|1[0-2]|8A)$", re.IGNORECASE)


def band_name(text: object) -> str | None:
    """``B04`` for ``B04``, ``b4``, ``red``, ``rededge1``...; None for anything else."""
    if not isinstance(text, str):
        return None
    m = _BAND.match(text.strip())
    if m:
        number = m.group(1).upper()
        return f"B{number.zfill(2) if number != '8A' else number}"
    return COMMON_NAMES.get(text.strip().lower())


def _bands_of(asset: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    bands = asset.get("eo:bands") or asset.get("bands") or []
    return [b for b in bands if isinstance(b, Mapping)] if isinstance(bands, list) else []


def asset_band(key: str, asset: Mapping[str, Any]) -> str | None:
    """The Sentinel-2 band an asset holds, or None (a multi-band or non-image asset)."""
    bands = _bands_of(asset)
    if len(bands) > 1:
        return None  # the true-colour "visual" asset and the like
    kind = str(asset.get("type", "")).lower()
    if kind and not kind.startswith("image/") and "tiff" not in kind and "jp2" not in kind:
        return None
    roles = asset.get("roles") or []
    if isinstance(roles, list) and ({"thumbnail", "overview", "metadata"} & set(roles)) and "data" not in roles:
        return None
    if bands:
        b = bands[0]
        for value in (b.get("name"), b.get("common_name"), b.get("eo:common_name")):
            found = band_name(value)
            if found is not None:
                return found
    return band_name(key)


def _rank(key: str, asset: Mapping[str, Any]) -> tuple[int, float, int, str]:
    """Sort order of several assets of one band: GeoTIFFs first, then the finest ground sample
    distance (Copernicus Data Space lists B02_10m, B02_20m, B02_60m), then the shortest key."""
    kind = str(asset.get("type", "")).lower()
    href = str(asset.get("href", "")).lower()
    tiff = "tiff" in kind or href.endswith((".tif", ".tiff"))
    gsd = _number(asset.get("gsd"))
    return (0 if tiff else 1, gsd if gsd is not None and gsd > 0 else math.inf, len(key), key)


def asset_scaling(asset: Mapping[str, Any]) -> tuple[tuple[float | None, float | None] | None, str]:
    """((scale, offset), where) an asset declares for its band: ``raster:bands[0]`` (or STAC 1.1
    ``bands``), else the asset-level ``raster:scale`` / ``raster:offset`` of STAC 1.1; (None,
    "") when it declares neither."""
    for key in ("raster:bands", "bands"):
        bands = asset.get(key)
        if isinstance(bands, list) and len(bands) == 1 and isinstance(bands[0], Mapping):
            b = bands[0]
            scale = b.get("scale", b.get("raster:scale"))
            offset = b.get("offset", b.get("raster:offset"))
            if scale is not None or offset is not None:
                return (_number(scale), _number(offset)), key
    scale, offset = asset.get("raster:scale"), asset.get("raster:offset")
    if scale is not None or offset is not None:
        return (_number(scale), _number(offset)), "raster:scale/raster:offset"
    return None, ""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _is_visual(key: str, asset: Mapping[str, Any]) -> bool:
    """An 8-bit picture: the ``visual`` / TCI asset, or any asset of data type uint8."""
    name = key.lower()
    if name.startswith(("visual", "tci")) or "visual" in (asset.get("roles") or []):
        return True
    types = [asset.get("data_type")]
    for band in asset.get("raster:bands") or asset.get("bands") or []:
        if isinstance(band, Mapping):
            types.append(band.get("data_type"))
    return "uint8" in types


#: asset keys of a Sentinel-2 product's metadata file (MTD_MSIL2A.xml) in the catalogues
_METADATA_KEYS = ("product_metadata", "product-metadata")


def _metadata_href(assets: Mapping[str, Any]) -> str | None:
    """The href of the product metadata XML asset, if the Item has one."""
    for key, asset in assets.items():
        if not isinstance(asset, Mapping) or not isinstance(asset.get("href"), str):
            continue
        href = asset["href"]
        if key in _METADATA_KEYS or href.rpartition("/")[2].split("?")[0] in SAFE_METADATA_NAMES:
            return href
    return None


def item_facts(item: Mapping[str, Any], item_id: str) -> StacFacts:
    """What an Item says about its radiometry as a whole (msrgb.radiometry.decide)."""
    properties = item.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    flag = properties.get("earthsearch:boa_offset_applied")
    assets = item.get("assets")
    return StacFacts(
        item_baseline(properties, item_id),
        flag if isinstance(flag, bool) else None,
        _metadata_href(assets) if isinstance(assets, Mapping) else None,
    )


@dataclass(frozen=True)
class Item:
    """One STAC Item: its id, where it was listed (for relative hrefs), its band assets."""

    id: str
    base: str
    #: band -> what the Item says of that band's asset (its href among it)
    assets: dict[str, StacAsset] = field(default_factory=dict)
    fingerprint: tuple[int, int] = (0, 0)
    facts: StacFacts = StacFacts()

    def rule(self, band: str) -> Rule:
        """How the band's values are scaled (msrgb.radiometry.decide.stac_rule)."""
        return stac_rule(self.facts, self.assets[band])


def _fingerprint(item: Mapping[str, Any]) -> tuple[int, int]:
    text = json.dumps(item, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return len(text), int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


def parse_item(item: Mapping[str, Any], base: str, where: str) -> Item:
    """The :class:`Item` of a STAC Item's JSON (listed in ``where``, hrefs relative to
    ``base``). Raises :class:`PlanError` naming ``where`` for an Item without an id or assets."""
    item_id = item.get("id")
    if not isinstance(item_id, str) or not item_id.strip():
        raise PlanError(f"{where}: a STAC Item without an id")
    assets = item.get("assets")
    if not isinstance(assets, Mapping):
        raise PlanError(f"{where}: STAC Item {item_id!r} has no assets")
    chosen: dict[str, tuple[tuple[int, float, int, str], StacAsset]] = {}
    for key, asset in assets.items():
        if not isinstance(asset, Mapping) or not isinstance(asset.get("href"), str):
            continue
        band = asset_band(str(key), asset)
        if band is None:
            continue
        rank = _rank(str(key), asset)
        if band not in chosen or rank < chosen[band][0]:
            declared, declared_where = asset_scaling(asset)
            found = StacAsset(str(key), asset["href"], declared, declared_where or "raster:bands", _is_visual(str(key), asset))
            chosen[band] = (rank, found)
    return Item(item_id, base, {b: a for b, (_, a) in chosen.items()}, _fingerprint(item), item_facts(item, item_id))


def _features(doc: object, where: str) -> list[Mapping[str, Any]]:
    if isinstance(doc, Mapping) and doc.get("type") == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise PlanError(f"{where}: a FeatureCollection without a list of features")
        return [f for f in features if isinstance(f, Mapping)]
    if isinstance(doc, Mapping) and doc.get("type") == "Feature":
        return [doc]
    raise PlanError(f"{where}: not a STAC ItemCollection or Item (no 'type': 'FeatureCollection' or 'Feature')")


#: how ``input_dir`` is passed to jobs when the inputs are STAC Items (msrgb.storage.remote.location)
PREFIX = "stac:"


@dataclass(frozen=True)
class ItemRef:
    """One Item, as messages name it: ``<stac_items>#<id>``."""

    where: str
    id: str

    def __str__(self) -> str:
        return f"{self.where}#{self.id}"

    @property
    def name(self) -> str:
        return self.id


def parent_of(where: str) -> str:
    return where.rsplit("/", 1)[0] if "/" in where else "."


@dataclass(frozen=True)
class StacItems:
    """The ``stac_items`` setting: where the Items are listed. Joined with an href (``/``), it
    gives where that asset is, so it stands where an input folder stands."""

    where: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.where}"

    @property
    def name(self) -> str:
        return self.where.rstrip("/").rpartition("/")[2]

    def is_dir(self) -> bool:
        return False

    def _read(self, where: str) -> bytes:
        try:
            if is_remote(where):
                return remote.get(S3Path.parse(where))
            if is_url(where):
                return remote.get(HttpPath(where))
            return Path(where).read_bytes()
        except InputError as exc:
            raise PlanError(f"stac_items: {exc}") from exc
        except OSError as exc:
            raise PlanError(f"stac_items {where!r} cannot be read ({exc.strerror or exc})") from exc

    def _documents(self) -> Iterator[tuple[str, object]]:
        is_local = not (is_remote(self.where) or is_url(self.where))
        if is_local and os.path.isdir(self.where):
            names = sorted(n for n in os.listdir(self.where) if n.lower().endswith((".json", ".geojson")))
            if not names:
                raise PlanError(f"stac_items {self.where!r}: the folder holds no .json files")
            paths = [os.path.join(self.where, n) for n in names if not n.startswith(".")]
        else:
            paths = [self.where]
        for path in paths:
            try:
                yield path, json.loads(self._read(path))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise PlanError(f"stac_items: {path} is not JSON ({exc})") from None

    @cached_property
    def items(self) -> dict[str, Item]:
        """Every Item by id. Raises :class:`PlanError` for a file that is not STAC or two
        Items with one id."""
        found: dict[str, Item] = {}
        for path, doc in self._documents():
            for feature in _features(doc, path):
                item = parse_item(feature, parent_of(path), path)
                if item.id in found:
                    raise PlanError(f"stac_items: two Items have the id {item.id!r} ({path})")
                found[item.id] = item
        return found

    def resolve(self, item_id: str, href: str) -> Path | S3Path | HttpPath:
        """Where the asset ``href`` of an Item is."""
        if is_remote(href):
            return S3Path.parse(href)
        if is_url(href):
            return HttpPath(href)
        if href.startswith("file://"):
            return Path(href[len("file://") :])
        if os.path.isabs(href):
            return Path(href)
        listed_in_folder = not (is_remote(self.where) or is_url(self.where)) and os.path.isdir(self.where)
        base = self.items[item_id].base if listed_in_folder and item_id in self.items else parent_of(self.where)
        joined = join_href(base, href)
        if is_remote(joined):
            return S3Path.parse(joined)
        if is_url(joined):
            return HttpPath(joined)
        return Path(joined)

    def __truediv__(self, rel: str) -> Any:
        """The asset ``rel`` ("<item id>/<href>", as sources list them; ids hold no "/")."""
        item_id, _, href = rel.partition("/")
        return self.resolve(item_id, href)

    def item(self, item_id: str) -> ItemRef:
        return ItemRef(self.where, item_id)

    def item_of(self, item_id: str) -> Item | None:
        return self.items.get(item_id)


def join_href(folder: str, href: str) -> str:
    """The relative ``href`` in ``folder`` (a URL or a path), with ``..`` and ``.`` resolved."""
    joined = f"{folder}/{href}"
    return _normalise(joined) if is_remote(joined) or is_url(joined) else os.path.normpath(joined)


#: where the inputs are: a local folder, an s3:// prefix, or STAC Items
InputDir = Path | S3Path | StacItems


def _normalise(url: str) -> str:
    """``a/b/../c`` to ``a/c`` in the path of a URL."""
    scheme, _, rest = url.partition("://")
    parts: list[str] = []
    for part in rest.split("/"):
        if part == "..":
            if len(parts) > 1:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return f"{scheme}://{'/'.join(parts)}"


def input_location(text: str) -> InputDir:
    """``input_dir`` as the jobs are given it: STAC Items for ``stac:<where>``
    (:class:`StacItems`), else :func:`msrgb.storage.remote.location`."""
    if text.startswith(PREFIX):
        return StacItems(text[len(PREFIX) :])
    return location(text)


def discover_items(
    stac: StacItems, needed_bands: Iterable[str], problems: Problems | None = None
) -> list[tuple[str, int, int, tuple[tuple[str, str], ...]]]:
    """(id, size, mtime, files) of each Item, for a :class:`msrgb.sources.discovery.Source` named by its
    id listing the assets of the ``needed_bands`` (as "<id>/<href>"). An id that cannot name a
    file goes to ``problems``."""
    needed = sorted(set(needed_bands))
    found = []
    for item in stac.items.values():
        if item.id.startswith(".") or "/" in item.id or "\\" in item.id:
            why = "its id cannot name an image file (it starts with '.' or holds '/')"
            if problems is None:
                raise PlanError(f"STAC Item {item.id!r}: {why}")
            problems.append((item.id, why))
            continue
        files = tuple((b, f"{item.id}/{item.assets[b].href}") for b in needed if b in item.assets)
        found.append((item.id, *item.fingerprint, files))
    return found
