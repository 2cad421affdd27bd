#!/usr/bin/env python3
"""A read-only pass-through FUSE file system that adds a fixed latency to every open and read,
like a network file system (NFS, Lustre, GPFS) where each of them is a round trip.

Usage (root, or a user allowed to mount FUSE; needs libfuse2 and `pip install fusepy`):
    bench/slowfs.py SOURCE_DIR MOUNTPOINT --latency-ms 2 &
    ... read from MOUNTPOINT ...
    fusermount -u MOUNTPOINT

Requests are served by many threads at once, as a network file system serves parallel
requests, so concurrent readers overlap their waits. By default FUSE drops a file's cached
pages whenever it is opened (every open and read is a round trip); --keep-cache keeps them
between opens, as NFS does while a file's attributes do not change. Used by bench/threads.py.
"""

from __future__ import annotations

import argparse
import errno
import os
import time

from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]


class SlowPassthrough(Operations):  # type: ignore[misc]
    def __init__(self, root: str, latency_s: float):
        self.root = root
        self.latency_s = latency_s

    def _full(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path: str, fh: int | None = None) -> dict[str, int]:
        try:
            st = os.lstat(self._full(path))
        except OSError as exc:
            raise FuseOSError(exc.errno or errno.EIO) from exc
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid")
        attrs = {k: getattr(st, k) for k in keys}
        attrs.update(st_atime=st.st_atime, st_mtime=st.st_mtime, st_ctime=st.st_ctime)
        return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise FuseOSError(errno.EROFS)
        time.sleep(self.latency_s)
        return os.open(self._full(path), os.O_RDONLY)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        time.sleep(self.latency_s)
        return os.pread(fh, size, offset)

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source")
    ap.add_argument("mountpoint")
    ap.add_argument("--latency-ms", type=float, default=2.0)
    ap.add_argument("--keep-cache", action="store_true", help="keep cached pages between opens")
    args = ap.parse_args()
    FUSE(
        SlowPassthrough(os.path.abspath(args.source), args.latency_ms / 1000),
        args.mountpoint,
        foreground=True,
        nothreads=False,
        ro=True,
        allow_other=os.geteuid() == 0,
        kernel_cache=args.keep_cache,
    )


if __name__ == "__main__":
    main()
