"""Image files from rendered arrays: the one entry point is :func:`encode_image`. PNGs come from
msrgb's own encoder (msrgb.render.pngenc: numpy + zlib, byte for byte Pillow's on EuroSAT tiles, and
faster), JPEG and WebP from Pillow; each file carries its recipe (msrgb.render.recipe) when given one.
A large image's PNG is encoded block by block with :class:`msrgb.render.pngenc.PngStream`."""

from __future__ import annotations

import io

import numpy as np

from msrgb.config.products import Product
from msrgb.render.pngenc import PNG_COMPRESSION, encode_png
from msrgb.render.recipe import RECIPE_KEY, xmp_packet


def encode_image(image: np.ndarray, product: Product, recipe: str | None = None) -> bytes:
    """The bytes of the product's image file (its ``format`` and ``png_compression``), with
    ``recipe`` inside: a PNG iTXt chunk ``msrgb``, a JPEG comment, WebP XMP."""
    if product.format == "png":
        level, strategy = PNG_COMPRESSION[product.png_compression]
        return encode_png(image, level, strategy, {RECIPE_KEY: recipe} if recipe is not None else None)
    from PIL import Image

    out = io.BytesIO()
    picture = Image.fromarray(image)
    if product.format == "jpeg":
        comment = recipe.encode("utf-8") if recipe is not None else b""
        picture.save(out, format="JPEG", quality=product.quality, comment=comment)
    else:
        xmp = xmp_packet(recipe) if recipe is not None else b""
        picture.save(out, format="WEBP", quality=product.quality, xmp=xmp, method=4)
    return out.getvalue()
