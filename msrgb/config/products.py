"""Products: which bands make the red, green and blue channels, and how values become pixels.

A product is pure data. Its digest names everything that changes its output files, so a changed
setting re-runs that product and nothing else.

Stretches (each maps a band value ``v`` to ``t`` in 0-1, then to ``out_min .. top`` where
``top`` is 255 for 8-bit and 65535 for 16-bit PNGs, truncating like ``astype``):

* ``gain``: ``t = (v / max).clip(0, 1)``; the reference formula with ``max: 4000``.
* ``range``: ``t = ((v - min) / (max - min)).clip(0, 1)``; with ``min: 0, max: 2750,
  out_min: 1`` it is the mapping of the official EuroSAT RGB JPEGs (0-2750 -> 1-255).
* ``percentile``: ``range`` with ``min``/``max`` at the ``low``/``high`` percentiles of each
  band, per image (``scope: image``) or over a sample of the whole dataset computed once
  (``scope: dataset``; see :mod:`msrgb.jobs.stats`).

``gamma`` (default 1) then applies ``t ** (1 / gamma)``: above 1 brightens the dark values.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from msrgb.errors import ExpressionError, ProductError
from msrgb.radiometry.scaling import Scaling, settings_for

if TYPE_CHECKING:  # numpy is loaded where arrays are made: planning a run does without it
    import numpy as np

#: Version of the pixel algorithm. Bump it when a change alters the PNGs a setting produces,
#: so that existing outputs are rebuilt.
ALGORITHM_VERSION = 1

#: EuroSAT's band order in the files: B8A is the 13th band, not the 9th.
EUROSAT_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07",
    "B08", "B09", "B10", "B11", "B12", "B8A",
)  # fmt: skip

_GAIN_4000 = {"type": "gain", "max": 4000}

_TRUE = ["B04", "B03", "B02"]

#: Built-in products; the composites use the reference gain (/4000) unless a spec says otherwise.
PRESETS: dict[str, dict[str, Any]] = {
    "truecolor": {"bands": _TRUE, "stretch": _GAIN_4000},
    "falsecolor": {"bands": ["B08", "B04", "B03"], "stretch": _GAIN_4000},
    "swir": {"bands": ["B12", "B8A", "B04"], "stretch": _GAIN_4000},
    "agriculture": {"bands": ["B11", "B08", "B02"], "stretch": _GAIN_4000},
    # Sentinel Hub's "Optimized L2A true color" (docs/products.md)
    "truecolor_optimized": {"bands": _TRUE, "stretch": {"type": "optimized"}},
    # histogram equalization and CLAHE (scikit-image), per image
    "truecolor_equalized": {"bands": _TRUE, "stretch": {"type": "equalize"}},
    "truecolor_clahe": {"bands": _TRUE, "stretch": {"type": "clahe", "max": 4000}},
    # the RGB images of the EuroSAT dataset: 0-2750 -> 1-255, JPEG
    "eurosat_rgb_jpeg": {
        "bands": _TRUE,
        "stretch": {"type": "range", "min": 0, "max": 2750, "out_min": 1},
        "format": "jpeg",
        "quality": 95,
    },
    # normalized differences, one value per pixel, drawn with a colour map over [-1, 1]
    "ndvi": {"expression": "(B08 - B04) / (B08 + B04)", "colormap": "RdYlGn"},
    "ndwi": {"expression": "(B03 - B08) / (B03 + B08)", "colormap": "colorbrewer:RdBu"},
    "ndmi": {"expression": "(B8A - B11) / (B8A + B11)", "colormap": "colorbrewer:RdBu"},
    "nbr": {"expression": "(B8A - B12) / (B8A + B12)", "colormap": "RdYlGn"},
}

STRETCHES = ("gain", "range", "percentile", "equalize", "clahe", "optimized")
FORMATS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
#: GDAL resampling methods for bands of other resolutions and for quicklooks
RESAMPLING = ("nearest", "bilinear", "cubic", "average")
PRODUCT_KEYS = (
    "preset", "bands", "band_map", "stretch", "bit_depth", "nodata", "world_file",
    "expression", "colormap", "range", "format", "quality", "offset", "scale",
)  # fmt: skip
STRETCH_KEYS = ("type", "min", "max", "out_min", "low", "high", "scope", "sample", "gamma", "scale")

#: The one place of a product's defaults: the key in the config (``stretch.<key>`` for those of
#: a stretch) -> the Product field it fills and its default.
DEFAULTS: dict[str, tuple[str, Any]] = {
    "stretch.type": ("stretch", "gain"),
    "stretch.min": ("min", 0.0),
    "stretch.max": ("max", 4000.0),
    "stretch.out_min": ("out_min", 0),
    "stretch.low": ("low", 2.0),
    "stretch.high": ("high", 98.0),
    "stretch.scope": ("scope", "image"),
    "stretch.sample": ("sample", 500),
    "stretch.gamma": ("gamma", 1.0),
    "stretch.scale": ("scale", 10000.0),
    "bit_depth": ("bit_depth", 8),
    "range": ("range", (-1.0, 1.0)),
    "format": ("format", "png"),
    "quality": ("quality", 90),
    "png_compression": ("png_compression", "huffman"),
    "resampling": ("resampling", "bilinear"),
}


#: Product fields renamed to the config's keys in 0.6.0 -> their new names. A product's digest
#: is computed under the old names, so that earlier images stay up to date.
OLD_FIELD_NAMES = {"vmin": "min", "vmax": "max", "value_range": "range"}


def default(key: str) -> Any:
    """The default of config key ``key`` (:data:`DEFAULTS`)."""
    return DEFAULTS[key][1]

#: Settings added after 0.4.0 and their defaults: they count in a product's digest only when
#: set, so that the images of earlier versions stay up to date.
LATER_DEFAULTS: dict[str, Any] = {
    "max_size": None,
    "resampling": "bilinear",
    "expression": None,
    "colormap": None,
    "value_range": [-1.0, 1.0],
    "format": "png",
    "quality": 90,
    "scale": 10000.0,
    "radiometry": [],
}


@dataclass(frozen=True)
class Product:
    """One rendering of the input images: three bands as red, green and blue, or one value per
    pixel from ``expression`` drawn with a colour map."""

    name: str
    bands: tuple[str, ...]
    band_map: tuple[str, ...] = EUROSAT_BANDS
    stretch: str = default("stretch.type")
    min: float = default("stretch.min")
    max: float = default("stretch.max")
    out_min: int = default("stretch.out_min")
    low: float = default("stretch.low")
    high: float = default("stretch.high")
    scope: str = default("stretch.scope")
    sample: int = default("stretch.sample")
    gamma: float = default("stretch.gamma")
    bit_depth: int = default("bit_depth")
    nodata: float | str | None = None
    world_file: bool = False
    png_compression: str = default("png_compression")
    #: longest side of the output in px (a quicklook through GDAL's overviews), None: full size
    max_size: int | None = None
    #: how GDAL resamples bands of other resolutions and quicklooks (RESAMPLING)
    resampling: str = default("resampling")
    #: band arithmetic (msrgb.config.expression); ``bands`` are then the bands it uses
    expression: str | None = None
    #: colour map of an expression product (any name the cmap library knows; None: gray)
    colormap: str | None = None
    #: the expression values drawn as the first and the last colour of the map
    range: tuple[float, float] = default("range")
    #: image format: png, jpeg, webp
    format: str = default("format")
    #: JPEG and WebP quality, 1-100
    quality: int = default("quality")
    #: optimized stretch: the input value of reflectance 1 (Sentinel-2 L1C/L2A: 10000)
    scale: float = default("stretch.scale")
    #: per-band (min, max) of a dataset-wide percentile stretch, filled in from the stats file
    limits: tuple[tuple[float, float], ...] | None = None
    #: (band, scale, offset) from the ``offset``/``scale`` settings, for the product's bands
    #: whose files declare none: value = DN * scale + offset (msrgb.radiometry.scaling)
    radiometry: tuple[tuple[str, float, float], ...] = ()
    indices: tuple[int, int, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.expression is None and len(self.bands) != 3:
            raise self._fail("bands", f"needs exactly 3 names (red, green, blue), got {list(self.bands)}")
        if self.expression is not None:
            self._check_expression()
        unknown = [b for b in self.bands if b not in self.band_map]
        if unknown:
            raise self._fail("bands", f"has unknown band name(s) {unknown}; the band map has {list(self.band_map)}")
        if len(set(self.band_map)) != len(self.band_map):
            raise self._fail("band_map", f"names a band twice: {list(self.band_map)}")
        self._check_stretch()
        self._check_output()
        object.__setattr__(self, "indices", tuple(self.band_map.index(b) for b in self.bands))

    def _fail(self, key: str, problem: str) -> ProductError:
        return ProductError(f"product {self.name!r}: {key!r} {problem}")

    def _check_expression(self) -> None:
        from msrgb.config.expression import parse

        try:
            used = parse(self.expression or "", self.band_map).bands
        except ExpressionError as exc:
            raise self._fail("expression", str(exc)) from None
        if tuple(self.bands) != used:
            raise self._fail("bands", f"must be the bands of 'expression' {list(used)}")
        if not self.range[0] < self.range[1]:
            raise self._fail("range", f"must be [low, high] with low < high, got {list(self.range)}")
        if self.bit_depth != 8:
            raise self._fail("bit_depth", "must be 8 for an expression drawn with a colour map")
        check_colormap(self.name, self.colormap_name)

    def _check_stretch(self) -> None:
        fail = self._fail
        if self.stretch not in STRETCHES:
            raise fail("stretch.type", f"{self.stretch!r} is not one of {list(STRETCHES)}")
        if self.stretch == "gain" and not self.max > 0:
            raise fail("stretch.max", f"must be > 0, got {self.max}")
        if self.stretch == "range" and not self.min < self.max:
            raise fail("stretch.min", f"must be below 'stretch.max', got {self.min} >= {self.max}")
        if self.stretch in ("equalize", "percentile") and self.scope not in ("image", "dataset"):
            raise fail("stretch.scope", f"must be 'image' or 'dataset', got {self.scope!r}")
        if self.stretch in ("clahe", "optimized", "equalize") and self.bit_depth != 8:
            raise fail("bit_depth", f"must be 8 for a {self.stretch!r} stretch")
        if self.stretch == "optimized" and not self.scale > 0:
            raise fail("stretch.scale", f"must be > 0, got {self.scale}")
        if self.stretch == "percentile":
            for key, value in (("low", self.low), ("high", self.high)):
                if not 0 <= value <= 100:
                    raise fail(f"stretch.{key}", f"must be a percentile from 0 to 100, got {value}")
            if not self.low < self.high:
                raise fail("stretch.low", f"must be below 'stretch.high', got {self.low} >= {self.high}")
            if self.sample < 1:
                raise fail("stretch.sample", f"must be at least 1, got {self.sample}")
        if not (self.gamma > 0 and math.isfinite(self.gamma)):
            raise fail("stretch.gamma", f"must be > 0, got {self.gamma}")

    def _check_output(self) -> None:
        fail = self._fail
        if self.format not in FORMATS:
            raise fail("format", f"{self.format!r} is not one of {list(FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise fail("quality", f"must be from 1 to 100, got {self.quality}")
        if self.bit_depth not in (8, 16):
            raise fail("bit_depth", f"must be 8 or 16, got {self.bit_depth}")
        if self.format != "png" and self.bit_depth != 8:
            raise fail("bit_depth", f"16-bit images need format png, not {self.format}")
        if not 0 <= self.out_min < self.top:
            raise fail("stretch.out_min", f"must be from 0 to {self.top - 1}, got {self.out_min}")
        if self.max_size is not None and self.max_size < 1:
            raise fail("max_size", f"must be at least 1, got {self.max_size}")
        if self.resampling not in RESAMPLING:
            raise fail("resampling", f"{self.resampling!r} is not one of {list(RESAMPLING)}")
        if isinstance(self.nodata, str) and self.nodata != "file":
            raise fail("nodata", f"must be a number, 'file' or absent, got {self.nodata!r}")
        for band, scale, offset in self.radiometry:
            if band not in self.bands:
                raise fail("offset", f"names band {band}, which the product does not use")
            if not (math.isfinite(scale) and scale > 0):
                raise fail("scale", f"must be a number above 0, got {scale}")
            if not math.isfinite(offset):
                raise fail("offset", f"must be a finite number, got {offset}")

    @property
    def top(self) -> int:
        """The largest output value: 255 (8-bit) or 65535 (16-bit)."""
        return 255 if self.bit_depth == 8 else 65535

    @property
    def dataset_stretch(self) -> bool:
        """True if every image shares limits computed once from a sample of the dataset."""
        return self.stretch in ("percentile", "equalize") and self.scope == "dataset" and self.expression is None

    @property
    def suffix(self) -> str:
        """The file suffix of the product's images (.png, .jpg, .webp)."""
        return FORMATS[self.format]

    @property
    def is_index(self) -> bool:
        """One value per pixel (an expression) drawn with a colour map."""
        return self.expression is not None

    @property
    def colormap_name(self) -> str:
        """The colour map an expression product is drawn with: ``colormap``, or gray."""
        return self.colormap or "gray"

    @property
    def has_alpha(self) -> bool:
        """Images with an alpha channel: a nodata value, or an expression's undefined values
        (JPEG has no alpha: those pixels are black there)."""
        return (self.nodata is not None or self.is_index) and self.format != "jpeg"

    @property
    def needs_georef(self) -> bool:
        return self.world_file

    def configured_scaling(self) -> dict[str, Scaling]:
        """Band name -> the scaling the ``offset``/``scale`` settings give it."""
        return {band: Scaling(scale, offset, "config") for band, scale, offset in self.radiometry}

    def digest(self) -> str:
        """A short hash of everything that determines this product's output files."""
        payload = {"algorithm": ALGORITHM_VERSION, **self.to_dict()}
        payload.pop("name")
        for old, new in OLD_FIELD_NAMES.items():
            payload[old] = payload.pop(new)
        for key, default in LATER_DEFAULTS.items():
            if payload[key] == default:
                del payload[key]
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def with_limits(self, limits: Sequence[Sequence[float]]) -> Product:
        """This product with the dataset-wide per-band (min, max) filled in (for a dataset-wide
        equalization: per band, the sample's quantiles)."""
        return replace(self, limits=tuple(tuple(float(v) for v in band) for band in limits))  # type: ignore[misc]

    def fixed_limits(self) -> list[tuple[float, float]] | None:
        """Per-band (min, max) when they do not depend on the image, else None."""
        if self.stretch == "gain":
            return [(0.0, self.max)] * 3
        if self.stretch == "range":
            return [(self.min, self.max)] * 3
        if self.dataset_stretch and self.stretch == "percentile":
            if self.limits is None:
                raise ProductError(f"product {self.name!r}: dataset limits not loaded")
            return list(self.limits)  # type: ignore[arg-type]
        return None

    def lut(self, band: int = 0) -> np.ndarray:
        """Lookup table for every uint16 value of channel ``band``, equal value for value to
        :func:`stretch` evaluated in float64 (for the reference product:
        ``(255 * (v / 4000).clip(0, 1)).astype(uint8)``)."""
        limits = self.fixed_limits()
        assert limits is not None, "per-image stretches have no lookup table"
        lo, hi = limits[band]
        import numpy as np

        return stretch(np.arange(65536, dtype=np.uint16), lo, hi, self)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("indices")
        for key in ("bands", "band_map", "range"):
            d[key] = list(d[key])
        d["radiometry"] = [list(x) for x in d["radiometry"]]
        if d["limits"] is not None:
            d["limits"] = [list(x) for x in d["limits"]]
        return d


def stretch(values: np.ndarray, lo: float, hi: float, product: Product) -> np.ndarray:
    """Map ``values`` with limits ``lo``/``hi`` to the product's output type, in float64."""
    if lo == 0:
        t = (values / hi).clip(0, 1)  # exactly the reference's arithmetic
    else:
        t = ((values - lo) / (hi - lo)).clip(0, 1)
    if product.gamma != 1:
        t = t ** (1 / product.gamma)
    import numpy as np

    dtype = np.uint8 if product.bit_depth == 8 else np.uint16
    if product.out_min == 0:
        return (product.top * t).astype(dtype)
    return (product.out_min + (product.top - product.out_min) * t).astype(dtype)


@functools.lru_cache(maxsize=64)
def colormap_lut(name: str) -> np.ndarray:
    """The 256 colours (uint8 RGB, read-only) of the colour map ``name``, from the cmap library
    (which holds matplotlib's, ColorBrewer's, cmocean's and other maps). Where a short name
    exists in several collections, the first is taken without a warning."""
    import warnings

    import numpy as np
    from cmap import Colormap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rgba = Colormap(name).lut(256)
    lut = np.rint(np.asarray(rgba)[:, :3] * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def check_colormap(product: str, name: str) -> None:
    """Fail unless the cmap library knows the colour map ``name``."""
    try:
        colormap_lut(name)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProductError(
            f"product {product!r}: 'colormap' {name!r} is unknown ({exc}); names such as gray, "
            "viridis, RdYlGn, RdBu, magma (docs/products.md)"
        ) from None


def _number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProductError(f"product {name!r}: {key!r} must be a number, got {value!r}")
    return float(value)


def parse_products(
    spec: Sequence[str] | Mapping[str, Mapping[str, Any] | None],
    band_map: Sequence[str] = EUROSAT_BANDS,
    png_compression: str = default("png_compression"),
    max_size: int | None = None,
    resampling: str = default("resampling"),
    offset: float | Mapping[str, float] | None = None,
    scale: float | Mapping[str, float] | None = None,
) -> list[Product]:
    """Turn the ``products`` config value (a list of preset names or a mapping of name to
    specification) into products, with errors that name the product and the key. ``offset``
    and ``scale``: the top-level radiometric settings, which a product's own override. The
    schema (config/schema.json) has checked the types; the values are checked by
    :class:`Product`."""
    products = []
    for name, body in _items(spec):
        body = _with_preset(name, body)
        body["bands"] = _bands_of(name, body, band_map)
        stretch_spec = body["stretch"]
        fields: dict[str, Any] = {
            field_name: stretch_spec.get(key.partition(".")[2], value)
            for key, (field_name, value) in DEFAULTS.items()
            if key.startswith("stretch.")
        }
        for key in ("stretch.min", "stretch.max", "stretch.low", "stretch.high", "stretch.gamma", "stretch.scale"):
            field_name = DEFAULTS[key][0]
            fields[field_name] = _number(name, key, fields[field_name])
        for key in ("stretch.out_min", "stretch.sample"):
            fields[DEFAULTS[key][0]] = int(_number(name, key, fields[DEFAULTS[key][0]]))
        if fields["stretch"] == "range" and ("min" not in stretch_spec or "max" not in stretch_spec):
            raise ProductError(f"product {name!r}: a 'range' stretch needs 'stretch.min' and 'stretch.max'")
        products.append(
            Product(
                name=name,
                bands=tuple(body["bands"]),
                band_map=tuple(body.get("band_map") or band_map),
                bit_depth=int(_number(name, "bit_depth", body.get("bit_depth", default("bit_depth")))),
                nodata=_nodata(name, body.get("nodata")),
                world_file=bool(body.get("world_file", False)),
                png_compression=png_compression,
                max_size=max_size,
                resampling=resampling,
                expression=body.get("expression"),
                colormap=body.get("colormap"),
                range=_value_range(name, body.get("range", default("range"))),
                format=str(body.get("format", default("format"))),
                quality=int(_number(name, "quality", body.get("quality", default("quality")))),
                radiometry=_radiometry(name, body.get("offset", offset), body.get("scale", scale), body),
                **fields,
            )
        )
    if not products:
        raise ProductError("'products' is empty: name at least one product")
    return products


def _items(spec: Sequence[str] | Mapping[str, Mapping[str, Any] | None]) -> list[tuple[str, Any]]:
    """(name, specification) of each product: a list names presets."""
    if isinstance(spec, Mapping):
        return list(spec.items())
    for name in spec:
        if name not in PRESETS:
            raise ProductError(f"unknown product preset {name!r}; presets are {sorted(PRESETS)}")
    return [(name, PRESETS[name]) for name in spec]


def _with_preset(name: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The specification merged over its preset (``preset``, or the preset of the same name); a
    stretch of another type than the preset's drops the preset's stretch numbers."""
    body = dict(given or {})
    unknown = sorted(set(body) - set(PRODUCT_KEYS))
    if unknown:
        raise ProductError(f"product {name!r}: unknown key(s) {unknown}; known: {list(PRODUCT_KEYS)}")
    preset = body.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ProductError(f"product {name!r}: unknown 'preset' {preset!r}; presets are {sorted(PRESETS)}")
    base = PRESETS[preset] if preset is not None else PRESETS.get(name, {})
    stretch_spec = {**base.get("stretch", {} if "expression" in base or "expression" in body else _GAIN_4000)}
    if "stretch" in body:
        given_stretch = dict(body["stretch"] or {})
        if "type" in given_stretch and given_stretch["type"] != stretch_spec.get("type"):
            stretch_spec = {}  # another stretch: the preset's numbers do not apply
        stretch_spec.update(given_stretch)
    unknown = sorted(set(stretch_spec) - set(STRETCH_KEYS))
    if unknown:
        raise ProductError(f"product {name!r}: unknown 'stretch' key(s) {unknown}; known: {list(STRETCH_KEYS)}")
    return {**base, **body, "stretch": stretch_spec}


def _bands_of(name: str, body: Mapping[str, Any], band_map: Sequence[str]) -> list[str]:
    """The bands a product reads: its ``bands``, or those its expression uses."""
    expression = body.get("expression")
    if expression is not None:
        from msrgb.config.expression import parse

        if not isinstance(expression, str):
            raise ProductError(f"product {name!r}: 'expression' must be text, got {expression!r}")
        try:
            return list(parse(expression, body.get("band_map") or band_map).bands)
        except ExpressionError as exc:
            raise ProductError(f"product {name!r}: 'expression' {exc}") from None
    if "bands" not in body:
        raise ProductError(f"product {name!r}: 'bands' is missing")
    return list(body["bands"])


def _nodata(name: str, nodata: Any) -> float | str | None:
    return nodata if nodata is None or nodata == "file" else _number(name, "nodata", nodata)


def _value_range(name: str, value_range: Any) -> tuple[float, float]:
    if not isinstance(value_range, (list, tuple)) or len(value_range) != 2:
        raise ProductError(f"product {name!r}: 'range' must be [low, high], got {value_range!r}")
    return _number(name, "range", value_range[0]), _number(name, "range", value_range[1])


def _radiometry(
    name: str, offset: Any, scale: Any, body: Mapping[str, Any]
) -> tuple[tuple[str, float, float], ...]:
    """The product's (band, scale, offset) from the ``offset``/``scale`` settings: a number
    for every band, or band name -> number."""
    band_map = body.get("band_map") or EUROSAT_BANDS
    for key, value in (("offset", offset), ("scale", scale)):
        items = value.items() if isinstance(value, Mapping) else [] if value is None else [("", value)]
        for band, number in items:
            where = f"{key}.{band}" if band else key
            _number(name, where, number)
            if band and band not in band_map:
                raise ProductError(
                    f"product {name!r}: {where!r} names an unknown band; bands are {list(band_map)}"
                )
    return settings_for(offset, scale, body["bands"])


def products_from_dicts(dicts: Sequence[Mapping[str, Any]]) -> list[Product]:
    """Rebuild products from :meth:`Product.to_dict` output (used to pass them to jobs)."""
    products = []
    for d in dicts:
        d = dict(d)
        d["bands"] = tuple(d["bands"])
        d["band_map"] = tuple(d["band_map"])
        for old, new in OLD_FIELD_NAMES.items():  # products.json of versions before 0.6.0
            if old in d:
                d[new] = d.pop(old)
        if "range" in d:
            d["range"] = tuple(d["range"])
        if d.get("limits") is not None:
            d["limits"] = tuple(tuple(x) for x in d["limits"])
        d["radiometry"] = tuple(tuple(x) for x in d.get("radiometry", ()))
        products.append(Product(**d))
    return products


def check_band_count(products: Sequence[Product], count: int, example: str) -> None:
    """Fail at start-up when a product needs a band the input files do not have (``example``
    is the file whose ``count`` bands were looked at)."""
    for p in products:
        for band, index in zip(p.bands, p.indices):
            if index >= count:
                raise ProductError(
                    f"product {p.name!r}: 'bands' names {band}, band {index + 1} of the band "
                    f"map, but {example} has only {count} band(s); fix 'bands' or 'band_map' "
                    f"(the file's bands in order, such as band_map: [B04, B03, B02] for an RGB "
                    "file; docs/products.md)"
                )


__all__ = [
    "ALGORITHM_VERSION",
    "EUROSAT_BANDS",
    "PRESETS",
    "Product",
    "ProductError",
    "check_band_count",
    "parse_products",
    "products_from_dicts",
    "stretch",
]
