"""Where a file or folder is: a local path, an object or prefix in S3 (:class:`S3Path`), or a
file at an http(s) URL (:class:`HttpPath`). ``Location`` is the one type of an input file's
place everywhere in msrgb."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from msrgb.errors import PlanError

SCHEME = "s3://"


def is_remote(location: object) -> bool:
    """True for an ``s3://`` location (a :class:`S3Path` or its text)."""
    return isinstance(location, S3Path) or (isinstance(location, str) and location.startswith(SCHEME))


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


@dataclass(frozen=True)
class S3Path:
    """An object, or a prefix taken as a folder, in an S3 bucket: ``s3://bucket/key``. Joined
    with ``/`` like a :class:`pathlib.Path`; its text is the URL, which messages show."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, url: str) -> S3Path:
        """``s3://bucket[/prefix]`` (a trailing ``/`` is ignored). Raises :class:`PlanError`."""
        if not url.startswith(SCHEME):
            raise PlanError(f"{url!r} is not an s3:// URL")
        bucket, _, key = url[len(SCHEME) :].partition("/")
        if not bucket or "//" in key:
            raise PlanError(f"{url!r} is not an s3://bucket/prefix URL")
        return cls(bucket, key.strip("/"))

    def __truediv__(self, rel: str) -> S3Path:
        return S3Path(self.bucket, f"{self.key}/{rel}" if self.key else rel)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}" if self.key else f"{SCHEME}{self.bucket}"

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2] or self.bucket

    def with_name(self, name: str) -> S3Path:
        return S3Path(self.bucket, f"{self.key.rpartition('/')[0]}/{name}".lstrip("/"))

    def with_suffix(self, suffix: str) -> S3Path:
        stem, dot, _ = self.name.rpartition(".")
        return self.with_name((stem if dot else self.name) + suffix)

    def is_dir(self) -> bool:
        """Never a local folder (for code that asks of a :class:`pathlib.Path`)."""
        return False


@dataclass(frozen=True)
class HttpPath:
    """A file at an ``http://`` or ``https://`` URL (a STAC asset), read with plain GETs."""

    url: str

    def __str__(self) -> str:
        """The URL without its query, which may hold a signature (a SAS token, a presigned
        URL's): messages and records show this."""
        base, query, _ = self.url.partition("?")
        return f"{base}?..." if query else base

    def scrub(self, text: str) -> str:
        """``text`` with this URL's query left out (GDAL's messages quote the URL)."""
        return text.replace(self.url, str(self)) if "?" in self.url else text

    @property
    def name(self) -> str:
        return self.url.split("?", 1)[0].rstrip("/").rpartition("/")[2]

    def is_dir(self) -> bool:
        return False


#: what a remote input file is
RemotePath = S3Path | HttpPath


#: where a file is: on a local disk, in S3, at an http(s) URL
Location = Path | S3Path | HttpPath


def location(text: str) -> Path | S3Path:
    """A folder or file as given: an :class:`S3Path` for ``s3://``, else a local
    :class:`pathlib.Path`."""
    if is_remote(text):
        return S3Path.parse(text)
    return Path(text)
