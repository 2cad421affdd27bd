"""Checks made before any work, each naming the setting to change: the input and output folders,
the products against the first inputs, why nothing was found, a second input folder into the
output folder of the first, a run that would delete many images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from msrgb.config.parse import check_band_count
from msrgb.config.products import Product
from msrgb.errors import InputError, PlanError, ProductError
from msrgb.planning.settings import Settings
from msrgb.planning.work import WorkCounts
from msrgb.sources.bandfiles import (
    DEFAULT_BAND_PATTERN,
    ZIP_BAND,
    band_of,
    compile_pattern,
    is_zipped_product,
)
from msrgb.sources.discovery import Source
from msrgb.sources.geotags import samples_per_pixel, samples_per_pixel_of
from msrgb.sources.stac import StacItems
from msrgb.sources.stac_search import StacSearch
from msrgb.storage import remote
from msrgb.storage.locations import S3Path


def check_folders(input_dir: Path | S3Path | StacItems, output_dir: Path) -> None:
    """Fail, naming the folder, when the folders cannot work (an ``s3://`` input or STAC Items
    are checked when they are listed)."""
    if isinstance(input_dir, Path) and not input_dir.is_dir():
        raise PlanError(
            f"config 'input_dir': folder {str(input_dir)!r} does not exist "
            "(set it with --config input_dir=/path/to/tifs)"
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise PlanError(f"config 'output_dir' {str(output_dir)!r} is a file, not a folder; choose a folder")
    if not isinstance(input_dir, Path):
        return
    # resolved: '..' and symbolic links lead to the folders themselves
    inp, out = input_dir.resolve(), output_dir.resolve()
    if out == inp or inp in out.parents:
        where = "is" if out == inp else "is inside"
        raise PlanError(
            f"config 'output_dir' {str(output_dir)!r} {where} 'input_dir' "
            f"{str(input_dir)!r}; the input folder is never written to, choose another folder"
        )
    if out in inp.parents:
        raise PlanError(
            f"config 'input_dir' {str(input_dir)!r} is inside 'output_dir' {str(output_dir)!r} "
            f"(at {str(inp.relative_to(out))!r}); msrgb writes and deletes files in the output "
            "folder, so it would write among the inputs: choose folders apart"
        )


def check_prefixes(input_dir: Path | S3Path | StacItems, images: str) -> None:
    """Fail when an output_dir in S3 and an input_dir in S3 overlap (one inside the other)."""
    if not images or not isinstance(input_dir, S3Path):
        return
    out = S3Path.parse(images)
    if out.bucket != input_dir.bucket:
        return
    a, b = f"{input_dir.key}/", f"{out.key}/"
    if a.startswith(b) or b.startswith(a) or not input_dir.key or not out.key:
        raise PlanError(
            f"config 'output_dir' {images!r} and 'input_dir' {str(input_dir)!r} overlap (one is "
            "inside the other); the inputs are never written to: choose prefixes apart"
        )


def band_count(path: Path | S3Path) -> int | None:
    """How many bands the image at ``path`` has, from its TIFF or BigTIFF tags (planning does
    without GDAL); None where they do not say it plainly (a file that is no TIFF, or an odd
    one): its shard job then reports it. An object in S3 is fetched (one GET)."""
    if isinstance(path, S3Path):
        try:
            data = remote.get(path)
        except InputError:
            return None
        return samples_per_pixel_of(data[:65536])
    try:
        return samples_per_pixel(str(path))
    except OSError:
        return None


def check_products_against(products: Sequence[Product], input_dir: Path | S3Path | StacItems, sources: Sequence[Source]) -> None:
    """Reject a product that needs a band the files do not have (judged on the first readable
    of the first files, or for band folders on the names in the first folders; a single odd
    image is reported by its shard)."""
    if sources and sources[0].files is not None:
        # zipped products list their band files when they are read (msrgb.readers.zipped)
        first = [s for s in sources[:20] if not s.files or s.files[0][0] != ZIP_BAND]
        for p in products if first else ():
            for band in p.bands:
                if not any(band == b for s in first for b, _ in s.files or ()):
                    raise PlanError(
                        f"config 'products': product {p.name!r} needs band {band}, but none of "
                        f"the first {len(first)} image folders (such as {str(input_dir / first[0].rel)!r}) "
                        "has a file for it; check 'band_pattern' or the product's 'bands'"
                    )
        return

    for source in sources[:5]:
        count = band_count(input_dir / source.rel)  # from the file's tags
        if count is None:
            continue
        try:
            check_band_count(products, count, str(input_dir / source.rel))
        except ProductError as exc:
            hint = ""
            name = source.rel.rpartition("/")[2]
            if count == 1 and (band_of(name, compile_pattern(DEFAULT_BAND_PATTERN)) or ".SAFE/" in source.rel.upper()):
                hint = (
                    "; the files hold one band each (named like B04.tif, or in a .SAFE product): "
                    "set layout: band_folders (docs/band-folders.md)"
                )
            raise PlanError(f"config 'products': {exc}{hint}") from None
        return


def nothing_found(settings: Settings) -> str:
    """Why a run found nothing to convert, and the setting that helps, where one does."""
    where = str(settings.input_dir)
    if isinstance(settings.input_dir, StacSearch):
        return f"{settings.input_dir.describe()} found no STAC Items (see its collections, bbox and datetime)"
    if isinstance(settings.input_dir, StacItems):
        return f"found no STAC Items under stac_items {settings.input_dir.where!r}"
    if settings.input_format.layout == "band_folders":
        return (
            f"found no band files (.tif, .tiff, .jp2 named by band_pattern, such as B04.tif or "
            f"T32TQM_20230101T101031_B04_10m.jp2) under input_dir {where!r}"
        )
    message = f"found no .tif or .tiff files under input_dir {where!r}"
    if isinstance(settings.input_dir, S3Path):
        return message
    seen = set()
    for top, dirs, files in os.walk(settings.input_dir):
        for name in dirs + files:
            lower = name.lower()
            if lower.endswith(".safe") or lower.endswith(".jp2"):
                seen.add("band")
            elif is_zipped_product(name):
                seen.add("zip")
        if len(seen) == 2:
            break
    if "band" in seen:
        message += (
            "; it holds Sentinel-2 products (.SAFE) or JPEG 2000 band files: set layout: "
            "band_folders (docs/band-folders.md)"
        )
    if "zip" in seen:
        message += (
            "; it holds zipped Sentinel-2 products (.SAFE.zip): set layout: band_folders, which "
            "reads them as they are (docs/band-folders.md)"
        )
    return message


#: a run that would delete more images than this, or more than REMOVAL_SHARE of a product's
#: images (and at least REMOVAL_FLOOR), stops unless remove_orphans is set
REMOVAL_COUNT, REMOVAL_SHARE, REMOVAL_FLOOR = 100, 0.10, 10


def input_dir_text(input_dir: Path | S3Path | StacItems) -> str:
    """``input_dir`` as the output folder records it: a local folder resolved (links and
    ``..`` followed), a prefix in S3 or STAC Items as given."""
    if isinstance(input_dir, StacSearch):
        return input_dir.describe()
    if isinstance(input_dir, Path):
        return str(input_dir.resolve())
    return str(input_dir)


def check_input_dir(counts: WorkCounts, settings: Settings) -> None:
    """Stop before a run deletes any image because its ``input_dir`` is not the previous run's
    into the same output folder: a second batch given the output folder of the first would
    otherwise delete the first batch's images, however few."""
    try:
        before = settings.output.input_dir_file().read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return  # a first run, or an output folder of a version that did not record it
    now = input_dir_text(settings.input_dir)
    removals = {name: c.to_remove for name, c in counts.products.items() if c.to_remove}
    if before == now or not removals:
        return
    listing = ", ".join(f"{n:,} of {name!r}" for name, n in removals.items())
    raise PlanError(
        f"input_dir {now!r} is not the input folder of the previous run into output_dir "
        f"{str(settings.output_dir)!r} ({before!r}), and this run would delete the images of "
        f"inputs not under it ({listing}); nothing was deleted. To keep both batches, choose "
        "another output_dir for this one; to make the output folder match this input folder "
        "(deleting those images), run again with --config remove_orphans=true"
    )


def check_removals(counts: WorkCounts, settings: Settings) -> None:
    """Stop before a run deletes a large share of a product's images because their inputs are
    gone: most often a second batch folder given the output folder of the first."""
    for name, c in counts.products.items():
        images = c.to_remove + c.up_to_date + c.bad
        many = c.to_remove > REMOVAL_COUNT
        share = c.to_remove >= REMOVAL_FLOOR and c.to_remove > REMOVAL_SHARE * images
        if many or share:
            raise PlanError(
                f"product {name!r}: this run would delete {c.to_remove:,} of its {images:,} images "
                f"in {str(settings.output_dir)!r}, because their inputs are no longer under "
                f"{str(settings.input_dir)!r}; nothing was deleted. If the inputs moved or another "
                "folder was meant, fix input_dir or choose another output_dir; to delete them, "
                "run again with --config remove_orphans=true"
            )
