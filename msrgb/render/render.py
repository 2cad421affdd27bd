"""Rendering: the bands of a tile to the pixels of a product (stretch, gamma, no data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from msrgb.config.colormaps import colormap_lut
from msrgb.config.expression import Expression, parse
from msrgb.config.products import Product
from msrgb.radiometry.decide import Candidates, decide, effective
from msrgb.radiometry.scaling import Scaling
from msrgb.render.stretch import product_lut, stretch

#: nothing known of a band's scaling but the product's settings
NOTHING_KNOWN = Candidates()

if TYPE_CHECKING:  # the reader loads GDAL, which the summary job's use of opaque_rgb does not need
    from msrgb.tile import Tile


@dataclass
class Bands:
    """The (rows, cols, 3) stack of a product's bands with its masks."""

    stack: np.ndarray
    #: pixels to draw transparent (the product has a nodata value): a band equals it, or a
    #: float band is NaN or infinite; None when the product has no nodata value
    invalid: np.ndarray | None
    #: float pixels with a NaN or infinite band (drawn black, and transparent with nodata)
    nonfinite: np.ndarray | None

    @property
    def excluded(self) -> np.ndarray | None:
        """Pixels left out of statistics such as percentiles: no data, or not finite."""
        if self.invalid is None or self.nonfinite is None:
            return self.nonfinite if self.invalid is None else self.invalid
        return self.invalid | self.nonfinite


def product_bands(tile: Tile, product: Product) -> Bands:
    """The product's bands of ``tile`` (three, or those of its expression), on the 0-10000
    reflectance scale where a radiometric offset or scale applies (:func:`band_scalings`), and
    which pixels hold no data (compared with the stored values, before any offset)."""
    planes = [tile.bands[i] for i in product.indices]
    # filled band by band: np.stack's checks cost more than the copies on a small tile
    stack = np.empty((*planes[0].shape, len(planes)), dtype=np.result_type(*planes))
    for k, plane in enumerate(planes):
        stack[..., k] = plane
    invalid = None
    if product.nodata is not None:
        nodata = tile.nodata if product.nodata == "file" else product.nodata
        invalid = np.zeros(stack.shape[:2], dtype=bool)
        if nodata is not None and not np.isnan(nodata):
            invalid |= (stack == nodata).any(axis=-1)
    scalings = pixel_scalings(tile, product)
    if scalings is not None:
        stack = np.stack(
            [s.apply(stack[..., k]) if s else stack[..., k].astype(np.float64) for k, s in enumerate(scalings)],
            axis=-1,
        )
    nonfinite = None
    if stack.dtype.kind == "f":
        bad = ~np.isfinite(stack)
        if bad.any():
            nonfinite = bad.any(axis=-1)
            stack = np.where(bad, 0, stack)  # stretched without warnings, then drawn black
    if invalid is not None and nonfinite is not None:
        invalid |= nonfinite
    return Bands(stack, invalid, nonfinite)


def band_scalings(tile: Tile, product: Product) -> list[Scaling | None] | None:
    """The radiometric scaling of each of the product's bands (:func:`msrgb.radiometry.decide.decide`:
    what the input says, else the product's ``offset``/``scale`` setting), as the recipe
    records it; None when no band has one (the values are used as stored)."""
    if not tile.scaling and not product.radiometry:
        return None
    configured = product.configured_scaling()
    found = [
        decide(replace(tile.scaling.get(i, NOTHING_KNOWN), configured=configured.get(b)))
        for i, b in zip(product.indices, product.bands)
    ]
    return found if any(s is not None for s in found) else None


def pixel_scalings(tile: Tile, product: Product) -> list[Scaling | None] | None:
    """:func:`band_scalings` where they change the values; None when none does (the bands are
    then rendered as stored, through the lookup tables)."""
    found = band_scalings(tile, product)
    if found is None:
        return None
    used = [effective(s) for s in found]
    return used if any(s is not None for s in used) else None


def band_percentiles(
    band: np.ndarray, exclude: np.ndarray | None, product: Product
) -> tuple[float, float]:
    """The (low, high) percentiles of one band of an image, without the ``exclude`` pixels."""
    values = band if exclude is None else band[~exclude]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [product.low, product.high])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def image_percentiles(
    stack: np.ndarray, exclude: np.ndarray | None, product: Product
) -> list[tuple[float, float]]:
    """Per-band (low, high) percentiles of one image, without the ``exclude`` pixels."""
    return [band_percentiles(stack[..., c], exclude, product) for c in range(3)]


class Renderer:
    """Renders tiles for a fixed list of products, with one lookup table per product and
    channel for the stretches whose limits do not depend on the image. Thread-safe. Products
    with a dataset-wide stretch must come with their limits (Product.with_limits)."""

    def __init__(self, products: Sequence[Product]):
        self._luts: dict[str, list[np.ndarray]] = {}
        self._colormaps: dict[str, np.ndarray] = {}
        self._expressions: dict[str, Expression] = {}
        for p in products:
            if p.is_index:
                assert p.expression is not None
                self._colormaps[p.name] = colormap_lut(p.colormap_name)
                self._expressions[p.name] = parse(p.expression, p.band_map)
                continue
            if p.stretch == "optimized":
                self._luts[p.name] = [optimized_channel_lut(p)]
                continue
            if p.stretch == "equalize" and p.dataset_stretch and p.limits is not None:
                self._luts[p.name] = [equalize_lut(q) for q in p.limits]
                continue
            limits = p.fixed_limits()
            if limits is not None:
                tables: dict[tuple[float, float], np.ndarray] = {}
                self._luts[p.name] = [
                    tables.setdefault(lim, product_lut(p, c)) for c, lim in enumerate(limits)
                ]

    def render(
        self, tile: Tile, product: Product, limits: Sequence[tuple[float, float]] | None = None
    ) -> np.ndarray:
        """The (rows, cols, 3) image of ``product`` (uint8 or uint16), or (rows, cols, 4) with
        an alpha channel when the product has a nodata value. ``limits``: the per-band limits
        of a per-image percentile stretch, when ``tile`` is only part of the image."""
        if product.is_index:
            return self._render_index(tile, product)
        bands = product_bands(tile, product)
        stack = bands.stack
        luts = self._luts.get(product.name)
        if product.stretch == "optimized":
            rgb = optimized(stack, product, luts[0] if luts and stack.dtype in (np.uint8, np.uint16) else None)
        elif product.stretch == "equalize" and not product.dataset_stretch:
            rgb = equalized(stack, bands.excluded)
        elif product.stretch == "equalize":
            if luts is not None and stack.dtype in (np.uint8, np.uint16):
                rgb = np.stack([luts[c][stack[..., c]] for c in range(3)], axis=-1)
            else:
                assert product.limits is not None, f"product {product.name!r}: dataset limits not loaded"
                rgb = np.stack([_quantile_map(stack[..., c], product.limits[c]) for c in range(3)], axis=-1)
        elif product.stretch == "clahe":
            rgb = clahe(stack, product)
        elif luts is not None and stack.dtype in (np.uint8, np.uint16):
            if luts[0] is luts[1] is luts[2]:
                rgb = np.take(luts[0], stack)  # faster than luts[0][stack], the same values
            else:
                rgb = np.stack([np.take(luts[c], stack[..., c]) for c in range(3)], axis=-1)
        else:
            limits = (
                product.fixed_limits() or limits or image_percentiles(stack, bands.excluded, product)
            )
            rgb = np.stack(
                [stretch(stack[..., c], lo, hi, product) for c, (lo, hi) in enumerate(limits)],
                axis=-1,
            )
        if bands.nonfinite is not None:
            rgb[bands.nonfinite] = 0
        return with_alpha(rgb, bands.invalid, product)


    def _render_index(self, tile: Tile, product: Product) -> np.ndarray:
        """The expression's value of every pixel through the colour map: ``range`` low
        to the first colour, high to the last, linearly (rounded to the nearest of 256);
        undefined values (a division by zero, NaN input, no data) transparent, or black in a
        JPEG."""
        bands = product_bands(tile, product)
        stack = bands.stack.astype(np.float64)
        values = self._expressions[product.name].evaluate({b: stack[..., k] for k, b in enumerate(product.bands)})
        invalid = ~np.isfinite(values)
        if bands.excluded is not None:  # no data, or a band not finite
            invalid |= bands.excluded
        lo, hi = product.range
        t = np.where(invalid, 0.0, (values - lo) / (hi - lo)).clip(0, 1)
        rgb = self._colormaps[product.name][(t * 255 + 0.5).astype(np.intp)]
        rgb[invalid] = 0
        return with_alpha(rgb, invalid, product)


def with_alpha(rgb: np.ndarray, invalid: np.ndarray | None, product: Product) -> np.ndarray:
    """``rgb`` with the product's alpha channel (opaque, transparent at the ``invalid``
    pixels); for a product without one (a JPEG) ``rgb`` with those pixels black."""
    if not product.has_alpha:
        if invalid is not None:
            rgb[invalid] = 0
        return rgb
    alpha = np.full(rgb.shape[:2], product.top, dtype=rgb.dtype)
    if invalid is not None:
        alpha[invalid] = 0
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


#: Sentinel Hub's "Optimized L2A true color" (custom-scripts, sentinel-2/l2a_optimized):
#: highlight compression up to reflectance 3, mid-tones around 0.13, gamma 1.8, saturation 1.2.
OPT_MAX_R, OPT_MID_R, OPT_SAT, OPT_GAMMA, OPT_G_OFF = 3.0, 0.13, 1.2, 1.8, 0.01


def _optimized_adjust(reflectance: np.ndarray) -> np.ndarray:
    """Contrast with highlight compression, then the offset gamma (sAdj of the script)."""
    tx, ty, max_c = OPT_MID_R, 1.0, OPT_MAX_R
    ar = (reflectance / max_c).clip(0, 1)
    adjusted = ar * (ar * (tx / max_c + ty - 1) - ty) / (ar * (2 * tx / max_c - 1) - tx / max_c)
    g_off_pow = OPT_G_OFF**OPT_GAMMA
    g_off_range = (1 + OPT_G_OFF) ** OPT_GAMMA - g_off_pow
    return ((adjusted + OPT_G_OFF) ** OPT_GAMMA - g_off_pow) / g_off_range


def optimized_channel_lut(product: Product) -> np.ndarray:
    """sAdj of every uint16 value (reflectance = value / scale), as float64."""
    return _optimized_adjust(np.arange(65536, dtype=np.float64) / product.scale)


def optimized(stack: np.ndarray, product: Product, lut: np.ndarray | None = None) -> np.ndarray:
    """The optimized natural colour of a (rows, cols, 3) stack of B04, B03, B02: per channel
    sAdj, then the saturation boost on all three, clipping to 0-1 and the sRGB transfer
    function; 8-bit output truncated like the other stretches."""
    lin = lut[stack] if lut is not None else _optimized_adjust(stack.astype(np.float64) / product.scale)
    avg = lin.mean(axis=-1, keepdims=True) * (1 - OPT_SAT)
    sat = (avg + lin * OPT_SAT).clip(0, 1)
    srgb = np.where(sat <= 0.0031308, 12.92 * sat, 1.055 * sat ** (1 / 2.4) - 0.055)
    return (255 * srgb.clip(0, 1)).astype(np.uint8)


def equalized(stack: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    """Histogram equalization of each band of one image (scikit-image's equalize_hist, 256
    bins over the band's values), leaving out the ``exclude`` pixels."""
    from skimage import exposure

    mask = None if exclude is None else ~exclude
    out = [exposure.equalize_hist(stack[..., c], nbins=256, mask=mask) for c in range(3)]
    return (255 * np.stack(out, axis=-1).clip(0, 1)).astype(np.uint8)


def equalize_lut(quantiles: Sequence[float]) -> np.ndarray:
    """A dataset-wide equalization as a lookup table for every uint16 value."""
    return _quantile_map(np.arange(65536, dtype=np.float64), quantiles)


def _quantile_map(values: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Each value to the share of the dataset sample at or below it (the sample's cumulative
    distribution, from its quantiles), as 8-bit."""
    q = np.asarray(quantiles, dtype=np.float64)
    t = np.interp(values.astype(np.float64), q, np.linspace(0, 1, q.size))
    return (255 * t).astype(np.uint8)


def clahe(stack: np.ndarray, product: Product) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (scikit-image's equalize_adapthist,
    clip limit 0.01) of each band after the gain stretch ``value / max`` to 0-1."""
    from skimage import exposure

    t = (stack.astype(np.float64) / product.max).clip(0, 1)
    out = [exposure.equalize_adapthist(t[..., c], clip_limit=0.01) for c in range(3)]
    return (255 * np.stack(out, axis=-1).clip(0, 1)).astype(np.uint8)


def clip_figures(image: np.ndarray, product: Product) -> tuple[float, ...]:
    """Share of pixels at 0 and at the top value in each colour channel (red, green, blue),
    then the mean value of the three channels; transparent pixels left out. For an index
    product the channels say nothing of its values: the shares are those of the pixels drawn in
    the colour map's first colour (the low end of ``range`` or below) and in its last (the high
    end or above), the same in all three places."""
    counter = ClipCounter(product)
    counter.add(image)
    return counter.figures()


def opaque_rgb(image: np.ndarray) -> np.ndarray:
    """The (pixels, 3) colours of an RGB or RGBA image, transparent pixels left out."""
    if image.shape[-1] == 4:
        return image[..., :3][image[..., 3] > 0]
    return image.reshape(-1, 3)


def _sum_dtype(values: np.ndarray) -> type:
    """The narrowest exact accumulator for the sum of ``values``: 32 bits for the 8-bit values of
    up to 16 million (half the time of 64 bits on a tile), else 64 bits or float."""
    if values.dtype.kind != "u":
        return np.float64
    return np.uint32 if values.dtype.itemsize == 1 and values.size < 1 << 24 else np.uint64


class ClipCounter:
    """:func:`clip_figures` of an image given a block of rows at a time."""

    def __init__(self, product: Product):
        self.top = product.top
        # an index product's ends: the colour map's first and last colours
        self.ends = colormap_lut(product.colormap_name)[[0, -1]] if product.is_index else None
        self.n = 0
        self.low = [0, 0, 0]  # pixels at the low end, per channel
        self.high = [0, 0, 0]
        self.total = 0.0

    def add(self, block: np.ndarray) -> None:
        rgb = opaque_rgb(block)
        self.n += rgb.shape[0]
        if self.ends is not None:
            for tally, colour in ((self.low, self.ends[0]), (self.high, self.ends[1])):
                same = rgb[:, 0] == colour[0]
                same &= rgb[:, 1] == colour[1]
                same &= rgb[:, 2] == colour[2]
                tally[:] = [t + int(np.count_nonzero(same)) for t in tally]
            self.total += float(rgb.sum(dtype=np.float64))
            return
        # one sum and, for the minimum and maximum, two scans of the whole image: most images
        # have no channel at either end, and only those that do are counted channel by channel
        self.total += float(rgb.sum(dtype=_sum_dtype(rgb)))
        if not rgb.size or (rgb.min() > 0 and rgb.max() < self.top):
            return
        for c in range(3):
            channel = rgb[:, c]
            self.low[c] += int(np.count_nonzero(channel == 0))
            self.high[c] += int(np.count_nonzero(channel == self.top))

    def figures(self) -> tuple[float, ...]:
        n = max(1, self.n)
        mean = self.total / (3 * self.n) if self.n else 0.0
        return (*(x / n for x in self.low), *(x / n for x in self.high), mean)


def float_range_note(tile: Tile, product: Product) -> str | None:
    """A warning when a float tile's values all lie in 0-1 but the product's stretch is set for
    values up to more than 1 (reflectance read with a stretch meant for DN 0-10000)."""
    limits = product.fixed_limits()
    if limits is None or max(hi for _, hi in limits) <= 1:
        return None
    values = [tile.bands[i] for i in product.indices]
    if values[0].dtype.kind != "f":
        return None
    finite = [v[np.isfinite(v)] for v in values]
    if not all(f.size for f in finite) or min(f.min() for f in finite) < 0:
        return None
    if max(f.max() for f in finite) > 1:
        return None
    top = max(hi for _, hi in limits)
    return (
        f"product {product.name!r}: float input values all lie in 0-1 (reflectance?), but "
        f"the stretch maps 0-{top:g} to the full brightness, so the images come out nearly "
        f"black; set the product's stretch for 0-1 values, e.g. stretch: {{type: gain, max: "
        "0.4}} (docs/products.md, Float inputs)"
    )
