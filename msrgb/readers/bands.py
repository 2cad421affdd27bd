"""Reading an image made of one file per band (``layout: band_folders``): only the files of the
bands the products need, each opened once (plain TIFFs decoded without GDAL, the others by GDAL),
checked to share one grid, and resampled by GDAL onto the grid of the finest band used."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.io import DatasetReader, MemoryFile
from rasterio.warp import reproject

from msrgb.config.products import Product
from msrgb.errors import InputError, ReadInBlocks
from msrgb.radiometry.decide import (
    Candidates,
    Rule,
    baseline_of_metadata,
    decide,
    resolve_check,
    shifted_share,
    stac_rule,
)
from msrgb.radiometry.scaling import Scaling, from_gdal, read_safe_metadata
from msrgb.readers.band_blocks import (
    PREVIEW_FOR_CHECK,
    SAME_CRS,
    LargeBandImage,
    OpenBand,
    TargetGrid,
    _bounds,
    _show,
)
from msrgb.readers.band_image import BandImage, ZipLoaded
from msrgb.readers.gdal import LARGE_IMAGE_ENV, check_dtype, input_errors
from msrgb.readers.stacked import (
    IN_MEMORY_BYTES,
    MAX_PIXELS,
    TileReader,
    file_scaling,
    quicklook_shape,
)
from msrgb.readers.tiff import PlainTiff, read_plain
from msrgb.readers.zipped import ZipMember, open_zipped
from msrgb.sources.geotags import gdal_metadata, read_grid, scale_offset_items
from msrgb.storage.locations import Location, RemotePath
from msrgb.storage.remote import gdal_name
from msrgb.storage.remote import get as get_object
from msrgb.tile import Tile


class BandReader:
    """Reads the bands the products need from the band files of an image. Thread-safe."""

    def __init__(
        self, products: Sequence[Product], in_memory_bytes: int = IN_MEMORY_BYTES, max_pixels: int = MAX_PIXELS
    ):
        self.products = list(products)
        self.in_memory_bytes = in_memory_bytes
        self.needed = sorted({i for p in self.products for i in p.indices})
        self.names = [self.products[0].band_map[i] for i in self.needed] if self.products else []
        self.georef = any(p.needs_georef for p in self.products)
        self._loader = TileReader(self.products, in_memory_bytes, max_pixels)
        self.max_size, self.resampling = self._loader.max_size, self._loader.resampling

    def select(self, image: BandImage) -> list[tuple[str, str, Location | ZipMember]]:
        """The file of each needed band, in the order of ``self.needed``; a band missing or
        there twice is a bad input."""
        chosen = []
        for name in self.names:
            files = [f for f in image.files if f[0] == name]
            if not files:
                users = [p.name for p in self.products if name in p.bands]
                raise InputError(
                    f"{image.folder}: no file for band {name} (needed by product "
                    f"{', '.join(users)}); files are named by band_pattern"
                )
            if len(files) > 1:
                raise InputError(
                    f"{image.folder}: band {name} is in {len(files)} files at the same "
                    f"resolution ({', '.join(rel for _, rel, _ in files)}); keep one"
                )
            chosen.append(files[0])
        return chosen

    def is_large(self, image: BandImage) -> bool:
        """True if the image is read in blocks of rows (its files are larger than
        ``in_memory_bytes`` together, and no ``max_size`` makes it small)."""
        if self.max_size is not None or image.zipped is not None:
            return False  # a zipped product: on the decoded size, when it is read
        total = 0
        for _, _, path in self.select(image):
            if isinstance(path, RemotePath):  # all its band files, the needed ones among them
                return image.listed_size > self.in_memory_bytes
            assert not isinstance(path, ZipMember), "a zipped product's files are not looked at here"
            try:
                total += os.stat(path).st_size
            except OSError:
                pass  # reported when the file is read
        return total > self.in_memory_bytes

    def read(self, image: BandImage, zip_loaded: ZipLoaded | None = None) -> tuple[Tile, dict[str, str]]:
        """The needed bands on one grid (the finest band's, or smaller for ``max_size``), and
        the SHA-256 of each file read (path relative to the input folder -> digest; a zipped
        product's: the zip's, once loaded into ``zip_loaded``). Raises :class:`InputError`
        naming the file or folder."""
        with ExitStack() as stack:
            image, shas = self._unzip(image, stack, zip_loaded)
            bands, target, shas = self._open_all(image, stack, shas, plain=self.max_size is None)
            itemsize = np.dtype(bands[0].src.dtypes[0]).itemsize
            if self.max_size is None and target.rows * target.cols * len(bands) * itemsize > self.in_memory_bytes:
                raise ReadInBlocks(image.folder)  # small on disk, large decoded
            out_rows, out_cols = quicklook_shape(target.rows, target.cols, self.max_size)
            arrays = {}
            for index, band in zip(self.needed, bands):
                with input_errors(band.path):
                    if (out_rows, out_cols) != (target.rows, target.cols):
                        # a quicklook: GDAL reads from the overviews where the file has them
                        arrays[index] = band.src.read(1, out_shape=(out_rows, out_cols), resampling=self.resampling)
                    elif target.holds(band):
                        arrays[index] = band.src.read(1)
                    else:
                        arrays[index] = self._resampled(band, band.src.read(1), target, target.transform, target.rows)
            scaling, overrides = self._scaling(image, bands, shas, lambda: arrays)
            tile = Tile(arrays, target.nodata, scaling=scaling, overrides=overrides)
            if self.georef:
                scale = Affine.scale(target.cols / out_cols, target.rows / out_rows)
                tile.transform = target.transform @ scale
                tile.crs_wkt = target.crs_wkt()
            return tile, shas

    @contextmanager
    def open_large(
        self, image: BandImage, zip_loaded: ZipLoaded | None = None
    ) -> Iterator[tuple[LargeBandImage, dict[str, str]]]:
        """Open an image to read in blocks of rows, and the SHA-256 of each file."""
        with rasterio.Env(**LARGE_IMAGE_ENV), ExitStack() as stack:
            image, shas = self._unzip(image, stack, zip_loaded)
            bands, target, shas = self._open_all(image, stack, shas)
            large = LargeBandImage(self, image, bands, target, {})

            def preview() -> dict[int, np.ndarray]:
                return large.preview(PREVIEW_FOR_CHECK).bands

            large.scaling, large.overrides = self._scaling(image, bands, shas, preview)
            yield large, shas

    def _scaling(
        self,
        image: BandImage,
        bands: Sequence[OpenBand],
        shas: dict[str, str],
        data: Callable[[], dict[int, np.ndarray]],
    ) -> tuple[dict[int, Candidates], frozenset[str]]:
        """Band index -> what is known of each needed band's radiometric scaling (for
        :func:`msrgb.radiometry.decide.decide`): its STAC Item's rule, the band file's own GDAL scale and
        offset, its product's metadata file (then added to the files read, ``shas``); and what
        the decisions override of what the input declares. ``data`` gives the bands' values,
        for a rule that awaits them."""
        declared = {}
        if image.metadata is not None:
            rel, source = image.metadata
            if isinstance(source, bytes):  # in a zipped product, whose SHA-256 is the record
                assert image.zipped is not None
                declared = read_safe_metadata(Path(rel).name, self.names, source, where=f"{image.zipped[1]}/{rel}")
            else:
                declared = read_safe_metadata(source, self.names)
                shas[rel] = self._loader.load(source)[1]
        rules = self._rules(image, shas)
        overrides = {rule.override for rule in rules.values() if rule.override is not None}
        stac: dict[str, Scaling | None] = {name: rule.scaling for name, rule in rules.items() if not rule.check_data}
        checked = [name for name, rule in rules.items() if rule.check_data]
        if checked:
            values = data()
            share = shifted_share({n: values[i] for i, n in zip(self.needed, self.names)})
            for name in checked:
                stac[name], why = resolve_check(rules[name], share)
                if why is not None:
                    overrides.add(why)
        found = {}
        for index, name, band in zip(self.needed, self.names, bands):
            candidates = Candidates(stac=stac.get(name), file=band.scaling, metadata=declared.get(name))
            if decide(candidates) is not None:
                found[index] = candidates
        return found, frozenset(overrides)

    def _rules(self, image: BandImage, shas: dict[str, str]) -> dict[str, Rule]:
        """Band name -> its STAC Item's rule (msrgb.radiometry.decide.stac_rule), with the processing
        baseline from the Item's product metadata asset where the Item states none (the
        metadata file is then added to the files read, ``shas``)."""
        item = image.item
        if item is None:
            return {}
        rules = {name: item.rule(name) for name in self.names if name in item.assets}
        if any(rule.needs_baseline for rule in rules.values()) and image.item_metadata is not None:
            rel, path = image.item_metadata
            data, sha = self._loader.load(path)
            shas[rel.partition("?")[0]] = sha
            baseline = baseline_of_metadata(data if data is not None else Path(str(path)).read_bytes(), path)
            rules = {name: stac_rule(item.facts, item.assets[name], baseline) for name in rules}
        return {name: rule for name, rule in rules.items() if rule.scaling is not None or rule.check_data}

    def _resampled(
        self, band: OpenBand, data: np.ndarray, target: TargetGrid, transform: Affine, rows: int
    ) -> np.ndarray:
        """``data`` (the whole band) on ``rows`` rows of the target grid starting at
        ``transform`` (GDAL's warper: the same values whether read whole or in blocks)."""
        out = np.zeros((rows, target.cols), data.dtype)
        crs = band.crs or SAME_CRS
        with input_errors(band.path):
            reproject(
                data, out, src_transform=band.transform, src_crs=crs, dst_transform=transform,
                dst_crs=crs, resampling=self.resampling, src_nodata=None, dst_nodata=None,
            )  # fmt: skip
        return out

    def _load(self, path: Location | ZipMember) -> tuple[bytes | None, str]:
        """The bytes and SHA-256 of a band file (:meth:`TileReader.load`); for a quicklook of a
        file at an http(s) URL or in S3 neither: GDAL reads its header and the overview it needs
        with range requests (no SHA-256 then, as the whole file is never read); for a band file
        in a zipped product neither (GDAL reads it in the zip, whose SHA-256 is the record)."""
        if isinstance(path, ZipMember) or (self.max_size is not None and isinstance(path, RemotePath)):
            return None, ""
        return self._loader.load(path)

    def _unzip(
        self, image: BandImage, stack: ExitStack, loaded: ZipLoaded | None
    ) -> tuple[BandImage, dict[str, str] | None]:
        """A zipped product's band files (msrgb.readers.zipped) for GDAL to read while ``stack`` lasts,
        and its SHA-256 as the record of what was read (the zip's bytes and SHA-256 are kept in
        ``loaded``, for a second reading in blocks); other images as they are."""
        if image.zipped is None:
            return image, None
        rel, path = image.zipped
        if loaded is None:
            loaded = ZipLoaded()
        if loaded.sha is None:
            loaded.data, loaded.sha = self._loader.load(path)
        found = stack.enter_context(open_zipped(path, loaded.data, self.names))
        if not isinstance(path, RemotePath):
            loaded.data = None  # read again from disk if need be
        metadata = (f"{image.folder.name}/{found.metadata[0]}", found.metadata[1]) if found.metadata else None
        return replace(image, files=found.files, metadata=metadata), {rel: loaded.sha}

    def _open_all(
        self, image: BandImage, stack: ExitStack, record: dict[str, str] | None = None, plain: bool = False
    ) -> tuple[list[OpenBand], TargetGrid, dict[str, str]]:
        """Hash and open the file of each needed band and check that they share one grid. The
        SHA-256 of what was read are those of the band files, or ``record`` where given (a
        zipped product's). With ``plain`` (the bands are read whole), a plain TIFF whose grid
        its GeoTIFF tags give is decoded without GDAL (:class:`PlainBandFile`)."""
        loaded = [(rel, path, *self._load(path)) for _, rel, path in self.select(image)]
        shas = dict(record) if record is not None else {rel.partition("?")[0]: sha for rel, _, _, sha in loaded}
        grids = [read_grid(data) if data is not None else None for _, _, data, _ in loaded]
        by_tags = all(g is not None for g in grids) and len({g.crs_key for g in grids}) == 1  # type: ignore[union-attr]
        gdal_georef = self.georef or not by_tags
        bands = []
        for (rel, path, data, _), grid in zip(loaded, grids):
            # the grid by the GeoTIFF tags, and the file plain: no GDAL
            decoded = read_plain(data, [0], self.in_memory_bytes) if plain and data is not None and not gdal_georef else None
            if decoded is not None:
                assert grid is not None
                transform = Affine(grid.pixel_x, 0, grid.origin_x, 0, grid.pixel_y, grid.origin_y)
                bands.append(OpenBand(rel, path, PlainBandFile(decoded), transform, None, None))
                continue
            src = stack.enter_context(self._open(path, data, gdal_georef))
            if by_tags:
                assert grid is not None
                transform = Affine(grid.pixel_x, 0, grid.origin_x, 0, grid.pixel_y, grid.origin_y)
            else:
                transform = src.transform
            scaling = from_gdal(src.scales[0], src.offsets[0])
            bands.append(OpenBand(rel, path, src, transform, src.crs if gdal_georef else None, scaling))
        self._check_files(image, bands)
        target = self._target(image, bands, gdal_georef)
        self._loader.check_pixels(image.folder, target.cols, target.rows)
        return bands, target, shas

    @contextmanager
    def _open(self, path: Location | ZipMember, data: bytes | None, georef: bool) -> Iterator[DatasetReader]:
        options = {} if georef else {"GEOREF_SOURCES": "NONE"}
        with ExitStack() as stack:
            with input_errors(path, data):
                if data is None:
                    if isinstance(path, ZipMember):
                        name: str | Location = path.gdal_name
                    else:
                        name = gdal_name(path) if isinstance(path, RemotePath) else path
                    src = DatasetReader(name, sharing=False, **options)
                else:
                    memfile = stack.enter_context(MemoryFile(data))
                    try:
                        src = DatasetReader(memfile.name, sharing=False, **options)
                    except rasterio.errors.RasterioIOError:
                        if isinstance(path, RemotePath):
                            raise  # no file to open: GDAL's message about the bytes
                        src = DatasetReader(path, sharing=False, **options)  # GDAL names the file
            stack.callback(src.close)
            yield src

    def _check_files(self, image: BandImage, bands: Sequence[OpenBand]) -> None:
        """One band per file, a supported data type, the same for all."""
        for band in bands:
            if band.src.count != 1:
                raise InputError(f"{band.path}: has {band.src.count} bands; a band file must have one")
            check_dtype(band.path, band.src.dtypes[0])
        if len({b.src.dtypes[0] for b in bands}) > 1:
            listing = ", ".join(f"{b.rel} {b.src.dtypes[0]}" for b in bands)
            raise InputError(f"{image.folder}: the band files have different data types ({listing})")

    def _target(self, image: BandImage, bands: Sequence[OpenBand], gdal_georef: bool) -> TargetGrid:
        """The finest band's grid, after checking that every band covers the same area in the
        same CRS (to half a pixel of the finest band)."""
        finest = max(bands, key=lambda b: b.src.width * b.src.height)
        rows, cols = finest.src.height, finest.src.width
        if gdal_georef:
            with_crs = [b for b in bands if b.crs is not None]
            if not with_crs:  # no georeferencing at all: the files are taken to cover one area
                if self.georef:
                    raise InputError(
                        f"{image.folder}: the band files have no georeferencing (CRS and "
                        "transform), but a product asks for a world file"
                    )
                for b in bands:
                    b.transform = Affine.scale(cols / b.src.width, rows / b.src.height)
                return TargetGrid(rows, cols, Affine.identity(), None, finest.src.nodata)
            if len(with_crs) < len(bands) or any(b.crs != finest.crs for b in bands):
                listing = ", ".join(f"{b.rel}: {b.crs.to_string() if b.crs else 'no CRS'}" for b in bands)
                raise InputError(f"{image.folder}: the band files are not in one CRS ({listing})")
        tolerance = abs(finest.transform.a) / 2
        reference = _bounds(finest.transform, rows, cols)
        for b in bands:
            bounds = _bounds(b.transform, b.src.height, b.src.width)
            if any(abs(x - y) > tolerance for x, y in zip(bounds, reference)):
                raise InputError(
                    f"{image.folder}: the band files do not cover the same area: {b.rel} "
                    f"{_show(bounds)}, {finest.rel} {_show(reference)}"
                )
        return TargetGrid(rows, cols, finest.transform, finest.crs, finest.src.nodata)


def declared_scaling(path: Location) -> list[int]:
    """Bands (0-based) of one file with a scale or offset other than 1 and 0."""
    if isinstance(path, RemotePath):
        with rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile(get_object(path)) as memfile:
            with DatasetReader(memfile.name, sharing=False, GEOREF_SOURCES="NONE") as src:
                return list(file_scaling(src, range(src.count)))
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            metadata = gdal_metadata(str(path))
        except ValueError:
            pass  # not a classic TIFF (BigTIFF): GDAL reads it below
        else:
            if metadata is None:
                return []
            items = scale_offset_items(metadata)
            return [i for i, v in items.items() if from_gdal(v.get("scale"), v.get("offset")) is not None]
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), DatasetReader(path, sharing=False, GEOREF_SOURCES="NONE") as src:
        return list(file_scaling(src, range(src.count)))


class PlainBandFile:
    """A band file decoded without GDAL (msrgb.readers.tiff), standing in for GDAL's dataset
    where the band files are read whole: what the reading of band files asks of one. It declares
    no scale or offset: read_plain leaves files whose GDAL metadata does to GDAL."""

    def __init__(self, plain: PlainTiff):
        self._plain = plain
        self.count = plain.count
        self.dtypes = (plain.dtype,) * plain.count
        self.nodata = plain.nodata
        self.height, self.width = plain.bands[0].shape
        self.shape = (self.height, self.width)

    def read(self, index: int) -> np.ndarray:
        """Band ``index``: 1, the only one decoded (a file of more is refused by its count)."""
        assert index == 1, index
        return self._plain.bands[0]
