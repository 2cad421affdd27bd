"""The jobs of a run, as functions: what each Snakemake script calls (scripts/) and what the
in-process engine (msrgb.engine.run) calls in the order Snakemake's graph allows: a shard, a
small change's shards with the sheets and summary, a product's contact sheets, the summary, a
dataset-wide stretch, an export."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from msrgb.config.export import ExportSettings
from msrgb.config.products import Product
from msrgb.errors import MsrgbError, OutputError, ShardError
from msrgb.outputs.paths import OutputPaths, leave_marker
from msrgb.sources.stac import InputDir

if TYPE_CHECKING:  # (planning is not loaded by the jobs, which read the plan from files)
    from msrgb.export.run import Exported
    from msrgb.jobs.summary_parts import ShardPart
    from msrgb.planning.prepare import Prepared

log = logging.getLogger("msrgb")


def part_outputs(output: OutputPaths, products: Sequence[Product], part: str, prepared: Prepared | None) -> list[Path]:
    """The files the rule making ``part`` declares (rules/report.smk): the summary's, or a
    product's contact sheets (as planned, or in a job as the run's sheet lists name them)."""
    if part.startswith("sheets/"):
        from msrgb.outputs.sheet_lists import sheet_names

        name = part.partition("/")[2]
        names = sorted(prepared.sheets[name]) if prepared is not None else sheet_names(output, name)
        return [output.contact_sheet(name, n) for n in names]
    files = [output.errors_table(), output.summary()]
    for p in products:
        files += [output.provenance(p.name), output.histogram(p.name), output.clipped_sheet(p.name)]
        files += [output.legend(p.name)] if p.is_index else []
    return files


def touch(paths: Sequence[Path]) -> None:
    """What Snakemake does to a job's outputs when it ends: those the job left as they were
    (written only when their bytes change) get the job's end as their time, so that they are
    not older than its inputs."""
    for path in paths:
        if path.exists():
            os.utime(path)


@dataclass(frozen=True)
class ShardSettings:
    """What every shard job of a run is given besides its shard list (rules/convert.smk)."""

    input_dir: InputDir
    products: Sequence[Product]
    threads: int
    stretch_files: Mapping[str, Path]
    read_ahead: int
    max_pixels: int


def convert_shards(
    output: OutputPaths,
    n_shards: int,
    tokens: Mapping[int, str],
    job: ShardSettings,
    pool: Executor | None = None,
    parts: bool = False,
    additions: Collection[int] = (),
) -> dict[int, ShardPart]:
    """The jobs of the shards ``tokens`` names (shard -> token), one after the other or side by
    side in ``pool``, each leaving its marker; a shard with bad inputs (``on_error: fail``)
    raises once the others have run, with every failed shard's message. With ``parts``, each
    shard's summary part is made where its records are (msrgb.jobs.summary_parts): shard ->
    part."""
    failed: list[MsrgbError] = []
    made: dict[int, ShardPart | None] = {}
    if pool is None:
        for shard, token in tokens.items():
            try:
                made[shard] = shard_job(output, n_shards, shard, token, job, parts, shard in additions)
            except ShardError as exc:
                failed.append(exc)
    else:
        futures = {
            shard: pool.submit(shard_job, output, n_shards, shard, token, job, parts, shard in additions)
            for shard, token in tokens.items()
        }
        for shard, future in futures.items():
            error = future.exception()
            if isinstance(error, ShardError):
                failed.append(error)
            elif error is None:
                made[shard] = future.result()
        for future in futures.values():
            future.result()  # any other error, as it was raised
    if failed:
        raise ShardError("\n".join(str(exc) for exc in failed)) from failed[0]
    return {shard: part for shard, part in made.items() if part is not None}


def changes_job(
    output: OutputPaths,
    n_shards: int,
    tokens: Mapping[int, str],
    parts: Mapping[str, str],
    job: ShardSettings,
    thumbnail: int,
    processes: int = 1,
    prepared: Prepared | None = None,
    additions: Collection[int] = (),
) -> dict[str, Any]:
    """The job of a small change (msrgb.planning.changes): the due shards (``tokens``: shard ->
    token), then the contact sheets and the summary (``parts``: part -> digest), leaving every
    marker their own jobs would leave and touching what they declare, as Snakemake does at a
    job's end, so that the next run finds nothing to do. The shards ``additions`` names convert
    only their new inputs (msrgb.jobs.shard.run_shard). With ``processes`` > 1, the shards run
    side by side, then the parts of the other shards (from their states) and the sheets beside
    the summary, in forked processes (what the separate jobs would run on as many cores).
    Raises after the shards when one of them failed, as the run of separate jobs stops before
    the sheets and the summary."""
    from msrgb.jobs.part_files import part_of_state

    summary: dict[str, Any] = {}
    with _pool(processes) as pool:
        made = convert_shards(output, n_shards, tokens, job, pool, parts="summary" in parts, additions=additions)
        sheets = [part for part in parts if part != "summary"]
        # the other shards' parts, from their state files, by the forked processes first (they
        # would wait for this one's summary once the sheets are drawn)
        suffixes = {p.name: p.suffix for p in job.products}
        others = {
            k: pool.submit(part_of_state, output.state(n_shards, k), suffixes, output.kept_part(n_shards, k))
            for k in range(n_shards) if pool and "summary" in parts and k not in made
        }  # fmt: skip
        # in forked processes, each drawing its share of the sheets, beside the summary; in
        # this process, after it
        drawn = {
            p: [pool.submit(_sheets_part, output, job.products, p, thumbnail, prepared, (i, processes)) for i in range(processes)]
            for p in sheets if pool
        }  # fmt: skip
        if "summary" in parts:
            made.update({k: future.result() for k, future in others.items()})
            summary = summary_job(output, job.products, thumbnail, parts=made)
        for part, digest in parts.items():
            if part in sheets:
                if pool:
                    rebuilt = sum(share.result() for share in drawn[part])
                else:
                    rebuilt = _sheets_part(output, job.products, part, thumbnail, prepared)
                log.info("%s: %d contact sheet(s) rebuilt", part, rebuilt)
            touch(part_outputs(output, job.products, part, prepared))
            leave_marker(output.part_done(part, digest))
    return summary


def _pool(processes: int) -> Any:
    """Forked worker processes (the job's own state, no re-import), or none for one process."""
    if processes <= 1:
        return contextlib.nullcontext()
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"))


def _sheets_part(
    output: OutputPaths,
    products: Sequence[Product],
    part: str,
    thumbnail: int,
    prepared: Prepared | None,
    share: tuple[int, int] = (0, 1),
) -> int:
    product = next(p for p in products if p.name == part.partition("/")[2])
    return sheets_job(output, product, thumbnail, prepared, share)


def shard_job(
    output: OutputPaths,
    n_shards: int,
    shard: int,
    token: str,
    job: ShardSettings,
    part: bool = False,
    additions: bool = False,
) -> ShardPart | None:
    """One shard's job, as ``convert_shard`` runs it; with ``part``, returns the shard's summary
    part (msrgb.jobs.summary_parts) from the records it wrote; ``additions``: run_shard's."""
    from msrgb.jobs.part_files import part_of_job
    from msrgb.jobs.shard import run_shard

    result = run_shard(
        shard_list=output.shard_list(n_shards, shard),
        state_out=output.state(n_shards, shard),
        input_dir=job.input_dir,
        products=job.products,
        threads=job.threads,
        stretch_files=dict(job.stretch_files),
        read_ahead=job.read_ahead,
        max_pixels=job.max_pixels,
        done=output.done(n_shards, shard, token),
        additions=additions,
    )
    if not part or result.kept is None or result.state is None:
        return None
    suffixes = {p.name: p.suffix for p in job.products}
    return part_of_job(result.kept, result.state, result.added_to, suffixes, output.kept_part(n_shards, shard))


@contextlib.contextmanager
def _files_named_in_errors(what: str) -> Iterator[None]:
    """A file that cannot be read or written inside the block stops ``what`` with an
    :class:`OutputError` naming the file and the problem, which the job prints without a
    traceback (msrgb.jobs.shard.ends_as_a_job)."""
    try:
        yield
    except OSError as exc:
        name = exc.filename2 or exc.filename  # (a rename's target before its temporary file)
        raise OutputError(f"{what} stopped: {name}: {exc.strerror or exc}" if name else f"{what} stopped: {exc}") from exc


def export_job(output: OutputPaths, product: Product, export: ExportSettings, input_dir: object) -> Exported:
    """A product's export as a dataset (msrgb.export), after the summary wrote its manifest."""
    from msrgb.export.run import export_product

    exported = export_product(output, product, export, input_dir)
    log.info("export %s: %s", product.name, exported.counts)
    return exported


def percentiles_job(product: Product, input_dir: InputDir, output: OutputPaths) -> dict[str, Any]:
    """A dataset-wide stretch's job: its limits from the planned sample (msrgb.jobs.stats)."""
    return percentiles_of_sample(product, input_dir, output.sample(product.name), output.stretch(product.name))


def percentiles_of_sample(product: Product, input_dir: InputDir, sample: Path, out: Path) -> dict[str, Any]:
    """The limits of a dataset-wide stretch from the files listed in ``sample``, into ``out``."""
    from msrgb.jobs import stats

    return stats.run(product, input_dir, sample, out)


def sheets_job(
    output: OutputPaths, product: Product, thumbnail: int, prepared: Prepared | None = None, share: tuple[int, int] = (0, 1)
) -> int:
    """A product's contact-sheet job: the sheets whose manifest is newer than the sheet; with
    ``share`` (i, n), every n-th of them from the i-th, for one of n processes."""
    from msrgb.outputs.sheet_lists import sheet_list_path, sheet_names

    names = sorted(prepared.sheets[product.name]) if prepared is not None else sheet_names(output, product.name)
    names = names[share[0] :: share[1]]
    pairs = [(sheet_list_path(output, product.name, n), output.contact_sheet(product.name, n)) for n in names]
    return rebuild_sheets(pairs, product, output.image_dir(product.name), thumbnail)


def rebuild_sheets(pairs: Sequence[tuple[Path, Path]], product: Product, images: Path | Any, thumbnail: int) -> int:
    """Rebuild the (manifest, sheet) pairs whose sheet is missing or older than its manifest."""
    from msrgb.outputs.sheet_lists import SheetGeometry
    from msrgb.render import sheets

    due = sheets.stale(pairs)
    if not due:  # (without loading what drawing needs)
        return 0
    from msrgb.render.legend import legend_image

    legend = legend_image(product) if product.is_index else None
    sheets.build_all(due, images, SheetGeometry(thumb=thumbnail), product.suffix, legend)
    return len(due)


def summary_job(
    output: OutputPaths,
    products: Sequence[Product],
    thumbnail: int,
    states: Sequence[Path] | None = None,
    errors_out: Path | None = None,
    summary_out: Path | None = None,
    manifests: Sequence[Path] | None = None,
    parts: Mapping[int, ShardPart] | None = None,
) -> dict[str, Any]:
    """The summary's job: errors.tsv, the provenance manifests, summary.json, histograms and
    the clipping sheets, from what the shard jobs recorded (msrgb.jobs.report): the part of each
    shard (msrgb.jobs.summary_parts) from ``parts`` (shard -> part, made by this job's shards)
    or else from its state file."""
    from msrgb.jobs import report
    from msrgb.jobs.part_files import part_of_state
    from msrgb.jobs.summary_parts import skipped
    from msrgb.outputs.errors_table import problems_note, read_planning_errors, write_errors
    from msrgb.outputs.summary import summary_table
    from msrgb.planning.sharding import planned_paths

    with _files_named_in_errors("the run's summary"):  # (an errors.tsv that is a folder, a full disk)
        n_shards, rels = planned_paths(output)
        per_class = report.images_per_class(rels)
        del rels
        if states is None:
            states = [output.state(n_shards, shard) for shard in range(n_shards)]
        suffixes = {p.name: p.suffix for p in products}
        given = parts or {}
        shard_parts = [
            given[k] if k in given else part_of_state(path, suffixes, output.kept_part(n_shards, k)) for k, path in enumerate(states)
        ]
        planning = read_planning_errors(output.planning_errors())
        errors = write_errors(skipped(shard_parts), errors_out or output.errors_table(), planning)
        outs = manifests or [output.provenance(p.name) for p in products]
        report.write_provenance(shard_parts, {p.name: (p.digest(), Path(out)) for p, out in zip(products, outs)})
        summary = report.summarize(output, per_class, n_shards, len(products), len(errors))
        if planning:
            summary["notes"].insert(0, problems_note(planning))
        summary["clipping"] = report.clipping_summary(shard_parts, suffixes)
        report.write_summary(summary_out or output.summary(), summary)
        report.write_looks(output, products, shard_parts, summary["clipping"], thumbnail)
    log.info("summary:\n%s", summary_table(summary))
    return summary
