"""Where a band's radiometric scaling comes from: the one module that decides it, for every kind
of input (stacked files, band folders, Sentinel-2 SAFE products, zipped or not, STAC Items).

:func:`decide` orders what is known of a band: a STAC Item's rule (:func:`stac_rule`), else the
file's own GDAL scale and offset, else the product's metadata file (``BOA_ADD_OFFSET``), else
the ``offset``/``scale`` settings. The answer is a :class:`msrgb.radiometry.scaling.Scaling` whose
``source`` says where it came from; it is recorded in each image's recipe and in the provenance
manifest.

STAC Items (:func:`stac_rule`), in this order:

1. a uint8 ``visual``/TCI asset is an 8-bit picture: no scaling;
2. the processing baseline is read from ``s2:processing_baseline``, else ``processing:version``,
   else ``_N0xxx_`` in ``s2:product_uri``, the Item's id or the asset's href, else (in the job)
   the product metadata XML asset;
3. Earth Search's ``sentinel-2-l2a`` COGs with ``earthsearch:boa_offset_applied: true`` have
   had the offset applied already: no offset, whatever ``raster:bands`` says; with ``false`` on
   baseline 04.00+, -1000 only when the data are not already shifted (:func:`already_shifted`:
   the flag is known to be false on shifted data);
4. Earth Search's ``*-jp2`` assets are ESA's raw files: -1000 from baseline 04.00 on;
5. otherwise the declared scale and offset (``raster:bands``, or the asset-level
   ``raster:scale``/``raster:offset`` of STAC 1.1), with the offset taken as 0 for baselines
   before 04.00 (Copernicus Data Space writes -0.1 for every product);
6. nothing declared: -1000 from baseline 04.00 on (Planetary Computer), none before.

DN 0 stays no data: :meth:`Scaling.apply` leaves it out before any offset.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from msrgb.errors import InputError
from msrgb.radiometry.scaling import Scaling, from_gdal

if TYPE_CHECKING:
    import numpy as np

#: what every recipe text of a decision made from a STAC Item starts with
STAC = "STAC: "

#: the offset of Sentinel-2 data of processing baseline 04.00 and later, in DN
BASELINE_04_OFFSET = -1000.0

#: DN below which a valid pixel of raw 04.00+ data would have a negative reflectance
SHIFTED_BELOW = 1000
#: data whose share of valid pixels below SHIFTED_BELOW (in a visible band) reaches this are
#: taken as already shifted (docs/object-storage.md: measured on a real desert scene, the
#: hardest case, 0.12-0.96 % in B03/B02 once shifted and none raw)
SHIFTED_SHARE = 0.001

#: the bands whose reflectance is lowest over land and water, looked at first by the data check
VISIBLE = ("B02", "B03", "B04")

_N_NUMBER = re.compile(r"_N(\d{2})(\d{2})(?=[_.]|$)")


@dataclass(frozen=True)
class Baseline:
    """A Sentinel-2 processing baseline (``05.09``) and where it was read."""

    version: str
    where: str

    @property
    def offset_era(self) -> bool:
        """Baseline 04.00 or later: DN = 10000 x reflectance + 1000."""
        major, _, minor = self.version.partition(".")
        return (int(major), int(minor or 0)) >= (4, 0)

    def text(self) -> str:
        return f"processing baseline {self.version} (from {self.where})"


def parse_baseline(value: object, where: str) -> Baseline | None:
    """A baseline from ``05.09``, ``5.9``, ``N0509`` or ``0509``; None for anything else and
    for ESA's "not set" (99.99)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        value = f"{value:.2f}"
    if not isinstance(value, str):
        return None
    text = value.strip().upper().removeprefix("N")
    m = re.fullmatch(r"(\d{1,2})\.(\d{1,2})", text) or re.fullmatch(r"(\d{2})(\d{2})", text)
    if m is None:
        return None
    major, minor = int(m.group(1)), int(m.group(2))
    if (major, minor) == (99, 99):
        return None
    return Baseline(f"{major:02d}.{minor:02d}", where)


def baseline_in_name(name: str, where: str) -> Baseline | None:
    """The baseline of a Sentinel-2 product name (``..._N0509_R106_...``) in ``name``."""
    for m in _N_NUMBER.finditer(name):
        found = parse_baseline(m.group(1) + m.group(2), f"_N{m.group(1)}{m.group(2)}_ in {where}")
        if found is not None:
            return found
    return None


def baseline_of_metadata(data: bytes, where: object) -> Baseline | None:
    """The ``PROCESSING_BASELINE`` of a Sentinel-2 product metadata file (MTD_MSIL2A.xml), or
    None when it has none. Raises :class:`InputError` naming ``where`` for a file that is not
    XML."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(f"{where}: the product's metadata file cannot be read as XML ({exc})") from None
    for element in root.iter():
        if element.tag.rpartition("}")[2] == "PROCESSING_BASELINE":
            return parse_baseline(element.text, "the product metadata asset")
    return None


def item_baseline(properties: Mapping[str, Any], item_id: str) -> Baseline | None:
    """The baseline an Item states (steps 2 of the module's rule, without the href and the
    metadata asset)."""
    for key in ("s2:processing_baseline", "processing:version"):
        found = parse_baseline(properties.get(key), key)
        if found is not None:
            return found
    uri = properties.get("s2:product_uri")
    if isinstance(uri, str):
        found = baseline_in_name(uri, "s2:product_uri")
        if found is not None:
            return found
    return baseline_in_name(item_id, "the Item id")


@dataclass(frozen=True)
class StacAsset:
    """What a STAC Item says about the radiometry of one band asset."""

    key: str
    href: str
    #: (scale, offset) declared by ``raster:bands[0]`` or the asset-level fields, or None
    declared: tuple[float | None, float | None] | None = None
    declared_where: str = "raster:bands"
    #: an 8-bit picture (the ``visual`` / TCI asset, or a uint8 data type)
    visual: bool = False


@dataclass(frozen=True)
class StacFacts:
    """What a STAC Item says about its radiometry as a whole."""

    baseline: Baseline | None = None
    #: ``earthsearch:boa_offset_applied``, where the Item has it
    offset_applied: bool | None = None
    #: the href of the product metadata XML asset (MTD_MSIL2A.xml), read by the job when no
    #: baseline is known otherwise
    metadata_href: str | None = None


@dataclass(frozen=True)
class Rule:
    """A STAC Item's decision for one band: the scaling, unless it awaits the data
    (``check_data``: -1000 only if the data are not shifted already) or the baseline in the
    product metadata asset (``needs_baseline``); ``override`` says what of the Item it
    overrides, for the closing lines of a run."""

    scaling: Scaling | None
    override: str | None = None
    check_data: bool = False
    needs_baseline: bool = False

    @property
    def pending(self) -> bool:
        return self.check_data or self.needs_baseline


def _declared(asset: StacAsset) -> Scaling | None:
    if asset.declared is None:
        return None
    return from_gdal(*asset.declared)


def _with_source(scaling: Scaling | None, text: str) -> Scaling:
    found = scaling if scaling is not None else Scaling()
    return replace(found, source=STAC + text)


def _without_offset(scaling: Scaling | None) -> Scaling | None:
    if scaling is None:
        return None
    return replace(scaling, offset=0.0)


def stac_rule(facts: StacFacts, asset: StacAsset, baseline: Baseline | None = None) -> Rule:
    """The rule of the module's docstring for one band asset of an Item. ``baseline`` is the
    one read from the product metadata asset, when the Item states none."""
    if asset.visual:
        return Rule(_with_source(None, "an 8-bit visual (TCI) asset: no scaling"))
    baseline = baseline or facts.baseline or baseline_in_name(asset.href, "the href")
    declared = _declared(asset)
    raw_jp2 = asset.key.lower().endswith("-jp2")
    if facts.offset_applied is not None and not raw_jp2:
        return _earth_search(facts.offset_applied, baseline, declared, asset)
    if baseline is None:
        if facts.metadata_href is not None:
            return Rule(None, needs_baseline=True)
        if declared is not None:
            return Rule(_with_source(declared, f"{asset.declared_where} (no processing baseline stated)"))
        return Rule(None)
    if raw_jp2:
        offset = BASELINE_04_OFFSET if baseline.offset_era else 0.0
        scale = declared.scale if declared is not None else 1.0
        return Rule(_with_source(Scaling(scale, offset), f"ESA's raw JPEG 2000 asset, {baseline.text()}"))
    if declared is not None:
        if baseline.offset_era or declared.offset == 0.0:
            return Rule(_with_source(declared, f"{asset.declared_where}, {baseline.text()}"))
        why = f"{asset.declared_where} offset ignored, processing baseline {baseline.version} is before 04.00"
        return Rule(_with_source(_without_offset(declared), f"{why} (from {baseline.where})"), override=why)
    if baseline.offset_era:
        why = f"offset -1000 from processing baseline {baseline.version}, the Item declares none"
        return Rule(_with_source(Scaling(1.0, BASELINE_04_OFFSET), f"from {baseline.where} {baseline.version}"), override=why)
    return Rule(_with_source(None, f"{baseline.text()}: no offset"))


def _earth_search(applied: bool, baseline: Baseline | None, declared: Scaling | None, asset: StacAsset) -> Rule:
    """Earth Search's ``sentinel-2-l2a`` COGs (step 3)."""
    without = _without_offset(declared)
    if applied:
        why = f"{asset.declared_where} offset ignored, earthsearch:boa_offset_applied is true"
        if declared is None or declared.offset == 0.0:
            return Rule(_with_source(without, "earthsearch:boa_offset_applied is true"))
        return Rule(_with_source(without, why), override=why)
    if baseline is None or not baseline.offset_era:
        text = baseline.text() if baseline is not None else "no processing baseline stated"
        if declared is not None and declared.offset != 0.0:
            why = f"{asset.declared_where} offset ignored, earthsearch:boa_offset_applied is false on {text}"
            return Rule(_with_source(without, why), override=why)
        return Rule(_with_source(without, f"earthsearch:boa_offset_applied is false, {text}"))
    scale = declared.scale if declared is not None else 1.0
    return Rule(Scaling(scale, BASELINE_04_OFFSET, STAC), check_data=True)


def resolve_check(rule: Rule, share: float) -> tuple[Scaling, str | None]:
    """The scaling of a rule that awaited the data (``check_data``) once the share of valid
    pixels below :data:`SHIFTED_BELOW` is known, and what it overrides (or None)."""
    assert rule.scaling is not None
    figure = f"{100 * share:.2f} % of valid DN below {SHIFTED_BELOW}"
    if already_shifted(share):
        why = "raster:bands offset ignored, earthsearch:boa_offset_applied is false but the data are already shifted"
        return replace(rule.scaling, offset=0.0, source=f"{STAC}{why} ({figure})"), why
    text = f"earthsearch:boa_offset_applied is false, raw data checked ({figure}): offset -1000"
    return replace(rule.scaling, source=STAC + text), None


def shifted_share(bands: Mapping[str, np.ndarray]) -> float:
    """The largest share, over the visible bands among ``bands`` (band name -> DN; every band
    when none is visible), of valid pixels (DN above 0) below :data:`SHIFTED_BELOW`."""
    import numpy as np

    names = [b for b in VISIBLE if b in bands] or list(bands)
    share = 0.0
    for name in names:
        values = bands[name]
        valid = np.count_nonzero(values)
        if valid:
            below = np.count_nonzero(values < SHIFTED_BELOW) - (values.size - valid)
            share = max(share, below / valid)
    return share


def already_shifted(share: float) -> bool:
    return share >= SHIFTED_SHARE


@dataclass(frozen=True)
class Candidates:
    """What is known of one band's scaling, from every source there is."""

    #: a STAC Item's rule, resolved (msrgb.radiometry.decide.stac_rule)
    stac: Scaling | None = None
    #: the band file's own GDAL scale and offset
    file: Scaling | None = None
    #: a Sentinel-2 product's metadata file (BOA_ADD_OFFSET / RADIO_ADD_OFFSET)
    metadata: Scaling | None = None
    #: the product's ``offset``/``scale`` settings
    configured: Scaling | None = None


def decide(candidates: Candidates) -> Scaling | None:
    """The scaling of one band, in this order: the STAC Item's rule, the file's own scale and
    offset, the product's metadata file, the product's settings. None: the values as stored.
    A scaling that leaves the values as they are (scale 1, offset 0) is kept when it says why
    (a STAC rule): the recipe then names the rule."""
    for found in (candidates.stac, candidates.file, candidates.metadata, candidates.configured):
        if found is not None:
            return found
    return None


def effective(scaling: Scaling | None) -> Scaling | None:
    """``scaling`` where it changes the values, else None (pixels are then read as stored)."""
    return None if scaling is None or scaling.identity else scaling


def recorded_differs(rules: Mapping[str, Rule], bands: Sequence[str], recorded: str | None) -> bool:
    """Whether an image recorded with the scaling ``recorded`` (msrgb.render.recipe.radiometry_text,
    or None for none) of its ``bands`` would now be scaled otherwise by its STAC Item's
    ``rules``. A rule decided in the job (on the data, or on the product metadata asset)
    holds when the record was made by these rules; a band the Item says nothing of is left
    to the job."""
    try:
        record = json.loads(recorded) if recorded else {}
    except ValueError:
        return True
    for band in bands:
        rule = rules.get(band)
        if rule is None:
            continue
        was = record.get(band) if isinstance(record, dict) else None
        if rule.pending:
            if not isinstance(was, dict) or not str(was.get("from", "")).startswith(STAC):
                return True
            continue
        if rule.scaling is None:
            continue
        old = (was.get("scale", 1), was.get("offset", 0)) if isinstance(was, dict) else (1, 0)
        if (float(old[0]), float(old[1])) != (rule.scaling.scale, rule.scaling.offset):
            return True
    return False
