"""What the next run will do, decided without writing anything: per shard, which images to
convert (missing, out of date, made by a version without radiometric offsets), which to delete
(their input is gone), and per product how many of each, printed before the jobs start (by dry
runs too). The shard jobs make the same decision (:func:`work_to_do`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from msrgb.config.products import Product
from msrgb.outputs.paths import OutputListing, OutputPaths
from msrgb.outputs.state import StateCache, StateData
from msrgb.planning.samples import with_recorded_limits
from msrgb.planning.sharding import Plan, shard_of
from msrgb.planning.since import Since, changes_since_last_job
from msrgb.radiometry.decide import recorded_differs
from msrgb.sources.discovery import Source
from msrgb.sources.stac import InputDir, StacItems
from msrgb.storage.locations import S3Path, location


@dataclass
class Work:
    """What a shard job has to do, decided from its members and the records of earlier jobs."""

    #: inputs to convert, with the products (name -> output path) each needs
    todo: list[tuple[Source, dict[str, Path | S3Path]]]
    #: the records that still hold (images up to date, inputs still known to be bad)
    kept: StateData
    #: product name -> the digest its records carry (with dataset-wide limits, if any)
    digests: dict[str, str] = field(default_factory=dict)
    up_to_date: int = 0
    skipped_before: int = 0
    #: images made by a version that applied no radiometric offsets, whose input declares one
    rescaled: int = 0
    #: images of STAC Items whose scaling the Item's rules now decide otherwise (msrgb.radiometry.decide)
    restac: int = 0


def work_to_do(
    members: Sequence[Source],
    products: Sequence[Product],
    before: StateData,
    on_error: str,
    output_of: Callable[[Product, Source], str | Path],
    present: Callable[[str | Path], bool],
    scaled_bands: Callable[[Source], set[str]] | None = None,
    scaling_changed: Callable[[Source, Product, str | None], bool] | None = None,
    keep: bool = True,
) -> Work:
    """Which images of ``members`` need making: those without a record of the same input size,
    mtime and product settings in ``before``, or whose output is not ``present``, and those
    recorded by a version that applied no radiometric offsets whose bands ``scaled_bands``
    (the bands of an input that declare a scale or offset) says now render otherwise. With
    ``on_error="skip"`` an input recorded as bad is not retried until it changes. Outputs are
    named as strings (``output_of``) and made paths only for the images to make: a shard of
    tens of thousands of up-to-date images is looked at in a fraction of a second. Images of
    STAC Items whose recorded scaling ``scaling_changed`` says is no longer what the Item's rules
    give are made again. With ``keep=False`` (planning, which only counts) the records that
    still hold are not copied into ``work.kept`` and the outputs to make stay as ``output_of``
    gave them: the same decision, counted."""
    kept = StateData()
    digest = {p.name: p.digest() for p in products}
    work = Work([], kept, digest)
    for src in members:
        scaled: set[str] | None = None
        rescaled = restac = False
        known_bad = before.skipped.get(src.rel)
        if on_error == "skip" and known_bad and known_bad[:2] == (src.size, src.mtime_ns):
            kept.skipped[src.rel] = known_bad  # unchanged since it was found bad: not retried
            work.skipped_before += 1
            continue
        dests: dict[str, Path | S3Path] = {}
        for p in products:
            key, out = (src.rel, p.name), output_of(p, src)
            record = (src.size, src.mtime_ns, digest[p.name])
            current = before.records.get(key) == record
            if current and key in before.legacy and scaled_bands is not None:
                scaled = scaled_bands(src) if scaled is None else scaled
                current = not scaled.intersection(p.bands)
                rescaled |= not current
            if current and scaling_changed is not None and scaling_changed(src, p, before.radiometry.get(key)):
                current, restac = False, True
            if current and present(out):
                if keep:
                    _keep(kept, before, key, record)
            else:
                dests[p.name] = location(str(out)) if keep else out  # type: ignore[assignment]
        if dests:
            work.todo.append((src, dests))
            work.rescaled += rescaled
            work.restac += restac
        else:
            work.up_to_date += 1
    used = {env for _, _, env in kept.provenance.values()}
    kept.envs = {e: before.envs.get(e, "unknown") for e in sorted(used)}
    return work


def _keep(kept: StateData, before: StateData, key: tuple[str, str], record: tuple[int, int, str]) -> None:
    """Copy the record ``key`` that still holds, with what ``before`` knows of its image."""
    kept.records[key] = record
    if key in before.provenance:
        kept.provenance[key] = before.provenance[key]
    if key in before.clipping:
        kept.clipping[key] = before.clipping[key]
    if key in before.radiometry:
        kept.radiometry[key] = before.radiometry[key]


def orphans(
    before: StateData, members: Sequence[Source], products: Sequence[str], n_shards: int, shard: int
) -> list[tuple[str, str]]:
    """(relative path, product) of the images recorded in ``before`` whose input is no longer
    one of this shard's ``members`` (the input was removed): what the job deletes."""
    current = {s.rel for s in members}
    return [
        (rel, product)
        for rel, product in before.records
        if rel not in current and product in products and shard_of(rel, n_shards) == shard
    ]


@dataclass
class ProductCounts:
    """What the next run will do for one product."""

    to_convert: int = 0
    to_remove: int = 0
    up_to_date: int = 0
    bad: int = 0  # recorded as bad (on_error: skip) and unchanged since: not retried

    def line(self, name: str) -> str:
        bad = f", {self.bad:,} bad (not retried)" if self.bad else ""
        return (
            f"{name}: {self.to_convert:,} to convert, {self.to_remove:,} to remove, "
            f"{self.up_to_date:,} up to date{bad}"
        )


@dataclass
class WorkCounts:
    products: dict[str, ProductCounts] = field(default_factory=dict)
    #: images (not product images) the shard jobs will convert: the progress total
    images: int = 0
    #: of those, images made by a version that applied no radiometric offsets, whose input
    #: declares one
    rescaled: int = 0
    #: of those, images of STAC Items whose scaling the Item's rules now decide otherwise
    restac: int = 0
    #: the shards whose job runs (:func:`shard_will_run`)
    due: list[int] = field(default_factory=list)
    #: of those, the shards whose inputs since their last job are only new ones added
    #: (msrgb.planning.since.Since.additions_only)
    additions: list[int] = field(default_factory=list)

    def add(self, since: Since, members: int) -> None:
        """A due shard of ``members`` images counted from how its shard list changed."""
        self.images += since.images
        for name, c in self.products.items():
            c.to_convert += since.to_convert[name]
            c.up_to_date += members - since.to_convert[name]
            c.to_remove += since.removed

    def add_work(self, work: Work, members: int, removed: Sequence[str]) -> None:
        """A due shard of ``members`` images counted from its records (``work``), with the
        product of each image its job deletes (``removed``)."""
        self.images += len(work.todo)
        self.rescaled += work.rescaled
        self.restac += work.restac
        todo: dict[str, int] = {}
        for _, dests in work.todo:
            for name in dests:
                todo[name] = todo.get(name, 0) + 1
        for name, c in self.products.items():
            c.to_convert += todo.get(name, 0)
            c.bad += work.skipped_before
            c.up_to_date += members - work.skipped_before - todo.get(name, 0)
        for name in removed:
            self.products[name].to_remove += 1


def shard_will_run(output: OutputPaths, plan: Plan, shard: int, inputs: Sequence[Path]) -> bool:
    """Whether Snakemake runs this shard's job: its marker (the shard's token) or its state file
    is missing, or the state is older than one of its ``inputs`` (stretch limits)."""
    if not output.done(plan.n_shards, shard, plan.tokens[shard]).exists():
        return True
    try:
        state = output.state(plan.n_shards, shard).stat().st_mtime_ns
    except FileNotFoundError:
        return True
    newest = 0
    for path in inputs:
        try:
            newest = max(newest, path.stat().st_mtime_ns)
        except FileNotFoundError:
            return True
    return newest > state


def shards_interrupted(output: OutputPaths, plan: Plan) -> list[int]:
    """Shards whose last job was killed or failed (its checkpoint, the progress file, is there)
    although their marker stands for their shard list: the list went back to the one of their
    last finished job (files added, then taken away), and the interrupted job may have made
    images, recorded only in its checkpoint, of inputs the list no longer holds. They must run
    again (:meth:`Plan.rerun`), which deletes those images."""
    return [
        shard for shard in range(plan.n_shards)
        if output.progress(plan.n_shards, shard).exists() and not shard_will_run(output, plan, shard, ())
    ]  # fmt: skip


def shards_missing_outputs(
    output: OutputPaths,
    plan: Plan,
    products: Sequence[Product],
    present: OutputListing,
    states: StateCache | None = None,
) -> list[int]:
    """Shards with an image missing on disk although their state records it (the user deleted
    it): they must run again although their manifest is unchanged (:meth:`Plan.rerun`). A new
    input has no record (its shard's manifest changed anyway), nor has an input the state
    records as skipped (bad, with ``on_error: skip``): no image on purpose. Only reads: one
    listing per output folder through ``present``, the states through ``states`` (a cache
    count_work reads them from again). A shard that runs anyway (:func:`shard_will_run`: its
    manifest changed, or it has no state file) is not looked at."""
    states = states or StateCache()
    flagged = []
    for shard, members in enumerate(plan.members):
        if shard_will_run(output, plan, shard, ()):
            continue
        missing = [(s.rel, p.name) for p in products for s in present.missing(output.image_top(p.name), p.suffix, members)]
        if not missing:
            continue
        records = states([output.state(plan.n_shards, shard)]).records
        if any(key in records for key in missing):
            flagged.append(shard)
    return flagged


#: how planning learns which bands of an input declare a radiometric scaling (for records of
#: versions before radiometric offsets): msrgb.readers.lazy_scaled_bands, given by the caller, as
#: planning itself reads no pixels
ScaledBandsOf = Callable[[InputDir, Sequence[Product]], Callable[[Source], set[str]]]


def count_work(
    output: OutputPaths,
    plan: Plan,
    products: Sequence[Product],
    on_error: str,
    stretch_inputs: Sequence[Path] = (),
    present: OutputListing | None = None,
    input_dir: InputDir | None = None,
    states: StateCache | None = None,
    scaled_bands_of: ScaledBandsOf | None = None,
    quick: bool = True,
) -> WorkCounts:
    """Per product, the images the shard jobs of the next run will convert and remove and those
    up to date: the same decision as the jobs (msrgb.jobs.shard.work_to_do), made only for the shards
    Snakemake will run (every image of the others is up to date). Products with a dataset-wide
    stretch whose limits are not computed yet count as all to convert. ``present`` tells
    whether an output exists (the listings shards_missing_outputs made, if given);
    ``input_dir`` lets it look at the inputs of images made before radiometric offsets were
    applied, as the jobs do. A due shard whose records are all from its last job, which ended,
    is counted from how its shard list changed since that job (:func:`changes_since_last_job`)
    unless ``quick`` is False: the same counts without reading its records."""
    ready = [with_recorded_limits(p, output.stretch(p.name)) for p in products]
    counts = WorkCounts({p.name: ProductCounts() for p in products})
    present = present or OutputListing(images=output.images)
    states = states or StateCache()
    names = [p.name for p in products]
    for shard, members in enumerate(plan.members):
        if not shard_will_run(output, plan, shard, stretch_inputs):
            before = states([output.state(plan.n_shards, shard)]) if on_error == "skip" else StateData()
            for src in members:
                bad = before.skipped.get(src.rel)
                for p in products:
                    c = counts.products[p.name]
                    if bad is not None and bad[:2] == (src.size, src.mtime_ns):
                        c.bad += 1
                    else:
                        c.up_to_date += 1
            continue
        counts.due.append(shard)
        related = output.related_states(plan.n_shards, shard)
        paths = [*related, output.progress(plan.n_shards, shard)]
        if not any(path.exists() for path in paths):  # never converted: every image to do
            counts.add(Since({p.name: len(members) for p in products}, len(members), 0), len(members))
            continue
        # (not for STAC Items, whose records' scaling is checked against the Items' rules)
        quickly = quick and not isinstance(input_dir, StacItems)
        since = changes_since_last_job(output, plan, shard, products, present, related) if quickly else None
        if since is not None:
            counts.add(since, len(members))
            if since.additions_only:
                counts.additions.append(shard)
            continue
        before = states(paths)
        scaled = scaled_bands_of(input_dir, products) if input_dir is not None and scaled_bands_of else None
        work = work_to_do(
            members, ready, before, on_error, output.png_str, present, scaled, scaling_changes(input_dir), keep=False
        )  # fmt: skip
        gone = [name for _, name in orphans(before, members, names, plan.n_shards, shard)]
        counts.add_work(work, len(members), gone)
    return counts


def print_counts(counts: WorkCounts, stream: IO[str] | None = None) -> None:
    for name, c in counts.products.items():
        print(f"msrgb: {c.line(name)}", file=stream or sys.stderr, flush=True)
    if counts.rescaled:
        print(f"msrgb: {rescaled_line(counts.rescaled)}", file=stream or sys.stderr, flush=True)
    if counts.restac:
        print(f"msrgb: {restac_line(counts.restac)}", file=stream or sys.stderr, flush=True)


def rescaled_line(n: int) -> str:
    """Why images made by an earlier version are converted again."""
    return (
        f"{n:,} image(s) made by an earlier msrgb are converted again: their inputs declare a "
        "radiometric offset or scale (Sentinel-2 BOA_ADD_OFFSET/RADIO_ADD_OFFSET of processing "
        "baseline 04.00+, or GDAL scale/offset), which msrgb now applies"
    )


def restac_line(n: int) -> str:
    """Why images of STAC Items made by an earlier version are converted again."""
    return (
        f"{n:,} image(s) of STAC Items are converted again: their radiometric scaling changes "
        "(msrgb now follows earthsearch:boa_offset_applied, the processing baseline and the "
        "asset-level raster:scale/raster:offset; docs/object-storage.md, Which offset each "
        "catalogue needs)"
    )


def scaling_changes(input_dir: InputDir | None) -> Callable[[Source, Product, str | None], bool] | None:
    """For inputs from STAC Items: whether an image recorded with a scaling (its radiometry
    record, or None) would now be scaled otherwise by its Item's rules (msrgb.radiometry.decide)."""
    if not isinstance(input_dir, StacItems):
        return None
    stac = input_dir

    def changed(src: Source, product: Product, recorded: str | None) -> bool:
        item = stac.item_of(src.rel)
        if item is None:
            return False
        rules = {band: item.rule(band) for band in product.bands if band in item.assets}
        return recorded_differs(rules, product.bands, recorded)

    return changed


def shards_rescaled(
    output: OutputPaths, plan: Plan, products: Sequence[Product], input_dir: InputDir, states: StateCache
) -> list[int]:
    """Shards of STAC Items with an image whose scaling the Item's rules now decide otherwise:
    they must run again although their manifest is unchanged (:meth:`Plan.rerun`)."""
    changed = scaling_changes(input_dir)
    if changed is None:
        return []
    flagged = []
    for shard, members in enumerate(plan.members):
        if shard_will_run(output, plan, shard, ()):
            continue
        before = states([output.state(plan.n_shards, shard)])
        keys = ((src, p, (src.rel, p.name)) for src in members for p in products)
        if any(key in before.records and changed(src, p, before.radiometry.get(key)) for src, p, key in keys):
            flagged.append(shard)
    return flagged
