"""The built-in products (``truecolor``, ``ndvi``, ...), the keys a product takes, and the one
table of their defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is loaded where arrays are made: planning a run does without it
    pass


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
    # the RGB images of the EuroSAT dataset, as gdal_translate made them:
    # -scale 0 2750 1 255 -b 4 -b 3 -b 2 -co QUALITY=100 (rounded to the nearest integer)
    "eurosat_rgb_jpeg": {
        "bands": _TRUE,
        "stretch": {"type": "range", "min": 0, "max": 2750, "out_min": 1, "rounding": "nearest"},
        "format": "jpeg",
        "quality": 100,
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


STRETCH_KEYS = ("type", "min", "max", "out_min", "low", "high", "scope", "sample", "gamma", "scale", "rounding")


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
    "stretch.rounding": ("rounding", "truncate"),
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
    "rounding": "truncate",
}
