"""Walking a large folder of band folders in several processes.

A no-op's planning looks at every band file (its name, size and time: 708,000 of them for
BigEarthNet's 59,000 patches), and Python's time per file is most of it; threads would share
one interpreter lock. So the input folder's first levels are walked here, breadth first, until
there are enough folders to share; then helper processes (``python -m
msrgb.sources.parallel_walk``, a few dozen milliseconds to start) each walk a share of them
while this process walks its own, and send back one row per image. Fewer folders than
:data:`ENOUGH_FOLDERS`, one CPU, or a helper that cannot be started: this process walks them
all, with the same result.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from msrgb.errors import MsrgbError, PlanError
from msrgb.sources import bandfiles
from msrgb.storage import tsv
from msrgb.storage.files import Problems

#: folders left to walk after the first levels from which helper processes share the walk
ENOUGH_FOLDERS = 2000
#: at most this many processes walk (this one and its helpers)
MAX_PROCESSES = 4

#: (path, size, mtime, files) of an image: what msrgb.sources.discovery.Source holds
ImageRow = tuple[str, int, int, tuple[tuple[str, str], ...]]


def image_rows(
    input_dir: str,
    band_pattern: str,
    needed: Sequence[str],
    with_stat: bool,
    problems: Problems | None,
    processes: int | None = None,
) -> list[ImageRow]:
    """The images of the whole ``input_dir`` (:func:`msrgb.sources.bandfiles.images_under`)
    as rows (:func:`msrgb.sources.bandfiles.image_row`), in no particular order, walked by up to
    ``processes`` processes (None: one per CPU this process may use; never more than
    :data:`MAX_PROCESSES` or those CPUs); folders that cannot be read go to ``problems`` (or
    raise :class:`PlanError` without it)."""
    band_of_name = bandfiles.band_reader(bandfiles.compile_pattern(band_pattern))
    images, pending = bandfiles.first_folders(input_dir, band_of_name, with_stat, problems, ENOUGH_FOLDERS)
    rows = [bandfiles.image_row(image, needed) for image in images]
    n = min(_processes(), processes or MAX_PROCESSES) if len(pending) >= ENOUGH_FOLDERS else 1
    shares = [pending[i::n] for i in range(n)]
    request = (input_dir, band_pattern, needed, with_stat, problems is not None)
    helpers = [_Helper.start(request, share) for share in shares[1:]]
    try:
        own = shares[0] + [f for helper, share in zip(helpers, shares[1:]) if helper is None for f in share]
        rows += _walk(input_dir, band_of_name, needed, with_stat, problems, own)
        for helper in helpers:
            if helper is not None:
                rows += helper.rows(problems)
    finally:
        for helper in helpers:
            if helper is not None:
                helper.stop()
    return rows


def _walk(
    input_dir: str,
    band_of_name: bandfiles.BandOf,
    needed: Sequence[str],
    with_stat: bool,
    problems: Problems | None,
    folders: Sequence[str],
) -> list[ImageRow]:
    images = bandfiles.images_under(input_dir, folders, band_of_name, with_stat, problems)
    return [bandfiles.image_row(image, needed) for image in images]


def _processes() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_PROCESSES))


class _Helper:
    """A helper process walking a share of the folders: its request in a temporary file (so
    that starting it never waits for it to read), its reply pickled into another, which it
    gets as an open file descriptor (whatever else prints to its standard output)."""

    def __init__(self, process: subprocess.Popen[bytes], reply: IO[bytes]) -> None:
        self.process, self.reply = process, reply

    @classmethod
    def start(cls, request: tuple[object, ...], share: list[str]) -> _Helper | None:
        """The helper walking ``share``, or None when no process can be started here (no
        Python executable known, or the system refuses): this process walks it then."""
        if not sys.executable:
            return None
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the msrgb package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        reply = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until stop())
        with tempfile.TemporaryFile() as sent:
            pickle.dump((*request, share), sent, protocol=pickle.HIGHEST_PROTOCOL)
            sent.seek(0)
            try:
                process = subprocess.Popen(
                    [sys.executable, "-m", "msrgb.sources.parallel_walk", str(reply.fileno())],
                    stdin=sent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                    pass_fds=(reply.fileno(),),
                )  # fmt: skip
            except OSError:
                reply.close()
                return None
        return cls(process, reply)

    def rows(self, problems: Problems | None) -> list[ImageRow]:
        """The helper's rows (its problems appended to ``problems``); raises what it raised."""
        _, err = self.process.communicate()
        self.reply.seek(0)
        try:
            reply = pickle.load(self.reply) if self.process.returncode == 0 else None
        except (pickle.UnpicklingError, EOFError, ValueError):
            reply = None
        if reply is None:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            raise PlanError(
                "listing the input folder: a helper process (python -m msrgb.sources.parallel_walk) "
                f"ended without its result, exit status {self.process.returncode}: {' / '.join(tail) or 'no message'}"
            )
        if reply[0] == "error":
            raise PlanError(reply[1])
        if problems is not None:
            problems += reply[2]
        return list(reply[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.reply.close()


def _serve(stdin: IO[bytes], reply_file: IO[bytes]) -> None:
    """A helper's work: walk the share in the request, reply with its rows and problems, or
    with the message of the error that stopped it."""
    input_dir, band_pattern, needed, with_stat, record_problems, share = pickle.load(stdin)
    problems: Problems | None = [] if record_problems else None
    try:
        band_of_name = bandfiles.band_reader(bandfiles.compile_pattern(band_pattern))
        with tsv.without_cycle_collection():  # as planning's own walk: a fifth of its time otherwise
            rows = _walk(input_dir, band_of_name, needed, with_stat, problems, share)
        reply: tuple[object, ...] = ("rows", rows, problems)
    except MsrgbError as exc:
        reply = ("error", str(exc))
    pickle.dump(reply, reply_file, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    with open(int(sys.argv[1]), "wb") as reply:
        _serve(sys.stdin.buffer, reply)
