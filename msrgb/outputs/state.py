"""The shard state files: which image was made from which version of which input under which
settings, the inputs skipped as bad, the provenance and clip figures of every image.

v2: tab-separated with quoting (msrgb.storage.tsv), so that any file name fits; v1 files (no quoting, no
tabs or line breaks in names) read the same. v3: the state records the radiometric scaling of each
image; records of earlier states are *legacy*, made without radiometric offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from msrgb.storage import tsv

STATE_HEADER = "# msrgb shard state v3"


Records = dict[tuple[str, str], tuple[int, int, str]]
Skipped = dict[str, tuple[int, int, str]]
#: (relative path, product) -> (source sha256, PNG sha256, environment id)
Provenance = dict[tuple[str, str], tuple[str, str, str]]


@dataclass
class StateData:
    """Everything a state file holds: what was made from what (``records``), the inputs
    skipped as bad, the provenance of each PNG and the environments (id -> library versions)."""

    records: Records = field(default_factory=dict)
    skipped: Skipped = field(default_factory=dict)
    provenance: Provenance = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    #: (relative path, product) -> clip figures as written (msrgb.render.render.clip_figures:
    #: share at 0 of red, green, blue, share at the top value of each, mean value)
    clipping: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (relative path, product) -> the radiometric scaling its image was made with, where one
    #: applied (msrgb.render.recipe.radiometry_text)
    radiometry: dict[tuple[str, str], str] = field(default_factory=dict)
    #: records read from state files of versions that applied no radiometric offsets
    legacy: set[tuple[str, str]] = field(default_factory=set)


def read_state_full(paths: Iterable[Path]) -> StateData:
    """All of the given state files, later files winning."""
    data = StateData()
    with tsv.without_cycle_collection():
        for path in paths:
            try:
                rows = list(tsv.rows(path))
            except FileNotFoundError:
                continue
            _add_rows(data, rows, old=bool(rows) and rows[0][0] != STATE_HEADER)
    return data


def state_of_text(text: str) -> StateData:
    """What a state file's ``text`` holds, as :func:`read_state_full` reads it."""
    data = StateData()
    with tsv.without_cycle_collection():
        rows = list(tsv.rows_of(text))
        _add_rows(data, rows, old=bool(rows) and rows[0][0] != STATE_HEADER)
    return data


def _add_rows(data: StateData, rows: list[list[str]], old: bool) -> None:
    records, provenance, clipping, radiometry, skipped = (
        data.records, data.provenance, data.clipping, data.radiometry, data.skipped
    )  # (looked up once: this runs for every image of every state read)
    for row in rows:
        kind = row[0]
        if kind == "# env":
            data.envs[row[1]] = row[2]
        elif kind == "!":
            _, rel, size, mtime, reason = row
            skipped[rel] = (int(size), int(mtime), reason)
        elif len(row) > 1:  # not the title row
            rel, size, mtime, product, digest = row[:5]
            key = (rel, product)  # one tuple shared by every table, not one per table
            if key in records:  # a record of an earlier file: what the later one lacks goes
                radiometry.pop(key, None)
                data.legacy.discard(key)
            records[key] = (int(size), int(mtime), digest)
            fields = len(row)
            if fields >= 8:
                provenance[key] = (row[5], row[6], row[7])
                if fields >= 9:
                    clipping[key] = row[8]
                    if fields >= 10 and row[9]:
                        radiometry[key] = row[9]
            if old:
                data.legacy.add(key)
            if skipped:
                skipped.pop(rel, None)


class StateCache:
    """:func:`read_state_full` that reads the same files once: planning looks at a shard's
    records twice (for images deleted by hand, then for the counts), and a state of a large
    shard takes a tenth of a second to read."""

    def __init__(self) -> None:
        self._read: dict[tuple[Path, ...], StateData] = {}

    def __call__(self, paths: Iterable[Path]) -> StateData:
        """The records of ``paths`` (not to be changed by the caller)."""
        existing = tuple(p for p in paths if p.exists())
        data = self._read.get(existing)
        if data is None:
            data = self._read[existing] = read_state_full(existing)
        return data


def state_text(
    records: Records,
    skipped: Skipped | None = None,
    provenance: Provenance | None = None,
    envs: dict[str, str] | None = None,
    clipping: dict[tuple[str, str], str] | None = None,
    radiometry: dict[tuple[str, str], str] | None = None,
    legacy: set[tuple[str, str]] | None = None,
) -> str:
    """A state file: the environments, one row per image made (with its provenance when
    known), then one ``!`` row per input skipped as bad. ``legacy`` is not written: the records
    kept were checked (msrgb.jobs.shard.work_to_do)."""
    provenance = provenance or {}
    clipping = clipping or {}
    radiometry = radiometry or {}
    rows = [tsv.line([STATE_HEADER])]
    rows += [tsv.line(["# env", e, versions]) for e, versions in sorted((envs or {}).items())]
    rows += [
        _record_row(key, record, provenance, clipping, radiometry) for key, record in sorted(records.items())
    ]
    rows += [skipped_row(rel, entry) for rel, entry in sorted((skipped or {}).items())]
    return "".join(rows)


def record_row(data: StateData, key: tuple[str, str]) -> str:
    """The row :func:`state_text` writes for the record ``key`` of ``data``."""
    return _record_row(key, data.records[key], data.provenance, data.clipping, data.radiometry)


def _record_row(
    key: tuple[str, str],
    record: tuple[int, int, str],
    provenance: Provenance,
    clipping: dict[tuple[str, str], str],
    radiometry: dict[tuple[str, str], str],
) -> str:
    # written with f-strings: this runs for every image of a shard job
    size, mtime, digest = record
    known = provenance.get(key)
    # known[0] is a SHA-256 or JSON (band files), which has no tab or line break and does not
    # start with a quote: written as it is
    tail = f"\t{known[0]}\t{known[1]}\t{tsv.field(known[2])}" if known else ""
    if known and key in clipping:
        tail += f"\t{clipping[key]}"
        if key in radiometry:  # JSON: no tab or line break, starts with "{"
            tail += f"\t{radiometry[key]}"
    return f"{tsv.field(key[0])}\t{size}\t{mtime}\t{tsv.field(key[1])}\t{digest}{tail}\n"


def skipped_row(rel: str, entry: tuple[int, int, str]) -> str:
    """The row :func:`state_text` writes for an input skipped as bad."""
    size, mtime, reason = entry
    return tsv.line(["!", rel, size, mtime, " ".join(reason.split())])  # one line


def plain_rows(text: str) -> bool:
    """Whether no field of a state's ``text`` is quoted (:func:`msrgb.storage.tsv.field`: a
    quoted field, and only one, begins with a quote), so that its lines are its rows and its tabs
    their fields' ends; a radiometry's JSON holds quotes, never at its start."""
    return '\t"' not in text and '\n"' not in text and not text.startswith('"') and "\r" not in text


def recorded_inputs(text: str, digests: Mapping[str, str]) -> set[str] | None:
    """The inputs whose records a state file's ``text`` holds, where a job of new inputs only
    may add its records at the end (:func:`appended_state`) without reading the others: a state
    of this version, no field quoted (:func:`plain_rows`), no input recorded as bad, and each
    input recorded once for each product of ``digests`` (name -> digest), under that digest.
    None otherwise."""
    if not text.startswith(STATE_HEADER + "\n") or not text.endswith("\n") or not plain_rows(text):
        return None
    if "\n!\t" in text:
        return None
    rows = [line for line in text.split("\n")[1:] if line and not line.startswith("# env\t")]
    recorded = {line[: line.find("\t")] for line in rows}
    # (no tab in a plain name: a product's name and digest can only be a row's 4th and 5th fields)
    if len(rows) != len(recorded) * len(digests) or any(
        text.count(f"\t{name}\t{digest}\t") + text.count(f"\t{name}\t{digest}\n") != len(recorded)
        for name, digest in digests.items()
    ):
        return None
    return recorded


def appended_state(base: str, added: StateData) -> str:
    """The state ``base`` (text :func:`recorded_inputs` accepts) with the records of ``added``,
    of inputs it does not record, at its end: it reads as the state of both would (later rows
    win, msrgb.outputs.state.read_state_full), unsorted until a job writes the whole state again."""
    envs = [tsv.line(["# env", e, v]) for e, v in sorted(added.envs.items()) if f"\n# env\t{e}\t" not in base]
    rows = state_text(added.records, added.skipped, added.provenance, None, added.clipping, added.radiometry)
    return base + "".join(envs) + rows[len(STATE_HEADER) + 1 :]
