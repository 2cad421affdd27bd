"""The stretch of a band to the output's values, in float64 and as a lookup table: exactly the
reference formula's arithmetic for a gain stretch (``(255 * (v / 4000).clip(0, 1)).astype(uint8)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from msrgb.config.products import Product

if TYPE_CHECKING:  # numpy is loaded where arrays are made: planning a run does without it
    import numpy as np


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
    value = product.top * t if product.out_min == 0 else product.out_min + (product.top - product.out_min) * t
    if product.rounding == "nearest":
        value = np.floor(value + 0.5)
    return value.astype(dtype)


def product_lut(product: Product, band: int = 0) -> np.ndarray:
    """Lookup table for every uint16 value of channel ``band``, equal value for value to
    :func:`stretch` evaluated in float64 (for the reference product:
    ``(255 * (v / 4000).clip(0, 1)).astype(uint8)``)."""
    limits = product.fixed_limits()
    assert limits is not None, "per-image stretches have no lookup table"
    lo, hi = limits[band]
    import numpy as np

    return stretch(np.arange(65536, dtype=np.uint16), lo, hi, product)
