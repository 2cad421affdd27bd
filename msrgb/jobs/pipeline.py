"""The conversion of a shard's images, one after the other or in a thread pool: inputs read
ahead (local files hinted to the kernel, objects in S3 fetched in parallel) and images to S3
uploaded in the background.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import (
    FIRST_EXCEPTION,
    CancelledError,
    Future,
    InvalidStateError,
    ThreadPoolExecutor,
    wait,
)
from pathlib import Path
from typing import NamedTuple

from msrgb.errors import FileError
from msrgb.jobs.convert import Converted, Converter
from msrgb.readers.gdal import enter_thread_gdal_env, gdal_env
from msrgb.readers.images import InputImage
from msrgb.sources.discovery import Source
from msrgb.sources.stac import InputDir, StacItems
from msrgb.storage.locations import HttpPath, Location, S3Path
from msrgb.storage.remote import PREFETCH_MAX_BYTES, forget_prefetched, prefetch

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
        paths: Sequence[Location | Sequence[Location]],
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


#: converts one image (an input, its outputs by product, its name)
Convert = Callable[[InputImage, dict[str, Path | S3Path], str], Converted]
#: records one image's outcome: what was made, or the error that says why not
Record = Callable[[Source, dict[str, Path | S3Path], Converted | BaseException], None]


def convert_all(
    todo: Sequence[tuple[Source, dict[str, Path | S3Path]]],
    converter: Converter,
    input_dir: InputDir,
    threads: int,
    read_ahead: int,
    record: Record,
    checkpoint: Callable[[], None],
    checkpoint_every: float,
    tick: Callable[[bool], None],
) -> BaseException | None:
    """Convert ``todo`` with ``threads`` threads (one: in turn, in the calling thread), calling
    ``record`` with each outcome (the :class:`Converted` result or a :class:`FileError`),
    ``checkpoint`` every ``checkpoint_every`` seconds and ``tick`` as it goes (with True at the
    end). Returns the first other error (the output folder cannot be written), after which
    nothing more is started, or None."""
    if not todo:  # ended at once: said so (a pool would not tick), as a job killed does not
        tick(True)
        return None
    inputs = [converter.inputs.open(input_dir, src) for src, _ in todo]
    ahead = ReadAhead([i.paths() for i in inputs], read_ahead, _sizes_to_fetch(todo, converter, input_dir))

    def convert(image: InputImage, dests: dict[str, Path | S3Path], rel: str) -> Converted:
        ahead.started()
        return converter.convert(image, dests, rel)

    job = _Job(todo, inputs, convert, record, checkpoint, checkpoint_every, tick)
    workers = _workers(threads, input_dir, todo)
    return _in_order(job) if workers == 1 else _in_pool(workers, job)


class _Job(NamedTuple):
    """What :func:`convert_all` was given, for the two ways it converts."""

    todo: Sequence[tuple[Source, dict[str, Path | S3Path]]]
    inputs: Sequence[InputImage]
    convert: Convert
    record: Record
    checkpoint: Callable[[], None]
    checkpoint_every: float
    tick: Callable[[bool], None]


def _in_pool(workers: int, job: _Job) -> BaseException | None:
    """:func:`convert_all` with a pool of ``workers`` threads; each is recorded as it ends (an
    image bound for object storage once its uploads have)."""
    todo, inputs, convert, record, checkpoint, checkpoint_every, tick = job
    fatal: BaseException | None = None
    last_checkpoint = time.monotonic()
    with ThreadPoolExecutor(workers, initializer=enter_thread_gdal_env) as pool:
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


def _in_order(job: _Job) -> BaseException | None:
    """:func:`convert_all` with one thread on local files: each image converted and recorded in
    turn in the calling thread, without a pool's futures and wake-ups; the same outcomes,
    checkpoints and ticks."""
    todo, inputs, convert, record, checkpoint, checkpoint_every, tick = job
    last_tick = last_checkpoint = time.monotonic()
    fatal: BaseException | None = None
    with gdal_env():
        for k, (image, (src, dests)) in enumerate(zip(inputs, todo)):
            try:
                converted = convert(image, dests, src.rel)
            except FileError as exc:
                record(src, dests, exc)
            except Exception as exc:  # noqa: BLE001 -- raised by run_shard once what was made is saved
                fatal = exc  # disk full, permissions on the output: stop at once
                break
            else:
                # only jobs with object storage defer uploads, and those have a pool
                assert not converted.uploads, f"{src.rel}: uploads under way in a job on local files"
                record(src, dests, converted)
            now = time.monotonic()
            if now - last_checkpoint >= checkpoint_every and k + 1 < len(todo):
                last_checkpoint = now
                checkpoint()
            if now - last_tick >= TICK_SECONDS:
                last_tick = now
                tick(False)
    tick(True)
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
