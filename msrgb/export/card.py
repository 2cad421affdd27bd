"""The files at the root of an export: the dataset card (``README.md``, whose YAML header the
Hugging Face Hub reads), ``classes.txt``, ``manifest.csv`` and ``splits/<split>.txt``."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from msrgb.config.export import HUB_SPLITS, SPLITS, ExportSettings
from msrgb.config.products import Product
from msrgb.export.labels import Labelled
from msrgb.version import __version__

MANIFEST_COLUMNS = ("split", "path", "member", "labels", "source", "group", "sha256")


@dataclass(frozen=True)
class Row:
    """One exported image, as manifest.csv lists it."""

    split: str
    #: the file in the export (a tar file for WebDataset)
    path: str
    #: the image's name inside that tar file (WebDataset), else empty
    member: str
    labels: tuple[str, ...]
    source: str
    group: str
    sha256: str
    #: the run's image, relative to the product folder
    image: str


def manifest_csv(rows: Sequence[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in sorted(rows, key=lambda r: (SPLITS.index(r.split), r.path, r.member)):
        writer.writerow([r.split, r.path, r.member, ";".join(r.labels), r.source, r.group, r.sha256])
    return out.getvalue()


def split_lists(rows: Sequence[Row]) -> dict[str, str]:
    """``splits/<split>.txt``: the run's images of each split (their path in the product
    folder), one per line, sorted; usable again as ``split: {by: files}``."""
    lists: dict[str, list[str]] = {}
    for r in rows:
        lists.setdefault(r.split, []).append(r.image)
    return {s: "".join(f"{name}\n" for name in sorted(names)) for s, names in lists.items()}


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def _yaml_header(settings: ExportSettings, labelled: Labelled, splits: Sequence[str], n: int) -> str:
    task = "multi-label-image-classification" if labelled.multi_label else "multi-class-image-classification"
    data = "{split}-*.tar" if settings.format == "webdataset" else "{split}/**"
    lines = [
        "---",
        f"license: {settings.license}",
        f"pretty_name: {json.dumps(settings.name)}" if settings.name else None,
        "task_categories:\n- image-classification",
        f"task_ids:\n- {task}",
        f"size_categories:\n- {size_category(n)}",
        "tags:\n- remote-sensing\n- satellite-imagery\n- msrgb",
        "configs:\n- config_name: default\n  data_files:",
        *(f"  - split: {HUB_SPLITS[s]}\n    path: {data.format(split=s)}" for s in splits),
        "---",
    ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def recipe_lines(product: Product) -> list[str]:
    """The product's recipe in words: bands, stretch, formula, format."""
    if product.expression is not None:
        lines = [f"- value: `{product.expression}`, drawn with the colour map {product.colormap or 'gray'} "
                 f"over {list(product.range)}"]  # fmt: skip
    else:
        lines = [f"- bands: {', '.join(product.bands)} as red, green, blue"]
    top = 2**product.bit_depth - 1
    if product.stretch == "gain":
        lines.append(f"- stretch: `value = int({top} * clip(DN / {product.max:g}, 0, 1))`")
    elif product.stretch == "range":
        lines.append(
            f"- stretch: `t = clip((DN - {product.min:g}) / ({product.max:g} - {product.min:g}), 0, 1)`, "
            f"then {product.out_min} + t * {top - product.out_min}"
        )
    else:
        lines.append(f"- stretch: {product.stretch} (docs/products.md of msrgb)")
    lines.append(f"- format: {product.format.upper()}, {product.bit_depth}-bit"
                 + (f", quality {product.quality}" if product.format != "png" else ""))  # fmt: skip
    return lines


def dataset_card(product: Product, settings: ExportSettings, labelled: Labelled, rows: Sequence[Row]) -> str:
    """README.md: the YAML header, then the recipe, classes and counts, split policy, files,
    how to load it, and the source's attribution."""
    splits = [s for s in SPLITS if any(r.split == s for r in rows)]
    counts = Counter((label, r.split) for r in rows for label in r.labels)
    classes = labelled.classes
    name = settings.name or f"{product.name} images"
    table = ["| index | class | " + " | ".join(splits) + " | all |", "|---|---|" + "---|" * (len(splits) + 1)]
    for i, c in enumerate(classes):
        row = [counts[(c, s)] for s in splits]
        table.append(f"| {i} | {c} | " + " | ".join(f"{v:,}" for v in row) + f" | {sum(row):,} |")
    per_split = Counter(r.split for r in rows)
    table.append("| | **images** | " + " | ".join(f"{per_split[s]:,}" for s in splits) + f" | {len(rows):,} |")
    return "\n".join([
        _yaml_header(settings, labelled, splits, len(rows)),
        f"# {name}",
        "",
        f"{len(rows):,} images of the product `{product.name}`, made by msrgb {__version__} "
        + ("(multi-label)." if labelled.multi_label else "(one class per image)."),
        "The images are the run's images byte for byte; each carries its recipe (PNG text "
        "chunk or XMP `msrgb`).",
        "",
        "## Recipe",
        "",
        *recipe_lines(product),
        "",
        "```json",
        json.dumps(product.to_dict(), sort_keys=True),
        "```",
        "",
        "## Classes and splits",
        "",
        f"Labels from {labelled.origin}; class index = line of `classes.txt`.",
        "",
        *table,
        "",
        _policy_text(settings),
        "",
        "## Files",
        "",
        *_files_text(settings, labelled),
        "",
        "## Source",
        "",
        settings.attribution or "Give the source's attribution with `export.attribution`.",
        "",
    ])  # fmt: skip


def _policy_text(settings: ExportSettings) -> str:
    p = settings.split
    shares = ", ".join(f"{s} {r:g}" for s, r in zip(SPLITS, p.ratios) if s in p.active)
    return {
        "stratified": f"Split: stratified per class ({shares}), seed {p.seed}: per class, images in the order "
                      "of a seeded SHA-256 of their path; exact shares, every class in every split.",
        "group": f"Split: whole groups ({p.group}) in one split ({shares} of the images), seed {p.seed}.",
        "files": "Split: as the lists " + ", ".join(f"{s}: {f}" for s, f in p.files) + " (matched by stem).",
        "none": "Split: none, every image in train.",
    }[p.by] + " Images exported before keep their split when images are added."  # fmt: skip


def _files_text(settings: ExportSettings, labelled: Labelled) -> list[str]:
    if settings.format == "webdataset":
        layout = "- `<split>-000000.tar`, ...: per image `<key>.png`, " + (
            "`<key>.json` (labels, source)" if labelled.multi_label else "`<key>.cls` (class index), `<key>.json`")
    elif labelled.multi_label:
        layout = "- `<split>/<id>.png` and `<split>/metadata.jsonl` (file_name, labels, id)"
    else:
        layout = "- `<split>/<class>/<name>.png` (Hugging Face and torchvision ImageFolder)"
    return [
        layout,
        "- `classes.txt`: the class names in index order",
        "- `manifest.csv`: split, path, member (in a tar file), labels (`;`), source, group, sha256",
        "- `splits/<split>.txt`: the images of each split",
    ]


def classes_txt(labelled: Labelled) -> str:
    return "".join(f"{c}\n" for c in labelled.classes)


def split_counts(rows: Sequence[Row]) -> Mapping[str, int]:
    return dict(Counter(r.split for r in rows))
