"""What the summary needs of one shard's records: its *part*. Each image's manifest line, the
clip figures, the histogram's sample candidates and the inputs skipped as bad, made where the
records are at hand: by the job of a small change right after each shard (msrgb.engine.jobs:
the summary then reads no state file it just wrote, and the shards' parts are made side by
side), or from the shard's state file. The summary merges the parts of every shard
(msrgb.jobs.report); a part depends only on its own records, so the merge is the same whichever
way each was made.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.outputs.state import STATE_HEADER, StateData, plain_rows, read_state_full, state_of_text
from msrgb.storage import tsv
from msrgb.storage.files import output_rel

if TYPE_CHECKING:
    import numpy as np

#: images of a product read for its histogram: those with the smallest path hashes
HISTOGRAM_SAMPLE = 200


@dataclass
class ProductPart:
    """One product's share of a shard's part."""

    #: (input path, its image's line of the provenance manifest with its line end), by path
    manifest: list[tuple[str, str]] = field(default_factory=list)
    #: the environment ids the lines name
    envs: set[str] = field(default_factory=set)
    #: the input paths of the images with clip figures, by path, and their figures (one row
    #: of seven each: msrgb.jobs.shard.clip_text)
    clip_rels: list[str] = field(default_factory=list)
    clip_figures: np.ndarray | None = None
    #: the :data:`HISTOGRAM_SAMPLE` (path hash, input path) smallest of the product's images
    sample: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class ShardPart:
    """A shard's part: per product (name -> :class:`ProductPart`), the environments its lines
    name (id -> library versions) and the inputs skipped as bad (path, reason)."""

    products: dict[str, ProductPart] = field(default_factory=dict)
    envs: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def shard_part(data: StateData, suffixes: Mapping[str, str]) -> ShardPart:
    """The part of the records ``data`` (one shard's) for the products ``suffixes`` names
    (name -> image suffix)."""
    # the reason on one line, as the state file has it
    part = ShardPart(skipped=[(rel, " ".join(reason.split())) for rel, (_, _, reason) in data.skipped.items()])
    from msrgb.sources.hashing import path_hash

    keys = sorted(data.records)
    # each path hashed once for every product (the shard's paths only: the hashes of a whole
    # dataset's 270,000 would be 40 MB in path_hash's cache)
    hashes = {rel: path_hash.__wrapped__(rel) for rel, _ in keys}
    for name, suffix in suffixes.items():
        mine = [key for key in keys if key[1] == name]
        part.products[name] = _product_part(data, mine, suffix, hashes)
    used = set().union(*(p.envs for p in part.products.values()))
    part.envs = {e: data.envs.get(e, "unknown") for e in sorted(used)}
    return part


def part_of_state(path: Path, suffixes: Mapping[str, str]) -> ShardPart:
    """The part of the state file at ``path`` (none: an empty part)."""
    return shard_part(read_state_full([path]), suffixes)


def part_of_state_text(text: str, suffixes: Mapping[str, str]) -> ShardPart:
    """The part of a state file's ``text``: :func:`shard_part` of its records, made straight
    from its rows where they are plain, one per image (a state a job of new inputs added to,
    msrgb.jobs.shard), without making the records first."""
    part = _part_of_plain_rows(text, suffixes)
    return shard_part(state_of_text(text), suffixes) if part is None else part


def _part_of_plain_rows(text: str, suffixes: Mapping[str, str]) -> ShardPart | None:
    """:func:`part_of_state_text` from the rows as they are, or None where a row is quoted, an
    image or input has two rows (the later would win) or an input has both a record and a row
    as bad."""
    if not text.startswith(STATE_HEADER + "\n") or not plain_rows(text):
        return None
    envs: dict[str, str] = {}
    skipped: list[tuple[str, str]] = []
    rows: dict[str, list[list[str]]] = {name: [] for name in suffixes}
    recorded: set[str] = set()
    for line in text.split("\n")[1:]:
        row = line.split("\t")
        if row[0] == "# env":
            envs[row[1]] = row[2]
        elif row[0] == "!":
            skipped.append((row[1], " ".join(row[4].split())))
        elif len(row) > 1:
            recorded.add(row[0])
            if row[3] in rows:
                rows[row[3]].append(row)
    bad = {rel for rel, _ in skipped}
    if len(bad) < len(skipped) or bad & recorded or any(len({r[0] for r in r_}) < len(r_) for r_ in rows.values()):
        return None
    from msrgb.sources.hashing import path_hash

    part = ShardPart(skipped=skipped)
    hashes = {rel: path_hash.__wrapped__(rel) for rel in sorted(recorded)}
    for name, suffix in suffixes.items():
        mine = sorted(rows[name], key=itemgetter(0))
        # the fields a record lacks, as read_state_full leaves them: no provenance below 8
        # fields, no clip figures below 9, no radiometry below 10 or where empty
        full = [row + [""] * (10 - len(row)) for row in mine]
        fields = [(output_rel(r[0], suffix), int(r[1]), r[5], r[6], r[4], r[7], r[9]) for r in full]
        # as _product_part writes them: checked once for a field to quote (a radiometry's JSON)
        lines = ["\t".join(map(str, f)) for f in fields]
        lines = [line + "\n" for line in lines] if tsv.plain_text(lines, 7 * len(lines)) else list(map(tsv.line, fields))
        clipped = [r for r in mine if len(r) >= 9]
        part.products[name] = _assembled(
            [r[0] for r in mine], lines, {r[7] for r in full}, [r[0] for r in clipped], [r[8] for r in clipped], hashes
        )
    used = set().union(*(p.envs for p in part.products.values()))
    part.envs = {e: envs.get(e, "unknown") for e in sorted(used)}
    return part


def _product_part(data: StateData, keys: list[tuple[str, str]], suffix: str, hashes: Mapping[str, int]) -> ProductPart:
    unknown = ("", "", "")
    records, provenance, radiometry = data.records, data.provenance.get, data.radiometry.get
    lines = []
    for key in keys:  # (inline: this runs for every image)
        size, _, row_digest = records[key]
        source_sha, png_sha, env = provenance(key, unknown)
        lines.append(f"{output_rel(key[0], suffix)}\t{size}\t{source_sha}\t{png_sha}\t{row_digest}\t{env}\t{radiometry(key, '')}")
    # checked once for a field to quote; where one is, each row as the tsv writer writes it
    if tsv.plain_text(lines, 7 * len(lines)) is not None:
        lines = [line + "\n" for line in lines]
    else:
        lines = [tsv.line(_manifest_row(data, key, suffix)) for key in keys]
    clipped = [key for key in keys if key in data.clipping]
    return _assembled(
        [key[0] for key in keys], lines, {provenance(key, unknown)[2] for key in keys},
        [key[0] for key in clipped], [data.clipping[key] for key in clipped], hashes,
    )  # fmt: skip


def _assembled(
    rels: list[str], lines: list[str], envs: set[str], clip_rels: list[str], clips: list[str], hashes: Mapping[str, int]
) -> ProductPart:
    """A product's part from its images' paths and manifest lines (by path), the environments
    they name, and the clip figures as written of those with some."""
    import numpy as np

    # seven figures an image, parsed at once by numpy from one string (270,000 images' 1.9
    # million figures as Python strings would take 100 MB)
    figures = " ".join(clips)
    return ProductPart(
        manifest=list(zip(rels, lines)),
        envs=envs - {""},
        clip_rels=clip_rels,
        clip_figures=np.fromstring(figures, dtype=np.float64, sep=" ").reshape(len(clip_rels), 7) if clip_rels else None,
        sample=heapq.nsmallest(HISTOGRAM_SAMPLE, ((hashes[rel], rel) for rel in rels)),
    )


def _manifest_row(data: StateData, key: tuple[str, str], suffix: str) -> tuple[object, ...]:
    size, _, row_digest = data.records[key]
    source_sha, png_sha, env = data.provenance.get(key, ("", "", ""))
    return (output_rel(key[0], suffix), size, source_sha, png_sha, row_digest, env, data.radiometry.get(key, ""))


def manifest_lines(parts: Sequence[ShardPart], product: str) -> tuple[list[str], dict[str, str]]:
    """The manifest lines of ``product`` in every part, by input path, and the environments
    they name (id -> library versions)."""
    mine = [p.products[product] for p in parts if product in p.products]
    lines = [line for _, line in heapq.merge(*(m.manifest for m in mine))]
    used = set().union(*(m.envs for m in mine))
    versions: dict[str, str] = {}
    for p in parts:
        versions.update(p.envs)
    return lines, {e: versions.get(e, "unknown") for e in sorted(used)}


def clip_figures(parts: Sequence[ShardPart], product: str) -> tuple[list[str], np.ndarray]:
    """The input paths with clip figures of ``product``, in the parts' order, and their figures."""
    import numpy as np

    mine = [p.products[product] for p in parts if product in p.products]
    rels = [rel for m in mine for rel in m.clip_rels]
    figures = [m.clip_figures for m in mine if m.clip_figures is not None and len(m.clip_figures)]
    return rels, np.concatenate(figures) if figures else np.zeros((0, 7))


def sample(parts: Sequence[ShardPart], product: str) -> list[str]:
    """The :data:`HISTOGRAM_SAMPLE` input paths of ``product`` with the smallest path hashes,
    smallest first."""
    candidates = [c for p in parts if product in p.products for c in p.products[product].sample]
    return [rel for _, rel in heapq.nsmallest(HISTOGRAM_SAMPLE, candidates)]


def skipped(parts: Sequence[ShardPart]) -> list[tuple[str, str]]:
    """The inputs skipped as bad in every part: (path, reason)."""
    return [row for p in parts for row in p.skipped]
