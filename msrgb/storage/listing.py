"""Listing a prefix of an S3 bucket: every object under it with its size and modification time,
in paginated LISTs (what discovery and the up-to-date check need, so that a no-op rerun sends
no request per object), split by folder or key range where a prefix holds many."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from msrgb.errors import PlanError, StorageError
from msrgb.storage.locations import S3Path
from msrgb.storage.remote import FETCH_THREADS, first_line, missing_or_denied, store

if TYPE_CHECKING:
    from collections.abc import Mapping


@dataclass(frozen=True)
class ObjectInfo:
    """One object under a prefix: its key relative to the prefix, size and modification time."""

    rel: str
    size: int
    mtime_ns: int


#: objects per LIST request (the S3 maximum)
PAGE = 1000


def _info(meta: Mapping[str, Any], key: str) -> ObjectInfo:
    modified = meta["last_modified"]
    mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else 0
    return ObjectInfo(meta["path"][len(key) :], int(meta["size"]), mtime_ns)


#: a prefix with more sub-folders than this is listed in ranges of keys between them instead
#: of one listing per sub-folder (BigEarthNet: 590,000 patch folders of a dozen files each)
MAX_FOLDER_LISTINGS = 64


#: objects under ``sub`` whose keys are after ``after`` and up to ``upto``: (sub, after, upto)
KeyRange = tuple[str, str | None, str | None]


def _list_prefix(client: Any, sub: str, key: str) -> tuple[list[ObjectInfo], list[str], list[KeyRange]]:
    """One step of :func:`list_objects` for the prefix ``sub``: (the objects found, the
    sub-folders still to list, the key ranges still to list). A prefix whose first page holds
    every object under it is done, and so is a flat folder, whose other pages follow its first;
    otherwise its folders are listed (one LIST with a delimiter, which holds the objects directly
    in it), to be listed each in turn or, when there are many, in ranges of keys that start and
    end at folder boundaries."""
    import obstore

    first = next(iter(obstore.list(client, prefix=sub or None, chunk_size=PAGE)), [])
    if len(first) < PAGE:
        return [_info(m, key) for m in first if m["path"].startswith(sub)], [], []
    if not any("/" in m["path"][len(sub) :] for m in first):  # a flat folder: the rest of its pages
        found = [_info(m, key) for m in first]
        return found + _list_range(client, key, sub, first[-1]["path"], None), [], []
    top = obstore.list_with_delimiter(client, prefix=sub or None)
    folders = sorted(p.rstrip("/") for p in top["common_prefixes"])
    if len(folders) <= MAX_FOLDER_LISTINGS:
        return [_info(m, key) for m in top["objects"]], [f"{f}/" for f in folders], []
    step = len(folders) / MAX_FOLDER_LISTINGS
    bounds: list[str | None] = [folders[round(i * step)] for i in range(1, MAX_FOLDER_LISTINGS)]
    return [], [], [(sub, after, upto) for after, upto in zip([None, *bounds], [*bounds, None])]


def _list_range(client: Any, key: str, sub: str, after: str | None, upto: str | None) -> list[ObjectInfo]:
    """The objects under ``sub`` whose keys are after ``after`` and up to ``upto`` (None: no
    bound), paginated: ranges that meet (one's ``upto`` the next one's ``after``) hold each
    object once, as S3 lists keys in byte order and starts after a given key."""
    import obstore

    found: list[ObjectInfo] = []
    for page in obstore.list(client, prefix=sub or None, offset=after, chunk_size=PAGE):
        for m in page:
            if upto is not None and m["path"] > upto:
                return found
            found.append(_info(m, key))
    return found


def list_objects(prefix: S3Path, what: str = "input_dir") -> list[ObjectInfo]:
    """Every object under ``prefix``. One paginated LIST (1,000 objects per request) when the
    first page holds them all; else the "folders" under it are listed in parallel (16 at once),
    level by level while a folder holds more than a page: EuroSAT's ten class folders under
    one ``truecolor/`` are ten listings side by side, not 27 pages one after the other. A prefix
    with more than :data:`MAX_FOLDER_LISTINGS` folders is listed in as many ranges of keys, so
    that 590,000 patch folders cost about one LIST per 1,000 objects, not one each.
    Raises :class:`PlanError` naming the URL (as the setting ``what``) when the bucket cannot be
    listed."""
    key = f"{prefix.key}/" if prefix.key else ""
    missing, denied = missing_or_denied()
    try:
        client = store(prefix.bucket)
        found, folders, ranges = _list_prefix(client, key, key)
        with ThreadPoolExecutor(FETCH_THREADS) as pool:
            while folders:
                steps = list(pool.map(lambda sub: _list_prefix(client, sub, key), folders))
                folders = []
                for objects, more_folders, more_ranges in steps:
                    found += objects
                    folders += more_folders
                    ranges += more_ranges
            for part in pool.map(lambda r: _list_range(client, key, *r), ranges):
                found += part
        return found
    except missing as exc:
        raise PlanError(f"{what} {str(prefix)!r}: the bucket does not exist ({first_line(exc)})") from exc
    except denied as exc:
        raise PlanError(f"{what} {str(prefix)!r}: listing is not allowed ({first_line(exc)})") from exc
    except StorageError:
        raise
    except Exception as exc:
        if "NoSuchBucket" in str(exc):
            raise PlanError(f"{what} {str(prefix)!r}: the bucket {prefix.bucket!r} does not exist") from exc
        raise PlanError(f"{what} {str(prefix)!r} cannot be listed: {first_line(exc)}") from exc
