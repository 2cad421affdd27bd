"""The output folder's lock: one msrgb run at a time per output folder, from any working
directory."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import socket
import time

from msrgb.errors import PlanError
from msrgb.outputs.paths import OutputPaths

_LOCKS: dict[str, int] = {}
_HOLDER_BYTES = 256  # the lock file holds one space-padded line naming the run that holds it
_HOLDER_WAIT_S = 5.0


def _read_holder(fd: int) -> str:
    """The line the lock's holder wrote. The holder writes it just after taking the lock, so a
    run that is refused in that instant finds the file still empty: wait a little for it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        holder = os.pread(fd, _HOLDER_BYTES, 0).decode("utf-8", "replace").strip()
        if holder or time.monotonic() > deadline:
            return holder or "unknown process"
        time.sleep(0.05)


def _release_holder_line(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)


@atexit.register
def _release_all() -> None:
    for fd in _LOCKS.values():
        _release_holder_line(fd)


def lock_output(output: OutputPaths) -> None:
    """Hold an exclusive lock on the output folder until this process ends, so that two runs
    (from any working directories) never work on one output folder at once. The kernel drops
    the lock when the process dies, even by ``kill -9``: a killed run leaves no stale lock."""
    path = output.state_root / "run.lock"
    key = str(path.resolve())
    if key in _LOCKS:  # the Snakefile can be parsed more than once in one process
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    except OSError as exc:  # the first write into the output folder
        raise PlanError(
            f"config 'output_dir' {str(output.output_dir)!r} cannot be written "
            f"({exc.strerror or exc}: {exc.filename}); choose a folder you can write to"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise PlanError(
            f"output folder {str(output.output_dir)!r} is in use by another msrgb run "
            f"({holder}); wait for it to finish or choose another output_dir"
        ) from None
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    line = f"pid {os.getpid()} on {socket.gethostname()} since {started}"
    # One write of a fixed length replaces whatever a killed run left, with no empty moment.
    os.pwrite(fd, line.encode()[: _HOLDER_BYTES - 1].ljust(_HOLDER_BYTES - 1) + b"\n", 0)
    os.ftruncate(fd, _HOLDER_BYTES)
    _LOCKS[key] = fd  # the holder line is emptied at exit; the lock itself goes with the process


def unlock_output(output: OutputPaths) -> None:
    """Give up the lock :func:`lock_output` took in this process (the in-process engine, whose
    process goes on after a run; Snakemake's process holds it until it ends)."""
    fd = _LOCKS.pop(str((output.state_root / "run.lock").resolve()), None)
    if fd is not None:
        _release_holder_line(fd)
        os.close(fd)
