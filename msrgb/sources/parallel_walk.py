"""Walking a large input folder in several processes.

A no-op's planning looks at every input file (its name, size and time: 708,000 band files for
BigEarthNet's 59,000 patches, 276,000 TIFFs for ten times EuroSAT), and Python's time per file
is most of it; threads would share one interpreter lock. So part of the walk is done here, then
helper processes (``python -m msrgb.sources.parallel_walk``, a few dozen milliseconds to start)
each do a share while this process does its own, and send back their rows. Band folders: the
first levels are walked breadth first until there are :data:`ENOUGH_FOLDERS` folders to share,
each helper walks a share of them and sends one row per image. Stacked TIFFs: every folder is
listed here (names only), and from :data:`ENOUGH_FILES` TIFFs on the size and time of each
(a ``stat`` relative to its open folder) is asked in pieces of at most :data:`PIECE` files
shared out. Too little to share, one CPU, or a helper that cannot be started: this process does
it all, with the same result.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from msrgb.errors import MsrgbError, PlanError
from msrgb.sources import bandfiles
from msrgb.storage import tsv
from msrgb.storage.files import TIFF_SUFFIXES, Problems, folder_entries

#: folders left to walk after the first levels from which helper processes share the walk
ENOUGH_FOLDERS = 2000
#: stacked TIFFs from which helper processes share asking for their size and time
ENOUGH_FILES = 100_000
#: stacked TIFFs of one folder asked for in one piece of the shared work
PIECE = 10_000
#: at most this many processes walk (this one and its helpers)
MAX_PROCESSES = 4

#: (path, size, mtime, files) of an image: what msrgb.sources.discovery.Source holds
ImageRow = tuple[str, int, int, tuple[tuple[str, str], ...]]
#: (path, size, mtime) of a stacked TIFF
FileRow = tuple[str, int, int]

#: whether a file's size and time can be asked relative to its open folder
_STAT_AT = os.stat in os.supports_dir_fd


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
    request = ("band_folders", input_dir, band_pattern, needed, with_stat, problems is not None)
    return rows + _shared(request, shares, lambda own: _walk(input_dir, band_of_name, needed, with_stat, problems, own), problems)


def stacked_rows(input_dir: str, with_stat: bool, problems: Problems | None, processes: int | None = None) -> list[FileRow]:
    """Every ``.tif``/``.tiff`` (any case) under ``input_dir`` as rows, in no particular order,
    by the rules of :func:`msrgb.sources.discovery.discover`: hidden names skipped, links to
    files followed, links to folders not, a dangling link kept with size and time -1 (and every
    file without ``with_stat``). The folders are listed by this process (one that cannot be read
    goes to ``problems``, or raises :class:`PlanError` without it); the sizes and times are asked
    by up to ``processes`` processes (as :func:`image_rows`) from :data:`ENOUGH_FILES` files on."""
    folders = _tiff_names(input_dir, problems)
    pieces = [(rel_dir, names[i : i + PIECE]) for rel_dir, names in folders for i in range(0, len(names), PIECE)]
    files = sum(len(names) for _, names in pieces)
    n = min(_processes(), processes or MAX_PROCESSES) if with_stat and files >= ENOUGH_FILES else 1
    shares: list[list[tuple[str, list[str]]]] = [[] for _ in range(n)]
    loads = [0] * n
    for piece in sorted(pieces, key=lambda p: -len(p[1])):  # the largest first, to the least loaded
        k = loads.index(min(loads))
        shares[k].append(piece)
        loads[k] += len(piece[1])
    return _shared(("stacked", input_dir, with_stat), shares, lambda own: _stat_files(input_dir, own, with_stat), problems)


def _shared(
    request: tuple[object, ...], shares: Sequence[list[Any]], walk: Callable[[list[Any]], list[Any]], problems: Problems | None
) -> list[Any]:
    """The rows of every share: of the first by ``walk`` here, of each other by a helper process
    given ``request`` and the share (its problems appended to ``problems``); a share whose helper
    cannot be started is walked here too."""
    helpers = [_Helper.start(request, share) for share in shares[1:]]
    try:
        own = shares[0] + [x for helper, share in zip(helpers, shares[1:]) if helper is None for x in share]
        rows = walk(own)
        for helper in helpers:
            if helper is not None:
                rows += helper.rows(problems)
    finally:
        for helper in helpers:
            if helper is not None:
                helper.stop()
    return rows


def _tiff_names(input_dir: str, problems: Problems | None) -> list[tuple[str, list[str]]]:
    """(folder relative to ``input_dir``, the names of its TIFFs) of every folder under it."""
    found = []
    stack = [""]  # folders relative to input_dir, as POSIX strings ("" is the top)
    while stack:
        rel_dir = stack.pop()
        prefix = f"{rel_dir}/" if rel_dir else ""
        names = []
        with folder_entries(input_dir, rel_dir, problems) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(prefix + name)
                elif name.lower().endswith(TIFF_SUFFIXES):
                    names.append(name)
        if names:
            found.append((rel_dir, names))
    return found


def _stat_files(input_dir: str, pieces: Sequence[tuple[str, list[str]]], with_stat: bool) -> list[FileRow]:
    """The rows of the files ``pieces`` name ((folder, names)): size and time following links,
    -1 for a dangling link, or a file gone since its folder was listed."""
    rows: list[FileRow] = []
    for rel_dir, names in pieces:
        prefix = f"{rel_dir}/" if rel_dir else ""
        if not with_stat:
            rows += [(prefix + name, -1, -1) for name in names]
            continue
        path = os.path.join(input_dir, rel_dir)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY) if _STAT_AT else None
        except OSError:  # the folder went since it was listed: as dangling links, for the job to report
            rows += [(prefix + name, -1, -1) for name in names]
            continue
        try:
            for name in names:
                try:
                    st = os.stat(name, dir_fd=fd) if fd is not None else os.stat(os.path.join(path, name))
                    rows.append((prefix + name, st.st_size, st.st_mtime_ns))
                except OSError:
                    rows.append((prefix + name, -1, -1))
        finally:
            if fd is not None:
                os.close(fd)
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
    def start(cls, request: tuple[object, ...], share: Sequence[object]) -> _Helper | None:
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

    def rows(self, problems: Problems | None) -> list[Any]:
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
    request = pickle.load(stdin)
    problems: Problems | None = []
    try:
        with tsv.without_cycle_collection():  # as planning's own walk: a fifth of its time otherwise
            if request[0] == "stacked":
                _, input_dir, with_stat, share = request
                rows: Sequence[object] = _stat_files(input_dir, share, with_stat)
            else:
                _, input_dir, band_pattern, needed, with_stat, record_problems, share = request
                problems = [] if record_problems else None
                band_of_name = bandfiles.band_reader(bandfiles.compile_pattern(band_pattern))
                rows = _walk(input_dir, band_of_name, needed, with_stat, problems, share)
        reply: tuple[object, ...] = ("rows", rows, problems)
    except MsrgbError as exc:
        reply = ("error", str(exc))
    pickle.dump(reply, reply_file, protocol=pickle.HIGHEST_PROTOCOL)


if __name__ == "__main__":
    with open(int(sys.argv[1]), "wb") as reply:
        _serve(sys.stdin.buffer, reply)
