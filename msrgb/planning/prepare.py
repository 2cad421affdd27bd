"""Preparing a run, in the main Snakemake process: check every setting, discover the inputs
and plan the run (:func:`plan_run`, which only reads, as Snakemake reads the workflow for dry
runs, --lint and --report too); when jobs are about to run, write the plan the shard jobs
follow (:func:`start_run`, from Snakemake's onstart). See docs/how-it-works.md."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from msrgb.storage import remote
from msrgb.render import sheets
from msrgb.jobs import stats
from msrgb.storage import tsv
from msrgb.sources.bandfiles import ZIP_BAND, band_of, compile_pattern, is_zipped_product
from msrgb.errors import InputError, PlanError, ProductError, SlurmQueryError
from msrgb.storage.files import Problems, write_atomic, write_if_changed
from msrgb.sources.discovery import Inputs, Source, clash_error, clash_text, find_clashes, discover_inputs
from msrgb.sources.geotags import samples_per_pixel, samples_per_pixel_of
from msrgb.outputs.lock import lock_output
from msrgb.outputs.paths import OutputPaths, OutputListing, check_product_name
from msrgb.storage.remote import S3Path
from msrgb.sources.stac import StacItems, StacSearch
from msrgb.planning.sharding import Plan, make_plan, path_hash, shard_count, write_plan
from msrgb.sources.bandfiles import DEFAULT_BAND_PATTERN
from msrgb.planning.work import WorkCounts, count_work, shards_missing_outputs, shards_rescaled
from msrgb.jobs.report import problems_note
from msrgb.config.products import EUROSAT_BANDS, Product, check_band_count, parse_products
from msrgb.snakemake.slurm import NodeSize, check_request
from msrgb.outputs.state import StateCache


@dataclass(frozen=True)
class Settings:
    """The workflow's configuration (config/schema.json), parsed."""

    input_dir: Path | S3Path | StacItems
    #: the output folder; with ``images`` (output_dir in S3) the local work folder
    output_dir: Path
    products: tuple[Product, ...]
    inputs: Inputs = Inputs()
    on_error: str = "fail"
    shards: int | None = None  # None: auto
    shard_target_size: int = 8000
    shard_min_size: int = 200
    cluster_shard_min_size: int = 2000
    threads_per_shard: int | None = None  # None: auto
    cluster_threads_per_shard: int = 4
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

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """From the validated config (defaults filled in). Raises :class:`PlanError` naming a
        product setting that cannot work."""
        products = _products_of(config)
        stac_items, stac_search = config.get("stac_items"), config.get("stac_search")
        if stac_items and stac_search:
            raise PlanError("config: give 'stac_items' or 'stac_search', not both")
        layout = "band_folders" if stac_items or stac_search else config.get("layout", "stacked")
        inputs = Inputs(layout, config.get("band_pattern") or DEFAULT_BAND_PATTERN)
        if inputs.layout == "band_folders":
            for p in products:
                if p.band_map != EUROSAT_BANDS:
                    raise PlanError(
                        f"config 'products': product {p.name!r}: 'band_map' does not apply to "
                        "layout band_folders, where file names say the band (band_pattern)"
                    )

        def auto(key: str) -> int | None:
            return None if config[key] == "auto" else int(config[key])

        output_dir, images = Path(config["output_dir"]), ""
        if remote.is_remote(config["output_dir"]):
            target = remote.S3Path.parse(config["output_dir"])
            images = str(target)
            output_dir = Path(config.get("work_dir") or Path("msrgb-work", target.bucket, target.key))
        elif config.get("work_dir"):
            raise PlanError("config 'work_dir' applies only to an output_dir in S3 (s3://bucket/prefix)")
        return cls(
            input_dir=input_location_of(config, OutputPaths(output_dir, images)),
            output_dir=output_dir,
            images=images,
            products=tuple(products),
            inputs=inputs,
            on_error=config["on_error"],
            shards=auto("shards"),
            shard_target_size=config["shard_target_size"],
            shard_min_size=config["shard_min_size"],
            cluster_shard_min_size=config["cluster_shard_min_size"],
            threads_per_shard=auto("threads_per_shard"),
            cluster_threads_per_shard=config["cluster_threads_per_shard"],
            progress=config.get("progress", True),
            progress_interval=float(config.get("progress_interval", 30)),
            contact_sheets=config["contact_sheets"],
            remove_orphans=config.get("remove_orphans", False),
            contact_sheet_tiles=config["contact_sheet_tiles"],
            overview_samples=config["overview_samples"],
            thumbnail_size=config["thumbnail_size"],
            read_ahead=config.get("read_ahead", 64),
            max_pixels=config.get("max_pixels", 200_000_000),
        )

    @property
    def layout(self) -> OutputPaths:
        return OutputPaths(self.output_dir, self.images)

    @property
    def sheet_geometry(self) -> sheets.SheetGeometry:
        return sheets.SheetGeometry(thumb=self.thumbnail_size)


def _products_of(config: Mapping[str, Any]) -> list[Product]:
    try:
        products = parse_products(
            config["products"],
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
BOOLEAN_KEYS = ("contact_sheets", "png_targets", "progress", "remove_orphans")


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


def choose_threads(settings: Settings, where: Where) -> tuple[int, str | None]:
    """Threads per shard job, and a note when ``auto`` was lowered to fit a node. auto: 1
    locally, where the shards of ``--cores`` run side by side and the work is CPU-bound; on a
    cluster ``cluster_threads_per_shard`` (shared file systems add latency that threads hide),
    but never more than a node of the partition has."""
    if settings.threads_per_shard is not None:
        return settings.threads_per_shard, None
    if not where.cluster:
        return 1, None
    threads = settings.cluster_threads_per_shard
    size = where.node_size
    if size is not None and size.cpus < threads:
        note = (
            f"threads_per_shard auto: {size.cpus} instead of {threads}, the CPUs of the "
            f"largest node in Slurm partition {size.partition}"
        )
        return size.cpus, note
    return threads, None


def choose_shard_count(settings: Settings, where: Where, n_files: int) -> int:
    if settings.shards is not None:
        if settings.shards & (settings.shards - 1):
            raise PlanError(f"config 'shards': {settings.shards} is not a power of two")
        return settings.shards
    min_size = settings.cluster_shard_min_size if where.cluster else settings.shard_min_size
    return shard_count(n_files, where.parallel_jobs, settings.shard_target_size, min_size)


def input_location_of(config: Mapping[str, Any], layout: OutputPaths) -> Path | S3Path | StacItems:
    """Where the inputs are: STAC Items (``stac_items``), the Items a STAC API search finds
    (``stac_search``, saved in ``layout`` for the jobs), or ``input_dir`` (a folder, s3://)."""
    if config.get("stac_search"):
        search = dict(config["stac_search"])
        return StacSearch(
            str(layout.stac_search()),
            url=search.pop("url"),
            max_items=search.pop("max_items", 1000),
            parameters=json.dumps(search, sort_keys=True),
        )
    if config.get("stac_items"):
        return StacItems(config["stac_items"])
    return remote.location(config["input_dir"])


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
    """How many bands the image at ``path`` has (None if it cannot be opened): from its TIFF
    tags where they say it plainly, which spares planning the load of GDAL. An object in S3 is
    fetched (one GET)."""
    if isinstance(path, S3Path):
        try:
            data = remote.get(path)
        except InputError:
            return None
        count = samples_per_pixel_of(data[:65536])
        if count is not None:
            return count
        from msrgb.readers.stacked import band_count_of_bytes

        return band_count_of_bytes(data)
    try:
        count = samples_per_pixel(str(path))
    except OSError:
        count = None
    if count is not None:
        return count
    from msrgb.readers.stacked import band_count as gdal_band_count

    return gdal_band_count(path)


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
        count = band_count(input_dir / source.rel)  # from the file's tags, GDAL only for odd files
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


@dataclass(frozen=True)
class Prepared:
    """A planned run, in memory: the plan, what the jobs' files will hold, and what the main
    process should tell the user. Nothing of it is on disk until :func:`start_run`."""

    plan: Plan
    notes: tuple[str, ...] = ()
    #: per product, what the shard jobs of this run will do
    counts: WorkCounts | None = None
    #: product -> sheet name -> manifest text (msrgb.render.sheets)
    sheets: dict[str, dict[str, str]] = field(default_factory=dict)
    #: product -> the list of files its dataset-wide stretch is computed from (msrgb.jobs.stats)
    samples: dict[str, str] = field(default_factory=dict)
    #: what planning found it cannot convert, as written to .msrgb/planning_errors.tsv
    problems_text: str = ""

    def parts(self) -> dict[str, str]:
        """The digest of what each job besides the shard jobs is made from, which names the
        marker it leaves (:meth:`msrgb.outputs.paths.OutputPaths.part_done`): a changed sample, sheet
        or planning error gives a new name, so Snakemake runs that job again."""
        parts = {f"stretch/{name}": _digest(text) for name, text in self.samples.items()}
        parts |= {f"sheets/{name}": _digest(sheets) for name, sheets in self.sheets.items()}
        parts["summary"] = _digest(self.problems_text)
        parts["upload"] = _digest(parts)  # output_dir in S3: rerun after any of the others
        return parts


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def find_sources(settings: Settings) -> tuple[list[Source], Problems]:
    """The inputs to convert, and what cannot be (folders that cannot be read, zipped products,
    inputs whose outputs clash, under ``on_error: skip``); fails naming the problem when there
    is nothing to convert or, under ``on_error: fail``, when outputs clash."""
    problems: Problems = []
    needed = {b for p in settings.products for b in p.bands}
    sources = discover_inputs(settings.input_dir, settings.inputs, needed, problems=problems)
    clashes = find_clashes(sources, {p.suffix for p in settings.products})
    if clashes and settings.on_error == "fail":
        raise clash_error(clashes)
    clashing = {rel for first, second, _ in clashes for rel in (first, second)}
    problems += [(rel, f"its output clashes: {clash_text(a, b, why)}") for a, b, why in clashes for rel in {a, b}]
    sources = [s for s in sources if s.rel not in clashing]
    if not sources:
        raise PlanError(nothing_found(settings))
    return sources, problems


def nothing_found(settings: Settings) -> str:
    """Why a run found nothing to convert, and the setting that helps, where one does."""
    where = str(settings.input_dir)
    if isinstance(settings.input_dir, StacSearch):
        return f"{settings.input_dir.describe()} found no STAC Items (see its collections, bbox and datetime)"
    if isinstance(settings.input_dir, StacItems):
        return f"found no STAC Items under stac_items {settings.input_dir.where!r}"
    if settings.inputs.layout == "band_folders":
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


def plan_run(settings: Settings, where: Where) -> Prepared:
    """Check the settings against the inputs and where the jobs run, and plan the run:
    shards, contact sheets, stretch samples, and what each product will convert. Only reads:
    Snakemake calls this whenever it reads the workflow (dry runs, --lint, --report too); the
    files are written by :func:`start_run` when jobs are about to run. Raises
    :class:`msrgb.errors.MsrgbError` naming what is wrong."""
    try:
        with tsv.without_cycle_collection():
            return _plan_run(settings, where)
    finally:
        path_hash.cache_clear()  # remembered for this planning only: 100,000s of entries


def _plan_run(settings: Settings, where: Where) -> Prepared:
    layout = settings.layout
    check_folders(settings.input_dir, settings.output_dir)
    check_prefixes(settings.input_dir, settings.images)
    threads, note = choose_threads(settings, where)
    if where.node_size is not None:
        try:
            check_request(where.node_size, where.threads_override or threads, where.mem_mb, "convert_shard")
        except SlurmQueryError as exc:
            raise PlanError(str(exc)) from None
    listing, states = OutputListing(images=layout.images), StateCache()  # output folders and states, read once for both
    with ThreadPoolExecutor(1) as pool:  # images in S3: listed while the inputs are found
        images_listed = pool.submit(listing.list_images)
        sources, problems = find_sources(settings)
        images_listed.result()
    check_products_against(settings.products, settings.input_dir, sources)
    n_shards = choose_shard_count(settings, where, len(sources))
    plan = make_plan(sources, n_shards, settings.products, threads, settings.on_error)
    plan = plan.rerun(shards_missing_outputs(layout, plan, settings.products, listing, states))
    plan = plan.rerun(shards_rescaled(layout, plan, settings.products, settings.input_dir, states))
    prepared = Prepared(
        plan,
        sheets=plan_sheets(settings, sources),
        samples={
            p.name: stats.sample_text(p, stats.choose_sample(sources, p.sample))
            for p in settings.products if p.dataset_stretch
        },
        problems_text=tsv.text([("file", "reason"), *problems]),
    )  # fmt: skip
    plan = replace(plan, parts=prepared.parts())
    # a shard job runs when the limits it uses are new: their file or their job's marker is
    # missing or newer than the shard's state
    stretches = [layout.part_done(part, digest) for part, digest in plan.parts.items() if part.startswith("stretch/")]
    stretches += [layout.stretch(p.name) for p in settings.products if p.dataset_stretch]
    counts = count_work(layout, plan, settings.products, settings.on_error, stretches, listing, settings.input_dir, states)
    if not settings.remove_orphans:
        check_input_dir(counts, settings)
        check_removals(counts, settings)
    notes = ([note] if note else []) + ([f"warning: {problems_note(problems)}"] if problems else [])
    return replace(prepared, plan=plan, notes=tuple(notes), counts=counts)


def plan_sheets(settings: Settings, sources: Sequence[Source]) -> dict[str, dict[str, str]]:
    if not settings.contact_sheets:
        return {}
    return sheets.plan_sheets(
        settings.products, sources, settings.contact_sheet_tiles, settings.overview_samples,
        settings.sheet_geometry,
    )  # fmt: skip


def start_run(settings: Settings, prepared: Prepared) -> None:
    """When jobs are about to run (Snakemake's onstart): take the output folder's lock, then
    write the plan the jobs read: shard manifests and the plan file, contact-sheet manifests,
    stretch samples, planning errors, and the products and input settings for msrgb.tools.status."""
    layout = settings.layout
    lock_output(layout)
    write_atomic(layout.run_started(), f"{time.time()}\n".encode())
    sheets.write_sheet_manifests(layout, prepared.sheets)
    for name, text in prepared.samples.items():
        write_if_changed(layout.sample(name), text)
    write_plan(layout, prepared.plan)
    write_if_changed(layout.planning_errors(), prepared.problems_text)
    if isinstance(settings.input_dir, StacSearch):  # the Items the jobs read (not searching again)
        write_if_changed(Path(settings.input_dir.where), settings.input_dir.collection_text())
    products = [p.to_dict() for p in settings.products]
    write_if_changed(layout.products_file(), json.dumps(products, indent=1) + "\n")
    write_if_changed(layout.inputs_file(), json.dumps(settings.inputs.to_dict(), indent=1) + "\n")
    write_if_changed(layout.input_dir_file(), input_dir_text(settings.input_dir) + "\n")
    if layout.images:
        write_if_changed(layout.images_at(), layout.images + "\n")
    else:
        layout.images_at().unlink(missing_ok=True)


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
        before = settings.layout.input_dir_file().read_text(encoding="utf-8").strip()
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
