"""The ``export`` setting (top level, or per product): format, split policy, labels, card."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from msrgb.errors import PlanError

#: the split folders, in this order; other tools rely on these names
SPLITS = ("train", "val", "test")
#: the name the Hugging Face Hub gives each split
HUB_SPLITS = {"train": "train", "val": "validation", "test": "test"}
FORMATS = ("imagefolder", "webdataset")
POLICIES = ("stratified", "group", "files", "none")
#: the kinds of group (besides a regular expression over the input's path)
GROUP_KINDS = ("folder", "scene", "grid")


@dataclass(frozen=True)
class SplitPolicy:
    """How images are divided into train, val and test."""

    by: str = "stratified"
    #: shares of train, val and test (a share of 0 leaves that split out)
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2)
    seed: int = 0
    #: for ``by: group``: folder, scene, grid or a regular expression over the input's path
    group: str = "folder"
    #: for ``group: grid``: the side of a grid cell, in the units of the images' CRS
    cell: float = 10_000.0
    #: for ``by: files``: (split, list file) pairs
    files: tuple[tuple[str, str], ...] = ()

    @property
    def active(self) -> tuple[str, ...]:
        """The splits that get images."""
        if self.by == "none":
            return ("train",)
        if self.by == "files":
            return tuple(s for s in SPLITS if s in dict(self.files))
        return tuple(s for s, r in zip(SPLITS, self.ratios) if r > 0)


@dataclass(frozen=True)
class ExportSettings:
    """What to export and how (the ``export`` setting, docs/ml-export.md)."""

    format: str = "imagefolder"
    split: SplitPolicy = field(default_factory=SplitPolicy)
    croissant: bool = False
    #: a table of labels per image; empty: class folders, or BigEarthNet's metadata files
    labels: str = ""
    #: the dataset card's license (a Hugging Face Hub license id) and name
    license: str = "other"
    name: str = ""
    #: where the source images come from, for the dataset card and Croissant's citeAs
    attribution: str = ""
    #: WebDataset: samples in one tar file
    samples_per_tar: int = 10_000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def split_digest(self) -> str:
        """What the split depends on: a new digest divides the images afresh."""
        text = json.dumps([asdict(self.split), self.labels], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def export_spec(config: Mapping[str, Any], product: str) -> tuple[Any, str]:
    """A product's ``export`` setting as given: its own (``products.<name>.export``), else the
    top-level one; with the setting's name, for messages."""
    products = config.get("products")
    own = (products.get(product) or {}) if isinstance(products, Mapping) else {}
    if "export" in own:
        return own["export"], f"products.{product}.export"
    return config.get("export"), "export"


def parse_export(spec: Any, where: str = "export") -> ExportSettings | None:
    """The ``export`` setting (already checked against the schema), or None for no export.
    Raises :class:`PlanError` naming the setting for what the schema cannot say."""
    if spec in (None, False):
        return None
    spec = {} if spec is True else dict(spec)
    split = _split_policy(spec.pop("split", {}) or {}, f"{where}.split")
    settings = ExportSettings(split=split, **spec)
    if settings.format not in FORMATS:
        raise PlanError(f"config '{where}.format': {settings.format!r} is not one of {', '.join(FORMATS)}")
    return settings


def _split_policy(spec: Mapping[str, Any], where: str) -> SplitPolicy:
    spec = dict(spec)
    ratios = [float(r) for r in spec.pop("ratios", (0.6, 0.2, 0.2))]
    if len(ratios) == 2:  # train and test
        ratios = [ratios[0], 0.0, ratios[1]]
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise PlanError(
            f"config '{where}.ratios': {ratios} must be 2 (train, test) or 3 (train, val, test) "
            "shares from 0 to 1 that add up to 1"
        )
    files = dict(spec.pop("files", {}) or {})
    unknown = sorted(set(files) - set(SPLITS))
    if unknown:
        raise PlanError(f"config '{where}.files': {unknown} are not split names; use {', '.join(SPLITS)}")
    policy = SplitPolicy(ratios=(ratios[0], ratios[1], ratios[2]), files=tuple(sorted(files.items())), **spec)
    if policy.by not in POLICIES:
        raise PlanError(f"config '{where}.by': {policy.by!r} is not one of {', '.join(POLICIES)}")
    if policy.by == "files" and "train" not in dict(policy.files):
        raise PlanError(f"config '{where}.files' must name at least a train list (by: files)")
    if policy.by == "group" and policy.group not in GROUP_KINDS:
        import re

        try:
            re.compile(policy.group)
        except re.error as exc:
            raise PlanError(
                f"config '{where}.group': {policy.group!r} is neither {', '.join(GROUP_KINDS)} nor a "
                f"regular expression ({exc})"
            ) from None
    return policy
