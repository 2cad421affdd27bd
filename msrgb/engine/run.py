"""The in-process engine: a whole local run (plan, start, dataset-wide stretches, every shard,
contact sheets, summary, upload) in this process, by calling the same functions the Snakemake
jobs call (msrgb.engine.jobs, over which the Snakemake scripts are thin adapters); the Python
API and most tests run through :func:`run`. A small change (msrgb.planning.changes) runs as the
workflow runs it: its shards, sheets and summary as one job, which leaves one more marker.

A job runs when Snakemake would run it: a shard whose marker (its manifest's token) is missing
or whose state is older than the stretch limits it uses, a part (stretch, contact sheets,
summary, upload) whose marker is missing or whose inputs (the shard markers) are newer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from msrgb.config.products import Product
from msrgb.engine.jobs import (
    ShardSettings,
    changes_job,
    convert_shards,
    export_job,
    part_outputs,
    percentiles_job,
    sheets_job,
    summary_job,
    touch,
)
from msrgb.errors import PlanError
from msrgb.outputs.lock import unlock_output
from msrgb.outputs.paths import OutputPaths, leave_marker
from msrgb.outputs.summary import closing_report
from msrgb.planning.changes import changes_done, made_by_changes
from msrgb.planning.prepare import Prepared, plan_run, start_run
from msrgb.planning.settings import Settings, Where, command_line_booleans
from msrgb.planning.work import print_counts, shard_will_run
from msrgb.readers import lazy_scaled_bands

if TYPE_CHECKING:
    from msrgb.jobs.summary_parts import ShardPart

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
    changes = prepared.changes
    shard_parts: dict[int, ShardPart] = {}  # what the summary needs of each shard that ran
    if changes:  # a small change: one job, as in the workflow (rules/convert.smk)
        plan = prepared.plan
        made, marker = made_by_changes(plan), changes_done(output, plan, changes)  # (named before)
        result.summary = changes_job(
            output, plan.n_shards, {s: plan.tokens[s] for s in changes}, {p: plan.parts[p] for p in made},
            _shard_settings(settings, plan.threads), settings.thumbnail_size, prepared=prepared,
            additions=prepared.counts.additions if prepared.counts else (),
        )  # fmt: skip
        leave_marker(marker)
        result.shards += changes
        result.parts += made
    else:
        shard_parts = _run_shards(result, "summary" in wanted)
    for part in (p for p in wanted if p == "summary" or p.startswith("sheets/")):
        if part not in result.parts and (part in parts_due or result.shards):
            if part == "summary":
                result.summary = summary_job(output, settings.products, settings.thumbnail_size, parts=shard_parts)
            else:
                sheets_job(output, result.product(part), settings.thumbnail_size, prepared)
            touch(part_outputs(output, settings.products, part, prepared))
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


def _stretch_markers(result: RunResult) -> list[Path]:
    plan = result.prepared.plan
    return [result.output.part_done(p, d) for p, d in plan.parts.items() if p.startswith("stretch/")]


def _shards_due(result: RunResult) -> list[int]:
    """The shards whose job Snakemake would run: marker missing, or older than the limits."""
    plan, markers = result.prepared.plan, _stretch_markers(result)
    return [s for s in range(plan.n_shards) if shard_will_run(result.output, plan, s, markers)]


def _run_shards(result: RunResult, parts: bool) -> dict[int, ShardPart]:
    """Every shard job due; shards with bad inputs (``on_error: fail``) stop the run once the
    others have run, as ``--keep-going`` would, with every failed shard's message. With
    ``parts``, returns each shard's summary part (shard -> part)."""
    plan, settings = result.prepared.plan, result.settings
    due = _shards_due(result)
    result.shards += due
    tokens = {s: plan.tokens[s] for s in due}
    return convert_shards(result.output, plan.n_shards, tokens, _shard_settings(settings, plan.threads), parts=parts)


def _shard_settings(settings: Settings, threads: int) -> ShardSettings:
    output = settings.output
    stretch_files = {p.name: output.stretch(p.name) for p in settings.products if p.dataset_stretch}
    return ShardSettings(
        settings.input_dir, settings.products, threads, stretch_files, settings.read_ahead, settings.max_pixels
    )


def _done(result: RunResult, part: str) -> None:
    leave_marker(result.output.part_done(part, result.prepared.plan.parts[part]))
    result.parts.append(part)

