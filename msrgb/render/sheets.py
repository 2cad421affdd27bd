"""Contact sheets: a grid of thumbnails with the file name under each, one sheet per input folder
and product, plus one overview per product with a few samples of every folder.

Which images a sheet shows is decided at parse time and written to a small sheet sheet_list
(only when it changes), so a sheet is rebuilt only when one of its images or its layout changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msrgb.outputs.sheet_lists import SheetGeometry, cells_path, folder_key, label, read_sheet_list
from msrgb.storage.files import output_rel, own_image, write_atomic
from msrgb.storage.locations import S3Path
from msrgb.storage.remote import prefetch

if TYPE_CHECKING:  # drawing loads Pillow and numpy; planning the sheets does without them
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("msrgb")


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int, font) -> str:
    """``text`` if it fits in ``width`` pixels, else its longest start that fits followed by
    "…" (found by halving, not a character at a time: measuring a label is most of a sheet's
    labelling)."""
    if draw.textlength(text, font=font) <= width:
        return text
    fits, over = 0, len(text)  # text[:fits] + "…" fits (or fits is 0), text[:over] + "…" does not
    while over - fits > 1:
        mid = (fits + over) // 2
        if draw.textlength(text[:mid] + "…", font=font) <= width:
            fits = mid
        else:
            over = mid
    return text[:fits] + "…"


def thumbnail(png: Path | S3Path, size: int) -> np.ndarray:
    """An 8-bit RGB thumbnail of ``png`` (16-bit and alpha PNGs too), ``size`` x ``size``, as
    an array (see :func:`thumbnail_image`)."""
    import numpy as np

    return np.asarray(thumbnail_image(png, size))


def thumbnail_image(png: Path | S3Path, size: int) -> Image.Image:
    """An 8-bit RGB thumbnail of ``png`` (16-bit and alpha PNGs too), ``size`` x ``size``. A
    large image (a whole scene) is first reduced by box averages, so that no full-size copy of
    it is made after decoding."""
    from PIL import Image

    with own_image(png) as opened:
        im: Image.Image = opened
        if im.width * im.height > LARGE_THUMBNAIL_SOURCE:
            factor = max(1, min(im.width, im.height) // (2 * size))
            im = im.reduce(factor)
        if im.mode in ("I;16", "I;16B", "I"):
            im = im.point(lambda v: v / 256).convert("L")
        if im.mode != "RGB":
            im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.NEAREST)
        return im.copy() if im is opened else im  # closing the file frees the opened image


#: images over this many pixels are reduced before anything else when made into a thumbnail
LARGE_THUMBNAIL_SOURCE = 50_000_000


def sheet_image(
    title: str,
    pngs: Sequence[Path | S3Path | None],
    labels: Sequence[str],
    geometry: SheetGeometry,
    columns: int | None = None,
    reuse: Cells | None = None,
) -> np.ndarray:
    """A sheet's RGB pixels; a missing PNG (bad input) leaves its cell grey with its label, a
    ``None`` entry leaves the cell empty. With ``reuse`` (the cells of the sheet's previous
    version, read by :func:`previous_cells`) a cell whose image file is unchanged is copied from
    there instead of drawn; ``reuse.made`` then lists the cells of the new sheet. Composed as an
    array, each drawn cell (thumbnail, label and the gaps right of and below them) on its own:
    a copied cell is then a slice, and the sheet is encoded without a conversion."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = geometry.size(len(pngs), columns)
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    top = Image.new("RGB", (width, geometry.title + geometry.gap), (255, 255, 255))
    draw = ImageDraw.Draw(top)
    title_font, label_font = font(16), font(11)
    draw.text((geometry.gap, 3), _fit(draw, title, width - 2 * geometry.gap, title_font), fill=(0, 0, 0), font=title_font)
    sheet[: top.height] = np.asarray(top)
    for i, (png, text) in enumerate(zip(pngs, labels)):
        x, y = geometry.origin(i, columns)
        if png is None:
            continue
        # the image's key (size, mtime) is taken before the image is read
        if reuse is not None and (key := reuse.key(png, text)) is not None:
            reuse.made.append((*key, x, y))
            if reuse.copy(key, sheet, (x, y)):
                continue
        sheet[y : y + geometry.cell_h, x : x + geometry.cell_w] = _cell(png, text, geometry, label_font)
    return sheet


def _cell(png: Path | S3Path, text: str, geometry: SheetGeometry, label_font: Any) -> np.ndarray:
    """One cell of a sheet drawn: the thumbnail of ``png`` (grey if there is no readable
    image), its label ``text`` under it."""
    import numpy as np
    from PIL import Image, ImageDraw

    cell = Image.new("RGB", (geometry.cell_w, geometry.cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(cell)
    thumb = geometry.thumb
    try:
        cell.paste(thumbnail_image(png, thumb), (0, 0))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):  # no image: a bad input
        draw.rectangle([0, 0, thumb - 1, thumb - 1], fill=(200, 200, 200))
    except OSError as exc:  # there but unreadable: the sheet is still made, the log says why
        log.warning("%s: left grey on the contact sheet: %s", png, exc)
        draw.rectangle([0, 0, thumb - 1, thumb - 1], fill=(200, 200, 200))
    draw.text((0, thumb + 1), _fit(draw, text, thumb, label_font), fill=(0, 0, 0), font=label_font)
    return np.asarray(cell)


class Cells:
    """The cells of a sheet's previous version: for each thumbnail, its image file's path (under
    ``root``, the product's folder), size and modification time and its label, and where the cell
    is on the old sheet (listed beside the sheet's sheet_list, :func:`cells_path`). A rebuild after
    new files copies the cells whose image is unchanged: drawing a label and a thumbnail is most
    of a sheet's time."""

    def __init__(
        self, old: np.ndarray | None, geometry: SheetGeometry, root: Path, cells: Sequence[Sequence[Any]] = ()
    ):
        self.old, self.geometry, self.root = old, geometry, root
        self.where = {(str(c[0]), int(c[1]), int(c[2]), str(c[3])): (int(c[4]), int(c[5])) for c in cells}
        self.made: list[tuple[object, ...]] = []

    def key(self, png: Path | S3Path, label: str) -> tuple[str, int, int, str] | None:
        """What identifies a cell's content, or None for an image that is not a local file."""
        if isinstance(png, S3Path):
            return None
        try:
            st = png.stat()
            name = png.relative_to(self.root).as_posix()
        except (OSError, ValueError):  # missing (a grey cell), or not under the product folder
            return None
        return (name, st.st_size, st.st_mtime_ns, label)

    def copy(self, key: tuple[str, int, int, str], sheet: np.ndarray, to: tuple[int, int]) -> bool:
        """Copy the old sheet's cell of ``key`` (thumbnail, label and the gaps right of and
        below them) to ``to`` (x, y) on ``sheet``; False if the old sheet has no such cell."""
        at = self.where.get(key)
        if at is None or self.old is None:
            return False
        x, y = at
        right, bottom = x + self.geometry.cell_w, y + self.geometry.cell_h
        if x < 0 or y < 0 or right > self.old.shape[1] or bottom > self.old.shape[0]:
            return False  # not a cell of that sheet (its list was edited)
        sheet[to[1] : to[1] + self.geometry.cell_h, to[0] : to[0] + self.geometry.cell_w] = self.old[y:bottom, x:right]
        return True

    def text(self, sheet: bytes) -> str:
        """The list of the new sheet's cells, for the sheet file's bytes as written (``sheet``)."""
        return json.dumps(
            {"sheet": sheet_version(sheet), "geometry": list(astuple(self.geometry)), "cells": self.made},
            ensure_ascii=False,
        )


def sheet_version(data: bytes) -> list[object]:
    """What identifies a sheet file's content in the list of its cells: its size and a digest
    of its bytes, not its time, which Snakemake sets again on every output of a job at its end
    (a time would never match after a run)."""
    return [len(data), hashlib.blake2b(data, digest_size=16).hexdigest()]


#: a sheet larger than this (contact_sheet_tiles: 0 over a large folder) is drawn afresh: a
#: copy of its previous version would double the job's memory
REUSE_MAX_PIXELS = 50_000_000


def previous_cells(sheet: Path, listing: Path, geometry: SheetGeometry, root: Path) -> Cells:
    """The cells of the sheet file ``sheet`` as ``listing`` lists them, of images under ``root``
    (none if either is missing or unreadable, the sheet's bytes are not those the listing was
    made for, or it was made with another geometry)."""
    none = Cells(None, geometry, root)
    try:
        index = json.loads(listing.read_text(encoding="utf-8"))
        if index["geometry"] != list(astuple(geometry)):
            return none
        if sheet.stat().st_size > 3 * REUSE_MAX_PIXELS:  # larger than any sheet it would copy
            return none
        data = sheet.read_bytes()
        if index["sheet"] != sheet_version(data):
            return none
        pixels = _pixels(data)
        return none if pixels is None else Cells(pixels, geometry, root, index["cells"])
    except FileNotFoundError:  # a new sheet
        return none
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # a listing or sheet damaged, replaced or edited: the sheet is drawn afresh
        log.info("%s: its cells are drawn again (%s)", sheet, exc)
        return none


def _pixels(data: bytes) -> np.ndarray | None:
    """The RGB pixels of a sheet file's bytes (by msrgb's own decoder for a sheet it wrote, else
    by Pillow), or None for a sheet over :data:`REUSE_MAX_PIXELS`."""
    import numpy as np

    from msrgb.render.pngenc import decode_png_quick

    pixels = decode_png_quick(data, REUSE_MAX_PIXELS)
    if pixels is not None and pixels.shape[2] == 3:
        return pixels
    with own_image(data) as im:
        if im.width * im.height > REUSE_MAX_PIXELS:
            return None
        return np.asarray(im.convert("RGB"))


def encode(sheet: np.ndarray) -> bytes:
    """PNG bytes of a sheet's pixels, fast rather than small (msrgb.render.pngenc.encode_png_quick:
    4x faster than Pillow's fastest setting on a sheet of 100 thumbnails, 5 % larger)."""
    from msrgb.render.pngenc import encode_png_quick

    return encode_png_quick(sheet)


def build(
    sheet_list: Path,
    out: Path,
    product_dir: Path | S3Path,
    geometry: SheetGeometry,
    suffix: str = ".png",
    legend: Image.Image | None = None,
) -> None:
    """Render the sheet described by ``sheet_list`` from the images (``suffix``) under
    ``product_dir``, with the product's ``legend`` under the thumbnails if it has one. The
    overview (title starting with "overview") has one row per folder."""
    title, rels = read_sheet_list(sheet_list)

    def png_of(rel: str) -> Path | S3Path:
        return product_dir / output_rel(rel, suffix)

    if isinstance(product_dir, S3Path):  # images in S3: fetch them all at once
        prefetch([product_dir / output_rel(r, suffix) for r in rels])
    listing = cells_path(sheet_list)
    reuse = previous_cells(out, listing, geometry, product_dir) if isinstance(product_dir, Path) else None

    if not title.startswith("overview"):
        sheet = sheet_image(title, [png_of(r) for r in rels], [label(r) for r in rels], geometry, reuse=reuse)
    else:
        rows: dict[str, list[str]] = defaultdict(list)
        for rel in rels:
            rows[folder_key(rel)].append(rel)
        columns = max((len(v) for v in rows.values()), default=1)
        pngs: list[Path | S3Path | None] = []
        labels: list[str] = []
        for members in rows.values():
            pad = columns - len(members)
            pngs += [png_of(r) for r in members] + [None] * pad
            labels += [label(r) for r in members] + [""] * pad
        sheet = sheet_image(title, pngs, labels, geometry, columns=columns, reuse=reuse)
    if legend is not None:
        sheet = with_legend(sheet, legend)
    data = encode(sheet)
    write_atomic(out, data)
    if reuse is not None:
        write_atomic(listing, reuse.text(data).encode("utf-8"))


def with_legend(sheet: np.ndarray, legend: Image.Image) -> np.ndarray:
    """The sheet with the legend below it."""
    import numpy as np

    strip = np.asarray(legend.convert("RGB"))
    rows, cols = sheet.shape[0], sheet.shape[1]
    combined = np.full((rows + strip.shape[0], max(cols, strip.shape[1]), 3), 255, dtype=np.uint8)
    combined[:rows, :cols] = sheet
    combined[rows:, : strip.shape[1]] = strip
    return combined


def stale(pairs: Sequence[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
    """The (sheet_list, sheet) pairs whose sheet is missing or older than its sheet list."""
    due = []
    for sheet_list, out in pairs:
        try:
            if out.stat().st_mtime_ns > sheet_list.stat().st_mtime_ns:
                continue
        except FileNotFoundError:
            pass
        due.append((sheet_list, out))
    return due


def build_all(
    pairs: Sequence[tuple[Path, Path]],
    product_dir: Path | S3Path,
    geometry: SheetGeometry,
    suffix: str = ".png",
    legend: Image.Image | None = None,
) -> None:
    """Draw the sheet of each (sheet_list, sheet) pair (:func:`stale` says which need it)."""
    for sheet_list, out in pairs:
        build(sheet_list, out, product_dir, geometry, suffix, legend)
