"""What the summary needs of one shard's records: its *part*. Each image's manifest line, the
clip figures, the histogram's sample candidates and the inputs skipped as bad, made where the
records are at hand: by the job of a small change right after each shard (msrgb.engine.jobs:
the summary then reads no state file it just wrote, and the shards' parts are made side by
side), or from the shard's state file; kept between runs by msrgb.jobs.part_files, and
merged (:func:`merged`) with the part of records added to a state. The summary merges the parts of every shard
(msrgb.jobs.report); a part depends only on its own records, so the merge is the same whichever
way each was made.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from msrgb.outputs.state import StateData
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
    #: the :data:`HISTOGRAM_SAMPLE` (path hash, input path) smallest of the product's images,
    #: each with its image's SHA-256
    sample: list[tuple[int, str, str]] = field(default_factory=list)


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


def merged(first: ShardPart, then: ShardPart) -> ShardPart | None:
    """The part of the records of two parts together, as :func:`shard_part` makes it from the
    state ``then``'s records were added to (msrgb.outputs.state.appended_state), where no input
    has records in both (else None). An environment's id names its library versions, so both
    parts have the same versions for an id they both name."""
    import numpy as np

    products = {}
    for name in {**first.products, **then.products}:
        a, b = first.products.get(name, ProductPart()), then.products.get(name, ProductPart())
        if not {rel for rel, _ in a.manifest}.isdisjoint(rel for rel, _ in b.manifest):
            return None
        rels = a.clip_rels + b.clip_rels
        figures = [f for f in (a.clip_figures, b.clip_figures) if f is not None]
        order = sorted(range(len(rels)), key=rels.__getitem__)
        products[name] = ProductPart(
            manifest=list(heapq.merge(a.manifest, b.manifest)),
            envs=a.envs | b.envs,
            clip_rels=[rels[i] for i in order],
            clip_figures=np.concatenate(figures)[order] if figures else None,
            sample=heapq.nsmallest(HISTOGRAM_SAMPLE, a.sample + b.sample),
        )
    used = set().union(*(p.envs for p in products.values()))
    versions = {**then.envs, **first.envs}
    envs = {e: versions.get(e, "unknown") for e in sorted(used)}
    return ShardPart(products=products, envs=envs, skipped=first.skipped + then.skipped)


def _product_part(data: StateData, keys: list[tuple[str, str]], suffix: str, hashes: Mapping[str, int]) -> ProductPart:
    import numpy as np

    unknown = ("", "", "")
    records, provenance, radiometry = data.records, data.provenance.get, data.radiometry.get
    product = keys[0][1] if keys else ""
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
    # seven figures an image, parsed at once by numpy from one string (270,000 images' 1.9
    # million figures as Python strings would take 100 MB)
    figures = " ".join(data.clipping[key] for key in clipped)
    rels = [key[0] for key in keys]
    return ProductPart(
        manifest=list(zip(rels, lines)),
        envs={provenance(key, unknown)[2] for key in keys} - {""},
        clip_rels=[key[0] for key in clipped],
        clip_figures=np.fromstring(figures, dtype=np.float64, sep=" ").reshape(len(clipped), 7) if clipped else None,
        sample=[
            (h, rel, provenance((rel, product), unknown)[1])
            for h, rel in heapq.nsmallest(HISTOGRAM_SAMPLE, ((hashes[rel], rel) for rel in rels))
        ],
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


def sample(parts: Sequence[ShardPart], product: str) -> list[tuple[str, str]]:
    """The :data:`HISTOGRAM_SAMPLE` input paths of ``product`` with the smallest path hashes,
    smallest first, each with its image's SHA-256 as recorded."""
    candidates = [c for p in parts if product in p.products for c in p.products[product].sample]
    return [(rel, sha) for _, rel, sha in heapq.nsmallest(HISTOGRAM_SAMPLE, candidates)]


def skipped(parts: Sequence[ShardPart]) -> list[tuple[str, str]]:
    """The inputs skipped as bad in every part: (path, reason)."""
    return [row for p in parts for row in p.skipped]
