"""Seeing a run move, in the main Snakemake process: before the jobs, how many images each
product will convert, remove or keep (printed by dry runs too); during the run, images done out
of the total across all running shard jobs, read from the small progress files the jobs write
(a shared file system carries them from cluster nodes).

On a terminal the progress is a tqdm bar on stderr that redraws in place; Snakemake's own
messages are written above it (their stream is wrapped so the bar is cleared first and drawn
again after each complete line). Otherwise (CI, nohup, a batch job's log) it is one plain line
every ``interval`` seconds.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from msrgb.plan import Layout, OutputListing, Plan, StateData, read_state_full
from msrgb.products import Product


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


def shard_will_run(layout: Layout, plan: Plan, shard: int, inputs: Sequence[Path]) -> bool:
    """Whether Snakemake runs this shard's job: its state file is missing or older than one of
    its inputs (the manifest, stretch limits). Shards with a missing output were back-dated by
    flag_shards_missing_outputs before."""
    try:
        state = layout.state(plan.n_shards, shard).stat().st_mtime_ns
    except FileNotFoundError:
        return True
    newest = 0
    for path in (layout.manifest(plan.n_shards, shard), *inputs):
        try:
            newest = max(newest, path.stat().st_mtime_ns)
        except FileNotFoundError:
            return True
    return newest > state


def count_work(
    layout: Layout,
    plan: Plan,
    products: Sequence[Product],
    on_error: str,
    stretch_inputs: Sequence[Path] = (),
    present: OutputListing | None = None,
    input_dir: Path | None = None,
) -> WorkCounts:
    """Per product, the images the shard jobs of the next run will convert and remove and those
    up to date: the same decision as the jobs (msrgb.shard.work_to_do), made only for the shards
    Snakemake will run (every image of the others is up to date). Products with a dataset-wide
    stretch whose limits are not computed yet count as all to convert. ``present`` tells
    whether an output exists (the listings flag_shards_missing_outputs made, if given);
    ``input_dir`` lets it look at the inputs of images made before radiometric offsets were
    applied, as the jobs do."""
    from msrgb.bandreader import scaled_bands_of
    from msrgb.shard import orphans, work_to_do
    from msrgb.stats import with_recorded_limits

    ready = [with_recorded_limits(p, layout.stretch(p.name)) for p in products]
    counts = WorkCounts({p.name: ProductCounts() for p in products})
    present = present or OutputListing()
    names = [p.name for p in products]
    for shard, members in enumerate(plan.members):
        if not shard_will_run(layout, plan, shard, stretch_inputs):
            before = read_state_full([layout.state(plan.n_shards, shard)]) if on_error == "skip" else StateData()
            for src in members:
                bad = before.skipped.get(src.rel)
                for p in products:
                    c = counts.products[p.name]
                    if bad is not None and bad[:2] == (src.size, src.mtime_ns):
                        c.bad += 1
                    else:
                        c.up_to_date += 1
            continue
        states = [*layout.related_states(plan.n_shards, shard), layout.progress(plan.n_shards, shard)]
        if not any(path.exists() for path in states):  # never converted: every image to do
            counts.images += len(members)
            for p in products:
                counts.products[p.name].to_convert += len(members)
            continue
        before = read_state_full(states)
        scaled = scaled_bands_of(input_dir, products) if input_dir is not None else None
        work = work_to_do(members, ready, before, on_error, layout.png, present, scaled)
        counts.images += len(work.todo)
        counts.rescaled += work.rescaled
        todo: dict[str, int] = {}
        for _, dests in work.todo:
            for name in dests:
                todo[name] = todo.get(name, 0) + 1
        for p in products:
            c = counts.products[p.name]
            c.to_convert += todo.get(p.name, 0)
            c.bad += work.skipped_before
            c.up_to_date += len(members) - work.skipped_before - todo.get(p.name, 0)
        for _, name in orphans(before, members, names, plan.n_shards, shard):
            counts.products[name].to_remove += 1
    return counts


@dataclass
class Live:
    """What one shard job reports while it runs (``.msrgb/live/<n>/<shard>.json``)."""

    started: float
    total: int
    done: int
    bad: int
    finished: bool = False
    #: when the job last wrote this
    updated: float = 0.0


def write_live(path: Path, live: Live) -> None:
    """Written by a shard job, about every half second: small enough never to matter."""
    from msrgb.files import write_atomic

    live.updated = time.time()
    write_atomic(path, json.dumps(live.__dict__).encode())


def read_live(layout: Layout, n_shards: int, since: float) -> list[Live]:
    """The reports of the shard jobs started since ``since`` (this run's)."""
    folder = layout.live(n_shards, 0).parent
    found: list[Live] = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return found
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            live = Live(**json.loads((folder / name).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            continue  # being replaced, or from another version
        if live.started >= since:
            found.append(live)
    return found


def eta_text(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class Snapshot:
    done: int
    total: int
    bad: int
    rate: float  # images per second since the first image

    def text(self) -> str:
        parts = [f"{self.done:,}/{self.total:,} images"]
        if self.rate > 0:
            parts.append(f"{self.rate:,.0f} images/s")
            if self.done < self.total:
                parts.append(f"ETA {eta_text((self.total - self.done) / self.rate)}")
        parts.append(f"{self.bad:,} bad")
        return ", ".join(parts)


class LiveProgress:
    """The progress display of a run (see the module docstring). Start it once the plan is
    known; stop it at the end of the run (or it stops at interpreter exit)."""

    POLL_SECONDS = 0.5

    def __init__(
        self,
        layout: Layout,
        n_shards: int,
        total: int,
        since: float,
        interval: float = 30.0,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        wrap_streams: Callable[[Any], None] | None = None,
    ):
        self.layout, self.n_shards, self.total, self.since = layout, n_shards, total, since
        self.interval = interval
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._wrap_streams = wrap_streams
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="msrgb-progress", daemon=True)
        self._bar: Any = None
        self._first: float | None = None
        self._last_line = 0.0
        self._last: Snapshot | None = None
        self._printed: tuple[int, int] | None = None  # (done, bad) of the last plain line
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        if self.total <= 0:
            return
        self._thread.start()
        atexit.register(self.stop)

    def snapshot(self) -> Snapshot | None:
        reports = read_live(self.layout, self.n_shards, self.since)
        if not reports:
            return None
        done = min(self.total, sum(r.done for r in reports))
        bad = sum(r.bad for r in reports)
        if self._first is None:
            self._first = min(r.started for r in reports)
        # up to now while jobs run; up to the last report once every job is done
        now = max(r.updated for r in reports) if done >= self.total else time.time()
        rate = done / (now - self._first) if done and now > self._first else 0.0
        return Snapshot(done, self.total, bad, rate)

    def _run(self) -> None:
        while not self._stop.wait(self.POLL_SECONDS):
            snap = self.snapshot()
            if snap is not None:
                self._show(snap)

    def _show(self, snap: Snapshot, final: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._last = snap
            if self.tty:
                self._draw(snap)
            elif (final or time.monotonic() - self._last_line >= self.interval) and (
                self._printed != (snap.done, snap.bad)
            ):
                self._last_line = time.monotonic()
                self._printed = (snap.done, snap.bad)
                print(f"msrgb: {snap.text()}", file=self.stream, flush=True)

    def _draw(self, snap: Snapshot) -> None:
        if self._bar is None:
            from tqdm import tqdm

            # a terminal that reports no width (a pty nobody sized) gets a usable one
            size = shutil.get_terminal_size((100, 24))
            self._bar = tqdm(
                total=snap.total, file=self.stream, bar_format="msrgb: {percentage:3.0f}%|{bar}| {desc}",
                ncols=size.columns or 100, nrows=size.lines or 24, leave=True, desc=snap.text(),
            )  # fmt: skip
            if self._wrap_streams is not None:
                self._wrap_streams(BarSafeStream)
        self._bar.n = snap.done
        self._bar.set_description_str(snap.text(), refresh=False)
        self._bar.refresh()

    def stop(self) -> None:
        """Show the last figures and end the display (safe to call more than once)."""
        if not self._thread.is_alive() and self._bar is None and self._last is None:
            self._closed = True
            return
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        snap = self.snapshot()
        if snap is not None:
            self._show(snap, final=True)
        with self._lock:
            if self._bar is not None and not self._closed:
                self._bar.close()
            self._closed = True


class BarSafeStream:
    """A stream for Snakemake's log handler while a bar is on screen: complete lines are
    written with the bar cleared first and drawn again after (tqdm.external_write_mode), so
    neither garbles the other."""

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        from tqdm import tqdm

        self._pending += text
        if "\n" in self._pending:
            lines, _, self._pending = self._pending.rpartition("\n")
            with tqdm.external_write_mode(file=self._stream):
                self._stream.write(lines + "\n")
        return len(text)

    def flush(self) -> None:
        """Complete lines go out as they come; a line without its end yet goes out here, so
        nothing is held back when a writer flushes (the bar is drawn again below it)."""
        if self._pending:
            from tqdm import tqdm

            with tqdm.external_write_mode(file=self._stream):
                self._stream.write(self._pending + "\n")
            self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def print_counts(counts: WorkCounts, stream: IO[str] | None = None) -> None:
    for name, c in counts.products.items():
        print(f"msrgb: {c.line(name)}", file=stream or sys.stderr, flush=True)
    if counts.rescaled:
        print(f"msrgb: {rescaled_line(counts.rescaled)}", file=stream or sys.stderr, flush=True)


def rescaled_line(n: int) -> str:
    """Why images made by an earlier version are converted again."""
    return (
        f"{n:,} image(s) made by an earlier msrgb are converted again: their inputs declare a "
        "radiometric offset or scale (Sentinel-2 BOA_ADD_OFFSET/RADIO_ADD_OFFSET of processing "
        "baseline 04.00+, or GDAL scale/offset), which msrgb now applies"
    )


__all__ = [
    "BarSafeStream",
    "Live",
    "LiveProgress",
    "ProductCounts",
    "WorkCounts",
    "count_work",
    "print_counts",
    "read_live",
    "write_live",
]
