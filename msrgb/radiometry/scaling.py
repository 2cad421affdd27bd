"""Radiometric offsets and scales: how a band's stored numbers (DN) become reflectance x 10000,
the scale every stretch and preset is written in (``/4000`` is a reflectance of 0.4).

Sentinel-2 products of processing baseline 04.00 and later (January 2022 on, and the Collection-1
reprocessing as 05.xx) store ``DN = 10000 * reflectance + 1000``; the product's metadata file
says so (``BOA_ADD_OFFSET`` in ``MTD_MSIL2A.xml``, ``RADIO_ADD_OFFSET`` in ``MTD_MSIL1C.xml``,
both -1000, with ``QUANTIFICATION_VALUE`` 10000). Many COG producers write the same as GDAL's
per-band scale and offset (reflectance = DN * 0.0001 - 0.1). Every source comes down to one
:class:`Scaling` per band: ``value = DN * scale + offset`` on the 0-10000 scale. DN 0 is
Sentinel-2's no data: where an offset applies it stays no data instead of becoming -1000.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msrgb.errors import InputError

if TYPE_CHECKING:
    import numpy as np

#: reflectance 1 on the scale the stretches are written in
REFLECTANCE_ONE = 10000.0

#: the band order of ``band_id`` in Sentinel-2 metadata files (B8A is the 9th)
SAFE_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

#: names of a Sentinel-2 product's metadata file, at the top of the ``.SAFE`` folder
SAFE_METADATA_NAMES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")


@dataclass(frozen=True)
class Scaling:
    """``value = DN * scale + offset`` (reflectance x 10000) for one band, and where it was
    found (``source``: the metadata file's name, ``GeoTIFF`` or ``config``)."""

    scale: float = 1.0
    offset: float = 0.0
    source: str = ""

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    def apply(self, dn: np.ndarray) -> np.ndarray:
        """The values of ``dn`` on the 0-10000 scale, as float64; DN 0 (no data) is NaN where
        an offset applies, so that it stays no data (transparent, left out of statistics)."""
        import numpy as np

        values = dn.astype(np.float64)
        if self.scale != 1.0:
            values *= self.scale
        if self.offset != 0.0:
            values += self.offset
            values[dn == 0] = np.nan
        return values

    def to_json(self) -> dict[str, float | str]:
        return {"scale": _plain(self.scale), "offset": _plain(self.offset), "from": self.source}


def _plain(value: float) -> float | int:
    """An integral number as an int, so that recipes read ``-1000``, not ``-1000.0``."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _snap(value: float) -> float:
    """``value`` rounded to an integer when it is one up to float rounding (0.0001 * 10000)."""
    nearest = round(value)
    return float(nearest) if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)) else value


def from_gdal(scale: float | None, offset: float | None) -> Scaling | None:
    """The scaling of a band from GDAL's per-band scale and offset, or None when they leave the
    values as they are (1 and 0, or 0.0001 and 0). A scale other than 1 turns DN into
    reflectance (0-1, as Sentinel-2 COG producers write it: 0.0001 and -0.1), which is
    multiplied by 10000; with a scale of 1 the offset is in DN (-1000)."""
    scale = 1.0 if scale is None or not math.isfinite(scale) else float(scale)
    offset = 0.0 if offset is None or not math.isfinite(offset) else float(offset)
    if scale == 1.0:
        found = Scaling(1.0, _snap(offset), "GeoTIFF")
    else:
        found = Scaling(_snap(scale * REFLECTANCE_ONE), _snap(offset * REFLECTANCE_ONE), "GeoTIFF")
    return None if found.identity else found


def safe_metadata_file(folder: Path) -> Path | None:
    """The metadata file of a Sentinel-2 ``.SAFE`` product folder, or None."""
    for name in SAFE_METADATA_NAMES:
        path = folder / name
        if path.is_file():
            return path
    return None


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def read_safe_metadata(
    path: Path | str, bands: Sequence[str], data: bytes | None = None, where: str | None = None
) -> dict[str, Scaling]:
    """Band name -> scaling declared by a Sentinel-2 metadata file (``MTD_MSIL2A.xml``:
    ``BOA_ADD_OFFSET`` and ``BOA_QUANTIFICATION_VALUE``; ``MTD_MSIL1C.xml``:
    ``RADIO_ADD_OFFSET`` and ``QUANTIFICATION_VALUE``), for the ``bands`` asked for. Products
    older than processing baseline 04.00 declare no offset: their bands get none unless the
    quantification value differs from 10000. Raises :class:`InputError` naming the file for a
    file that cannot be parsed, or an offset for a band that is not there. A file inside a zipped
    product comes as its ``data``, named ``where`` in messages."""
    name = Path(path).name
    label = where or path
    try:
        root = ET.fromstring(data) if data is not None else ET.parse(path).getroot()
    except (ET.ParseError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{label}: the product's metadata file cannot be read as XML ({exc})") from None
    quantification = None
    offsets: dict[str, float] = {}
    ids = _band_ids(root)
    for element in root.iter():
        key = _local(element.tag)
        if key in ("BOA_QUANTIFICATION_VALUE", "QUANTIFICATION_VALUE"):
            quantification = _number(label, key, element.text)
        elif key in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"):
            band_id = element.get("band_id", "")
            band = ids.get(band_id)
            if band is None:
                raise InputError(
                    f"{label}: declares {key} for band_id {band_id!r}, which is not a band of the "
                    f"product (band ids 0-{len(SAFE_BAND_IDS) - 1})"
                )
            offsets[band] = _number(label, key, element.text)
    scale = 1.0
    if quantification is not None:
        if not quantification > 0:
            raise InputError(f"{label}: QUANTIFICATION_VALUE must be above 0, got {quantification:g}")
        scale = _snap(REFLECTANCE_ONE / quantification)
    found = {}
    for band in bands:
        scaling = Scaling(scale, _snap(offsets.get(band, 0.0) * scale), name)
        if not scaling.identity:
            found[band] = scaling
    return found


def _band_ids(root: ET.Element) -> dict[str, str]:
    """``band_id`` -> band name (``B04``), from the file's Spectral_Information list where it
    has one (``physicalBand="B4"``), else ESA's fixed order."""
    ids = {str(i): band for i, band in enumerate(SAFE_BAND_IDS)}
    for element in root.iter():
        if _local(element.tag) == "Spectral_Information":
            band_id, physical = element.get("bandId"), element.get("physicalBand", "")
            m = re.fullmatch(r"B(\d{1,2}|8A)", physical.upper())
            if band_id is not None and m:
                digits = m.group(1)
                ids[band_id] = "B" + (digits if digits == "8A" else digits.zfill(2))
    return ids


def _number(path: object, key: str, text: str | None) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InputError(f"{path}: {key} is not a number: {text!r}")
    return value


#: Sentinel-2 product names: ``..._MSIL2A_20220315T112111_N0400_R037_...``; the N number is the
#: processing baseline (N9999: not set, as in BigEarthNet's names)
_BASELINE = re.compile(r"MSIL[12][AC]_(\d{8})T\d{6}(?:_N(\d{4}))?", re.IGNORECASE)
#: the first day of processing baseline 04.00
BASELINE_04_START = "20220125"


def looks_like_offset_data(name: str) -> bool:
    """True if a Sentinel-2 product name in ``name`` says processing baseline 04.00 or later
    (``_N0400_`` and up), or, without a baseline, was sensed on or after 2022-01-25: data that
    should carry an offset of -1000."""
    for m in _BASELINE.finditer(name):
        date, baseline = m.group(1), m.group(2)
        if baseline is not None and baseline != "9999":
            return int(baseline) >= 400
        if date >= BASELINE_04_START:
            return True
    return False


def note_missing_offset() -> str:
    """The run's note for inputs named like baseline 04.00+ data that carry no offset (the same
    text for every input, so that a run says it once; the shard log names the first input)."""
    return (
        "some inputs look like Sentinel-2 data of processing baseline 04.00 or later by their "
        "names (stored as 10000 x reflectance + 1000), but carry no radiometric "
        "offset, so their images come out too bright; if the offset was lost, set it: "
        "'offset: -1000' in the config (docs/products.md, Radiometric offsets)"
    )


def settings_for(
    offset: float | Mapping[str, float] | None,
    scale: float | Mapping[str, float] | None,
    bands: Sequence[str],
) -> tuple[tuple[str, float, float], ...]:
    """(band, scale, offset) of each of ``bands`` that the ``offset`` / ``scale`` settings (a
    number for every band, or band name -> number) give something other than 1 and 0."""
    found = []
    for band in bands:
        s = scale.get(band, 1.0) if isinstance(scale, Mapping) else (1.0 if scale is None else scale)
        o = offset.get(band, 0.0) if isinstance(offset, Mapping) else (0.0 if offset is None else offset)
        if (float(s), float(o)) != (1.0, 0.0):
            found.append((band, float(s), float(o)))
    return tuple(found)
