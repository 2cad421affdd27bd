"""One product's export: label the run's images, split them, lay them out, write the card,
the manifest and Croissant metadata. Everything is checked before anything is written; a
rerun rewrites no file whose content is the same."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from msrgb.config.export import SPLITS, ExportSettings
from msrgb.config.products import Product
from msrgb.errors import ExportError
from msrgb.export import card, layouts, splits
from msrgb.export.labels import Labelled, label_examples
from msrgb.outputs.paths import OutputPaths
from msrgb.outputs.provenance_manifest import read_provenance_manifest
from msrgb.planning.sharding import load_plan
from msrgb.sources.discovery import Source
from msrgb.sources.geotags import read_grid
from msrgb.storage import tsv
from msrgb.storage.files import output_rel, write_if_changed

log = logging.getLogger("msrgb")

#: folder names that Hugging Face datasets reads as split names
SPLIT_KEYWORDS = {"train", "training", "test", "testing", "eval", "evaluation", "val", "valid", "validation", "dev"}
SPLITS_HEADER = "# msrgb export splits v1"


@dataclass
class Exported:
    """What an export holds and what it changed."""

    counts: dict[str, int] = field(default_factory=dict)
    written: int = 0
    removed: int = 0
    classes: list[str] = field(default_factory=list)


def export_product(output: OutputPaths, product: Product, settings: ExportSettings, input_dir: object) -> Exported:
    """Export ``product``'s images of the run in ``output`` as ``settings`` say, into
    ``output.export_dir(product.name)``."""
    if output.images:
        raise ExportError(
            f"export: the images of {output.images} are in S3; export works on an output folder on "
            "this machine (run msrgb export on a local copy)"
        )
    sources = {output_rel(s.rel, product.suffix): s for members in load_plan(output).members for s in members}
    rows = [(r["path"], sources[r["path"]].rel if r["path"] in sources else r["path"], r["png_sha256"])
            for r in read_provenance_manifest(output.provenance(product.name))]  # fmt: skip
    local = input_dir if isinstance(input_dir, Path) else None
    labelled = label_examples(rows, settings.labels, local)
    _check_names(labelled, settings)
    before = read_splits(output.export_splits(product.name), settings.split_digest())
    grid_of = _grid_reader(local, sources) if settings.split.group == "grid" else None
    assigned, groups = splits.assign(labelled.examples, settings.split, before, grid_of)
    splits.check_classes(labelled.examples, assigned, settings.split)
    result = _write(output, product, settings, labelled, assigned, groups)
    write_if_changed(output.export_splits(product.name), splits_text(assigned, settings.split_digest()))
    return result


def _check_names(labelled: Labelled, settings: ExportSettings) -> None:
    broken = sorted(e.image for e in labelled.examples if "\n" in e.image or "\r" in e.image)
    if broken:
        raise ExportError(
            f"export: {len(broken)} image name(s) hold a line break (first: {broken[0]!r}), which the "
            "split lists and loaders cannot hold; rename those inputs"
        )
    if settings.format == "webdataset":
        layouts.check_webdataset_keys(labelled.examples)
    elif not labelled.multi_label:
        clash = sorted(c for c in labelled.classes if c.lower() in SPLIT_KEYWORDS)
        if clash:
            raise ExportError(
                f"export: class folder(s) {clash} have names that Hugging Face datasets reads as split "
                "names; rename the folders, or give the labels as a table (export.labels)"
            )


def _write(output: OutputPaths, product: Product, settings: ExportSettings, labelled: Labelled,
           assigned: Mapping[str, str], groups: Mapping[str, str]) -> Exported:  # fmt: skip
    root = output.export_dir(product.name)
    images = output.image_dir(product.name)
    assert isinstance(images, Path), "exports of outputs in object storage are refused before"
    result = Exported(classes=labelled.classes)
    wanted: set[str] = set()
    rows: list[card.Row] = []
    index = {c: i for i, c in enumerate(labelled.classes)}
    if settings.format == "imagefolder":
        paths = layouts.imagefolder_paths(labelled, assigned)
        for e in labelled.examples:
            if e.id in paths:
                result.written += layouts.place(images / e.image, root / paths[e.id])
                wanted.add(paths[e.id])
                rows.append(card.Row(assigned[e.id], paths[e.id], "", e.labels, e.source, groups[e.id], e.sha256, e.image))
        if labelled.multi_label:
            for split in set(assigned.values()):
                wanted.add(f"{split}/metadata.jsonl")
                result.written += write_if_changed(root / split / "metadata.jsonl", layouts.metadata_lines(labelled, paths, split))
    else:
        root.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            members = sorted((e for e in labelled.examples if assigned.get(e.id) == split), key=lambda e: e.id)
            samples = [(layouts.flat(e.id), images / e.image, _record(e, index, labelled.multi_label)) for e in members]
            names = layouts.write_tars(root, split, samples, settings.samples_per_tar)
            wanted.update(names)
            for n, e in enumerate(members):
                tar = names[n // settings.samples_per_tar]
                rows.append(card.Row(split, tar, layouts.flat(e.image), e.labels, e.source, groups[e.id], e.sha256, e.image))
    result.removed = layouts.remove_others(root, wanted)
    result.written += _write_root(root, product, settings, labelled, rows)
    per_split = card.split_counts(rows)
    result.counts = {s: per_split[s] for s in SPLITS if s in per_split}
    return result


def _record(e, index: Mapping[str, int], multi_label: bool) -> dict:
    record = {"id": e.id, "labels": list(e.labels), "source": e.source}
    if not multi_label:
        record["label"] = index[e.labels[0]]
    return record


def _write_root(root: Path, product: Product, settings: ExportSettings, labelled: Labelled,
                rows: list[card.Row]) -> int:  # fmt: skip
    from msrgb.export.croissant import croissant

    manifest = card.manifest_csv(rows)
    files = {
        "README.md": card.dataset_card(product, settings, labelled, rows),
        "classes.txt": card.classes_txt(labelled),
        "manifest.csv": manifest,
        **{f"splits/{s}.txt": text for s, text in card.split_lists(rows).items()},
    }
    if settings.croissant:
        tars = {t: _sha256(root / t) for t in sorted({r.path for r in rows})} if settings.format == "webdataset" else {}
        description = f"{len(rows)} images of the msrgb product {product.name}"
        files["croissant.json"] = croissant(settings, product.name, manifest, tars, product.suffix, description)
    for old in sorted((root / "splits").glob("*.txt")) if (root / "splits").is_dir() else []:
        if f"splits/{old.name}" not in files:
            old.unlink()
    if not settings.croissant:
        (root / "croissant.json").unlink(missing_ok=True)
    written = 0
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        written += write_if_changed(root / name, text)
    return written


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def read_splits(path: Path, digest: str) -> dict[str, str]:
    """The splits an earlier export with the same split settings gave (id -> split)."""
    try:
        rows = list(tsv.rows(path))
    except FileNotFoundError:
        return {}
    if not rows or rows[0] != [SPLITS_HEADER, digest]:
        return {}
    return {row[0]: row[1] for row in rows[1:] if len(row) == 2}


def splits_text(assigned: Mapping[str, str], digest: str) -> str:
    return tsv.text([[SPLITS_HEADER, digest], *sorted([i, s] for i, s in assigned.items())])


def _grid_reader(input_dir: Path | None, sources: Mapping[str, Source]) -> Callable[[str], tuple[str, float, float] | None]:
    by_rel = {s.rel: s for s in sources.values()}

    def grid_of(rel: str) -> tuple[str, float, float] | None:
        source = by_rel.get(rel)
        if input_dir is None or source is None:
            return None
        files = [p for _, p in source.files or ()] or [source.rel]
        path = next((input_dir / p for p in files if p.lower().endswith((".tif", ".tiff"))), None)
        if path is None:
            return None
        with open(path, "rb") as fh:
            grid = read_grid(fh.read(1 << 20))
        if grid is None:
            return None
        x0, y0, x1, y1 = grid.bounds
        return hashlib.sha256(grid.crs_key).hexdigest()[:12], (x0 + x1) / 2, (y0 + y1) / 2

    return grid_of
