"""Convert one shard: the images of a shard list whose PNGs are missing or out of date."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from msrgb.config.products import Product
from msrgb.errors import MsrgbError, PlanError, ShardError
from msrgb.jobs.convert import Converter
from msrgb.jobs.pipeline import (
    READ_AHEAD,
    convert_all,
)
from msrgb.jobs.records import (
    ON_ERROR,
    Recorder,
    ShardResult,
    _remove_orphans,
    _write_run_stats,
)
from msrgb.outputs.live import Live, job_ended, write_live
from msrgb.outputs.paths import OutputListing, OutputPaths, leave_marker
from msrgb.outputs.state import (
    StateData,
    appended_state,
    read_state_full,
    recorded_inputs,
    state_text,
)
from msrgb.planning.samples import read_limits
from msrgb.planning.sharding import read_shard_list_text, shard_list_file_text, shard_token
from msrgb.planning.work import (
    Work,
    rescaled_line,
    restac_line,
    scaling_changes,
    work_to_do,
)
from msrgb.readers.images import scaled_bands_of
from msrgb.readers.stacked import MAX_PIXELS
from msrgb.sources.discovery import Source
from msrgb.sources.stac import InputDir, StacItems
from msrgb.storage.files import write_atomic
from msrgb.storage.locations import location

__all__ = ["ShardError", "ShardResult", "run_shard"]

log = logging.getLogger("msrgb")


def run_shard(
    shard_list: Path,
    state_out: Path,
    input_dir: InputDir,
    products: Sequence[Product],
    threads: int = 1,
    progress_every: float = 5.0,
    checkpoint_every: float = 1.0,
    on_error: str | None = None,
    stretch_files: Mapping[str, Path] | None = None,
    read_ahead: int = READ_AHEAD,
    max_pixels: int = MAX_PIXELS,
    done: Path | None = None,
    retire_states: bool = True,
    additions: bool = False,
) -> ShardResult:
    """Bring every image of the shard described by ``shard_list`` up to date, then record what
    was done in ``state_out``. Every ``checkpoint_every`` seconds, and when the job fails, the
    records so far go to the shard's progress file, so a killed or failed job resumes where it
    stopped.

    Images that cannot be made (:class:`msrgb.errors.FileError`: a bad input, an output name the
    file system refuses): with ``on_error="fail"`` (default: the shard list's policy) everything
    else is made, then :class:`ShardError` lists each file and why. With ``"skip"`` they are
    recorded as skipped in the state (with size and mtime, so a fixed file is tried again) and
    have no output. An output folder that cannot be written (disk full) stops the job at once
    with :class:`msrgb.errors.OutputError`. Products with a dataset-wide stretch take their
    limits from ``stretch_files`` (product name -> JSON written by :mod:`msrgb.jobs.stats`).
    ``read_ahead`` input files are kept asked for ahead of the conversion (:class:`ReadAhead`;
    0 = off). Images over ``max_pixels`` are bad inputs unless the products make quicklooks.
    At the end, ``done`` (the marker Snakemake asked for, named by the shard's token) is left
    with the marker of the shard list's own token, which a later run asks for while nothing
    changes (:func:`msrgb.outputs.paths.leave_marker`); with ``retire_states``, states of an
    earlier shard count that this count's now hold are deleted (:func:`_end_job`); ``additions``: :func:`_start_job`."""
    n_shards, shard, output = int(shard_list.parent.name), int(shard_list.stem), OutputPaths.of_shard_list(shard_list)
    members, products, on_error = _job_settings(shard_list, products, stretch_files, on_error)
    progress = output.progress(n_shards, shard)
    base, work, result = _start_job(output, n_shards, shard, members, products, on_error, input_dir, threads, additions)
    converter, kept = Converter(products, max_pixels=max_pixels, defer_uploads=True), work.kept
    record = Recorder(result, kept, work.digests, on_error, lambda src: converter.inputs.open(input_dir, src))

    def checkpoint() -> None:
        write_atomic(progress, record.checkpoint_text().encode("utf-8"))

    t0 = time.monotonic()
    tick = _ticker(output, n_shards, shard, result, len(work.todo), progress_every)
    try:
        fatal = convert_all(
            work.todo, converter, input_dir, threads, read_ahead, record.outcome,
            checkpoint, checkpoint_every, tick,
        )  # fmt: skip
    except KeyboardInterrupt:
        checkpoint()  # keep what was done, for the next run
        raise
    result.skipped += len(result.failed) if on_error == "skip" else 0
    _write_run_stats(output, n_shards, shard, result, time.monotonic() - t0)
    if fatal is not None or (result.failed and on_error == "fail"):
        _fail_job(fatal, result, checkpoint, progress, f"shard {shard} (of {n_shards})")
    _end_job(output, shard_list, result, kept, base, state_out, done, retire_states)
    return result


def _end_job(
    output: OutputPaths,
    shard_list: Path,
    result: ShardResult,
    kept: StateData,
    base: str | None,
    state_out: Path,
    done: Path | None,
    retire_states: bool,
) -> None:
    """What a job that made everything leaves: its state (the records ``kept``, or those added
    to the state ``base``: :func:`_start_job`), in place of its checkpoint; then, with
    ``retire_states``, the states of an earlier shard count that this count's now hold deleted
    (:meth:`OutputPaths.superseded_states`; not by a job that shares no file system with the
    main process, msrgb.jobs.runstore, whose copies of the states carry the times they were
    uploaded), with their kept summary parts; then its markers. What it wrote goes in ``result``
    (:attr:`ShardResult.kept`)."""
    n_shards, shard = int(shard_list.parent.name), int(shard_list.stem)
    state = state_text(**vars(kept)) if base is None else appended_state(base, kept)
    write_atomic(state_out, state.encode("utf-8"))
    output.progress(n_shards, shard).unlink(missing_ok=True)
    if retire_states:
        for old in output.superseded_states(n_shards, shard):
            old.unlink(missing_ok=True)
            output.kept_part(int(old.parent.name), int(old.stem)).unlink(missing_ok=True)
    if done is not None:
        leave_marker(done, keep=[shard_token(shard_list_file_text(shard_list))])
    result.kept, result.state, result.added_to = kept, state, base


def _start_job(
    output: OutputPaths,
    n_shards: int,
    shard: int,
    members: Sequence[Source],
    products: Sequence[Product],
    on_error: str,
    input_dir: InputDir,
    threads: int,
    additions: bool = False,
) -> tuple[str | None, Work, ShardResult]:
    """What the job has to do, from the records of earlier jobs of any shard count and the
    output folders; images whose input is gone are deleted first. With ``additions`` (planning
    found that the shard's inputs since its last job are that job's, unchanged and with their
    images, and new ones: msrgb.planning.since), where its state allows it
    (:func:`_additions_only`), the new inputs alone, whose records go at the end of the state's
    text, returned first (else None); the others are not looked at."""
    quick = _additions_only(output, n_shards, shard, members, products, input_dir) if additions else None
    if quick is not None:
        _log_start(shard, n_shards, quick[2], len(quick[1].todo), threads)
        return quick
    before = read_state_full([*output.related_states(n_shards, shard), output.progress(n_shards, shard)])
    present = outputs_present(output, n_shards, shard, members, products)
    work = work_to_do(
        members, products, before, on_error, output.png_str, present, scaled_bands_of(input_dir, products),
        scaling_changes(input_dir),
    )  # fmt: skip
    if work.rescaled:
        log.info("shard %d (of %d): %s", shard, n_shards, rescaled_line(work.rescaled))
    if work.restac:
        log.info("shard %d (of %d): %s", shard, n_shards, restac_line(work.restac))
    result = ShardResult(members=len(members), up_to_date=work.up_to_date)
    result.skipped = work.skipped_before
    result.removed = _remove_orphans(before, members, products, output, n_shards, shard)
    _log_start(shard, n_shards, result, len(work.todo), threads)
    return None, work, result


def _log_start(shard: int, n_shards: int, result: ShardResult, todo: int, threads: int) -> None:
    log.info(
        "shard %d (of %d): %d images, %d up to date, %d to convert with %d thread(s)%s",
        shard, n_shards, result.members, result.up_to_date, todo, threads,
        f", {result.skipped} skipped as bad before" if result.skipped else "",
    )  # fmt: skip


def _additions_only(
    output: OutputPaths,
    n_shards: int,
    shard: int,
    members: Sequence[Source],
    products: Sequence[Product],
    input_dir: InputDir,
) -> tuple[str, Work, ShardResult] | None:
    """The state's text, the work and the result of a job whose inputs are those its state
    records (unchanged, with their images, as planning found) and new ones, which it converts:
    None where the state is not one to add records to (msrgb.outputs.state.recorded_inputs),
    where an earlier job of the shard stopped (its progress file) or states of another shard
    count hold its inputs, for STAC Items (whose records' scaling is checked against the Items'
    rules) and where a recorded input is no longer a member: then the job looks at every image."""
    state = output.state(n_shards, shard)
    if isinstance(input_dir, StacItems) or output.related_states(n_shards, shard) != [state]:
        return None
    if output.progress(n_shards, shard).exists():
        return None
    try:
        base = state.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):  # read again by the whole job, which says what is wrong
        return None
    digests = {p.name: p.digest() for p in products}
    recorded = recorded_inputs(base, digests)
    if recorded is None:
        return None
    new = [s for s in members if s.rel not in recorded]
    if len(members) - len(new) != len(recorded):
        return None
    todo = [(s, {p.name: location(output.png_str(p, s)) for p in products}) for s in new]
    work = Work(todo, StateData(), digests, up_to_date=len(members) - len(new))
    return base, work, ShardResult(members=len(members), up_to_date=work.up_to_date)


#: a shard job of fewer shards than this lists its output folders; one of more asks for each of
#: its images: each folder holds about as many times the shard's images in it as there are shards,
#: and asking for one file costs about as much as four names of a listing
LIST_FOLDERS_BELOW_SHARDS = 4


def outputs_present(
    output: OutputPaths, n_shards: int, shard: int, members: Sequence[Source], products: Sequence[Product]
) -> Callable[[str | Path], bool]:
    """How the job tells whether an image exists: one listing per output folder of the shard
    (which also deletes the temporaries killed jobs left there) for images in S3, below
    :data:`LIST_FOLDERS_BELOW_SHARDS` shards, or when the shard's last job was killed (its live
    file is unfinished); otherwise a look-up of each image, as a listing of every folder by each
    of many shards would grow with the square of the dataset."""
    if output.images or n_shards < LIST_FOLDERS_BELOW_SHARDS or not job_ended(output.live(n_shards, shard)):
        present = OutputListing(remove_stale=True, images=output.images)
        present.folders({output.png_str(p, s).rpartition("/")[0] for s in members for p in products})
        return present
    return os.path.lexists


def _ticker(
    output: OutputPaths, n_shards: int, shard: int, result: ShardResult, todo: int, progress_every: float
) -> Callable[[bool], None]:
    """Called as the job goes (and once at the end): the live file and the log's progress."""
    report = _live_reporter(output.live(n_shards, shard), Live(time.time(), todo, 0, 0), result)
    report(False)
    log_progress = _progress_logger(result, todo, shard, n_shards, progress_every)

    def tick(finished: bool) -> None:
        report(finished)
        log_progress(finished)

    return tick


def _fail_job(
    fatal: BaseException | None,
    result: ShardResult,
    checkpoint: Callable[[], None],
    progress: Path,
    which: str,
) -> None:
    """End a job that could not make everything: keep what was done for the next run, then
    raise the fatal error, or :class:`ShardError` listing every file that failed."""
    try:
        checkpoint()
    except OSError as exc:
        log.error("could not save progress to %s: %s", progress, exc)
    if fatal is not None:
        raise fatal
    raise ShardError(
        f"{len(result.failed)} of {result.members} input file(s) of {which} could not be "
        "converted:\n  " + "\n  ".join(sorted(result.failed))
    )


def remove_earlier_logs(log_file: Path, pattern: str | None = None) -> None:
    """Delete the logs of earlier jobs like this one, keeping only the latest: those in its
    folder that ``pattern`` (a glob) matches; by default this shard's (a shard job's log is
    named ``<n>-<shard>.<token>.log``)."""
    if pattern is None:
        pattern = f"{log_file.name.split('.', 1)[0]}.*.log"
    for old in log_file.parent.glob(pattern):
        if old != log_file:
            old.unlink(missing_ok=True)


def _job_settings(
    shard_list: Path,
    products: Sequence[Product],
    stretch_files: Mapping[str, Path] | None,
    on_error: str | None,
) -> tuple[list[Source], list[Product], str]:
    """The shard's members, the products with their dataset-wide limits filled in, and the
    error policy (the shard list's unless given); fails if the shard list was planned for other
    product settings."""
    try:
        members, settings = read_shard_list_text(shard_list_file_text(shard_list))
    except FileNotFoundError:
        raise PlanError(
            f"{shard_list} is missing: msrgb writes the plan when a run starts (onstart), which "
            "--no-hooks skips; run snakemake without --no-hooks"
        ) from None
    for p in products:
        if settings.get(p.name) != p.digest():
            raise PlanError(
                f"{shard_list}: was written for other settings of product {p.name!r}; "
                "re-run snakemake so the plan is rebuilt"
            )
    products = [
        p.with_limits(read_limits((stretch_files or {})[p.name])) if p.dataset_stretch else p
        for p in products
    ]
    on_error = on_error or settings.get("on_error", "fail")
    if on_error not in ON_ERROR:
        raise PlanError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    return members, products, on_error


def _live_reporter(path: Path, live: Live, result: ShardResult) -> Callable[[bool], None]:
    """A ``tick`` that keeps the shard's live file (msrgb.snakemake.progress) current; a file system that
    refuses it costs the display, never the job."""

    def report(finished: bool) -> None:
        live.done, live.bad, live.finished = result.converted + len(result.failed), len(result.failed), finished
        try:
            write_live(path, live)
        except OSError as exc:
            log.warning("could not update %s: %s", path, exc)

    return report


def _progress_logger(
    result: ShardResult, total: int, shard: int, n_shards: int, every: float
) -> Callable[[bool], None]:
    """A ``tick`` for :func:`convert_all` that logs the count and rate every ``every`` seconds."""
    t0 = last = time.monotonic()

    def tick(finished: bool) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= every or finished:
            last = now
            rate = result.converted / max(now - t0, 1e-9)
            log.info(
                "shard %d (of %d): %d/%d converted, %d bad (%.0f images/s)",
                shard, n_shards, result.converted, total, len(result.failed), rate,
            )  # fmt: skip

    return tick


@contextlib.contextmanager
def ends_as_a_job(what: str) -> Iterator[None]:
    """How a conversion job ends when it cannot finish: msrgb's own errors (bad inputs, a full
    disk) go to its log and to stderr, without a traceback, with exit status 1; Ctrl-C, which
    reaches the jobs too, exits with 130 (what was done is recorded); anything else is logged
    with its traceback (``what`` failed) and raised."""
    try:
        yield
    except MsrgbError as exc:
        log.error("%s", exc)
        print(exc, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        log.error("interrupted (Ctrl-C); the images made so far are recorded")
        sys.exit(130)
    except Exception:
        log.exception("%s failed", what)
        raise
