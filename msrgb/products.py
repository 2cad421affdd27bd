"""Products: which bands make the red, green and blue channels, and how values become 0-255.

A product is pure data. Its digest names everything that changes its pixels, so a changed
setting re-runs that product and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from msrgb.synth import EUROSAT_BANDS

#: Version of the pixel algorithm. Bump it when a change alters the PNGs a setting produces,
#: so that existing outputs are rebuilt.
ALGORITHM_VERSION = 1

#: Built-in products. ``gain`` is the reference stretch: value / max, clipped to 0-1, times 255.
PRESETS: dict[str, dict[str, Any]] = {
    "truecolor": {"bands": ["B04", "B03", "B02"], "stretch": {"type": "gain", "max": 4000}},
}


class ProductError(ValueError):
    """A product specification that cannot work; the message names the product and the key."""


@dataclass(frozen=True)
class Product:
    """One RGB rendering of the input tiles."""

    name: str
    bands: tuple[str, str, str]
    band_map: tuple[str, ...] = EUROSAT_BANDS
    gain_max: float = 4000.0
    png_compression: str = "huffman"
    indices: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.bands) != 3:
            raise ProductError(
                f"product {self.name!r}: 'bands' needs exactly 3 names (red, green, blue), "
                f"got {list(self.bands)}"
            )
        unknown = [b for b in self.bands if b not in self.band_map]
        if unknown:
            raise ProductError(
                f"product {self.name!r}: unknown band name(s) {unknown} in 'bands'; "
                f"the band map has {list(self.band_map)}"
            )
        if not self.gain_max > 0:
            raise ProductError(
                f"product {self.name!r}: 'stretch.max' must be > 0, got {self.gain_max}"
            )
        object.__setattr__(
            self, "indices", tuple(self.band_map.index(b) for b in self.bands)
        )

    def digest(self) -> str:
        """A short hash of everything that determines this product's pixels."""
        payload = {
            "algorithm": ALGORITHM_VERSION,
            "bands": list(self.bands),
            "band_map": list(self.band_map),
            "gain_max": self.gain_max,
            "png_compression": self.png_compression,
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def lut(self) -> np.ndarray:
        """Lookup table uint16 value -> uint8, equal value for value to the reference formula
        ``(255 * (v / max).clip(0, 1)).astype(uint8)`` evaluated in float64."""
        return stretch_gain(np.arange(65536, dtype=np.uint16), self.gain_max)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("indices")
        return d


def stretch_gain(values: np.ndarray, gain_max: float) -> np.ndarray:
    """The reference stretch, in float64: ``(255 * (values / max).clip(0, 1)).astype(uint8)``."""
    return (255 * (values / gain_max).clip(0, 1)).astype(np.uint8)


def parse_products(
    spec: Sequence[str] | Mapping[str, Mapping[str, Any]],
    band_map: Sequence[str] = EUROSAT_BANDS,
    png_compression: str = "huffman",
) -> list[Product]:
    """Turn the ``products`` config value (a list of preset names or a mapping of name to
    specification) into products, with errors that name the product and the key."""
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = []
        for name in spec:
            if name not in PRESETS:
                raise ProductError(
                    f"unknown product preset {name!r}; presets are {sorted(PRESETS)}"
                )
            items.append((name, PRESETS[name]))
    products = []
    for name, body in items:
        body = dict(body or {})
        preset = body.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ProductError(
                    f"product {name!r}: unknown 'preset' {preset!r}; presets are {sorted(PRESETS)}"
                )
            body = {**PRESETS[preset], **body}
        elif name in PRESETS:
            body = {**PRESETS[name], **body}
        if "bands" not in body:
            raise ProductError(f"product {name!r}: 'bands' is missing")
        stretch = dict(body.get("stretch") or {"type": "gain", "max": 4000})
        if stretch.get("type", "gain") != "gain":
            raise ProductError(
                f"product {name!r}: 'stretch.type' {stretch.get('type')!r} is not supported; "
                "supported: gain"
            )
        products.append(
            Product(
                name=name,
                bands=tuple(body["bands"]),  # type: ignore[arg-type]
                band_map=tuple(body.get("band_map") or band_map),
                gain_max=float(stretch.get("max", 4000)),
                png_compression=png_compression,
            )
        )
    if not products:
        raise ProductError("'products' is empty: name at least one product")
    return products


def products_from_dicts(dicts: Sequence[Mapping[str, Any]]) -> list[Product]:
    """Rebuild products from :meth:`Product.to_dict` output (used to pass them to jobs)."""
    return [
        Product(
            name=d["name"],
            bands=tuple(d["bands"]),  # type: ignore[arg-type]
            band_map=tuple(d["band_map"]),
            gain_max=float(d["gain_max"]),
            png_compression=d["png_compression"],
        )
        for d in dicts
    ]


__all__ = [
    "ALGORITHM_VERSION",
    "PRESETS",
    "Product",
    "ProductError",
    "parse_products",
    "products_from_dicts",
    "stretch_gain",
]
