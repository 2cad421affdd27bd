"""Which split each image goes to: reproducible on any machine (a seeded hash of its name, never
the order of a listing), exact shares per class, whole groups kept together, and stable: an
image exported before keeps its split when others are added."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from msrgb.config.export import SPLITS, SplitPolicy
from msrgb.errors import ExportError
from msrgb.export.labels import Example

#: a Sentinel-2 product or BigEarthNet patch name: mission, level, datatake start, then (not in
#: BigEarthNet v1 names) baseline, orbit and tile
S2_NAME = re.compile(r"(S2[A-D])_MSI(?:L1C|L2A)_(\d{8}T\d{6})(?:_N\d{4}_R\d{3}_T(\d{2}[A-Z]{3}))?")

#: the georeferencing of an input as (CRS key, centre x, centre y), or None where it has none
GridOf = Callable[[str], "tuple[str, float, float] | None"]


def rank(seed: int, name: str) -> bytes:
    """The place of ``name`` in the seeded order: the same on any machine."""
    return hashlib.sha256(f"{seed}\0{name}".encode()).digest()


def quotas(n: int, ratios: Sequence[float], active: Sequence[str]) -> dict[str, int]:
    """Images per split for ``n`` images: the shares rounded by largest remainder, at least
    one in every active split when there are enough images."""
    shares = {s: r for s, r in zip(SPLITS, ratios) if s in active}
    exact = {s: n * r for s, r in shares.items()}
    counts = {s: math.floor(v) for s, v in exact.items()}
    if n >= len(shares):
        for s in shares:
            counts[s] = max(counts[s], 1)
    order = sorted(shares, key=lambda s: (-(exact[s] - math.floor(exact[s])), SPLITS.index(s)))
    while sum(counts.values()) < n:
        for s in order:
            if sum(counts.values()) < n:
                counts[s] += 1
    while sum(counts.values()) > n:  # the minimum of one took from the largest
        largest = max(counts, key=lambda s: (counts[s] - exact[s], counts[s]))
        counts[largest] -= 1
    return counts


def _fill(items: Sequence[tuple[str, int]], targets: Mapping[str, float], seed: int,
          before: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """Give each (name, size) item a split: the one it had ``before``, else the split furthest
    below its target, items taken in the seeded order."""
    counts: Counter[str] = Counter()
    result: dict[str, str] = {}
    for name, size in items:
        if before.get(name) in targets:
            result[name] = before[name]
            counts[before[name]] += size
    for name, size in sorted((i for i in items if i[0] not in result), key=lambda i: rank(seed, i[0])):
        split = max(targets, key=lambda s: (targets[s] - counts[s], -SPLITS.index(s)))
        result[name] = split
        counts[split] += size
    return result


def stratified(examples: Sequence[Example], policy: SplitPolicy, before: Mapping[str, str]) -> dict[str, str]:
    """Per class (for multi-label images, their rarest label), the policy's shares of its
    images, exactly."""
    frequency = Counter(label for e in examples for label in e.labels)
    strata: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        strata[min(e.labels, key=lambda x: (frequency[x], x)) if e.labels else ""].append(e)
    result: dict[str, str] = {}
    for members in strata.values():
        targets = quotas(len(members), policy.ratios, policy.active)
        result |= _fill([(e.id, 1) for e in members], targets, policy.seed, before)
    return result


def grouped(examples: Sequence[Example], policy: SplitPolicy, before: Mapping[str, str],
            grid_of: GridOf | None) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """Whole groups in one split, the shares counted in images. Returns the split and the group
    of every image."""
    group = {e.id: group_of(e.source, policy, grid_of) for e in examples}
    sizes = Counter(group.values())
    earlier = {group[i]: s for i, s in before.items() if i in group}
    targets = {s: len(examples) * r for s, r in zip(SPLITS, policy.ratios) if s in policy.active}
    by_group = _fill(sorted(sizes.items()), targets, policy.seed, earlier)
    return {e.id: by_group[group[e.id]] for e in examples}, group


def group_of(source: str, policy: SplitPolicy, grid_of: GridOf | None) -> str:
    """The group of the input at ``source`` (relative to input_dir)."""
    if policy.group == "folder":
        return str(PurePosixPath(source).parent)
    if policy.group == "scene":
        m = S2_NAME.search(source)
        if m is None:
            raise ExportError(
                f"config 'export.split.group': scene: {source} has no Sentinel-2 product name to take "
                "the scene from; use group: grid (from the georeferencing) or folder"
            )
        return "_".join(filter(None, (m.group(1), m.group(2), m.group(3) and f"T{m.group(3)}")))
    if policy.group == "grid":
        place = grid_of(source) if grid_of is not None else None
        if place is None:
            raise ExportError(
                f"config 'export.split.group': grid: {source} carries no georeferencing msrgb can read "
                "(GeoTIFF tags of a local file); use group: folder, scene or a regular expression"
            )
        crs, x, y = place
        return f"{crs}:{math.floor(x / policy.cell)}:{math.floor(y / policy.cell)}"
    m = re.search(policy.group, source)
    if m is None:
        raise ExportError(f"config 'export.split.group': {policy.group!r} does not match {source}")
    return m.group(1) if m.groups() else m.group(0)


def from_files(examples: Sequence[Example], policy: SplitPolicy) -> dict[str, str]:
    """The splits the policy's list files give, matched by stem whatever the suffix (the
    standard EuroSAT lists name .jpg files). Images in no list are not exported."""
    by_stem: dict[str, str] = {}
    for e in examples:
        if e.stem in by_stem:
            raise ExportError(
                f"config 'export.split': by: files matches names by stem, and {e.stem} is the stem of "
                f"{by_stem[e.stem]} and {e.id}; rename one or use another policy"
            )
        by_stem[e.stem] = e.id
    listed: dict[str, str] = {}
    for split, file in policy.files:
        for stem in _stems(Path(file), split):
            if stem in listed and listed[stem] != split:
                one, two = sorted((listed[stem], split), key=SPLITS.index)
                raise ExportError(
                    f"config 'export.split.files': {stem} is in the {one} and the {two} lists; "
                    "an image belongs to one split"
                )
            listed[stem] = split
    unknown = sorted(s for s in listed if s not in by_stem)
    if unknown:
        raise ExportError(
            f"config 'export.split.files': {len(unknown)} name(s) in the lists are not images of this run "
            f"(first: {unknown[0]}); convert them, or give lists of the images there are"
        )
    return {by_stem[stem]: split for stem, split in listed.items()}


def _stems(file: Path, split: str) -> Iterable[str]:
    try:
        lines = file.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"config 'export.split.files.{split}': {file} cannot be read ({exc})") from None
    for line in lines:
        name = line.strip().replace("\\", "/")
        if name and not name.startswith("#"):
            yield PurePosixPath(name).stem


def assign(examples: Sequence[Example], policy: SplitPolicy, before: Mapping[str, str],
           grid_of: GridOf | None = None) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """The split (and group) of every image, by id; an image with no split is not exported.
    ``before``: the splits of an earlier export with the same split settings."""
    if policy.by == "none":
        splits = {e.id: "train" for e in examples}
    elif policy.by == "files":
        splits = from_files(examples, policy)
    elif policy.by == "group":
        return grouped(examples, policy, before, grid_of)
    else:
        splits = stratified(examples, policy, before)
    return splits, {e.id: str(PurePosixPath(e.source).parent) for e in examples}


def check_classes(examples: Sequence[Example], splits: Mapping[str, str], policy: SplitPolicy) -> None:
    """Every class in every split the policy fills; else an error naming the setting."""
    seen: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        if e.id in splits:
            for label in e.labels:
                seen[label].add(splits[e.id])
    for label in sorted(seen):
        lacking = [s for s in policy.active if s not in seen[label]]
        if lacking:
            count = sum(1 for e in examples if label in e.labels)
            raise ExportError(
                f"config 'export.split': class {label!r} ({count} image(s)) has none in the "
                f"{' and '.join(lacking)} split(s) with by: {policy.by}; convert more images of it, "
                "change 'ratios' or the policy, or leave it out"
            )
