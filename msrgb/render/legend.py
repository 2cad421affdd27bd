"""The legend of a product drawn with a colour map: the colour bar with its values, what it
shows, and how no data looks."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from msrgb.config.colormaps import colormap_lut
from msrgb.config.products import Product
from msrgb.render.sheets import font


def legend_image(product: Product, width: int = 384) -> Image.Image:
    """A white strip: the product's name and expression, the colour bar (low value of
    ``range`` at the left, high at the right) and five values under it."""
    assert product.is_index
    bar_w, margin = width - 32, 16
    img = Image.new("RGB", (width, 86), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    text_font, small = font(13), font(11)
    draw.text((margin, 4), f"{product.name}: {product.expression}", fill=(0, 0, 0), font=text_font)
    lut = colormap_lut(product.colormap_name)
    ramp = lut[np.linspace(0, 255, bar_w).round().astype(int)]
    img.paste(Image.fromarray(np.repeat(ramp[None], 18, axis=0)), (margin, 26))
    draw.rectangle([margin - 1, 25, margin + bar_w, 44], outline=(0, 0, 0))
    lo, hi = product.range
    for k in range(5):
        x = margin + round(k * (bar_w - 1) / 4)
        value = lo + (hi - lo) * k / 4
        draw.line([(x, 45), (x, 49)], fill=(0, 0, 0))
        text = f"{value:g}"
        draw.text((x - draw.textlength(text, font=small) / 2, 51), text, fill=(0, 0, 0), font=small)
    nodata = "no data: black" if product.format == "jpeg" else "no data: transparent"
    draw.text((margin, 68), f"colour map {product.colormap_name}; {nodata}", fill=(80, 80, 80), font=small)
    return img


def legend_png(product: Product) -> bytes:
    buf = io.BytesIO()
    legend_image(product).save(buf, format="PNG")
    return buf.getvalue()
