"""Convert one shard: the images of a manifest whose PNGs are missing or out of date."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from msrgb.convert import (
    Converter,
    InputError,
    enter_thread_gdal_env,
    environment_id,
    library_versions,
    side_files,
    write_atomic,
)
from msrgb.plan import (
    Layout,
    Provenance,
    Records,
    Skipped,
    Source,
    read_manifest,
    read_state_full,
    shard_of,
    state_text,
)
from msrgb.products import Product
from msrgb.stats import read_limits

log = logging.getLogger("msrgb")


class ShardError(Exception):
    """Some images of a shard could not be converted; the message lists each file and why."""


@dataclass
class ShardResult:
    members: int = 0
    converted: int = 0
    up_to_date: int = 0
    removed: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0


ON_ERROR = ("fail", "skip")

# How many files ahead of the conversion the read-ahead keeps asked for.
READ_AHEAD = 64


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

    def __init__(self, paths: Sequence[Path], ahead: int = READ_AHEAD):
        self._paths = paths if ahead > 0 and hasattr(os, "posix_fadvise") else []
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
        hinted = sum(hint_will_read(p) for p in batch)
        with self._lock:
            self.hinted += hinted


def run_shard(
    manifest: Path,
    state_out: Path,
    input_dir: Path,
    products: Sequence[Product],
    threads: int = 1,
    progress_every: float = 5.0,
    checkpoint_every: float = 1.0,
    on_error: str | None = None,
    stretch_files: Mapping[str, Path] | None = None,
    read_ahead: int = READ_AHEAD,
) -> ShardResult:
    """Bring every PNG of the shard described by ``manifest`` up to date, then record what
    was done in ``state_out``. Every ``checkpoint_every`` seconds, and when the job fails, the
    records so far go to the shard's progress file, so a killed or failed job resumes where it
    stopped.

    Bad inputs (:class:`InputError`): with ``on_error="fail"`` (default: the manifest's policy)
    everything else is converted, then :class:`ShardError` lists each bad file and why. With
    ``"skip"`` they are recorded as skipped in the state (with size and mtime, so a fixed file
    is tried again) and have no PNG. A PNG that cannot be written (disk full) stops the job at
    once with :class:`OutputError`. Products with a dataset-wide stretch take their limits
    from ``stretch_files`` (product name -> JSON written by :mod:`msrgb.stats`). ``read_ahead``
    input files are kept asked for ahead of the conversion (:class:`ReadAhead`; 0 = off)."""
    n_shards, shard = int(manifest.parent.name), int(manifest.stem)
    layout = Layout.of_manifest(manifest)
    members, digests = read_manifest(manifest)
    for p in products:
        if digests.get(p.name) != p.digest():
            raise RuntimeError(
                f"{manifest}: was written for other settings of product {p.name!r}; "
                "re-run snakemake so the plan is rebuilt"
            )
    products = [
        p.with_limits(read_limits((stretch_files or {})[p.name])) if p.dataset_stretch else p
        for p in products
    ]
    on_error = on_error or digests.get("on_error", "fail")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    progress = layout.progress(n_shards, shard)
    before = read_state_full([*layout.related_states(n_shards, shard), progress])
    previous, previous_skipped = before.records, before.skipped
    versions = library_versions()
    env = environment_id(versions)
    envs = {env: versions}
    provenance: Provenance = {}
    manifest_mtime = manifest.stat().st_mtime_ns
    digest = {p.name: p.digest() for p in products}
    result = ShardResult(members=len(members))
    records: Records = {}
    skipped: Skipped = {}
    todo: list[tuple[Source, dict[str, Path]]] = []
    for src in members:
        known_bad = previous_skipped.get(src.rel)
        if on_error == "skip" and known_bad and known_bad[:2] == (src.size, src.mtime_ns):
            skipped[src.rel] = known_bad  # unchanged since it was found bad: not retried
            result.skipped += 1
            continue
        dests = {}
        for p in products:
            png = layout.png(p.name, src)
            record = (src.size, src.mtime_ns, digest[p.name])
            if previous.get((src.rel, p.name)) == record and _keep(png, manifest_mtime):
                records[(src.rel, p.name)] = record
                if (src.rel, p.name) in before.provenance:
                    provenance[(src.rel, p.name)] = before.provenance[(src.rel, p.name)]
                    prov_env = before.provenance[(src.rel, p.name)][2]
                    envs.setdefault(prov_env, before.envs.get(prov_env, "unknown"))
            else:
                dests[p.name] = png
        if dests:
            todo.append((src, dests))
        else:
            result.up_to_date += 1

    result.removed = _remove_orphans(previous, members, products, layout, n_shards, shard)
    log.info(
        "shard %d (of %d): %d images, %d up to date, %d to convert with %d thread(s)%s",
        shard, n_shards, len(members), result.up_to_date, len(todo), threads,
        f", {result.skipped} skipped as bad before" if result.skipped else "",
    )  # fmt: skip

    def checkpoint() -> None:
        write_atomic(progress, state_text(records, skipped, provenance, envs).encode("utf-8"))

    converter = Converter(products)
    ahead = ReadAhead([input_dir / src.rel for src, _ in todo], read_ahead)

    def convert(path: Path, dests: dict[str, Path]) -> tuple[str, dict[str, str]]:
        ahead.started()
        return converter.convert(path, dests)

    t0 = last = last_checkpoint = time.monotonic()
    fatal: BaseException | None = None
    with ThreadPoolExecutor(max(1, threads), initializer=enter_thread_gdal_env) as pool:
        futures: dict[Future[tuple[str, dict[str, str]]], tuple[Source, dict[str, Path]]] = {
            pool.submit(convert, input_dir / src.rel, dests): (src, dests) for src, dests in todo
        }
        pending = set(futures)
        while pending:
            timeout = min(progress_every, checkpoint_every)
            done, pending = wait(pending, timeout=timeout, return_when=FIRST_EXCEPTION)
            for fut in done:
                src, dests = futures[fut]
                if fut.cancelled():  # after a fatal error
                    continue
                exc = fut.exception()
                if exc is None:
                    result.converted += 1
                    source_sha, png_sha = fut.result()
                    for name in dests:
                        records[(src.rel, name)] = (src.size, src.mtime_ns, digest[name])
                        provenance[(src.rel, name)] = (source_sha, png_sha[name], env)
                elif isinstance(exc, InputError):
                    result.failed.append(str(exc))
                    log.warning("%s", exc)
                    if on_error == "skip":
                        skipped[src.rel] = (src.size, src.mtime_ns, _reason(exc, input_dir / src.rel))
                        _remove_stale(dests.values())
                elif fatal is None:  # disk full, permissions on the output: stop early
                    fatal = exc
                    for f in pending:
                        f.cancel()
            now = time.monotonic()
            if now - last_checkpoint >= checkpoint_every and pending:
                last_checkpoint = now
                checkpoint()
            if now - last >= progress_every or not pending:
                last = now
                rate = result.converted / max(now - t0, 1e-9)
                log.info(
                    "shard %d (of %d): %d/%d converted, %d bad (%.0f images/s)",
                    shard, n_shards, result.converted, len(todo), len(result.failed), rate,
                )  # fmt: skip
    result.skipped += len(result.failed) if on_error == "skip" else 0
    stats = {
        "members": len(members),
        "converted": result.converted,
        "up_to_date": result.up_to_date,
        "skipped": result.skipped,
        "failed": len(result.failed),
        "seconds": round(time.monotonic() - t0, 3),
        "finished": time.time(),
    }
    try:
        write_atomic(layout.run_stats(n_shards, shard), json.dumps(stats).encode())
    except OSError as exc:
        log.error("could not record run statistics: %s", exc)
    if fatal is not None or (result.failed and on_error == "fail"):
        try:
            checkpoint()  # keep what was done, for the next run
        except OSError as exc:
            log.error("could not save progress to %s: %s", progress, exc)
        if fatal is not None:
            raise fatal
        raise ShardError(
            f"{len(result.failed)} of {len(members)} input file(s) of shard {shard} (of "
            f"{n_shards}) could not be converted:\n  " + "\n  ".join(sorted(result.failed))
        )
    write_atomic(state_out, state_text(records, skipped, provenance, envs).encode("utf-8"))
    progress.unlink(missing_ok=True)
    return result


def _reason(exc: InputError, path: Path) -> str:
    """The reason without the file name, which errors.tsv has in its own column."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _remove_png(png: Path) -> bool:
    """Delete a PNG and its side files (world file, .aux.xml); True if the PNG was there."""
    for side in side_files(png):
        side.unlink(missing_ok=True)
    try:
        png.unlink()
    except FileNotFoundError:
        return False
    return True


def _remove_stale(pngs: Iterable[Path]) -> None:
    """A skipped input must not keep a PNG made from an earlier version of it."""
    for png in pngs:
        _remove_png(png)


def _keep(png: Path, manifest_mtime: int) -> bool:
    """True if ``png`` exists. An older PNG is touched so that it is newer than the manifest:
    Snakemake then sees it as up to date when it is requested as a target."""
    try:
        st = os.stat(png)
    except FileNotFoundError:
        return False
    if st.st_mtime_ns < manifest_mtime:
        os.utime(png)
    return True


def _remove_orphans(
    previous: dict[tuple[str, str], tuple[int, int, str]],
    members: Sequence[Source],
    products: Sequence[Product],
    layout: Layout,
    n_shards: int,
    shard: int,
) -> int:
    """Delete the PNGs this workflow made from input files that no longer exist."""
    current = {s.rel for s in members}
    names = {p.name for p in products}
    removed = 0
    for rel, product in previous:
        if rel in current or product not in names or shard_of(rel, n_shards) != shard:
            continue
        png = layout.png(product, Source(rel, 0, 0))
        if _remove_png(png):
            removed += 1
            log.info("removed %s: its input %s is gone", png, rel)
    return removed
