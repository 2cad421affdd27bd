"""Self-describing images: every image carries the recipe that made it (msrgb's version, the
input's relative path, the product's settings and their digest), as a PNG iTXt chunk, a JPEG
comment or WebP XMP. JPEG and WebP are written by Pillow directly: imageio's plugin layer adds
a cost per image that matters at tile size (measured by bench/looks.py, figures in
docs/performance.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from msrgb.config.products import Product
from msrgb.radiometry.scaling import Scaling
from msrgb.storage.files import own_image

#: The PNG text keyword (``Image.open(p).text["msrgb"]``).
RECIPE_KEY = "msrgb"

_XMP = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description xmlns:msrgb="https://github.com/msrgb/msrgb#" msrgb:recipe="{}"/></rdf:RDF></x:xmpmeta>'
)


def recipe(product: Product, rel: str, radiometry: Mapping[str, Scaling] | None = None) -> dict[str, Any]:
    """What made an image: msrgb's version, the input, the product and its settings, and (only
    where one applied) the radiometric scale and offset of each band (msrgb.radiometry.scaling)."""
    from msrgb.version import __version__

    spec = product.to_dict()
    spec.pop("name")
    made = {
        "msrgb": __version__,
        "source": rel,
        "product": product.name,
        "settings": product.digest(),
        "spec": spec,
    }
    if radiometry:
        made["radiometry"] = radiometry_record(radiometry)
    return made


def radiometry_record(radiometry: Mapping[str, Scaling]) -> dict[str, dict[str, Any]]:
    """Band name -> {scale, offset, from}: value = DN * scale + offset (reflectance x 10000)."""
    return {band: scaling.to_json() for band, scaling in sorted(radiometry.items())}


def radiometry_text(radiometry: Mapping[str, Scaling]) -> str:
    """:func:`radiometry_record` as one line of JSON, for the state and provenance manifest."""
    return json.dumps(radiometry_record(radiometry), sort_keys=True, separators=(",", ":"))


def recipe_text(product: Product, rel: str, radiometry: Mapping[str, Scaling] | None = None) -> str:
    """The recipe as one line of JSON (sorted keys: the same settings give the same bytes)."""
    return json.dumps(recipe(product, rel, radiometry), sort_keys=True, separators=(",", ":"))


class RecipeWriter:
    """:func:`recipe_text` of one product for any input, with the product's part made once
    (the product's specification and digest cost more than encoding a tile)."""

    def __init__(self, product: Product):
        self.product = product
        whole = recipe_text(product, "")
        head, tail = whole.split(',"source":"",', 1)
        self._head, self._tail = head + ',"source":', "," + tail

    def text(self, rel: str, radiometry: Mapping[str, Scaling] | None = None) -> str:
        if radiometry:
            return recipe_text(self.product, rel, radiometry)
        return self._head + json.dumps(rel) + self._tail


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def xmp_packet(recipe_json: str) -> bytes:
    """The XMP packet that carries a recipe in a WebP file."""
    return _XMP.format(_xml_escape(recipe_json)).encode("utf-8")


def read_recipe(path: Path) -> dict[str, Any] | None:
    """The recipe inside an image msrgb wrote, or None if it has none."""
    import html
    import re

    with own_image(path) as img:
        if path.suffix.lower() == ".png":
            text = img.text.get(RECIPE_KEY)  # type: ignore[attr-defined]
        elif path.suffix.lower() in (".jpg", ".jpeg"):
            raw = img.info.get("comment")
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        else:
            raw = img.info.get("xmp")
            xmp = raw.decode("utf-8") if isinstance(raw, bytes) else (raw or "")
            found = re.search(r'msrgb:recipe="([^"]*)"', xmp)
            text = html.unescape(found.group(1)) if found else None
    return json.loads(text) if text else None
