"""After the shard jobs: the run's summary (summary.json), the provenance manifest of each
product (manifest.tsv), the clipping summary, histograms and clipping sheets, from what the
shard jobs recorded."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.jobs import summary_parts
from msrgb.jobs.summary_parts import ShardPart
from msrgb.outputs.paths import OutputPaths
from msrgb.sources.discovery import first_by_name, name_order
from msrgb.storage import tsv
from msrgb.storage.files import output_rel, own_image, write_atomic, write_if_changed
from msrgb.storage.locations import S3Path
from msrgb.storage.remote import prefetch
from msrgb.version import __version__

if TYPE_CHECKING:
    import numpy as np

    from msrgb.config.products import Product

log = logging.getLogger("msrgb")


def images_per_class(rels: Iterable[str]) -> dict[str, int]:
    """How many of the inputs ``rels`` (relative paths) are in each top folder (``.`` for the
    input folder itself)."""
    per_class: dict[str, int] = {}
    for rel in rels:
        top = rel.partition("/")[0] if "/" in rel else "."
        per_class[top] = per_class.get(top, 0) + 1
    return per_class


def summarize(output: OutputPaths, per_class: dict[str, int], n_shards: int, n_products: int, skipped: int) -> dict:
    """The run summary: images per class (top folder, :func:`images_per_class`), and what the
    ``n_shards`` shard jobs of this run did (those that finished after the run started), wall
    time and images per second."""
    try:
        started = float(output.run_started().read_text())
    except (FileNotFoundError, ValueError):
        started = None
    totals = {"converted": 0, "up_to_date": 0, "failed": 0, "shard_jobs": 0}
    notes: list[str] = []
    overrides: dict[str, int] = {}
    for shard in range(n_shards):
        try:
            stats = json.loads(output.run_stats(n_shards, shard).read_text())
        except (FileNotFoundError, ValueError):
            continue
        if started is not None and stats["finished"] < started:
            continue  # from an earlier run
        totals["shard_jobs"] += 1
        for key in ("converted", "up_to_date", "failed"):
            totals[key] += stats[key]
        notes += [n for n in stats.get("notes", []) if n not in notes]
        for why, n in stats.get("overrides", {}).items():
            overrides[why] = overrides.get(why, 0) + n
    wall = time.time() - started if started is not None else None
    return {
        "images": sum(per_class.values()),
        "images_per_class": dict(sorted(per_class.items())),
        "products": n_products,
        "shards": n_shards,
        **totals,
        "skipped": skipped,
        "wall_seconds": round(wall, 2) if wall is not None else None,
        "images_per_second": round(totals["converted"] / wall, 1) if wall else None,
        # warnings about input values under the products' settings, each once per run
        "notes": notes,
        # what the inputs' radiometric scaling overrode of what they declare -> inputs
        "scaling_overrides": dict(sorted(overrides.items())),
    }


def write_summary(path: Path, summary: dict) -> None:
    write_atomic(path, (json.dumps(summary, indent=2) + "\n").encode())


MANIFEST_COLUMNS = (
    "path", "source_size", "source_sha256", "png_sha256", "settings_digest", "env", "radiometry",
)  # fmt: skip


#: rows of a provenance manifest made and written at a time
PROVENANCE_ROWS = 10_000


def provenance_pieces(product: str, digest: str, parts: Sequence[ShardPart]) -> Iterator[bytes]:
    """The provenance manifest of one product, encoded, in pieces of :data:`PROVENANCE_ROWS`
    rows (the manifest of 270,000 images is about 70 MB of text, which need not be in one
    piece): one line per image (path relative to the product folder), by input path, from the
    shards' ``parts``, with the environments (library versions) referenced by id in the header,
    and the radiometric scale and offset of each band where one applied (JSON, as in the
    recipe)."""
    lines, envs = summary_parts.manifest_lines(parts, product)
    header: list[Sequence[object]] = [
        ["# msrgb provenance manifest v1", f"product {product}", f"settings {digest}"]
    ]
    header += [["# env", e, versions] for e, versions in envs.items()]
    yield tsv.text([*header, MANIFEST_COLUMNS]).encode("utf-8")
    for start in range(0, len(lines), PROVENANCE_ROWS):
        yield "".join(lines[start : start + PROVENANCE_ROWS]).encode("utf-8")


def write_provenance(parts: Sequence[ShardPart], outputs: dict[str, tuple[str, Path]]) -> None:
    """Write ``manifest.tsv`` of every product (``outputs``: name -> (digest, path)) from the
    shards' ``parts``; a file is rewritten only when its content changes."""
    for product, (digest, path) in outputs.items():
        write_if_changed(path, provenance_pieces(product, digest, parts))


#: images listed per product as most clipped and as darkest
CLIP_LIST = 10


def clipping_summary(parts: Sequence[ShardPart], suffixes: dict[str, str]) -> dict[str, dict]:
    """Per product (``suffixes``: name -> image suffix), from the clip figures in the shards'
    ``parts``: the images with the largest share of pixels at 0 or at the top value in any
    channel, the darkest (lowest mean), and how many have more than 5 % of a channel clipped."""
    import numpy as np

    result = {}
    for name, suffix in suffixes.items():
        names, figures = summary_parts.clip_figures(parts, name)
        if not names:
            continue
        clips = figures[:, :6].max(axis=1)  # the largest clipped share of each image
        means = figures[:, 6]
        worst = _first(names, -clips)
        darkest = _first(names, means)
        result[name] = {
            "images": len(names),
            "images_clipped_over_5_percent": int(np.count_nonzero(clips > 0.05)),
            "mean_brightness": round(sum(means.tolist()) / len(names), 2),
            "most_clipped": [
                {"image": output_rel(names[i], suffix),
                 "clipped_low": [round(v, 4) for v in figures[i, :3].tolist()],
                 "clipped_high": [round(v, 4) for v in figures[i, 3:6].tolist()], "mean": float(means[i])}
                for i in worst
            ],  # fmt: skip
            "darkest": [{"image": output_rel(names[i], suffix), "mean": float(means[i])} for i in darkest],
        }
    return result


def _first(names: Sequence[str], keys: np.ndarray) -> list[int]:
    """The indices of the :data:`CLIP_LIST` smallest (key, name), names in the order of
    :func:`msrgb.sources.discovery.name_order`, without sorting every image of a large dataset:
    only those with a key up to the CLIP_LIST-th smallest (ties included)."""
    import numpy as np

    def by_key(i: int) -> tuple[object, tuple[str | int, ...], str]:
        return keys[i], name_order(names[i]), names[i]

    if len(keys) <= CLIP_LIST:
        return sorted(range(len(keys)), key=by_key)
    bound = np.partition(keys, CLIP_LIST - 1)[CLIP_LIST - 1]
    below = sorted(np.flatnonzero(keys < bound).tolist(), key=by_key)
    # the rest are ties at the bound, first by name: most images of a dataset may tie (none
    # clipped), so without a key for each of them
    ties = np.flatnonzero(keys == bound).tolist()
    return below + [ties[i] for i in first_by_name([names[i] for i in ties], CLIP_LIST - len(below))]


def histogram_image(counts: Sequence[Sequence[int]], title: str, width: int = 512, height: int = 220) -> bytes:
    """A PNG plot of the 8-bit value histograms of the red, green and blue channels."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    top, bottom = 24, height - 18
    peak = max(1, max(max(c) for c in counts))
    draw.text((6, 4), title, fill=(0, 0, 0))
    for colour, channel in zip(((220, 0, 0), (0, 160, 0), (0, 0, 220)), counts):
        points = [
            (i * (width - 1) / 255, bottom - (bottom - top) * (v / peak) ** 0.5) for i, v in enumerate(channel)
        ]
        draw.line(points, fill=colour, width=1)
    draw.line([(0, bottom), (width, bottom)], fill=(0, 0, 0))
    for value in (0, 64, 128, 192, 255):
        x = value * (width - 1) / 255
        draw.text((min(x, width - 22), bottom + 3), str(value), fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def output_histogram(images: Sequence[Path | S3Path], max_pixels: int = 25_000_000) -> list[list[int]]:
    """Counts of each 8-bit value per channel over ``images`` (transparent pixels left out;
    images larger than ``max_pixels`` are skipped)."""
    import numpy as np

    from msrgb.render.render import opaque_rgb

    counts = np.zeros((3, 256), dtype=np.int64)
    prefetch([p for p in images if isinstance(p, S3Path)])  # images in S3: fetched at once
    for path in images:
        try:
            with own_image(path) as im:
                if im.width * im.height > max_pixels or im.mode not in ("RGB", "RGBA"):
                    continue
                a = np.asarray(im)
        except OSError:  # missing or unreadable: the histogram is of the others
            continue
        rgb = opaque_rgb(a)
        for c in range(3):
            counts[c] += np.bincount(rgb[:, c], minlength=256)[:256]
    return counts.tolist()


def write_histogram(output: OutputPaths, product: Product, chosen: Sequence[tuple[str, str]]) -> None:
    """The histogram of ``product`` from the images of ``chosen`` (input path, the image's
    SHA-256 as recorded; records of versions before provenance have none)."""
    title = f"{product.name}: values of {len(chosen)} images (red, green, blue; square-root scale)"
    made_from = _digest(title, chosen) if all(sha for _, sha in chosen) else ""

    def drawn() -> bytes:
        images = [output.image_dir(product.name) / output_rel(rel, product.suffix) for rel, _ in chosen]
        return histogram_image(output_histogram(images), title)

    _draw(output, output.histogram(product.name), made_from, drawn)


def write_clipped_sheet(output: OutputPaths, product: Product, worst: Sequence[dict], thumb: int) -> None:
    """The contact sheet of the most clipped images of ``product`` (``worst``: as in the summary's
    clipping), with the share of pixels clipped and the name under each."""
    from msrgb.outputs.sheet_lists import SheetGeometry, label

    images = [output.image_dir(product.name) / w["image"] for w in worst]
    labels = [f"{100 * max(w['clipped_low'] + w['clipped_high']):.1f}% {label(w['image'])}" for w in worst]
    title = f"most clipped - {product.name}"
    stats = _file_stats(images)
    made_from = _digest(title, labels, thumb, [str(i) for i in images], stats) if stats is not None else ""

    def drawn() -> bytes:
        from msrgb.render.sheets import encode, sheet_image

        return encode(sheet_image(title, images, labels, SheetGeometry(thumb=thumb)))

    _draw(output, output.clipped_sheet(product.name), made_from, drawn)


def _digest(*what: object) -> str:
    return hashlib.sha256(json.dumps([__version__, *what]).encode()).hexdigest()


def _draw(output: OutputPaths, figure: Path, made_from: str, drawn: Callable[[], bytes]) -> None:
    """Write ``figure`` as ``drawn`` makes it, and what it was drawn from, unless it is on disk and
    was drawn from ``made_from`` (none: not known, so it is drawn again): a run that changes none
    of its images does not read them again."""
    try:
        same = bool(made_from) and figure.exists() and output.made_from(figure).read_text(encoding="utf-8") == made_from
    except FileNotFoundError:
        same = False
    if not same:
        write_if_changed(figure, drawn())
        write_if_changed(output.made_from(figure), made_from)


def _file_stats(paths: Sequence[Path | S3Path]) -> list[list[int] | None] | None:
    """Size and modification time of each file (None: missing); None for images in S3."""
    stats: list[list[int] | None] = []
    for path in paths:
        if not isinstance(path, Path):
            return None
        try:
            st = path.stat()
        except FileNotFoundError:
            stats.append(None)
        else:
            stats.append([st.st_size, st.st_mtime_ns])
    return stats


def write_looks(output: OutputPaths, products: Sequence, parts: Sequence[ShardPart], clipping: dict, thumb: int) -> None:
    """Per product: the histogram of the output values of a sample of its images (the images
    with the smallest path hashes), the contact sheet of its most clipped images and, for a
    product drawn with a colour map, its legend. The histogram and the sheet are drawn again
    only when an image they show changed (:func:`_draw`)."""
    for p in products:
        write_histogram(output, p, summary_parts.sample(parts, p.name))
        write_clipped_sheet(output, p, clipping.get(p.name, {}).get("most_clipped", []), thumb)
        if p.is_index:
            from msrgb.render.legend import legend_png

            write_if_changed(output.legend(p.name), legend_png(p))
