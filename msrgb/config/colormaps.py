"""Colour maps of index products, from the cmap library (matplotlib's, ColorBrewer's, cmocean's
and other maps): the 256 colours of a map, and whether a name is known."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from msrgb.errors import ProductError

if TYPE_CHECKING:
    import numpy as np


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


def _norm(name: str) -> str:
    """A colour-map name as the cmap library's catalog keys it."""
    return name.lower().replace(" ", "_").replace("-", "_")


@functools.cache
def catalog_names() -> frozenset[str]:
    """The names in the cmap library's catalog (short and ``namespace:name``), read from its data
    files without importing it: it loads numpy, which planning does without."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.find_spec("cmap")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    names = set()
    for record in Path(spec.submodule_search_locations[0], "data").glob("*/record.json"):
        data = json.loads(record.read_text(encoding="utf-8"))
        for name in data.get("colormaps", {}):
            names |= {_norm(name), _norm(f"{data['namespace']}:{name}")}
    return frozenset(names)


def check_colormap(product: str, name: str) -> None:
    """Fail unless the cmap library knows the colour map ``name`` (a name of its catalog, maybe
    reversed with ``_r``, is known without loading the library)."""
    normed = _norm(name)
    if normed in catalog_names() or (normed.endswith("_r") and normed[:-2] in catalog_names()):
        return
    try:
        colormap_lut(name)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProductError(
            f"product {product!r}: 'colormap' {name!r} is unknown ({exc}); names such as gray, "
            "viridis, RdYlGn, RdBu, magma (docs/products.md)"
        ) from None
