"""msrgb.readers.tiff, the reader of plain TIFFs without GDAL, against GDAL itself: over every kind of
TIFF GDAL writes that the suite can think of, it gives the same bands, no-data value and band
count as rasterio, or leaves the file to GDAL; and the kinds it should decode do take it."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import REPO, SHARED_S2

from msrgb import synth
from msrgb.config.parse import parse_products
from msrgb.jobs.convert import Converter
from msrgb.planning.checks import band_count
from msrgb.readers.stacked import TileReader
from msrgb.readers.tiff import read_plain
from msrgb.sources.geotags import ifd_entries, samples_per_pixel

DTYPES = ["uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"]
#: (name, creation options, decoded without GDAL for integers, ... for floats)
ENCODINGS = [
    ("none", {}, True, True),
    ("deflate", {"compress": "deflate"}, True, True),
    ("deflate+predictor2", {"compress": "deflate", "predictor": 2}, True, False),
    ("deflate+predictor3", {"compress": "deflate", "predictor": 3}, None, False),
    ("lzw", {"compress": "lzw"}, False, False),
    ("zstd", {"compress": "zstd"}, False, False),
    ("packbits", {"compress": "packbits"}, False, False),
    ("tiled", {"tiled": True, "blockxsize": 16, "blockysize": 16}, False, False),
]


def write(path: Path, data: np.ndarray, **options: object) -> Path:
    """A GeoTIFF written by GDAL of ``data`` (bands, rows, cols)."""
    profile = {
        "driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
        "dtype": data.dtype, "crs": "EPSG:32633",
        "transform": rasterio.transform.from_origin(500000, 4000000, 10, 10),
    }  # fmt: skip
    profile.update(options)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def values(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values over the type's whole range (its extremes too), and NaN and infinities for floats."""
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    if dtype.startswith("float"):
        data = rng.normal(0, 1e4, shape).astype(dtype)
        data.flat[:4] = [np.nan, np.inf, -np.inf, info.max]
    else:
        data = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
        data.flat[:2] = [info.min, info.max]
    return data


def assert_same_as_gdal(path: Path, needed: list[int]) -> bool:
    """Compare read_plain with rasterio on ``path``; True if read_plain decoded it."""
    plain = read_plain(path.read_bytes(), needed, 2**30)
    if plain is None:
        return False
    with rasterio.open(path) as src:
        assert plain.count == src.count, path
        assert plain.dtype == src.dtypes[0], path
        nodata = src.nodata
        assert (plain.nodata is None) == (nodata is None), path
        if nodata is not None:
            assert plain.nodata == nodata or (np.isnan(plain.nodata) and np.isnan(nodata)), path
        for i in needed:
            want, got = src.read(i + 1), plain.bands[i]
            assert got.dtype == want.dtype and got.dtype.isnative and got.flags.writeable, path
            assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f"), (path, i)
    return True


@pytest.mark.parametrize(
    "dtype,encoding,interleave,endianness",
    list(itertools.product(DTYPES, [e[0] for e in ENCODINGS], ["pixel", "band"], ["little", "big"])),
)
def test_every_encoding_reads_as_gdal_reads_it(tmp_path, dtype, encoding, interleave, endianness):
    _, options, for_ints, for_floats = next(e for e in ENCODINGS if e[0] == encoding)
    if for_ints is None and not dtype.startswith("float"):
        pytest.skip("GDAL writes predictor 3 for floats only")
    data = values(dtype, (5, 37, 23))
    options = {"blockysize": 3, **options}
    path = write(tmp_path / "t.tif", data, interleave=interleave, ENDIANNESS=endianness.upper(), **options)
    decoded = assert_same_as_gdal(path, [0, 2, 4])
    assert decoded == (for_floats if dtype.startswith("float") else for_ints)


@pytest.mark.parametrize("rows_per_strip", [1, 2, 7, 64])
@pytest.mark.parametrize("nodata", [None, 0, -9999, "nan"])
def test_strip_sizes_and_nodata(tmp_path, rows_per_strip, nodata):
    dtype = "float32" if nodata in ("nan", -9999) else "uint16"
    options: dict[str, object] = {"blockysize": rows_per_strip}
    if nodata is not None:
        options["nodata"] = float("nan") if nodata == "nan" else nodata
    path = write(tmp_path / "t.tif", values(dtype, (13, 50, 64)), **options)
    assert assert_same_as_gdal(path, [1, 2, 3])
    assert assert_same_as_gdal(path, [12])


def test_single_band_and_one_pixel(tmp_path):
    assert assert_same_as_gdal(write(tmp_path / "a.tif", values("uint16", (1, 1, 1))), [0])
    assert assert_same_as_gdal(write(tmp_path / "b.tif", values("int16", (1, 300, 2))), [0])


@pytest.mark.parametrize(
    "options",
    [
        {"nbits": 12},  # uint16 stored in 12 bits
        {"dtype": "float32", "nbits": 16},  # half floats, which GDAL reads as float32
        {"dtype": "int8"},  # a type msrgb does not stretch: GDAL names it
        {"photometric": "minisblack", "count": 1, "data": "palette"},
    ],
    ids=["nbits12", "float16", "int8", "palette"],
)
def test_kinds_left_to_gdal(tmp_path, options):
    options = dict(options)
    dtype = str(options.pop("dtype", "uint16"))
    data = values("uint8" if options.pop("data", None) else dtype if dtype != "float32" else "uint8", (3, 8, 8))
    data = data.astype(dtype)
    path = tmp_path / "t.tif"
    if "photometric" in options:
        path = write(path, data[:1].astype("uint8"), photometric="palette")
        with rasterio.open(path, "r+") as dst:
            dst.write_colormap(1, {0: (255, 0, 0, 255), 1: (0, 255, 0, 255)})
    else:
        write(path, data, **options)
    assert read_plain(path.read_bytes(), [0], 2**30) is None


def test_gdal_scale_and_offset_go_to_gdal(tmp_path):
    path = write(tmp_path / "t.tif", values("uint16", (4, 8, 8)))
    with rasterio.open(path, "r+") as dst:
        dst.scales, dst.offsets = (1.0, 1e-4, 1.0, 1.0), (0.0, -0.1, 0.0, 0.0)
    assert read_plain(path.read_bytes(), [0], 2**30) is None


def test_damaged_files_go_to_gdal(tmp_path):
    """Every truncation and a few corruptions of a plain file: read_plain never raises, and
    whenever it decodes, it agrees with GDAL."""
    data = write(tmp_path / "t.tif", values("uint16", (13, 16, 16)), blockysize=4).read_bytes()
    for cut in [0, 1, 7, 8, 100, len(data) // 2, len(data) - 1]:
        assert read_plain(data[:cut], [1, 2, 3], 2**30) is None
    rng = np.random.default_rng(1)
    for _ in range(300):
        damaged = bytearray(data)
        for pos in rng.integers(0, 400, 3):  # the header and the tags
            damaged[pos] = rng.integers(0, 256)
        path = tmp_path / "d.tif"
        path.write_bytes(bytes(damaged))
        try:
            plain = read_plain(bytes(damaged), [1, 2, 3], 2**30)
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"read_plain raised {exc!r}")
        if plain is not None:
            try:
                with rasterio.open(path) as src:
                    want = src.read([2, 3, 4])
            except rasterio.errors.RasterioError:
                continue  # GDAL refuses what read_plain took: harmless only if read_plain matches nothing
            assert all(np.array_equal(plain.bands[i + 1], want[i]) for i in range(3))


def test_files_that_start_alike_share_their_tags_and_only_those(tmp_path):
    """The tags of a file are remembered by the bytes they were read from (a dataset's tiles
    share them): a tile with the same header and other pixels reads as GDAL reads it, and a file
    that differs from a remembered one only in a value stored away from the directory (its
    strips' offsets, its bits per sample) or that stops inside those bytes is read afresh."""
    first = write(tmp_path / "a.tif", values("uint16", (13, 16, 16), seed=1), blockysize=4)
    second = write(tmp_path / "b.tif", values("uint16", (13, 16, 16), seed=2), blockysize=4)
    data = first.read_bytes()
    assert second.read_bytes()[:400] == data[:400]  # the same header
    assert assert_same_as_gdal(first, [1, 2, 3]) and assert_same_as_gdal(second, [1, 2, 3])
    order, entries = ifd_entries(data)
    strips = next(e for tag, _, _, e in entries if tag == 273)  # StripOffsets, stored apart
    (at,) = struct.unpack(order + "I", strips[8:12])
    offsets = list(struct.unpack(f"{order}4I", data[at : at + 16]))
    shifted = bytearray(data)  # the second strip's offset, stored apart from the directory, moved
    at = data.index(np.array(offsets, dtype=order + "u4").tobytes())
    shifted[at + 4 : at + 8] = np.array([offsets[1] + 2], dtype=order + "u4").tobytes()
    moved = tmp_path / "moved.tif"
    moved.write_bytes(bytes(shifted))
    assert assert_same_as_gdal(moved, [1, 2, 3])
    bits = bytearray(data)  # the last band's bits per sample, stored apart from the directory, 8
    at = data.index(np.array([16] * 13, dtype=order + "u2").tobytes())
    bits[at + 24 : at + 26] = np.array([8], dtype=order + "u2").tobytes()
    assert read_plain(bytes(bits), [1, 2, 3], 2**30) is None
    for cut in range(300, 700, 7):  # stops inside the directory or the values it points to
        plain = read_plain(data[:cut], [1, 2, 3], 2**30)
        assert plain is None, cut


def test_decoded_size_limit(tmp_path):
    """Neither the bands asked for nor what is decoded to get them (every band of a
    pixel-interleaved strip) go over the limit: a small deflate file cannot unpack into more."""
    banded = write(tmp_path / "b.tif", values("uint16", (13, 64, 64)), interleave="band", compress="deflate")
    assert read_plain(banded.read_bytes(), [1, 2, 3], 64 * 64 * 3 * 2) is not None
    assert read_plain(banded.read_bytes(), [1, 2, 3], 64 * 64 * 3 * 2 - 1) is None
    pixel = write(tmp_path / "p.tif", values("uint16", (13, 64, 64)), interleave="pixel", compress="deflate")
    assert read_plain(pixel.read_bytes(), [1, 2, 3], 64 * 64 * 13 * 2) is not None
    assert read_plain(pixel.read_bytes(), [1, 2, 3], 64 * 64 * 13 * 2 - 1) is None


def test_the_suites_tiles_and_the_sample(tmp_path):
    """The EuroSAT-shaped tiles the suite generates and the 20 real sample tiles take the path
    without GDAL; the real scene's band files (tiled COGs) are left to GDAL, and agree too."""
    synth.write_tile(tmp_path / "s.tif", synth.make_tile("Forest", 3), (500000.0, 4000000.0), 32633, pad="x" * 99)
    assert assert_same_as_gdal(tmp_path / "s.tif", [1, 2, 3, 7])
    samples = sorted((REPO / "sample" / "eurosat").rglob("*.tif"))
    assert len(samples) == 20
    for path in samples:
        assert assert_same_as_gdal(path, [1, 2, 3])
    for path in sorted(SHARED_S2.glob("*.tif"))[:3]:  # skipped where ../shared is absent
        assert not assert_same_as_gdal(path, [0])


def test_tile_reader_takes_the_plain_path_unless_georeferencing_is_wanted(tmp_path):
    """Through TileReader: the same Tile either way, and a product with a world file (which
    needs the CRS that only GDAL builds) reads through GDAL."""
    path = REPO / "sample" / "eurosat" / "BareSoil"
    tif = sorted(path.glob("*.tif"))[0]
    products = parse_products(["truecolor"])
    reader = TileReader(products)
    fast, slow = reader.read(tif, tif.read_bytes()), reader._read(tif, tif)
    assert fast.bands.keys() == slow.bands.keys() and fast.nodata == slow.nodata
    assert all(np.array_equal(fast.bands[i], slow.bands[i]) for i in fast.bands)
    assert fast.scaling == slow.scaling
    (georef,) = parse_products({"geo": {"preset": "truecolor", "world_file": True}})
    assert TileReader([georef])._read_plain(tif, tif.read_bytes()) is None
    assert reader._read_plain(tif, tif.read_bytes()) is not None
    out = tmp_path / "x.png"
    Converter(products).convert(tif, {"truecolor": out})
    assert out.stat().st_size > 0


@pytest.mark.parametrize("encoding", [e[0] for e in ENCODINGS])
@pytest.mark.parametrize("count", [1, 3, 13])
def test_band_count_from_the_tags_is_gdals(tmp_path, encoding, count):
    """Planning counts the bands of the first files from their tags (without loading GDAL)."""
    _, options, _, _ = next(e for e in ENCODINGS if e[0] == encoding)
    for interleave in ("pixel", "band"):
        dtype = "float32" if encoding == "deflate+predictor3" else "uint16"
        path = write(tmp_path / f"{interleave}.tif", values(dtype, (count, 20, 20)), interleave=interleave, **options)
        with rasterio.open(path) as src:
            assert samples_per_pixel(str(path)) == src.count
    (tmp_path / "x.tif").write_bytes(b"not a tiff at all")
    assert samples_per_pixel(str(tmp_path / "x.tif")) is None
    assert band_count(tmp_path / "x.tif") is None  # GDAL cannot open it either
