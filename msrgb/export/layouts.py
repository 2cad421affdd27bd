"""Where each exported image goes and the files beside it: the ImageFolder layout
(``train/<Class>/<name>.png``, or ``train/<id>.png`` with ``metadata.jsonl`` for multi-label
data) and WebDataset tar files (``train-000000.tar``)."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from msrgb.config.export import SPLITS
from msrgb.errors import ExportError, OutputError
from msrgb.export.labels import Example, Labelled
from msrgb.storage.files import temporary_name

#: errors of os.link that mean "copy instead" (another file system, no hard links there)
NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}


def flat(path: str) -> str:
    """A path as one file name: folders joined by ``__``."""
    return path.replace("/", "__")


def imagefolder_paths(labelled: Labelled, splits: Mapping[str, str]) -> dict[str, str]:
    """The path in the export of every image that has a split, by id: ``<split>/<Class>/<name>``
    for single-label data from class folders, ``<split>/<Class>/<id>`` from a table,
    ``<split>/<id>`` for multi-label data (names are the image's path, folders joined by ``__``)."""
    paths: dict[str, str] = {}
    taken: dict[str, str] = {}
    for e in labelled.examples:
        split = splits.get(e.id)
        if split is None:
            continue
        suffix = e.image[len(e.id):]
        if labelled.multi_label:
            path = f"{split}/{flat(e.id)}{suffix}"
        else:
            inside = e.image.split("/", 1)[1] if e.image.startswith(e.labels[0] + "/") else e.image
            path = f"{split}/{e.labels[0]}/{flat(inside)}"
        if path in taken:
            raise ExportError(f"export: {e.image} and {taken[path]} would both be {path}")
        taken[path] = e.image
        paths[e.id] = path
    return paths


def place(source: Path, dest: Path) -> bool:
    """Make ``dest`` the run's image ``source``: a hard link where the file system allows, else
    a copy; never re-encoded. True if ``dest`` was (re)written."""
    try:
        if dest.exists() and (os.path.samefile(source, dest) or _same_bytes(source, dest)):
            return False
    except OSError as exc:
        raise OutputError(f"{dest}: cannot be read ({exc.strerror or exc})") from exc
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / temporary_name()
    try:
        try:
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno not in NO_LINK:
                raise
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{dest}: cannot be written ({exc.strerror or exc})") from exc
    return True


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(1 << 20)
            if block != fb.read(len(block)):
                return False
            if not block:
                return True


def metadata_lines(labelled: Labelled, paths: Mapping[str, str], split: str) -> str:
    """``<split>/metadata.jsonl`` of multi-label data: file_name (relative to the split folder),
    labels and id of each image, as the Hugging Face ImageFolder reads them."""
    lines = []
    for e in labelled.examples:
        path = paths.get(e.id)
        if path is not None and path.startswith(split + "/"):
            row = {"file_name": path[len(split) + 1:], "labels": list(e.labels), "id": e.id}
            lines.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    return "".join(f"{line}\n" for line in sorted(lines))


def check_webdataset_keys(examples: Iterable[Example]) -> None:
    """WebDataset (and Hugging Face's reader of it) takes a sample's key up to the first dot
    of a member's name."""
    dotted = sorted(e.image for e in examples if "." in e.id)
    if dotted:
        raise ExportError(
            f"config 'export.format': webdataset: {len(dotted)} image name(s) have a dot before the "
            f"suffix (first: {dotted[0]}), which WebDataset would read as a suffix; rename them or "
            "use format: imagefolder"
        )


def write_tars(folder: Path, split: str, samples: Sequence[tuple[str, Path, dict]], per_tar: int) -> list[str]:
    """The tar files ``<split>-000000.tar``, ... of ``samples`` (key, image, json record): per
    sample ``<key><suffix>``, ``<key>.cls`` (the class index, single-label data) and
    ``<key>.json``. Members carry no time or owner, so the same samples give the same bytes.
    Returns the names of the tar files."""
    names = []
    for n, start in enumerate(range(0, len(samples), per_tar)):
        name = f"{split}-{n:06d}.tar"
        names.append(name)
        tmp = folder / temporary_name()
        try:
            with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
                for key, image, record in samples[start : start + per_tar]:
                    _add(tar, key + image.suffix, image.read_bytes())
                    if "label" in record:
                        _add(tar, f"{key}.cls", f"{record['label']}\n".encode())
                    _add(tar, f"{key}.json", json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
            if (folder / name).exists() and _same_bytes(tmp, folder / name):
                continue
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)
    return names


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def remove_others(root: Path, wanted: set[str]) -> int:
    """Delete what the split folders and split tar files of ``root`` hold beyond ``wanted``
    (paths relative to ``root``): images gone from the run or moved to another split."""
    removed = 0
    for split in SPLITS:
        for path in sorted((root / split).rglob("*"), reverse=True) if (root / split).is_dir() else []:
            rel = path.relative_to(root).as_posix()
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            elif rel not in wanted:
                path.unlink()
                removed += 1
        if (root / split).is_dir() and not any((root / split).iterdir()):
            (root / split).rmdir()
        for tar in root.glob(f"{split}-*.tar"):
            if tar.name not in wanted:
                tar.unlink()
                removed += 1
    return removed
