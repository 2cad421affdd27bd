"""Seeing a run move, in the main Snakemake process: images done out of the total across all
running shard jobs, read from the small progress files the jobs write (msrgb.outputs.live; a
shared file system carries them from cluster nodes).

On a terminal the progress is a tqdm bar on stderr that redraws in place; Snakemake's own
messages are written above it (their stream is wrapped so the bar is cleared first and drawn
again after each complete line). Otherwise (CI, nohup, a batch job's log) it is one plain line
every ``interval`` seconds.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from msrgb.outputs.live import Live, read_live, write_live
from msrgb.outputs.paths import OutputPaths


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
        output: OutputPaths,
        n_shards: int,
        total: int,
        since: float,
        interval: float = 30.0,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        wrap_streams: Callable[[Any], None] | None = None,
    ):
        self.output, self.n_shards, self.total, self.since = output, n_shards, total, since
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
        reports = read_live(self.output, self.n_shards, self.since)
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


__all__ = [
    "BarSafeStream",
    "Live",
    "LiveProgress",
    "read_live",
    "write_live",
]
