"""Synthetic EuroSAT-format tiles: 64x64, 13 bands, uint16, uncompressed, pixel-interleaved.

Used for the bundled sample dataset, the tests and the benchmark. Each land-cover class has its
own mean spectrum (Sentinel-2 L1C reflectance x 10000, EuroSAT band order), with smooth spatial
texture and a simple feature (a road, a river, fields), so the PNGs look like land cover.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from msrgb.config.presets import EUROSAT_BANDS

#: Mean top-of-atmosphere reflectance x 10000 per class, in EUROSAT_BANDS order.
CLASS_SPECTRA: dict[str, tuple[int, ...]] = {
    "AnnualCrop": (1300, 1100, 1050, 1150, 1500, 2100, 2400, 2300, 800, 20, 2600, 1800, 2550),
    "Forest": (1250, 950, 820, 560, 1000, 2100, 2550, 2500, 760, 15, 1350, 580, 2750),
    "HerbaceousVegetation": (1280, 1000, 950, 820, 1300, 2300, 2700, 2650, 800, 18, 2100, 1200, 2900),
    "Highway": (1350, 1150, 1100, 1150, 1450, 1900, 2150, 2100, 780, 22, 2300, 1700, 2300),
    "Industrial": (1500, 1400, 1400, 1450, 1700, 1950, 2150, 2100, 820, 25, 2500, 2050, 2300),
    "Pasture": (1260, 980, 950, 760, 1250, 2500, 2950, 2900, 820, 17, 2000, 1050, 3150),
    "PermanentCrop": (1300, 1080, 1060, 1050, 1450, 2150, 2450, 2400, 800, 20, 2400, 1600, 2600),
    "Residential": (1420, 1250, 1180, 1150, 1450, 1950, 2200, 2150, 800, 22, 2250, 1650, 2350),
    "River": (1250, 950, 880, 700, 900, 1300, 1450, 1400, 600, 12, 1100, 700, 1500),
    "SeaLake": (1200, 880, 700, 420, 380, 320, 300, 280, 160, 8, 120, 80, 260),
}  # fmt: skip

TILE_SIZE = 64
PIXEL_SIZE = 10.0


def _seed(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Noise in [-1, 1] that varies smoothly over ``cells`` x ``cells`` coarse cells."""
    coarse = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    pos = np.linspace(0, cells, size)
    i0 = np.minimum(pos.astype(int), cells - 1)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def make_tile(class_name: str, index: int, size: int = TILE_SIZE) -> np.ndarray:
    """Return one (13, size, size) uint16 tile of ``class_name``, deterministic in its
    arguments."""
    rng = np.random.default_rng(_seed(f"{class_name}/{index}"))
    mean = np.asarray(CLASS_SPECTRA[class_name], dtype=np.float64)
    n = size
    texture = 0.18 * _smooth_noise(rng, n, 4) + 0.06 * _smooth_noise(rng, n, 16)
    yy, xx = np.mgrid[0:n, 0:n]
    feature = np.zeros((n, n))
    water = CLASS_SPECTRA["River"]
    if class_name in ("Highway", "River"):
        slope, offset = rng.uniform(-0.8, 0.8), rng.uniform(16, 48) * n / TILE_SIZE
        width = 3.0 if class_name == "Highway" else 7.0
        feature = (np.abs(yy - (slope * (xx - n / 2) + offset)) < width).astype(float)
    elif class_name in ("AnnualCrop", "PermanentCrop"):
        period = rng.integers(10, 22)
        feature = ((xx // period + yy // period) % 2).astype(float) * 0.5
    elif class_name == "Residential":
        feature = ((xx % 8 < 4) & (yy % 8 < 4)).astype(float) * 0.6
    cube = mean[:, None, None] * (1.0 + texture[None])
    if class_name == "River":
        land = np.asarray(CLASS_SPECTRA["HerbaceousVegetation"], dtype=np.float64)
        cube = land[:, None, None] * (1 - feature) + np.asarray(water)[:, None, None] * feature
        cube = cube * (1.0 + texture[None])
    elif class_name == "Highway":
        road = np.asarray(CLASS_SPECTRA["Industrial"], dtype=np.float64) * 1.25
        cube = cube * (1 - feature) + road[:, None, None] * feature
    else:
        cube = cube * (1.0 + 0.25 * feature[None])
    cube += rng.normal(0.0, 12.0, cube.shape)
    return np.clip(np.rint(cube), 1, 28000).astype(np.uint16)


def write_tile(
    path: Path, data: np.ndarray, origin: tuple[float, float], epsg: int, pad: str = "",
    pixel_size: float = PIXEL_SIZE,
) -> None:  # fmt: skip
    """Write ``data`` (bands, rows, cols) like the EuroSAT files: uncompressed, pixel-interleaved,
    strips of 4 rows, UTM CRS, 10 m pixels (or ``pixel_size``). ``pad`` is stored as a metadata
    item (to match a file size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "dtype": str(data.dtype),
        "count": count,
        "height": height,
        "width": width,
        "crs": f"EPSG:{epsg}",
        "transform": from_origin(origin[0], origin[1], pixel_size, pixel_size),
        "interleave": "pixel",
        "blockysize": 4,
        "compress": "none",
    }
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(path, "w", **profile) as dst:
            if pad:  # before the pixels, so GDAL writes the directory once
                dst.update_tags(PADDING=pad)
            dst.write(data)


def tile_origin(class_name: str, index: int) -> tuple[float, float]:
    """A plausible UTM origin for a tile, spread over a 100 km square."""
    rng = np.random.default_rng(_seed(f"origin/{class_name}/{index}"))
    return (float(300000 + 640 * rng.integers(0, 150)), float(5000000 + 640 * rng.integers(0, 150)))


def generate(
    root: Path, per_class: int, classes: tuple[str, ...] | None = None, start: int = 1
) -> list[Path]:
    """Write ``per_class`` tiles per class as ``root/<Class>/<Class>_<i>.tif`` (i from ``start``)
    and return their paths. Existing files are overwritten."""
    written = []
    for class_name in classes or tuple(CLASS_SPECTRA):
        for i in range(start, start + per_class):
            path = root / class_name / f"{class_name}_{i}.tif"
            write_tile(path, make_tile(class_name, i), tile_origin(class_name, i), 32632)
            written.append(path)
    return written


#: BigEarthNet-S2 band files: band -> pixels per side of a 1.2 km patch (10, 20 and 60 m).
BIGEARTHNET_BANDS: dict[str, int] = {
    "B01": 20, "B02": 120, "B03": 120, "B04": 120, "B05": 60, "B06": 60,
    "B07": 60, "B08": 120, "B8A": 60, "B09": 20, "B11": 60, "B12": 60,
}  # fmt: skip
PATCH_METRES = 1200.0


def patch_name(index: int) -> str:
    """A BigEarthNet-style patch name: tile and acquisition, then the patch's column and row."""
    return f"S2A_MSIL2A_20170613T101031_{index // 100}_{index % 100}"


def make_patch(index: int) -> dict[str, np.ndarray]:
    """The band arrays of one BigEarthNet-shaped patch (uint16, BIGEARTHNET_BANDS sizes): a
    120 px scene of a land-cover class, averaged down to 60 and 20 px for the 20 and 60 m
    bands."""
    classes = tuple(CLASS_SPECTRA)
    cube = make_tile(classes[index % len(classes)], index, 120)
    bands = {}
    for band, n in BIGEARTHNET_BANDS.items():
        full = cube[EUROSAT_BANDS.index(band)].astype(np.float64)
        f = 120 // n
        bands[band] = np.rint(full.reshape(n, f, n, f).mean(axis=(1, 3))).astype(np.uint16)
    return bands


def write_band(path: Path, data: np.ndarray, origin: tuple[float, float], epsg: int, metres: float = PATCH_METRES) -> None:
    """One band file as BigEarthNet has them: uncompressed GeoTIFF, one band, UTM CRS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = data.shape[0]
    profile = {
        "driver": "GTiff", "dtype": str(data.dtype), "count": 1, "height": n, "width": data.shape[1],
        "crs": f"EPSG:{epsg}", "transform": from_origin(origin[0], origin[1], metres / n, metres / n),
        "compress": "none",
    }  # fmt: skip
    with rasterio.Env(GDAL_PAM_ENABLED="NO"):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data, 1)


def generate_bigearthnet(root: Path, count: int, start: int = 0) -> list[Path]:
    """Write ``count`` BigEarthNet-shaped patch folders ``root/<patch>/<patch>_<band>.tif``
    and return the folders."""
    folders = []
    for i in range(start, start + count):
        name = patch_name(i)
        origin = (300000.0 + PATCH_METRES * (i % 100), 5000000.0 - PATCH_METRES * (i // 100))
        for band, data in make_patch(i).items():
            write_band(root / name / f"{name}_{band}.tif", data, origin, 32632)
        folders.append(root / name)
    return folders


#: Sentinel-2 resolution of each band in metres (B10 only in L1C)
S2_RESOLUTION = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
    "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}  # fmt: skip


def safe_metadata_xml(level: str, baseline: str, offsets: dict[str, int], quantification: int = 10000) -> str:
    """A product metadata file (MTD_MSIL2A.xml / MTD_MSIL1C.xml) with the structure ESA writes:
    the processing baseline, the quantification value(s), one ``BOA_ADD_OFFSET`` (L2A) or
    ``RADIO_ADD_OFFSET`` (L1C) per band by ``band_id`` when ``offsets`` is given (baseline 04.00
    and later), and the spectral information that maps band ids to band names."""
    from msrgb.radiometry.scaling import SAFE_BAND_IDS

    l2a = level == "L2A"
    ids = list(enumerate(SAFE_BAND_IDS))
    if l2a:
        quant = (
            "<QUANTIFICATION_VALUES_LIST>"
            f'<BOA_QUANTIFICATION_VALUE unit="none">{quantification}</BOA_QUANTIFICATION_VALUE>'
            '<AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>'
            '<WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>'
            "</QUANTIFICATION_VALUES_LIST>"
        )
        offset_list = "".join(
            f'<BOA_ADD_OFFSET band_id="{i}">{offsets[b]}</BOA_ADD_OFFSET>' for i, b in ids if b in offsets
        )
        offset_xml = f"<BOA_ADD_OFFSET_VALUES_LIST>{offset_list}</BOA_ADD_OFFSET_VALUES_LIST>" if offsets else ""
    else:
        quant = f'<QUANTIFICATION_VALUE unit="none">{quantification}</QUANTIFICATION_VALUE>'
        offset_list = "".join(
            f'<RADIO_ADD_OFFSET band_id="{i}">{offsets[b]}</RADIO_ADD_OFFSET>' for i, b in ids if b in offsets
        )
        offset_xml = f"<Radiometric_Offset_List>{offset_list}</Radiometric_Offset_List>" if offsets else ""
    spectral = "".join(
        f'<Spectral_Information bandId="{i}" physicalBand="{b.replace("B0", "B")}">'
        f'<RESOLUTION>{S2_RESOLUTION[b]}</RESOLUTION></Spectral_Information>'
        for i, b in ids
    )
    kind = "Level-2A" if l2a else "Level-1C"
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        f'<n1:{kind}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_{kind}.xsd" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        "<n1:General_Info><Product_Info>"
        "<PRODUCT_START_TIME>2020-02-19T11:21:11.024Z</PRODUCT_START_TIME>"
        f"<PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
        "</Product_Info><Product_Image_Characteristics>"
        "<Special_Values><SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX></Special_Values>"
        "<Special_Values><SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT><SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX></Special_Values>"
        f"{quant}{offset_xml}"
        f"<Spectral_Information_List>{spectral}</Spectral_Information_List>"
        f"</Product_Image_Characteristics></n1:General_Info>\n</n1:{kind}_User_Product>\n"
    )


def write_safe_product(
    root: Path,
    bands: dict[str, np.ndarray],
    level: str = "L2A",
    baseline: str = "04.00",
    offsets: dict[str, int] | None = None,
    driver: str = "JP2OpenJPEG",
    origin: tuple[float, float] = (199980.0, 2800020.0),
    metres: float = PATCH_METRES,
) -> Path:
    """A Sentinel-2 ``.SAFE`` product of the ``bands`` (DN as stored), named as ESA names them
    (``..._N0400_...``), with its metadata file and the band files where ESA puts them (L2A:
    ``IMG_DATA/R10m`` ..., L1C: ``IMG_DATA``): lossless JPEG 2000 or (``driver="GTiff"``)
    GeoTIFF. Returns the product folder."""
    number = baseline.replace(".", "")
    safe = root / f"S2B_MSI{level}_20200219T112111_N{number}_R037_T29RKH_20200219T115007.SAFE"
    granule = safe / "GRANULE" / f"{level}_T29RKH_A024290_20200219T112109"
    safe.mkdir(parents=True, exist_ok=True)
    xml = safe_metadata_xml(level, baseline, offsets or {})
    (safe / f"MTD_MSI{level}.xml").write_text(xml, encoding="utf-8")
    suffix = ".jp2" if driver == "JP2OpenJPEG" else ".tif"
    options = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {"compress": "deflate"}
    for band, data in bands.items():
        res = S2_RESOLUTION[band]
        folder = granule / "IMG_DATA" / (f"R{res}m" if level == "L2A" else "")
        name = f"T29RKH_20200219T112111_{band}" + (f"_{res}m" if level == "L2A" else "") + suffix
        folder.mkdir(parents=True, exist_ok=True)
        n = data.shape[0]
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(
            folder / name, "w", driver=driver, width=data.shape[1], height=n, count=1,
            dtype=str(data.dtype), crs="EPSG:32629",
            transform=from_origin(origin[0], origin[1], metres / data.shape[1], metres / n), **options,
        ) as dst:  # fmt: skip
            dst.write(data, 1)
    return safe


def main() -> None:
    """``python -m msrgb.synth OUTPUT_DIR PER_CLASS``: write a synthetic dataset (the bundled
    sample is cut from a real scene instead: sample/make_sample.py)."""
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m msrgb.synth OUTPUT_DIR PER_CLASS")
    paths = generate(Path(sys.argv[1]), int(sys.argv[2]))
    print(f"wrote {len(paths)} tiles under {sys.argv[1]}")


if __name__ == "__main__":
    main()
