"""Georeferencing beside a PNG: an ESRI world file and GDAL's .aux.xml."""

from __future__ import annotations

from affine import Affine


def world_file_text(t: Affine) -> str:
    """ESRI world file: pixel sizes, rotations, then the centre of the top-left pixel."""
    cx = t.c + t.a / 2 + t.b / 2
    cy = t.f + t.d / 2 + t.e / 2
    return "\n".join(repr(float(v)) for v in (t.a, t.d, t.b, t.e, cx, cy)) + "\n"


def aux_xml_text(t: Affine, crs_wkt: str) -> str:
    """GDAL's side-car metadata: the CRS and geotransform, read by QGIS and rasterio."""
    gt = ", ".join(repr(float(v)) for v in t.to_gdal())
    return (
        "<PAMDataset>\n"
        f"  <SRS dataAxisToSRSAxisMapping=\"1,2\">{_escape(crs_wkt)}</SRS>\n"
        f"  <GeoTransform>{gt}</GeoTransform>\n"
        "</PAMDataset>\n"
    )


def _escape(text: str) -> str:
    """XML element text: what xml.sax.saxutils.escape does, without importing xml.sax, which
    brings urllib.request and http.client into every shard job (30-40 ms at each start)."""
    return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
