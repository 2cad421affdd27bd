"""Rendering: the bands of a tile to the pixels of a product (stretch, gamma, no data)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from msrgb.products import Product, stretch
from msrgb.reader import Tile


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
    """The product's three bands of ``tile``, and which pixels hold no data."""
    stack = np.stack([tile.bands[i] for i in product.indices], axis=-1)
    nonfinite = None
    if stack.dtype.kind == "f":
        bad = ~np.isfinite(stack)
        if bad.any():
            nonfinite = bad.any(axis=-1)
            stack = np.where(bad, 0, stack)  # stretched without warnings, then drawn black
    nodata = tile.nodata if product.nodata == "file" else product.nodata
    invalid = None
    if product.nodata is not None:
        invalid = np.zeros(stack.shape[:2], dtype=bool)
        if nodata is not None and not np.isnan(nodata):
            invalid |= (stack == nodata).any(axis=-1)
        if nonfinite is not None:
            invalid |= nonfinite
    return Bands(stack, invalid, nonfinite)


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
        for p in products:
            limits = p.fixed_limits()
            if limits is not None:
                tables: dict[tuple[float, float], np.ndarray] = {}
                self._luts[p.name] = [
                    tables.setdefault(lim, p.lut(c)) for c, lim in enumerate(limits)
                ]

    def render(
        self, tile: Tile, product: Product, limits: Sequence[tuple[float, float]] | None = None
    ) -> np.ndarray:
        """The (rows, cols, 3) image of ``product`` (uint8 or uint16), or (rows, cols, 4) with
        an alpha channel when the product has a nodata value. ``limits``: the per-band limits
        of a per-image percentile stretch, when ``tile`` is only part of the image."""
        bands = product_bands(tile, product)
        stack = bands.stack
        luts = self._luts.get(product.name)
        if luts is not None and stack.dtype in (np.uint8, np.uint16):
            if luts[0] is luts[1] is luts[2]:
                rgb = luts[0][stack]
            else:
                rgb = np.stack([luts[c][stack[..., c]] for c in range(3)], axis=-1)
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
        if product.nodata is None:
            return rgb
        alpha = np.full(rgb.shape[:2], product.top, dtype=rgb.dtype)
        if bands.invalid is not None:
            alpha[bands.invalid] = 0
        return np.concatenate([rgb, alpha[..., None]], axis=-1)


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
