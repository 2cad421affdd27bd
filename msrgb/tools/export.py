"""``msrgb export OUT``: export the images of a finished run as a dataset, as the ``export``
setting would at the end of the run (docs/ml-export.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from msrgb.config.export import export_spec, parse_export
from msrgb.config.parse import products_from_dicts
from msrgb.errors import MsrgbError
from msrgb.outputs.paths import OutputPaths

#: command-line options -> keys of the export setting (split options go under ``split``)
OPTIONS = ("format", "croissant", "labels", "license", "name", "attribution", "samples_per_tar")
SPLIT_OPTIONS = ("by", "ratios", "seed", "group", "cell")


def export_folder(args: argparse.Namespace) -> Iterator[str]:
    """Export every product (or ``args.product``) of the run in ``args.output_dir``; yields a
    line per product."""
    from msrgb.export.run import export_product

    output = OutputPaths.at(args.output_dir)
    try:
        products = products_from_dicts(json.loads(output.products_file().read_text()))
    except FileNotFoundError:
        raise MsrgbError(f"{args.output_dir} holds no msrgb run (no {output.products_file()})") from None
    if args.product:
        unknown = sorted(set(args.product) - {p.name for p in products})
        if unknown:
            raise MsrgbError(f"--product {unknown}: the run made {[p.name for p in products]}")
        products = [p for p in products if p.name in args.product]
    input_dir = args.input or _run_input(output)
    for product in products:
        settings = parse_export(_spec(args, product.name) or True, "export")
        assert settings is not None
        exported = export_product(output, product, settings, input_dir)
        counts = ", ".join(f"{split} {n:,}" for split, n in exported.counts.items())
        yield (f"{product.name}: {output.export_dir(product.name)} ({counts}; {len(exported.classes)} "
               f"classes; {exported.written} file(s) written, {exported.removed} removed)")  # fmt: skip


def _run_input(output: OutputPaths) -> Path | None:
    try:
        text = output.input_dir_file().read_text().strip()
    except FileNotFoundError:
        return None
    return Path(text) if text and "://" not in text else None


def _spec(args: argparse.Namespace, product: str) -> dict[str, Any]:
    """The export setting: the config file's (the product's own, else the top level), then the
    options given."""
    spec: dict[str, Any] = {}
    if args.config is not None:
        import yaml

        found, _ = export_spec(yaml.safe_load(args.config.read_text()) or {}, product)
        spec = dict(found) if isinstance(found, dict) else {}
    split = dict(spec.get("split") or {})
    for key in OPTIONS:
        if getattr(args, key) is not None:
            spec[key] = getattr(args, key)
    for key in SPLIT_OPTIONS:
        if getattr(args, key) is not None:
            split[key] = getattr(args, key)
    if args.files:
        split["files"] = dict(f.split("=", 1) for f in args.files)
    if split:
        spec["split"] = split
    return spec
