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

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from msrgb.config.colormaps import check_colormap
from msrgb.config.presets import (
    EUROSAT_BANDS,
    FORMATS,
    LATER_DEFAULTS,
    OLD_FIELD_NAMES,
    PRESETS,
    RESAMPLING,
    STRETCHES,
    default,
)
from msrgb.errors import ExpressionError, ProductError
from msrgb.radiometry.scaling import Scaling

if TYPE_CHECKING:  # numpy is loaded where arrays are made: planning a run does without it
    pass

#: Version of the pixel algorithm. Bump it when a change alters the PNGs a setting produces,
#: so that existing outputs are rebuilt.
ALGORITHM_VERSION = 1


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
    #: how a stretched value becomes an integer: truncate (as the reference formula's astype)
    #: or nearest (as GDAL's -scale)
    rounding: str = default("stretch.rounding")
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
        if self.rounding not in ("truncate", "nearest"):
            raise fail("stretch.rounding", f"must be 'truncate' or 'nearest', got {self.rounding!r}")
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("indices")
        for key in ("bands", "band_map", "range"):
            d[key] = list(d[key])
        d["radiometry"] = [list(x) for x in d["radiometry"]]
        if d["limits"] is not None:
            d["limits"] = [list(x) for x in d["limits"]]
        return d


__all__ = [
    "ALGORITHM_VERSION",
    "EUROSAT_BANDS",
    "PRESETS",
    "Product",
    "ProductError",
]
