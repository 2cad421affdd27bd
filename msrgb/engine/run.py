"""The in-process engine: a whole local run (plan, start, dataset-wide stretches, every shard,
contact sheets, summary, upload) in this process, by calling the same functions the Snakemake
jobs call. The Snakemake scripts are thin adapters over the job functions here; the Python API
and most tests run through :func:`run`.

A job runs when Snakemake would run it: a shard whose marker (its manifest's token) is missing
or whose state is older than the stretch limits it uses, a part (stretch, contact sheets,
summary, upload) whose marker is missing or whose inputs (the shard markers) are newer.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from msrgb.config.export import ExportSettings
from msrgb.config.products import Product
from msrgb.errors import MsrgbError, PlanError, ShardError
from msrgb.outputs.lock import unlock_output
from msrgb.outputs.paths import OutputPaths, leave_marker
from msrgb.outputs.summary import closing_report
from msrgb.planning.prepare import Prepared, plan_run, start_run
from msrgb.planning.settings import Settings, Where, command_line_booleans
from msrgb.planning.work import print_counts, shard_will_run
from msrgb.readers import lazy_scaled_bands
from msrgb.sources.stac import InputDir

if TYPE_CHECKING:
    from msrgb.export.run import Exported

log = logging.getLogger("msrgb")

#: the workflow's folder: config/config.yaml and config/schema.json
WORKFLOW = Path(__file__).resolve().parents[2]


def load_config(overrides: Mapping[str, Any] | None = None, configfile: Path | None = None) -> dict[str, Any]:
    """The configuration a run of the workflow gets: ``configfile`` (default
    config/config.yaml) with ``overrides`` on top (as ``--config``), validated against
    config/schema.json with its defaults filled in."""
    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with open(configfile or WORKFLOW / "config" / "config.yaml", encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    config.update(overrides or {})
    command_line_booleans(config)
    try:
        validate(config, schema=str(WORKFLOW / "config" / "schema.json"))
    except WorkflowError as exc:  # the schema's refusal, as Snakemake would print it
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise PlanError("config: " + "\n".join(lines[:3] + lines[-2:])) from None
    return config


@dataclass
class RunResult:
    """What :func:`run` did."""

    prepared: Prepared
    settings: Settings
    #: shards whose job ran
    shards: list[int] = field(default_factory=list)
    #: parts whose job ran: ``stretch/<product>``, ``sheets/<product>``, ``summary``,
    #: ``export/<product>``, ``upload``
    parts: list[str] = field(default_factory=list)
    #: the run's summary.json, when the summary job ran
    summary: dict[str, Any] | None = None

    @property
    def output(self) -> OutputPaths:
        return self.settings.output

    def product(self, part: str) -> Product:
        """The product a part (``stretch/<product>``, ``sheets/<product>``) is made for."""
        name = part.partition("/")[2]
        return next(p for p in self.settings.products if p.name == name)


def run(
    overrides: Mapping[str, Any] | None = None,
    cores: int = 1,
    configfile: Path | None = None,
    stream: IO[str] | None = None,
) -> RunResult:
    """Run the workflow in this process, as ``snakemake --cores <cores> --config ...`` would
    locally: the same planning, the same jobs, the same files. Raises
    :class:`msrgb.errors.MsrgbError` where Snakemake would stop (a refused setting, a shard
    with bad inputs and ``on_error: fail``, after the other shards ran)."""
    stream = stream or sys.stderr
    settings = Settings.from_config(load_config(overrides, configfile))
    prepared = plan_run(settings, Where(parallel_jobs=cores), lazy_scaled_bands)
    for note in prepared.notes:
        print(f"msrgb: {note}", file=stream)
    assert prepared.counts is not None, "plan_run counts the work"
    print_counts(prepared.counts, stream)
    result = RunResult(prepared, settings)
    output, plan = settings.output, prepared.plan
    wanted = [part for part in plan.parts if part != "upload" or settings.images]
    parts_due = [part for part in wanted if not output.part_done(part, plan.parts[part]).exists()]
    if not _shards_due(result) and not parts_due:
        return result  # nothing to do: Snakemake would not even start the run
    try:
        start_run(settings, prepared)
        _run_jobs(result, wanted, parts_due)
    finally:
        unlock_output(output)
    if result.summary is not None:
        tables, lines = closing_report(result.summary, output.summary(), output.clipped_sheet("<product>"))
        print(tables, *lines, sep="\n", file=stream)
    return result


def _run_jobs(result: RunResult, wanted: list[str], parts_due: list[str]) -> None:
    """The jobs of a started run, in the order Snakemake's graph allows."""
    settings, output, prepared = result.settings, result.output, result.prepared
    for part in (p for p in wanted if p.startswith("stretch/") and p in parts_due):
        percentiles_job(result.product(part), settings.input_dir, output)
        _done(result, part)
    _run_shards(result)
    for part in (p for p in wanted if p == "summary" or p.startswith("sheets/")):
        if part in parts_due or result.shards:
            if part == "summary":
                result.summary = summary_job(output, settings.products, settings.thumbnail_size)
                outputs = _summary_outputs(output, settings.products)
            else:
                product = result.product(part)
                sheets_job(output, product, settings.thumbnail_size, prepared)
                outputs = [output.contact_sheet(product.name, n) for n in prepared.sheets[product.name]]
            _touch(outputs)
            _done(result, part)
    exports = dict(settings.exports)
    for part in (p for p in wanted if p.startswith("export/")):
        if part in parts_due or "summary" in result.parts:
            export_job(output, result.product(part), exports[part.partition("/")[2]], settings.input_dir)
            _done(result, part)
    if settings.images and ("upload" in parts_due or result.parts):
        from msrgb.jobs.upload import upload_results

        upload_results(output)
        _done(result, "upload")


def _summary_outputs(output: OutputPaths, products: Sequence[Product]) -> list[Path]:
    """The files the summary rule declares (rules/report.smk)."""
    files = [output.errors_table(), output.summary()]
    for p in products:
        files += [output.provenance(p.name), output.histogram(p.name), output.clipped_sheet(p.name)]
        files += [output.legend(p.name)] if p.is_index else []
    return files


def _touch(paths: Sequence[Path]) -> None:
    """What Snakemake does to a job's outputs when it ends: those the job left as they were
    (written only when their bytes change) get the job's end as their time, so that they are
    not older than its inputs."""
    for path in paths:
        if path.exists():
            os.utime(path)


def _stretch_markers(result: RunResult) -> list[Path]:
    plan = result.prepared.plan
    return [result.output.part_done(p, d) for p, d in plan.parts.items() if p.startswith("stretch/")]


def _shards_due(result: RunResult) -> list[int]:
    """The shards whose job Snakemake would run: marker missing, or older than the limits."""
    plan, markers = result.prepared.plan, _stretch_markers(result)
    return [s for s in range(plan.n_shards) if shard_will_run(result.output, plan, s, markers)]


def _run_shards(result: RunResult) -> None:
    """Every shard job due; shards with bad inputs (``on_error: fail``) stop the run once the
    others have run, as ``--keep-going`` would, with every failed shard's message."""
    plan, settings, output = result.prepared.plan, result.settings, result.output
    stretch_files = {p.name: output.stretch(p.name) for p in settings.products if p.dataset_stretch}
    failed: list[MsrgbError] = []
    for shard in _shards_due(result):
        try:
            shard_job(output, plan.n_shards, shard, settings, plan.tokens[shard], plan.threads, stretch_files)
        except ShardError as exc:
            failed.append(exc)
        result.shards.append(shard)
    if failed:
        raise ShardError("\n".join(str(exc) for exc in failed)) from failed[0]


def _done(result: RunResult, part: str) -> None:
    leave_marker(result.output.part_done(part, result.prepared.plan.parts[part]))
    result.parts.append(part)


def shard_job(
    output: OutputPaths,
    n_shards: int,
    shard: int,
    settings: Settings,
    token: str,
    threads: int,
    stretch_files: Mapping[str, Path],
) -> None:
    """One shard's job, as ``convert_shard`` runs it."""
    from msrgb.jobs.shard import run_shard

    run_shard(
        shard_list=output.shard_list(n_shards, shard),
        state_out=output.state(n_shards, shard),
        input_dir=settings.input_dir,
        products=settings.products,
        threads=threads,
        stretch_files=dict(stretch_files),
        read_ahead=settings.read_ahead,
        max_pixels=settings.max_pixels,
        done=output.done(n_shards, shard, token),
    )


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


def sheets_job(output: OutputPaths, product: Product, thumbnail: int, prepared: Prepared | None = None) -> int:
    """A product's contact-sheet job: the sheets whose manifest is newer than the sheet."""
    from msrgb.outputs.sheet_lists import sheet_list_path, sheet_names

    names = sorted(prepared.sheets[product.name]) if prepared is not None else sheet_names(output, product.name)
    pairs = [(sheet_list_path(output, product.name, n), output.contact_sheet(product.name, n)) for n in names]
    return rebuild_sheets(pairs, product, output.image_dir(product.name), thumbnail)


def rebuild_sheets(pairs: Sequence[tuple[Path, Path]], product: Product, images: Path | Any, thumbnail: int) -> int:
    """Rebuild the (manifest, sheet) pairs whose sheet is missing or older than its manifest."""
    from msrgb.outputs.sheet_lists import SheetGeometry
    from msrgb.render import sheets
    from msrgb.render.legend import legend_image

    legend = legend_image(product) if product.is_index else None
    return sheets.build_all(pairs, images, SheetGeometry(thumb=thumbnail), product.suffix, legend)


def summary_job(
    output: OutputPaths,
    products: Sequence[Product],
    thumbnail: int,
    states: Sequence[Path] | None = None,
    errors_out: Path | None = None,
    summary_out: Path | None = None,
    manifests: Sequence[Path] | None = None,
) -> dict[str, Any]:
    """The summary's job: errors.tsv, the provenance manifests, summary.json, histograms and
    the clipping sheets, from what the shard jobs recorded (msrgb.jobs.report)."""
    from msrgb.jobs import report
    from msrgb.outputs.errors_table import problems_note, read_planning_errors, write_errors
    from msrgb.outputs.state import read_state_full
    from msrgb.outputs.summary import summary_table
    from msrgb.planning.sharding import load_plan

    plan = load_plan(output)
    per_class, n_shards = report.images_per_class(plan), plan.n_shards
    del plan  # before the states are read: the plan of 270,000 inputs is about 80 MB
    if states is None:
        states = [output.state(n_shards, shard) for shard in range(n_shards)]
    state = read_state_full(list(states))
    planning = read_planning_errors(output.planning_errors())
    errors = write_errors(state, errors_out or output.errors_table(), planning)
    outs = manifests or [output.provenance(p.name) for p in products]
    report.write_provenance(state, {p.name: (p.digest(), Path(out), p.suffix) for p, out in zip(products, outs)})
    summary = report.summarize(output, per_class, n_shards, len(products), len(errors))
    if planning:
        summary["notes"].insert(0, problems_note(planning))
    summary["clipping"] = report.clipping_summary(state, {p.name: p.suffix for p in products})
    report.write_summary(summary_out or output.summary(), summary)
    report.write_looks(output, products, state, summary["clipping"], thumbnail)
    log.info("summary:\n%s", summary_table(summary))
    return summary
