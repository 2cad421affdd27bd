"""Preparing a run, in the main Snakemake process: check every setting, discover the inputs
and plan the run (:func:`plan_run`, which only reads, as Snakemake reads the workflow for dry
runs, --lint and --report too); when jobs are about to run, write the plan the shard jobs
follow (:func:`start_run`, from Snakemake's onstart). See docs/how-it-works.md."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from msrgb.config.export import ExportSettings
from msrgb.errors import PlanError, SlurmQueryError
from msrgb.outputs.errors_table import problems_note
from msrgb.outputs.lock import lock_output
from msrgb.outputs.paths import OutputListing
from msrgb.outputs.state import StateCache
from msrgb.planning import sheet_plan
from msrgb.planning.changes import small_change
from msrgb.planning.checks import (
    check_folders,
    check_input_dir,
    check_prefixes,
    check_products_against,
    check_removals,
    input_dir_text,
    nothing_found,
)
from msrgb.planning.samples import choose_sample, sample_text
from msrgb.planning.settings import (
    Settings,
    Where,
)
from msrgb.planning.sharding import Plan, make_plan, shard_count, write_plan
from msrgb.planning.sheet_plan import write_sheet_lists
from msrgb.planning.work import (
    ScaledBandsOf,
    WorkCounts,
    count_work,
    shards_interrupted,
    shards_missing_outputs,
    shards_rescaled,
)
from msrgb.snakemake.slurm import check_request
from msrgb.sources.discovery import (
    Source,
    clash_error,
    clash_text,
    discover_inputs,
    find_clashes,
)
from msrgb.sources.hashing import path_hash
from msrgb.sources.stac_search import StacSearch
from msrgb.storage import tsv
from msrgb.storage.files import Problems, write_atomic, write_if_changed


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
    #: product -> what its export is made from besides the images: its settings, and the
    #: size and time of the files they name (labels table, split lists)
    exports: dict[str, str] = field(default_factory=dict)
    #: the due shards when this run is a small change (msrgb.planning.changes), else ()
    changes: tuple[int, ...] = ()

    def parts(self) -> dict[str, str]:
        """The digest of what each job besides the shard jobs is made from, which names the
        marker it leaves (:meth:`msrgb.outputs.paths.OutputPaths.part_done`): a changed sample, sheet
        or planning error gives a new name, so Snakemake runs that job again."""
        parts = {f"stretch/{name}": _digest(text) for name, text in self.samples.items()}
        parts |= {f"sheets/{name}": _digest(sheets) for name, sheets in self.sheets.items()}
        parts["summary"] = _digest(self.problems_text)
        parts |= {f"export/{name}": _digest([text, parts["summary"]]) for name, text in self.exports.items()}
        parts["upload"] = _digest(parts)  # output_dir in S3: rerun after any of the others
        return parts


def export_inputs(export: ExportSettings) -> str:
    """An export's settings and the size and time of the files they name: a change of either
    runs the export again."""
    files = [export.labels, *(f for _, f in export.split.files)]
    stats = []
    for name in filter(None, files):
        try:
            st = os.stat(name)
        except OSError as exc:
            raise PlanError(f"config 'export': {name} cannot be read ({exc.strerror or exc})") from None
        stats.append([name, st.st_size, st.st_mtime_ns])
    return json.dumps([export.digest(), stats])


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def find_sources(settings: Settings, processes: int | None = None) -> tuple[list[Source], Problems]:
    """The inputs to convert, and what cannot be (folders that cannot be read, zipped products,
    inputs whose outputs clash, under ``on_error: skip``); fails naming the problem when there
    is nothing to convert or, under ``on_error: fail``, when outputs clash. A large input
    folder is walked by up to ``processes`` processes (None: one per CPU)."""
    problems: Problems = []
    needed = {b for p in settings.products for b in p.bands}
    sources = discover_inputs(settings.input_dir, settings.input_format, needed, problems=problems, processes=processes)
    clashes = find_clashes(sources, {p.suffix for p in settings.products})
    if clashes and settings.on_error == "fail":
        raise clash_error(clashes)
    if clashes:
        clashing = {rel for first, second, _ in clashes for rel in (first, second)}
        problems += [(rel, f"its output clashes: {clash_text(a, b, why)}") for a, b, why in clashes for rel in {a, b}]
        sources = [s for s in sources if s.rel not in clashing]
    if not sources:
        raise PlanError(nothing_found(settings))
    return sources, problems


def plan_run(settings: Settings, where: Where, scaled_bands_of: ScaledBandsOf | None = None) -> Prepared:
    """Check the settings against the inputs and where the jobs run, and plan the run:
    shards, contact sheets, stretch samples, and what each product will convert. Only reads:
    Snakemake calls this whenever it reads the workflow (dry runs, --lint, --report too); the
    files are written by :func:`start_run` when jobs are about to run. Raises
    :class:`msrgb.errors.MsrgbError` naming what is wrong."""
    try:
        with tsv.without_cycle_collection():
            return _plan_run(settings, where, scaled_bands_of)
    finally:
        path_hash.cache_clear()  # remembered for this planning only: 100,000s of entries


def _plan_run(settings: Settings, where: Where, scaled_bands_of: ScaledBandsOf | None) -> Prepared:
    output = settings.output
    check_folders(settings.input_dir, settings.output_dir)
    check_prefixes(settings.input_dir, settings.images)
    threads, note = choose_threads(settings, where)
    if where.node_size is not None:
        try:
            check_request(where.node_size, where.threads_override or threads, where.mem_mb, "convert_shard")
        except SlurmQueryError as exc:
            raise PlanError(str(exc)) from None
    listing, states = OutputListing(images=output.images), StateCache()  # output folders and states, read once for both
    with ThreadPoolExecutor(1) as pool:  # images in S3: listed while the inputs are found
        images_listed = pool.submit(listing.list_images)
        # as many processes as jobs run here at once (--cores); on a cluster, the CPUs of this one
        sources, problems = find_sources(settings, None if where.cluster else where.parallel_jobs)
        images_listed.result()
    check_products_against(settings.products, settings.input_dir, sources)
    n_shards = choose_shard_count(settings, where, len(sources))
    plan = make_plan(sources, n_shards, settings.products, threads, settings.on_error)
    plan = plan.rerun(shards_missing_outputs(output, plan, settings.products, listing, states))
    plan = plan.rerun(shards_rescaled(output, plan, settings.products, settings.input_dir, states))
    plan = plan.rerun(shards_interrupted(output, plan))
    prepared = Prepared(
        plan,
        sheets=planned_sheets(settings, sources),
        samples={
            p.name: sample_text(p, choose_sample(sources, p.sample))
            for p in settings.products if p.dataset_stretch
        },
        problems_text=tsv.text([("file", "reason"), *problems]),
        exports={name: export_inputs(export) for name, export in settings.exports},
    )  # fmt: skip
    plan = replace(plan, parts=prepared.parts())
    # a shard job runs when the limits it uses are new: their file or their job's marker is
    # missing or newer than the shard's state
    stretches = [output.part_done(part, digest) for part, digest in plan.parts.items() if part.startswith("stretch/")]
    stretches += [output.stretch(p.name) for p in settings.products if p.dataset_stretch]
    counts = count_work(
        output, plan, settings.products, settings.on_error, stretches, listing, settings.input_dir, states,
        scaled_bands_of,
    )  # fmt: skip
    if not settings.remove_orphans:
        check_input_dir(counts, settings)
        check_removals(counts, settings)
    notes = ([note] if note else []) + ([f"warning: {problems_note(problems)}"] if problems else [])
    # not with an output_dir in S3: its upload job waits for the sheets' and summary's markers
    changes = small_change(output, plan, counts, stretches, 0 if settings.images else settings.small_change)
    return replace(prepared, plan=plan, notes=tuple(notes), counts=counts, changes=changes)


def planned_sheets(settings: Settings, sources: Sequence[Source]) -> dict[str, dict[str, str]]:
    if not settings.contact_sheets:
        return {}
    return sheet_plan.plan_sheets(
        settings.products, sources, settings.contact_sheet_tiles, settings.overview_samples,
        settings.sheet_geometry,
    )  # fmt: skip


def start_run(settings: Settings, prepared: Prepared) -> None:
    """When jobs are about to run (Snakemake's onstart): take the output folder's lock, then
    write the plan the jobs read: shard manifests and the plan file, contact-sheet manifests,
    stretch samples, planning errors, and the products and input settings for msrgb.tools.status."""
    output = settings.output
    lock_output(output)
    write_atomic(output.run_started(), f"{time.time()}\n".encode())
    write_sheet_lists(output, prepared.sheets)
    for name, text in prepared.samples.items():
        write_if_changed(output.sample(name), text)
    write_plan(output, prepared.plan)
    write_if_changed(output.planning_errors(), prepared.problems_text)
    if isinstance(settings.input_dir, StacSearch):  # the Items the jobs read (not searching again)
        write_if_changed(Path(settings.input_dir.where), settings.input_dir.collection_text())
    products = [p.to_dict() for p in settings.products]
    write_if_changed(output.products_file(), json.dumps(products, indent=1) + "\n")
    write_if_changed(output.input_format_file(), json.dumps(settings.input_format.to_dict(), indent=1) + "\n")
    write_if_changed(output.input_dir_file(), input_dir_text(settings.input_dir) + "\n")
    if output.images:
        write_if_changed(output.images_at(), output.images + "\n")
    else:
        output.images_at().unlink(missing_ok=True)


