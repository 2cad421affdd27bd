"""The run's settings, parsed from the validated configuration (config/schema.json), and where the
jobs run (locally or on a cluster, how many at once, Slurm's largest node).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from msrgb.config.export import ExportSettings, export_spec, parse_export
from msrgb.config.parse import parse_products
from msrgb.config.presets import EUROSAT_BANDS
from msrgb.config.products import Product
from msrgb.errors import PlanError, ProductError
from msrgb.outputs.paths import OutputPaths, check_product_name
from msrgb.outputs.sheet_lists import SheetGeometry
from msrgb.snakemake.slurm import NodeSize
from msrgb.sources.bandfiles import DEFAULT_BAND_PATTERN
from msrgb.sources.discovery import InputFormat
from msrgb.sources.stac import StacItems
from msrgb.sources.stac_search import StacSearch
from msrgb.storage.locations import S3Path, is_remote, location


@dataclass(frozen=True)
class Settings:
    """The workflow's configuration (config/schema.json), parsed."""

    input_dir: Path | S3Path | StacItems
    #: the output folder; with ``images`` (output_dir in S3) the local work folder
    output_dir: Path
    products: tuple[Product, ...]
    input_format: InputFormat = InputFormat()
    on_error: str = "fail"
    shards: int | None = None  # None: auto
    shard_target_size: int = 8000
    shard_min_size: int = 200
    cluster_shard_min_size: int = 2000
    threads_per_shard: int | None = None  # None: auto
    cluster_threads_per_shard: int = 4
    #: a rerun with at most this many images to convert or remove runs as one job (0: never)
    small_change: int = 1000
    #: live progress in the main process: a bar on a terminal, else a line every interval
    progress: bool = True
    progress_interval: float = 30.0
    contact_sheets: bool = True
    #: let a run delete many images whose input is gone (check_removals)
    remove_orphans: bool = False
    contact_sheet_tiles: int = 100
    overview_samples: int = 5
    thumbnail_size: int = 128
    #: output_dir when it is an s3:// prefix (the images, sheets and summary go there)
    images: str = ""
    #: inputs a shard job keeps asked for ahead of the conversion; the largest image in pixels
    read_ahead: int = 64
    max_pixels: int = 200_000_000
    #: (product name, its export settings) of the products exported as datasets
    exports: tuple[tuple[str, ExportSettings], ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """From the validated config (defaults filled in). Raises :class:`PlanError` naming a
        product setting that cannot work."""
        products = _products_of(config)
        stac_items, stac_search = config.get("stac_items"), config.get("stac_search")
        if stac_items and stac_search:
            raise PlanError("config: give 'stac_items' or 'stac_search', not both")
        layout = "band_folders" if stac_items or stac_search else config.get("layout", "stacked")
        input_format = InputFormat(layout, config.get("band_pattern") or DEFAULT_BAND_PATTERN)
        if input_format.layout == "band_folders":
            for p in products:
                if p.band_map != EUROSAT_BANDS:
                    raise PlanError(
                        f"config 'products': product {p.name!r}: 'band_map' does not apply to "
                        "layout band_folders, where file names say the band (band_pattern)"
                    )

        def auto(key: str) -> int | None:
            return None if config[key] == "auto" else int(config[key])

        output_dir, images = Path(config["output_dir"]), ""
        if is_remote(config["output_dir"]):
            target = S3Path.parse(config["output_dir"])
            images = str(target)
            output_dir = Path(config.get("work_dir") or Path("msrgb-work", target.bucket, target.key))
        elif config.get("work_dir"):
            raise PlanError("config 'work_dir' applies only to an output_dir in S3 (s3://bucket/prefix)")
        return cls(
            input_dir=input_location_of(config, OutputPaths(output_dir, images)),
            output_dir=output_dir,
            images=images,
            products=tuple(products),
            input_format=input_format,
            on_error=config["on_error"],
            shards=auto("shards"),
            shard_target_size=config["shard_target_size"],
            shard_min_size=config["shard_min_size"],
            cluster_shard_min_size=config["cluster_shard_min_size"],
            threads_per_shard=auto("threads_per_shard"),
            cluster_threads_per_shard=config["cluster_threads_per_shard"],
            small_change=config.get("small_change", 1000),
            progress=config.get("progress", True),
            progress_interval=float(config.get("progress_interval", 30)),
            contact_sheets=config["contact_sheets"],
            remove_orphans=config.get("remove_orphans", False),
            contact_sheet_tiles=config["contact_sheet_tiles"],
            overview_samples=config["overview_samples"],
            thumbnail_size=config["thumbnail_size"],
            read_ahead=config.get("read_ahead", 64),
            max_pixels=config.get("max_pixels", 200_000_000),
            exports=_exports_of(config, products),
        )

    @property
    def output(self) -> OutputPaths:
        return OutputPaths(self.output_dir, self.images)

    @property
    def sheet_geometry(self) -> SheetGeometry:
        return SheetGeometry(thumb=self.thumbnail_size)


def _exports_of(config: Mapping[str, Any], products: list[Product]) -> tuple[tuple[str, ExportSettings], ...]:
    """The export settings of each product: its own ``export``, else the top-level one."""
    found = []
    for p in products:
        settings = parse_export(*export_spec(config, p.name))
        if settings is not None:
            found.append((p.name, settings))
    return tuple(found)


def _products_of(config: Mapping[str, Any]) -> list[Product]:
    specs = config["products"]
    if isinstance(specs, Mapping):  # a product's export does not change its images
        specs = {name: {k: v for k, v in (spec or {}).items() if k != "export"} or None for name, spec in specs.items()}
    try:
        products = parse_products(
            specs,
            png_compression=config["png_compression"],
            max_size=config.get("max_size"),
            resampling=config.get("resampling", "bilinear"),
            offset=config.get("offset"),
            scale=config.get("scale"),
        )
    except ProductError as exc:
        raise PlanError(f"config 'products': {exc}") from None
    for p in products:
        check_product_name(p.name)
    return products


#: top-level settings that are true or false
BOOLEAN_KEYS = ("contact_sheets", "export", "png_targets", "progress", "remove_orphans")


def command_line_booleans(config: dict[str, Any]) -> dict[str, Any]:
    """``--config contact_sheets=false`` gives the text "false" (Snakemake turns only ``True``
    and ``False`` into booleans): take true/false in any case, as users write them."""
    for key in BOOLEAN_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            config[key] = value.lower() == "true"
    return config


@dataclass(frozen=True)
class Where:
    """Where the jobs run, as the main Snakemake process knows it."""

    cluster: bool = False
    #: jobs at once: --cores locally, --jobs on a cluster
    parallel_jobs: int = 1
    #: the largest node of the Slurm partition, on Slurm
    node_size: NodeSize | None = None
    #: --set-threads / --set-resources mem_mb of the shard rule, if given
    threads_override: int | None = None
    mem_mb: int | None = None


def input_location_of(config: Mapping[str, Any], output: OutputPaths) -> Path | S3Path | StacItems:
    """Where the inputs are: STAC Items (``stac_items``), the Items a STAC API search finds
    (``stac_search``, saved in ``layout`` for the jobs), or ``input_dir`` (a folder, s3://)."""
    if config.get("stac_search"):
        search = dict(config["stac_search"])
        return StacSearch(
            str(output.stac_search()),
            url=search.pop("url"),
            max_items=search.pop("max_items", 1000),
            parameters=json.dumps(search, sort_keys=True),
        )
    if config.get("stac_items"):
        return StacItems(config["stac_items"])
    return location(config["input_dir"])
