import io
from pathlib import Path

import os
import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
from conftest import SHARED_S2, assert_png_matches

from msrgb import synth
from msrgb.config.parse import parse_products
from msrgb.errors import InputError
from msrgb.jobs.convert import Converter
from msrgb.readers.gdal import enter_thread_gdal_env
from msrgb.render.encoding import encode_image
from msrgb.render import pngenc
from msrgb.render.pngenc import (
    HUFFMAN_ONLY,
    PNG_COMPRESSION,
    compressor,
    decode_png_quick,
    encode_png,
    encode_png_quick,
)
from msrgb.storage.files import write_atomic


@pytest.fixture(autouse=True)
def _gdal_env():
    enter_thread_gdal_env()


def test_convert_matches_reference_pixel_by_pixel(tmp_path: Path):
    tifs = synth.generate(tmp_path / "in", 1)
    conv = Converter(parse_products(["truecolor"]))
    for tif in tifs:
        png = tmp_path / "out" / (tif.stem + ".png")
        conv.convert(tif, {"truecolor": png})
        assert_png_matches(png, tif)


def _reference_filter_rows(x: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """Pillow's filter choice written plainly, one row at a time with Python integers: the
    filters None, Up, Sub and Paeth in that order, the first with the smallest sum of
    min(v, 256 - v) over its bytes."""
    out = []
    prev = above.astype(np.int64)
    for row in x.astype(np.int64):
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])[: row.size]
        upper_left = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])[: row.size]
        p = left + prev - upper_left
        pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upper_left)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upper_left))
        candidates = [(0, row), (2, row - prev), (1, row - left), (4, row - paeth)]
        scores = [int(np.minimum(c % 256, 256 - c % 256).sum()) for _, c in candidates]
        kind, filtered = candidates[scores.index(min(scores))]
        out.append(np.concatenate([[kind], filtered % 256]))
        prev = row
    return np.array(out, dtype=np.uint8).reshape(x.shape[0], x.shape[1] + 1)


@pytest.mark.parametrize("bpp", [3, 4])
def test_png_filter_choice_matches_a_plain_reference_at_any_width(bpp: int):
    """The encoder's filter choice (numpy, a few calls per block of rows, row sums in 16 bits
    where they cannot overflow and in 32 bits beyond) against the plain reference: rows on both
    sides of the width where the sums change width, the row above a block given, and bytes of
    128 (the largest distance, which fills a row's sum fastest) among noise, ramps and flats."""
    rng = np.random.default_rng(bpp)
    for cols in (1, 2, 60, 126, 127, 128, 129, 170, 171, 400, 1100):
        rows = int(rng.integers(1, 9))
        n = cols * bpp
        kinds = [
            rng.integers(0, 256, (rows, n)),
            np.full((rows, n), 128),
            rng.choice([0, 127, 128, 129, 255], size=(rows, n)),
            np.cumsum(rng.integers(0, 5, (rows, n)), axis=1),
            np.tile(np.arange(n) * 3, (rows, 1)),
        ]
        for x in kinds:
            x = (x % 256).astype(np.uint8)
            above = rng.integers(0, 256, n).astype(np.uint8)
            got = np.asarray(pngenc._filter_rows(x, above, bpp))
            assert np.array_equal(got, _reference_filter_rows(x, above, bpp)), (cols, rows)


@pytest.mark.parametrize("compression", sorted(PNG_COMPRESSION))
def test_every_png_compression_keeps_the_pixels(tmp_path: Path, compression: str):
    (tif,) = synth.generate(tmp_path / "in", 1, classes=("River",))
    conv = Converter(parse_products(["truecolor"], png_compression=compression))
    png = tmp_path / "x.png"
    conv.convert(tif, {"truecolor": png})
    assert_png_matches(png, tif)


@pytest.mark.parametrize("size", [0, 1, 100, 12_352, 70_000, 2**20 + 7])
def test_zlib_ng_huffman_only_writes_zlibs_bytes(size: int):
    """The encoder's default deflate is zlib-ng's Huffman-only, chosen because it writes exactly
    zlib's bytes (images stay those of earlier versions); a zlib-ng that stops doing so fails
    here, whatever the input size (fed in pieces, as images in blocks are)."""
    import zlib

    rng = np.random.default_rng(size)
    data = (rng.normal(0, 12, size).astype(np.int64) % 256).astype(np.uint8).tobytes()
    pieces = [data[i : i + 65_536] for i in range(0, len(data), 65_536)] or [b""]
    ours, theirs = compressor(6, HUFFMAN_ONLY), zlib.compressobj(6, zlib.DEFLATED, 15, 8, HUFFMAN_ONLY)
    assert b"".join(map(ours.compress, pieces)) + ours.flush() == b"".join(map(theirs.compress, pieces)) + theirs.flush()


def test_png_encoder_is_byte_identical_to_pillow_on_tiles(tmp_path: Path):
    """msrgb writes PNGs with its own numpy + zlib encoder (2x faster than imageio + Pillow); on
    EuroSAT-sized tiles with the default compression the bytes are Pillow's, filter choice
    included."""
    conv = Converter(parse_products(["truecolor"]))
    tifs = synth.generate(tmp_path / "in", 2)  # 2 tiles of each of the 10 classes
    for tif in tifs:
        rgb = conv.render(conv.read(tif), conv.products[0])
        pillow = iio.imwrite("<bytes>", rgb, plugin="pillow", extension=".png", compress_level=6, compress_type=2)
        assert encode_image(rgb, conv.products[0]) == pillow, tif.name


@pytest.mark.parametrize("seed", range(4))
def test_png_filter_choice_is_pillows_on_any_small_image(seed: int):
    """Pillow's filter choice (per row, the first of None, Up, Sub, Paeth with the smallest sum
    of bytes read as signed) on images of every kind: noise, smooth, flat, gradients, ties
    between filters, RGB and RGBA. Small images only: from 16 KB of scanlines on, zlib's
    block boundaries depend on its memory level, and Pillow's is not msrgb's."""
    rng = np.random.default_rng(seed)
    for k in range(60):
        channels = int(rng.choice([3, 4]))
        rows = int(rng.integers(1, 70))
        cols = int(rng.integers(1, min(80, 16_000 // rows // channels)))
        shape = (rows, cols, channels)
        kind = k % 5
        if kind == 0:
            image = rng.integers(0, 256, shape)
        elif kind == 1:
            image = np.clip(rng.normal(100, 10, shape), 0, 255)
        elif kind == 2:
            image = np.cumsum(rng.integers(0, 4, shape), axis=1) + np.arange(rows)[:, None, None] * 3
        elif kind == 3:
            image = np.full(shape, rng.integers(0, 256))
            image[rows // 2 :] = rng.integers(0, 256, (rows - rows // 2, cols, channels))
        else:  # few values around 128: many ties, and bytes of 128 (as far from zero as can be)
            image = rng.choice([0, 127, 128, 129, 255], size=shape)
        image = (image % 256).astype(np.uint8)
        pillow = iio.imwrite("<bytes>", image, plugin="pillow", extension=".png", compress_level=6, compress_type=2)
        assert encode_png(image, 6, HUFFMAN_ONLY) == pillow, (k, shape)


@pytest.mark.parametrize("compression", sorted(PNG_COMPRESSION))
@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1, 1, 3), np.uint8), ((1, 70, 3), np.uint8), ((70, 1, 4), np.uint8), ((97, 131, 4), np.uint8),
     ((300, 300, 3), np.uint8), ((1200, 1000, 3), np.uint8), ((33, 17, 3), np.uint16),
     ((20, 9, 4), np.uint16)],
)  # fmt: skip
def test_png_encoder_round_trips_any_shape(shape: tuple[int, ...], dtype: type, compression: str):
    """Every filter path (flat, noisy, gradients, edges), odd sizes, alpha, 16 bits, an image
    filtered in several blocks of rows (1200 x 1000): independent decoders (Pillow through imageio for 8 bits, GDAL for
    16 bits, which Pillow reads only as 8-bit colour) read back exactly the pixels."""
    rng = np.random.default_rng(sum(shape))
    top = np.iinfo(dtype).max
    image = rng.integers(0, top, size=shape, endpoint=True).astype(dtype)
    image[: shape[0] // 3] = top // 2  # flat block: filter None / Up
    ramp = np.linspace(0, top, shape[1], dtype=np.float64).astype(dtype)
    image[shape[0] // 3 : 2 * shape[0] // 3] = ramp[None, :, None]  # gradient: Sub / Paeth
    level, strategy = PNG_COMPRESSION[compression]
    data = encode_png(image, level, strategy)
    if dtype == np.uint8:
        back = iio.imread(data)
    else:
        with rasterio.MemoryFile(data) as mem, mem.open() as src:
            back = np.moveaxis(src.read(), 0, -1)
    assert back.dtype == dtype
    assert np.array_equal(back.reshape(shape), image)


def test_png_encoder_blocks_see_the_row_above():
    """A large image is filtered in blocks of rows; on a smooth image Up and Paeth win, and they
    refer to the last row of the previous block, which must be carried over correctly (a wrong
    row makes them win where they should not: the decoder then rebuilds other pixels)."""
    i, j = np.mgrid[0:1200, 0:1000]
    image = np.stack([(i * 3 + j) % 256, (i + j * 2) % 256, (i * j // 97) % 256], axis=-1).astype(np.uint8)
    assert np.array_equal(iio.imread(encode_png(image, 6, 2)), image)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 70, 3), (70, 1, 4), (97, 131, 4), (1508, 1346, 3)])
def test_quick_png_encoder_keeps_the_pixels(shape: tuple[int, ...]):
    """The contact sheets' encoder (filter Up on every row, zlib-ng level 2): Pillow reads back
    exactly the pixels, for one row, one column, alpha, and a sheet-sized image."""
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 255, size=shape, endpoint=True).astype(np.uint8)
    image[: shape[0] // 2, : shape[1] // 2] = 255  # a plain background, as on a sheet
    back = iio.imread(encode_png_quick(image))
    assert back.dtype == np.uint8
    assert np.array_equal(back.reshape(shape), image)
    # and msrgb's own decoder of those bytes reads the same pixels
    assert np.array_equal(decode_png_quick(encode_png_quick(image), shape[0] * shape[1]), image)


def test_quick_png_decoder_reads_only_what_the_quick_encoder_writes(tmp_path: Path):
    """The sheets' own decoder returns None for any PNG not laid out as the quick encoder
    writes it (so that Pillow reads it, and says what is wrong with a damaged one): other
    filters, other colour types and depths, other chunks, interlacing, damaged or cut-short
    data, more pixels than allowed, not a PNG at all. It never returns other pixels."""
    from PIL import Image

    rng = np.random.default_rng(5)
    image = rng.integers(0, 255, size=(40, 30, 3), endpoint=True).astype(np.uint8)
    ours = encode_png_quick(image)
    assert np.array_equal(decode_png_quick(ours, 1200), image)
    assert decode_png_quick(ours, 1199) is None  # over the limit
    others = {}
    for name, kwargs, picture in [
        ("pillow rgb", {}, Image.fromarray(image)),
        ("pillow interlaced", {"interlace": 1}, Image.fromarray(image)),
        ("with text", {"pnginfo": _text_chunk()}, Image.fromarray(image)),
        ("grey", {}, Image.fromarray(image[..., 0])),
        ("palette", {}, Image.fromarray(image).quantize(16)),
        ("16-bit", {}, Image.fromarray(image[..., 0].astype(np.uint16) * 200)),
    ]:
        buf = io.BytesIO()
        picture.save(buf, format="PNG", **kwargs)
        others[name] = buf.getvalue()
    up = bytearray(ours)
    others["not a png"] = b"GIF89a" + ours[6:]
    others["cut short"] = ours[: len(ours) // 2]
    others["no end"] = ours[:-12]
    at = ours.index(b"IDAT") + 20
    others["damaged data"] = bytes(up[:at]) + bytes(b ^ 0x5A for b in up[at : at + 40]) + bytes(up[at + 40 :])
    others["empty"] = b""
    end_of_header = 8 + 12 + 13
    others["ours with a text chunk"] = ours[:end_of_header] + pngenc._chunk(b"tEXt", b"a\0b") + ours[end_of_header:]
    others["ours interlaced"] = ours[:28] + b"\x01" + ours[29:]  # (the header's checksum is not read)
    for name, data in others.items():
        got = decode_png_quick(data, 10**9)
        if got is not None:  # only when Pillow's bytes happen to be filtered Up on every row
            assert np.array_equal(got, np.asarray(Image.open(io.BytesIO(data)))), name
        assert got is None or name == "pillow rgb", name


def _text_chunk():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "msrgb")
    return info


def test_write_atomic_never_leaves_a_partial_file(tmp_path: Path):
    target = tmp_path / "a" / "b.png"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.png"]


@pytest.mark.parametrize("short_writes", [False, True])
def test_write_atomic_writes_every_piece_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_writes: bool):
    """Pieces of every size (none, empty, more than one system call takes, over the batch size),
    bytes or a generator; with short writes (a signal can cut a writev short) as well."""
    from msrgb.storage import files

    if short_writes:
        writev = os.writev
        monkeypatch.setattr(os, "writev", lambda fd, views: writev(fd, [b"".join(views)[: 1 + len(views)]]))
    rng = np.random.default_rng(short_writes)
    sizes = [0, 1, 0, 7, 70_000, *rng.integers(0, 300, files._IOV_MAX * 2 + 5), 3 << 20, 5]
    pieces = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    for k, data in enumerate([b"", pieces[:1], pieces[:2], pieces, iter(pieces), b"".join(pieces)]):
        target = tmp_path / f"f{k}.png"
        write_atomic(target, data)
        want = data if isinstance(data, bytes) else b"".join(pieces[: len(data)] if isinstance(data, list) else pieces)
        assert target.read_bytes() == want
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"f{k}.png" for k in range(6)]


@pytest.mark.parametrize("size", [0, 1, 2_000_000])
def test_read_whole_reads_a_file_whatever_size_fstat_said(tmp_path: Path, size: int):
    """The size from fstat, or one the file had before it grew or shrank: all of its bytes."""
    from msrgb.readers.stacked import read_whole

    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "f.tif"
    path.write_bytes(data)
    for said in {size, 0, max(size - 1, 0), size + 1, size + 3_000_000}:
        fd = os.open(path, os.O_RDONLY)
        try:
            assert read_whole(fd, said) == data
        finally:
            os.close(fd)


def test_text_file_named_tif_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a tiff")
    with pytest.raises(InputError, match=r"bad\.tif: is not a TIFF file"):
        Converter(parse_products(["truecolor"])).read(bad)


def test_too_few_bands_is_a_clear_error(tmp_path: Path):
    data = synth.make_tile("Forest", 1)[:3]
    path = tmp_path / "three.tif"
    synth.write_tile(path, data, (0.0, 0.0), 32632)
    with pytest.raises(InputError, match=r"three\.tif: has 3 band\(s\), but product 'truecolor' expects 13 \(B01 "):
        Converter(parse_products(["truecolor"])).read(path)


@pytest.mark.skipif(not SHARED_S2.is_dir(), reason="real Sentinel-2 test scene not available")
def test_real_sentinel2_tile(tmp_path: Path):
    """A EuroSAT-order 13-band stack cut from a real L2A scene (10 m bands at 100 m)."""
    import rasterio

    bands = {}
    with rasterio.open(SHARED_S2 / "B04.tif") as ref:
        window = rasterio.windows.Window(300, 300, 64, 64)
        transform = ref.window_transform(window)
        crs = ref.crs
    for name in ("B02", "B03", "B04", "B08"):
        with rasterio.open(SHARED_S2 / f"{name}.tif") as src:
            bands[name] = src.read(1, window=window)
    stack = np.stack([bands.get(b, np.zeros((64, 64), np.uint16)) for b in synth.EUROSAT_BANDS])
    tif = tmp_path / "s2.tif"
    with rasterio.open(
        tif, "w", driver="GTiff", width=64, height=64, count=13, dtype="uint16",
        crs=crs, transform=transform,
    ) as dst:  # fmt: skip
        dst.write(stack)
    png = tmp_path / "s2.png"
    Converter(parse_products(["truecolor"])).convert(tif, {"truecolor": png})
    assert_png_matches(png, tif)
    rgb = iio.imread(png)
    assert rgb.std() > 5, "a real scene has contrast"


def test_large_files_take_the_on_disk_path_with_the_same_result(tmp_path: Path):
    """Inputs over in_memory_bytes are hashed in chunks and read by GDAL from disk instead of
    from memory: same PNG bytes, same source hash, same error for a truncated file."""
    import hashlib

    from msrgb.readers.gdal import gdal_env

    synth.generate(tmp_path / "tif", 1, classes=("Forest", "River"))
    (product,) = parse_products(["truecolor"])
    results = []
    for limit in (2**30, 0):
        conv = Converter([product], in_memory_bytes=limit)
        out = tmp_path / f"out{limit}"
        with gdal_env():
            shas = [conv.convert(f, {"truecolor": out / f"{f.stem}.png"}) for f in sorted((tmp_path / "tif").rglob("*.tif"))]
        results.append((shas, {p.name: p.read_bytes() for p in out.glob("*.png")}))
    assert results[0] == results[1] and len(results[0][1]) == 2
    tif = sorted((tmp_path / "tif").rglob("*.tif"))[0]
    assert results[0][0][0].source_sha == hashlib.sha256(tif.read_bytes()).hexdigest()
    tif.write_bytes(tif.read_bytes()[:5000])  # truncated in the strips
    messages = []
    for limit in (2**30, 0):
        with gdal_env(), pytest.raises(InputError) as err:
            Converter([product], in_memory_bytes=limit).convert(tif, {"truecolor": tmp_path / "x.png"})
        messages.append(str(err.value))
    # the same words of ours; GDAL's own detail differs between its memory and block readers
    ours = [m.split(" (GDAL: ")[0] for m in messages]
    assert ours[0] == ours[1] == f"{tif}: cannot be read as a GeoTIFF, it may be truncated or damaged"


def test_write_atomic_killed_mid_write_leaves_no_partial_file(tmp_path: Path):
    """kill -9 while a large file is being written: the target is absent or the old file,
    never a part of the new one (a reader may look before anyone resumes)."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    target = tmp_path / "big.png"
    target.write_bytes(b"old")
    writer = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from msrgb.storage.files import write_atomic;"
        "print('go', flush=True);"
        "write_atomic(Path(sys.argv[2]), (b'x' * 2**20 for _ in range(4000)))"  # 4 GB, slow
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", writer, str(REPO), str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "go"
    deadline = time.monotonic() + 30
    while not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")] and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # well into the write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"old"
    leftovers = [p for p in tmp_path.iterdir() if p.name != "big.png"]
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the temporary file
    from msrgb.storage.files import is_stale_temporary

    assert is_stale_temporary(leftovers[0].name), "the next run would not clean it up"
