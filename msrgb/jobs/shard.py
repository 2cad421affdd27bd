"""Convert one shard: the images of a manifest whose PNGs are missing or out of date."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, CancelledError, Future, InvalidStateError, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from msrgb.sources.bandfiles import ZIP_BAND
from msrgb.readers.inputs import scaled_bands_of
from msrgb.jobs.convert import Converted, Converter
from msrgb.readers.inputs import InputImage
from msrgb.errors import FileError, OutputFileError, PlanError, ShardError
from msrgb.storage.files import remove_output, write_atomic
from msrgb.sources.discovery import Source
from msrgb.outputs.paths import OutputListing, OutputPaths, leave_marker
from msrgb.planning.sharding import manifest_file_text, read_manifest_text, shard_token
from msrgb.outputs.state import StateData, read_state_full, record_row, skipped_row, state_text
from msrgb.config.products import Product
from msrgb.snakemake.progress import Live, write_live
from msrgb.planning.work import Work, orphans, rescaled_line, restac_line, scaling_changes, work_to_do
from msrgb.outputs.provenance import environment_id, library_versions
from msrgb.readers.stacked import MAX_PIXELS, enter_thread_gdal_env
from msrgb.storage.remote import PREFETCH_MAX_BYTES, HttpPath, InputFile, S3Path, forget_prefetched, prefetch
from msrgb.sources.stac import InputDir, StacItems
from msrgb.jobs.stats import read_limits

__all__ = ["ShardError", "ShardResult", "run_shard"]

log = logging.getLogger("msrgb")


@dataclass
class ShardResult:
    members: int = 0
    converted: int = 0
    up_to_date: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0
    #: warnings about input values under a product's settings, each once
    notes: list[str] = field(default_factory=list)
    #: what the inputs' radiometric scaling overrode of what they declare -> how many inputs
    overrides: dict[str, int] = field(default_factory=dict)


ON_ERROR = ("fail", "skip")

#: how often a shard job updates its live file (and checks for checkpoints)
TICK_SECONDS = 0.5

# How many files ahead of the conversion the read-ahead keeps asked for.
READ_AHEAD = 64

#: conversion threads of a job whose inputs or images are in object storage (at least)
REMOTE_IO_THREADS = 4


def hint_will_read(path: Path) -> bool:
    """Ask the kernel to start reading ``path`` into the page cache (posix_fadvise WILLNEED:
    the reads are queued and the call returns). A hint only: a file that cannot be opened is
    left to the conversion, which reports the problem. False if nothing was asked."""
    try:  # O_NONBLOCK: never hang on a FIFO or a device named like a TIFF
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        return True
    except OSError:
        return False  # not a regular file: nothing to read ahead
    finally:
        os.close(fd)


class ReadAhead:
    """Keeps the next ``ahead`` input files asked for (:func:`hint_will_read`) while the
    current ones are converted. On a cold page cache (a dataset larger than memory, a network
    file system) a file then no longer waits for the disk when its turn comes, and the disk gets
    many requests at once. Workers call :meth:`started` as they take a file; whenever the files
    asked for run low, that worker asks for the next batch (half of ``ahead``) itself: no extra
    thread to compete for the GIL, so on a warm cache the cost is a few system calls per file.
    Does nothing with ``ahead`` 0 or where ``posix_fadvise`` does not exist (macOS)."""

    def __init__(
        self,
        paths: Sequence[InputFile | Sequence[InputFile]],
        ahead: int = READ_AHEAD,
        sizes: Sequence[int | None] | None = None,
    ):
        # one entry per image: its file, or its files (an image made of band files); objects in
        # S3 are fetched ahead (msrgb.storage.remote.prefetch) when the image's ``sizes`` are known and
        # small (a STAC Item's are not known)
        self._paths = paths if ahead > 0 and hasattr(os, "posix_fadvise") else []
        self._sizes = sizes
        self._ahead = max(2, ahead)
        self._lock = threading.Lock()
        self._started = 0
        self._asked = 0  # files [0, _asked) have been asked for
        self.hinted = 0

    def started(self) -> None:
        with self._lock:
            self._started += 1
            if self._asked - self._started >= self._ahead // 2 or self._asked >= len(self._paths):
                return
            first, self._asked = self._asked, min(len(self._paths), self._started + self._ahead)
            batch = self._paths[first : self._asked]
            sizes = self._sizes[first : self._asked] if self._sizes is not None else [0] * len(batch)
        local: list[Path] = []
        remote: list[S3Path | HttpPath] = []
        for item, size in zip(batch, sizes):
            for p in [item] if isinstance(item, (Path, S3Path, HttpPath)) else item:
                if isinstance(p, Path):
                    local.append(p)
                elif size is not None and size <= PREFETCH_MAX_BYTES:
                    remote.append(p)
        hinted = sum(hint_will_read(p) for p in local) + prefetch(remote)
        with self._lock:
            self.hinted += hinted


def run_shard(
    manifest: Path,
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
) -> ShardResult:
    """Bring every image of the shard described by ``manifest`` up to date, then record what
    was done in ``state_out``. Every ``checkpoint_every`` seconds, and when the job fails, the
    records so far go to the shard's progress file, so a killed or failed job resumes where it
    stopped.

    Images that cannot be made (:class:`msrgb.errors.FileError`: a bad input, an output name the
    file system refuses): with ``on_error="fail"`` (default: the manifest's policy) everything
    else is made, then :class:`ShardError` lists each file and why. With ``"skip"`` they are
    recorded as skipped in the state (with size and mtime, so a fixed file is tried again) and
    have no output. An output folder that cannot be written (disk full) stops the job at once
    with :class:`msrgb.errors.OutputError`. Products with a dataset-wide stretch take their
    limits from ``stretch_files`` (product name -> JSON written by :mod:`msrgb.jobs.stats`).
    ``read_ahead`` input files are kept asked for ahead of the conversion (:class:`ReadAhead`;
    0 = off). Images over ``max_pixels`` are bad inputs unless the products make quicklooks.
    At the end, ``done`` (the marker Snakemake asked for, named by the shard's token) is left
    with the marker of the manifest's own token, which a later run asks for while nothing
    changes (:func:`msrgb.outputs.paths.leave_marker`)."""
    n_shards, shard, layout = int(manifest.parent.name), int(manifest.stem), OutputPaths.of_manifest(manifest)
    members, products, on_error = _job_settings(manifest, products, stretch_files, on_error)
    progress = layout.progress(n_shards, shard)
    work, result = _start_job(layout, n_shards, shard, members, products, on_error, input_dir, threads)
    converter, kept = Converter(products, max_pixels=max_pixels, defer_uploads=True), work.kept
    record = Recorder(result, kept, work.digests, on_error, lambda src: converter.inputs.open(input_dir, src))

    def checkpoint() -> None:
        write_atomic(progress, record.checkpoint_text().encode("utf-8"))

    t0 = time.monotonic()
    tick = _ticker(layout, n_shards, shard, result, len(work.todo), progress_every)
    try:
        fatal = convert_all(
            work.todo, converter, input_dir, threads, read_ahead, record.outcome,
            checkpoint, checkpoint_every, tick,
        )  # fmt: skip
    except KeyboardInterrupt:
        checkpoint()  # keep what was done, for the next run
        raise
    result.skipped += len(result.failed) if on_error == "skip" else 0
    _write_run_stats(layout, n_shards, shard, result, time.monotonic() - t0)
    if fatal is not None or (result.failed and on_error == "fail"):
        _fail_job(fatal, result, checkpoint, progress, f"shard {shard} (of {n_shards})")
    write_atomic(state_out, state_text(**vars(kept)).encode("utf-8"))
    progress.unlink(missing_ok=True)
    if done is not None:
        leave_marker(done, keep=[shard_token(manifest_file_text(manifest))])
    return result


def _start_job(
    layout: OutputPaths,
    n_shards: int,
    shard: int,
    members: Sequence[Source],
    products: Sequence[Product],
    on_error: str,
    input_dir: InputDir,
    threads: int,
) -> tuple[Work, ShardResult]:
    """What the job has to do, from the records of earlier jobs of any shard count and the
    output folders; images whose input is gone are deleted first."""
    before = read_state_full([*layout.related_states(n_shards, shard), layout.progress(n_shards, shard)])
    # one listing per output folder of the shard, which also clears temporaries that killed
    # jobs left there
    present = OutputListing(remove_stale=True, images=layout.images)
    present.folders({layout.png_str(p, s).rpartition("/")[0] for s in members for p in products})
    work = work_to_do(
        members, products, before, on_error, layout.png_str, present, scaled_bands_of(input_dir, products),
        scaling_changes(input_dir),
    )  # fmt: skip
    if work.rescaled:
        log.info("shard %d (of %d): %s", shard, n_shards, rescaled_line(work.rescaled))
    if work.restac:
        log.info("shard %d (of %d): %s", shard, n_shards, restac_line(work.restac))
    result = ShardResult(members=len(members), up_to_date=work.up_to_date)
    result.skipped = work.skipped_before
    result.removed = _remove_orphans(before, members, products, layout, n_shards, shard)
    log.info(
        "shard %d (of %d): %d images, %d up to date, %d to convert with %d thread(s)%s",
        shard, n_shards, len(members), result.up_to_date, len(work.todo), threads,
        f", {result.skipped} skipped as bad before" if result.skipped else "",
    )  # fmt: skip
    return work, result


def _ticker(
    layout: OutputPaths, n_shards: int, shard: int, result: ShardResult, todo: int, progress_every: float
) -> Callable[[bool], None]:
    """Called as the job goes (and once at the end): the live file and the log's progress."""
    report = _live_reporter(layout.live(n_shards, shard), Live(time.time(), todo, 0, 0), result)
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


def remove_earlier_logs(log_file: Path) -> None:
    """Delete the logs of earlier jobs of this shard: a shard job's log is named
    ``<n>-<shard>.<token>.log``, and only the latest is kept."""
    shard = log_file.name.split(".", 1)[0]
    for old in log_file.parent.glob(f"{shard}.*.log"):
        if old != log_file:
            old.unlink(missing_ok=True)


def _job_settings(
    manifest: Path,
    products: Sequence[Product],
    stretch_files: Mapping[str, Path] | None,
    on_error: str | None,
) -> tuple[list[Source], list[Product], str]:
    """The shard's members, the products with their dataset-wide limits filled in, and the
    error policy (the manifest's unless given); fails if the manifest was planned for other
    product settings."""
    try:
        members, settings = read_manifest_text(manifest_file_text(manifest))
    except FileNotFoundError:
        raise PlanError(
            f"{manifest} is missing: msrgb writes the plan when a run starts (onstart), which "
            "--no-hooks skips; run snakemake without --no-hooks"
        ) from None
    for p in products:
        if settings.get(p.name) != p.digest():
            raise PlanError(
                f"{manifest}: was written for other settings of product {p.name!r}; "
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


class Recorder:
    """Records the outcome of each image in the shard's result and state (``done``), and
    makes the text of the shard's checkpoint (:meth:`checkpoint_text`)."""

    def __init__(
        self,
        result: ShardResult,
        done: StateData,
        digests: dict[str, str],
        on_error: str,
        open_input: Callable[[Source], InputImage],
    ):
        self.result, self.done, self.digests = result, done, digests
        self.on_error, self.open_input = on_error, open_input
        versions = library_versions()
        self.env = environment_id(versions)
        done.envs[self.env] = versions
        self._snapshot: str | None = None  # the state at the first checkpoint
        self._since: list[str] = []  # the rows recorded after it, in order

    def checkpoint_text(self) -> str:
        """A state file that reads as :func:`state_text` of ``done`` does: the whole state as
        it was at the first checkpoint, then the rows of the outcomes recorded since, later rows
        winning (msrgb.outputs.state.read_state_full). Writing every record at every checkpoint would
        cost a job time that grows with the square of its images."""
        if self._snapshot is None:
            self._snapshot = state_text(**vars(self.done))
        return self._snapshot + "".join(self._since)

    def outcome(self, src: Source, dests: dict[str, Path | S3Path], outcome: Converted | BaseException) -> None:
        if isinstance(outcome, Converted):
            self.result.converted += 1
            for name in dests:
                key = (src.rel, name)
                self.done.records[key] = (src.size, src.mtime_ns, self.digests[name])
                self.done.provenance[key] = (outcome.source_of(name), outcome.image_sha[name], self.env)
                if name in outcome.clipping:
                    self.done.clipping[key] = clip_text(outcome.clipping[name])
                if name in outcome.radiometry:
                    self.done.radiometry[key] = outcome.radiometry[name]
                else:
                    self.done.radiometry.pop(key, None)
                if self._snapshot is not None:
                    self._since.append(record_row(self.done, key))
            for why in outcome.overrides:
                self.result.overrides[why] = self.result.overrides.get(why, 0) + 1
            for note in outcome.notes:
                if note not in self.result.notes:
                    self.result.notes.append(note)
                    log.warning("%s (first seen in %s)", note, src.rel)
            return
        self.result.failed.append(str(outcome))
        log.warning("%s", outcome)
        if self.on_error == "skip":
            reason = _reason(outcome, self.open_input(src).where)
            if src.files and src.files[0][0] == ZIP_BAND:  # named after the .SAFE it holds
                reason = f"{src.files[0][1]}: {reason}"
            self.done.skipped[src.rel] = (src.size, src.mtime_ns, reason)
            if self._snapshot is not None:
                self._since.append(skipped_row(src.rel, self.done.skipped[src.rel]))
        if self.on_error == "skip" or isinstance(outcome, OutputFileError):
            # no image from an earlier version of a bad input, none without its side files
            for out in dests.values():
                remove_output(out)


def convert_all(
    todo: Sequence[tuple[Source, dict[str, Path | S3Path]]],
    converter: Converter,
    input_dir: InputDir,
    threads: int,
    read_ahead: int,
    record: Callable[[Source, dict[str, Path | S3Path], Converted | BaseException], None],
    checkpoint: Callable[[], None],
    checkpoint_every: float,
    tick: Callable[[bool], None],
) -> BaseException | None:
    """Convert ``todo`` with a pool of ``threads`` threads, calling ``record`` with each
    outcome (the :class:`Converted` result or a :class:`FileError`), ``checkpoint`` every
    ``checkpoint_every`` seconds and ``tick`` after each wait (with True at the end). Returns
    the first other error (the output folder cannot be written), after which nothing more is
    started, or None."""
    inputs = [converter.inputs.open(input_dir, src) for src, _ in todo]
    ahead = ReadAhead([i.paths() for i in inputs], read_ahead, _sizes_to_fetch(todo, converter, input_dir))

    def convert(image: InputImage, dests: dict[str, Path | S3Path], rel: str) -> Converted:
        ahead.started()
        return converter.convert(image, dests, rel)

    fatal: BaseException | None = None
    last_checkpoint = time.monotonic()
    with ThreadPoolExecutor(_workers(threads, input_dir, todo), initializer=enter_thread_gdal_env) as pool:
        futures = {
            pool.submit(convert, i, dests, src.rel): (src, dests) for i, (src, dests) in zip(inputs, todo)
        }
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=TICK_SECONDS, return_when=FIRST_EXCEPTION)
                for fut in done:
                    if fut.cancelled():  # after a fatal error
                        continue
                    exc = fut.exception()
                    if exc is None and fut.result().uploads:  # recorded once its PUTs are done
                        uploaded = after_uploads(fut.result())
                        futures[uploaded] = futures[fut]
                        pending.add(uploaded)
                    elif exc is None or isinstance(exc, FileError):
                        record(*futures[fut], fut.result() if exc is None else exc)
                    elif fatal is None:  # disk full, permissions on the output: stop early
                        fatal = exc
                        for f in pending:
                            f.cancel()
                now = time.monotonic()
                if now - last_checkpoint >= checkpoint_every and pending:
                    last_checkpoint = now
                    checkpoint()
                tick(not pending)
        except KeyboardInterrupt:  # Ctrl-C: finish the images under way, start no more
            for f in pending:
                f.cancel()
            raise
        finally:
            forget_prefetched()  # after a fatal error: objects fetched for images not started
    return fatal


def _workers(threads: int, input_dir: InputDir, todo: Sequence[tuple[Source, dict[str, Path | S3Path]]]) -> int:
    """Conversion threads: the job's, at least :data:`REMOTE_IO_THREADS` when it reads from or
    writes to object storage (waiting on the network without the GIL, more threads than the
    job's cores keep the cores busy meanwhile)."""
    remote_io = not isinstance(input_dir, Path) or any(isinstance(d, S3Path) for _, ds in todo[:1] for d in ds.values())
    return max(threads, REMOTE_IO_THREADS if remote_io else 1)


def _sizes_to_fetch(
    todo: Sequence[tuple[Source, dict[str, Path | S3Path]]], converter: Converter, input_dir: InputDir
) -> list[int | None]:
    """The size of each image's files for the read-ahead, None where they are not fetched
    ahead: a STAC Item's files (its "size" is that of its JSON) and band files read in part for
    quicklooks (msrgb.readers.bands: range requests)."""
    quicklook_bands = converter.reader.max_size is not None and any(src.files is not None for src, _ in todo[:1])
    known = not isinstance(input_dir, StacItems) and not quicklook_bands
    return [src.size if known else None for src, _ in todo]


def after_uploads(result: Converted) -> Future[Converted]:
    """A future of ``result`` that completes when its uploads have (with the first upload's
    error, if one failed); its uploads are then no longer waited for."""
    combined: Future[Converted] = Future()
    # running, like a pool's future: it ends when its uploads do, a fatal error does not cancel
    # it (a cancelled future that no pool takes never counts as done for wait())
    combined.set_running_or_notify_cancel()
    uploads, result.uploads = result.uploads, []
    left = [len(uploads)]
    lock = threading.Lock()

    def one_done(upload: Future[None]) -> None:
        with lock:
            left[0] -= 1
            last = left[0] == 0
        exc = upload.exception() if not upload.cancelled() else CancelledError()
        with contextlib.suppress(InvalidStateError):  # an earlier upload failed
            if exc is not None:
                combined.set_exception(exc)
            elif last:
                combined.set_result(result)

    for upload in uploads:
        upload.add_done_callback(one_done)
    return combined


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


def _write_run_stats(
    layout: OutputPaths, n_shards: int, shard: int, result: ShardResult, seconds: float
) -> None:
    """What this job did, for the run summary (msrgb.jobs.report reads it)."""
    stats = {
        "members": result.members,
        "converted": result.converted,
        "up_to_date": result.up_to_date,
        "skipped": result.skipped,
        "failed": len(result.failed),
        "seconds": round(seconds, 3),
        "finished": time.time(),
        "notes": result.notes,
        "overrides": result.overrides,
    }
    try:
        write_atomic(layout.run_stats(n_shards, shard), json.dumps(stats).encode())
    except OSError as exc:
        log.error("could not record run statistics: %s", exc)


def clip_text(figures: Sequence[float]) -> str:
    """Clip figures as one state field: six shares with 4 decimals, the mean with 2."""
    return " ".join([*(f"{v:.4f}" for v in figures[:6]), f"{figures[6]:.2f}"])


def _reason(exc: BaseException, path: object) -> str:
    """The reason without the file name, which errors.tsv has in its own column."""
    text, prefix = str(exc), f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _remove_orphans(
    before: StateData,
    members: Sequence[Source],
    products: Sequence[Product],
    layout: OutputPaths,
    n_shards: int,
    shard: int,
) -> int:
    """Delete the images this workflow made from input files that no longer exist."""
    by_name = {p.name: p for p in products}
    removed = 0
    for rel, product in orphans(before, members, list(by_name), n_shards, shard):
        png = layout.png(by_name[product], Source(rel, 0, 0))
        if remove_output(png):
            removed += 1
            log.info("removed %s: its input %s is gone", png, rel)
    return removed
