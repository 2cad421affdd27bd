"""Output files: their names, and writing them so that a reader never sees half a file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from msrgb.errors import InputError, OutputError, OutputFileError, PlanError
from msrgb.storage import remote
from msrgb.storage.locations import S3Path, is_remote

PathT = TypeVar("PathT", bound="Path | S3Path")

#: Suffixes of input images.
TIFF_SUFFIXES = (".tif", ".tiff")

#: Errors of writing one file that leave the folder usable: the next file may well succeed (a
#: name too long or refused, a folder where the file should be, a file where a folder should be).
PER_FILE_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ, errno.EISDIR, errno.ENOTDIR, errno.EEXIST}
)

# Temporary files: ".msrgb-<host hash>-<pid>-<n>.tmp", about 40 bytes whatever the final name,
# so any name the file system allows can be written through one.
_TMP_PREFIX = ".msrgb-"
_TMP_SUFFIX = ".tmp"
_HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
_COUNTER = itertools.count()


def size_and_mtime(entry: os.DirEntry[str], with_stat: bool = True) -> tuple[int, int]:
    """(size, mtime in ns) of a directory entry, following links; (-1, -1) without ``with_stat``
    or for a dangling link (kept, so that the job reports it)."""
    if with_stat:
        try:
            st = entry.stat()
            return st.st_size, st.st_mtime_ns
        except OSError:
            pass
    return -1, -1


#: inputs or folders found at planning that cannot be converted: (path relative to the input
#: folder, reason); they are listed in errors.tsv and at the end of the run
Problems = list[tuple[str, str]]


#: whether a folder's entries can ask for their ``stat`` relative to the open folder
_SCANDIR_FD = os.scandir in os.supports_fd and os.stat in os.supports_dir_fd


@contextlib.contextmanager
def folder_entries(top: str, rel_dir: str, problems: Problems | None) -> Iterator[list[os.DirEntry[str]]]:
    """The entries of a folder under the input folder, as a list (a generator's step per entry
    costs more than the entry, at 700,000 band files). Inside the block an entry's ``stat()``
    asks relative to the open folder (where the system allows it), instead of by a path the
    kernel walks again for every file. A sub-folder that cannot be listed (a ``lost+found``
    only root can read) is recorded in ``problems`` and gives no entries; the input folder
    itself, or any folder without ``problems`` to record in, raises :class:`PlanError`."""
    path = os.path.join(top, rel_dir)
    fd = None
    try:
        if _SCANDIR_FD:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        with os.scandir(path if fd is None else fd) as listing:
            entries = list(listing)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        reason = f"folder cannot be read ({exc.strerror or exc})"
        if not rel_dir or problems is None:
            raise PlanError(f"{path}: {reason}") from None
        problems.append((rel_dir, reason))
        entries, fd = [], None
    try:
        yield entries
    finally:
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def own_image(path: str | Path | S3Path | bytes) -> Iterator[Any]:
    """Open an image msrgb wrote (a PIL image), in S3 too (one GET; a missing one raises
    FileNotFoundError). Pillow refuses images over 179 million pixels as possible decompression
    bombs; msrgb's own outputs are bounded by ``max_pixels`` instead."""
    from PIL import Image

    source: Any = path
    if isinstance(path, bytes):  # the file's bytes, read already
        source = io.BytesIO(path)
    elif is_remote(path):
        try:
            source = io.BytesIO(remote.get(path if isinstance(path, S3Path) else S3Path.parse(str(path))))
        except InputError as exc:
            raise FileNotFoundError(str(exc)) from exc
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(source) as image:
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def output_rel(input_rel: str, suffix: str = ".png") -> str:
    """The output path, relative to a product folder, of the input at ``input_rel`` (relative
    to the input folder): the same folders and name, with ``suffix`` for the input's suffix. An
    image made of band files is a folder: its name gets ``suffix`` (a Sentinel-2 product's
    ``.SAFE`` is dropped)."""
    if input_rel.endswith(".tif"):  # most inputs: without a copy in lower case
        return input_rel[:-4] + suffix
    lower = input_rel.lower()
    if lower.endswith(TIFF_SUFFIXES):
        return input_rel[: input_rel.rfind(".")] + suffix
    if lower.endswith(".safe"):
        return input_rel[: -len(".safe")] + suffix
    return input_rel + suffix


def world_file_path(png: PathT) -> PathT:
    return cast(PathT, png.with_suffix(".pgw"))


def aux_xml_path(png: PathT) -> PathT:
    return cast(PathT, png.with_name(png.name + ".aux.xml"))


def side_files(png: PathT) -> list[PathT]:
    """Files that may accompany a PNG."""
    return [world_file_path(png), aux_xml_path(png)]


def temporary_name() -> str:
    """A fresh name for a temporary file of this process (unique across threads and hosts)."""
    return f"{_TMP_PREFIX}{_HOST}-{os.getpid()}-{next(_COUNTER)}{_TMP_SUFFIX}"


def _writer_pid(name: str) -> int | None:
    """The process id in a temporary name of this host, or None if it is none."""
    if name.startswith(_TMP_PREFIX) and name.endswith(_TMP_SUFFIX):
        parts = name[len(_TMP_PREFIX) : -len(_TMP_SUFFIX)].split("-")
        if len(parts) == 3 and parts[0] == _HOST and parts[1].isdigit():
            return int(parts[1])
    # the names of msrgb 0.3 and older: .<png name>.<host>.<pid>.<thread>.tmp
    parts = name.rsplit(".", 4)
    if len(parts) == 5 and parts[4] == "tmp" and parts[2].isdigit():
        if parts[1] == socket.gethostname().replace(".", "-"):
            return int(parts[2])
    return None


def is_stale_temporary(name: str) -> bool:
    """True for a temporary file name (:func:`temporary_name`) left by a dead process of this
    host; a process of another host or a live one is never judged stale."""
    pid = _writer_pid(name)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or pieces written one after the other) to ``path`` through a temporary file in the same folder and a rename, so
    ``path`` is either absent, the old file, or the complete new file; never half-written.
    (Same folder: a rename between folders takes a file-system-wide lock in Linux, which
    serialises parallel shard jobs.) Missing parent folders are created. Raises OSError."""
    tmp = path.with_name(temporary_name())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            write_pieces(fd, [data] if isinstance(data, bytes) else data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: pieces handed to one writev call (the system's limit, POSIX's least where it is not known)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") and "SC_IOV_MAX" in os.sysconf_names else 16


#: bytes gathered for one writev call before it is made
_BATCH_BYTES = 1 << 20


def write_pieces(fd: int, pieces: Iterable[bytes]) -> None:
    """Write ``pieces`` one after the other to ``fd``: a PNG's pieces in one system call (no
    buffered file object copying them into its buffer first), a large image's in batches of
    at most :data:`_IOV_MAX` pieces or about :data:`_BATCH_BYTES`."""
    if not hasattr(os, "writev"):
        for piece in pieces:
            _write_from(fd, memoryview(piece), 0)
        return
    batch: list[bytes] = []
    size = 0
    for piece in pieces:  # a generator's pieces are held a batch of at most about 1 MB at a time
        batch.append(piece)
        size += memoryview(piece).nbytes
        if len(batch) == _IOV_MAX or size >= _BATCH_BYTES:
            _writev(fd, batch)
            batch, size = [], 0
    if batch:
        _writev(fd, batch)


def _writev(fd: int, batch: list[bytes]) -> None:
    done = os.writev(fd, batch)
    if done < sum(memoryview(piece).nbytes for piece in batch):  # rare: the rest piece by piece
        _write_from(fd, memoryview(b"".join(batch)), done)


def _write_from(fd: int, view: memoryview, start: int) -> None:
    view = view.cast("B")
    while start < len(view):
        start += os.write(fd, view[start:])


def write_output(path: Path | S3Path, data: bytes | Iterable[bytes]) -> None:
    """:func:`write_atomic` for an output image or its side file, with the error sorted:
    :class:`OutputFileError` when only this file cannot be written (its name), else
    :class:`OutputError` (the folder: disk full, read-only, permission). In S3: one PUT."""
    if isinstance(path, S3Path):
        remote.put(path, data)
        return
    try:
        write_atomic(path, data)
    except OSError as exc:
        kind = OutputFileError if exc.errno in PER_FILE_ERRNOS else OutputError
        raise kind(f"{path}: cannot be written ({exc.strerror or exc})") from exc


def write_if_changed(path: Path, data: str | bytes | Iterable[bytes]) -> bool:
    """Write ``data`` (text, bytes, or pieces of bytes one after the other) to ``path`` unless it
    already holds exactly that; True if written. Pieces are compared with the file as they come,
    so a file of 100 MB is never held whole in memory, twice (old and new) or at all."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    pieces = iter((data,) if isinstance(data, bytes) else data)
    try:
        old = open(path, "rb")  # bytes: a text mode would turn a \r in a name into \n
    except FileNotFoundError:
        write_atomic(path, pieces)
        return True
    with old:
        same = 0  # bytes equal so far
        for piece in pieces:
            if old.read(len(piece)) != piece:
                break
            same += len(piece)
        else:
            if not old.read(1):
                return False
            piece = b""
        old.seek(0)
        write_atomic(path, itertools.chain(_leading_bytes(old, same), (piece,), pieces))
    return True


def _leading_bytes(fh: IO[bytes], n: int, block: int = 1 << 20) -> Iterator[bytes]:
    """The first ``n`` bytes of ``fh``, a block at a time."""
    while n > 0:
        chunk = fh.read(min(n, block))
        if not chunk:
            raise OSError(f"{getattr(fh, 'name', 'file')}: changed while being rewritten")
        n -= len(chunk)
        yield chunk


def remove_output(png: Path | S3Path) -> bool:
    """Delete an output image and its side files (world file, .aux.xml); True if it was there
    (in S3, where a DELETE does not say: always). A name the file system cannot hold (too long)
    cannot be there either."""
    if isinstance(png, S3Path):
        for path in (*side_files(png), png):
            remote.delete(path)
        return True
    for side in side_files(png):
        _unlink(side)
    return _unlink(png)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno not in PER_FILE_ERRNOS:
            raise
        return False
    return True
