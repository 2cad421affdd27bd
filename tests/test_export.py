"""A run exported as an ML dataset (docs/ml-export.md), loaded with the real libraries offline:
Hugging Face datasets, webdataset, mlcroissant. One engine run serves the EuroSAT-shaped
assertions; changes run the engine again on a copy."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import rasterio
import yaml
from conftest import REPO, run_engine, run_snakemake

from msrgb import cli, synth

CLASSES = ("AnnualCrop", "Forest", "Highway", "Pasture", "River", "SeaLake")
PER_CLASS = 10

EXPORTS = """
products:
  truecolor:
    export: {format: imagefolder, croissant: true, license: cc-by-4.0, name: EuroSAT-like,
             attribution: "synthetic tiles of msrgb.synth"}
  wds:
    preset: truecolor
    export: {format: webdataset, croissant: true, samples_per_tar: 20, split: {seed: 3}}
"""


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaders must not need the internet, nor a cache outside the test."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def eurosat(root: Path, per_class: int = PER_CLASS, start: int = 1) -> Path:
    synth.generate(root, per_class, classes=CLASSES, start=start)
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of 60 tiles with an ImageFolder and a WebDataset export; returns its folder."""
    work = tmp_path_factory.mktemp("export")
    eurosat(work / "tif")
    (work / "exports.yaml").write_text(EXPORTS)
    run_engine(work, "--configfile", "exports.yaml", input_dir="tif", output_dir="out")
    return work


def manifest(root: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((root / "manifest.csv").read_text())))


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (inode, mtime) - what a rewrite changes."""
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_imagefolder_loads_with_hugging_face_datasets(exported: Path):
    from datasets import load_dataset

    root = exported / "out" / "export" / "truecolor"
    ds = load_dataset(str(root))
    assert sorted(ds) == ["test", "train", "validation"]
    assert (ds["train"].num_rows, ds["validation"].num_rows, ds["test"].num_rows) == (36, 12, 12)
    assert ds["train"].features["label"].names == list(CLASSES)  # index order = classes.txt
    assert (root / "classes.txt").read_text().split() == list(CLASSES)
    rows = {r["path"]: r for r in manifest(root)}
    first = ds["validation"][0]
    label = CLASSES[first["label"]]
    # the decoded image is one of the run's images of that class in the val split
    candidates = [exported / "out" / "truecolor" / r["source"].replace(".tif", ".png")
                  for r in rows.values() if r["split"] == "val" and r["labels"] == label]  # fmt: skip
    assert any(np.array_equal(np.asarray(first["image"]), iio.imread(c)) for c in candidates)
    card = yaml.safe_load((root / "README.md").read_text().split("---")[1])
    assert card["license"] == "cc-by-4.0" and card["task_categories"] == ["image-classification"]
    assert card["size_categories"] == ["n<1K"]
    assert [f["split"] for f in card["configs"][0]["data_files"]] == ["train", "validation", "test"]
    text = (root / "README.md").read_text()
    assert "B04, B03, B02" in text and "DN / 4000" in text and "seed 0" in text
    assert "synthetic tiles of msrgb.synth" in text


def test_every_class_in_every_split_exactly_and_no_image_twice(exported: Path):
    root = exported / "out" / "export" / "truecolor"
    rows = manifest(root)
    assert Counter((r["labels"], r["split"]) for r in rows) == {
        (c, s): n for c in CLASSES for s, n in (("train", 6), ("val", 2), ("test", 2))
    }
    stems = [Path(r["path"]).stem for r in rows]
    assert len(stems) == len(set(stems)) == 60, "a stem in two splits"
    for s in ("train", "val", "test"):
        listed = (root / "splits" / f"{s}.txt").read_text().split()
        assert sorted(listed) == sorted(r["source"].replace(".tif", ".png") for r in rows if r["split"] == s)
    assert not list(root.glob("*/metadata.jsonl")), "a metadata file turns off folder labels"


def test_exported_images_are_the_runs_images(exported: Path):
    out = exported / "out"
    for r in manifest(out / "export" / "truecolor"):
        image = out / "truecolor" / r["source"].replace(".tif", ".png")
        copy = out / "export" / "truecolor" / r["path"]
        assert copy.read_bytes() == image.read_bytes()
        assert os.path.samefile(copy, image), "not a hard link"
        assert r["sha256"] and r["group"] == r["labels"]


def test_webdataset_loads_with_webdataset_and_datasets(exported: Path):
    import webdataset as wds
    from datasets import load_dataset

    root = exported / "out" / "export" / "wds"
    tars = sorted(p.name for p in root.glob("*.tar"))
    assert tars == ["test-000000.tar", "train-000000.tar", "train-000001.tar", "val-000000.tar"]
    seen = Counter()
    for split in ("train", "val", "test"):
        urls = [str(root / t) for t in tars if t.startswith(split)]
        for sample in wds.WebDataset(urls, shardshuffle=False).decode("rgb8"):
            record = sample["json"]
            assert CLASSES[sample["cls"]] == record["labels"][0]
            png = exported / "out" / "wds" / record["source"].replace(".tif", ".png")
            assert np.array_equal(sample["png"], iio.imread(png))
            seen[split] += 1
    assert seen == {"train": 36, "val": 12, "test": 12}
    ds = load_dataset(str(root))
    assert {k: v.num_rows for k, v in ds.items()} == {"train": 36, "validation": 12, "test": 12}
    # another seed than the imagefolder product's: another split of the same images
    one = {r["source"]: r["split"] for r in manifest(root)}
    other = {r["source"]: r["split"] for r in manifest(exported / "out" / "export" / "truecolor")}
    assert one != other and Counter(one.values()) == Counter(other.values())


@pytest.mark.parametrize("product", ["truecolor", "wds"])
def test_croissant_validates_offline_and_counts_the_records(exported: Path, product: str):
    import mlcroissant as mlc

    path = exported / "out" / "export" / product / "croissant.json"
    checked = subprocess.run([str(Path(sys.executable).parent / "mlcroissant"), "validate", "--jsonld", str(path)],
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0 and "Done" in checked.stderr, checked.stderr[-2000:]
    dataset = mlc.Dataset(str(path))  # raises on any validation error
    assert sum(1 for _ in dataset.records("examples")) == 60


def test_a_rerun_changes_nothing_and_a_new_image_only_its_split(exported: Path, tmp_path: Path):
    work = tmp_path / "w"
    shutil.copytree(exported, work, symlinks=True)
    root = work / "out" / "export" / "truecolor"
    rows = {r["source"]: r["split"] for r in manifest(root)}
    before = tree(work / "out" / "export")
    run_engine(work, "--configfile", "exports.yaml", input_dir="tif", output_dir="out")
    assert tree(work / "out" / "export") == before, "a rerun rewrote exported files"

    synth.generate(work / "tif", 1, classes=("Forest",), start=100)
    result = run_engine(work, "--configfile", "exports.yaml", input_dir="tif", output_dir="out")
    assert "export/truecolor" in result.parts
    after = tree(work / "out" / "export")
    new = {r["source"]: r["split"] for r in manifest(root)}
    assert {k: v for k, v in new.items() if k in rows} == rows, "an image moved to another split"
    split = new["Forest/Forest_100.tif"]
    changed = {p for p in after if before.get(p) != after[p]}
    allowed = {"truecolor/README.md", "truecolor/manifest.csv", "truecolor/croissant.json",
               f"truecolor/splits/{split}.txt", f"truecolor/{split}/Forest/Forest_100.png",
               "wds/README.md", "wds/manifest.csv", "wds/croissant.json"}  # fmt: skip
    wds_split = {r["source"]: r["split"] for r in manifest(work / "out" / "export" / "wds")}["Forest/Forest_100.tif"]
    allowed |= {p for p in after if p.startswith(f"wds/{wds_split}-") or p == f"wds/splits/{wds_split}.txt"}
    assert changed <= allowed and f"truecolor/{split}/Forest/Forest_100.png" in changed, changed - allowed
    assert not set(before) - set(after)


def test_the_same_inputs_and_seed_give_the_same_split_anywhere(tmp_path: Path, exported: Path):
    """Other cores, shards and folder order: the same split (a seeded hash of names)."""
    work = tmp_path / "w"
    shutil.copytree(exported / "tif", work / "elsewhere" / "tif")
    (work / "exports.yaml").write_text(EXPORTS)
    run_engine(work, "--cores", "1", "--configfile", "exports.yaml", input_dir="elsewhere/tif", output_dir="o",
               shards=4, threads_per_shard=1)  # fmt: skip
    for product in ("truecolor", "wds"):
        one = (exported / "out" / "export" / product / "manifest.csv").read_text()
        assert (work / "o" / "export" / product / "manifest.csv").read_text() == one


def test_msrgb_export_makes_the_same_files_from_a_finished_run(exported: Path, tmp_path: Path):
    work = tmp_path / "w"
    eurosat(work / "tif")
    run_engine(work, input_dir="tif", output_dir="out")
    assert not (work / "out" / "export").exists()
    code = cli.main(["export", str(work / "out"), "--croissant", "--license", "cc-by-4.0", "--name", "EuroSAT-like",
                     "--attribution", "synthetic tiles of msrgb.synth"])  # fmt: skip
    assert code == 0
    mine, theirs = work / "out" / "export" / "truecolor", exported / "out" / "export" / "truecolor"
    for name in ("manifest.csv", "classes.txt", "README.md", "croissant.json", "splits/train.txt"):
        assert (mine / name).read_text() == (theirs / name).read_text(), name


def bigearthnet(root: Path, n: int) -> dict[str, list[str]]:
    """``n`` BigEarthNet-shaped patches with their *_labels_metadata.json; returns the labels."""
    names = ["Coniferous forest", "Pastures", "Sea and ocean", "Urban fabric", "Water bodies"]
    labels = {}
    for i, folder in enumerate(synth.generate_bigearthnet(root, n)):
        chosen = sorted({names[i % 5], names[(i * 3 + 1) % 5]})
        labels[folder.name] = chosen
        meta = {"labels": chosen, "coordinates": {}, "projection": "", "tile_source": "", "acquisition_date": ""}
        (folder / f"{folder.name}_labels_metadata.json").write_text(json.dumps(meta))
    return labels


def test_bigearthnet_exports_multi_label_and_loads_with_the_label_lists(tmp_path: Path):
    from datasets import load_dataset

    labels = bigearthnet(tmp_path / "ben", 20)
    run_engine(tmp_path, input_dir="ben", output_dir="out", layout="band_folders",
               export={"split": {"by": "group", "group": "scene", "ratios": [1.0, 0.0]}})  # fmt: skip
    root = tmp_path / "out" / "export" / "truecolor"
    ds = load_dataset(str(root))
    assert list(ds) == ["train"] and ds["train"].num_rows == 20
    for row in ds["train"]:
        assert sorted(row["labels"]) == labels[row["id"]], row["id"]
    assert (root / "classes.txt").read_text().splitlines() == sorted({x for v in labels.values() for x in v})
    card = (root / "README.md").read_text()
    assert "multi-label-image-classification" in card and "BigEarthNet" in card
    rows = manifest(root)
    assert {r["group"] for r in rows} == {"S2A_20170613T101031"}  # one scene: one group


def test_groups_stay_whole(tmp_path: Path):
    """by group: a folder, a pattern, a grid cell of the georeferencing: no group in two splits."""
    root = tmp_path / "tif"
    for c in CLASSES[:3]:
        for region in range(6):
            for i in range(3):
                synth.write_tile(root / c / f"r{region}" / f"{c}_{region}_{i}.tif", synth.make_tile(c, 10 * region + i),
                                 (500000.0 + 20000 * region, 5005000.0 + 640 * i), 32632)  # fmt: skip
    cases = (("folder", lambda s: s.rsplit("/", 1)[0]), (r"_(\d)_", lambda s: s.split("_")[-2]),
             ("grid", lambda s: s.split("/")[1]))  # fmt: skip
    for n, (group, key) in enumerate(cases):
        out = f"out{n}"
        run_engine(tmp_path, input_dir="tif", output_dir=out,
                   export={"split": {"by": "group", "group": group, "cell": 10000, "ratios": [0.5, 0.5]}})  # fmt: skip
        rows = manifest(tmp_path / out / "export" / "truecolor")
        assert len(rows) == 54
        by_group: dict[str, set[str]] = {}
        for r in rows:
            by_group.setdefault(key(r["source"]), set()).add(r["split"])
        assert all(len(s) == 1 for s in by_group.values()), (group, by_group)
        assert {r["split"] for r in rows} == {"train", "test"}


def test_split_lists_of_jpg_names_as_the_standard_eurosat_lists(tmp_path: Path):
    eurosat(tmp_path / "tif", 4)
    names = sorted(p.stem for p in (tmp_path / "tif").rglob("*.tif"))  # 4 per class, in class order
    lists = {"train": names[0::4] + names[1::4], "val": names[2::4], "test": names[3::4]}
    for split, stems in lists.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{s}.jpg\n" for s in stems))
    files = {s: str(tmp_path / f"{s}.txt") for s in lists}
    run_engine(tmp_path, input_dir="tif", output_dir="out", export={"split": {"by": "files", "files": files}})
    got = {Path(r["path"]).stem: r["split"] for r in manifest(tmp_path / "out" / "export" / "truecolor")}
    assert got == {s: split for split, stems in lists.items() for s in stems}


def _refused(tmp_path: Path, export: dict, words: str, root: str = "tif") -> None:
    proc = run_engine(tmp_path, check=False, input_dir=root, output_dir="out", export=export)
    assert proc.returncode == 1 and words in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "export").exists(), "something was written before the error"


@pytest.mark.parametrize(
    "case, export, words",
    [
        ("too few images", {"split": {"ratios": [0.5, 0.25, 0.25]}}, "has none in the"),
        ("name in two lists", {"split": {"by": "files", "files": {"train": "a.txt", "test": "b.txt"}}},
         "is in the train and the test lists"),
        ("list of missing images", {"split": {"by": "files", "files": {"train": "c.txt"}}},
         "1 name(s) in the lists are not images of this run"),
        ("labels without a row", {"labels": "labels.csv"}, "has no row for 1 image(s)"),
        ("scene without a name", {"split": {"by": "group", "group": "scene"}}, "no Sentinel-2 product name"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_export_settings_are_named_before_anything_is_written(tmp_path: Path, case: str, export: dict, words: str):
    eurosat(tmp_path / "tif", 2)
    names = sorted(p.stem for p in (tmp_path / "tif").rglob("*.tif"))
    (tmp_path / "a.txt").write_text(f"{names[0]}.jpg\n{names[1]}.jpg\n")
    (tmp_path / "b.txt").write_text(f"{names[1]}.jpg\n")
    (tmp_path / "c.txt").write_text(f"{names[0]}.tif\nNoSuchTile_9.jpg\n")
    (tmp_path / "labels.csv").write_text("image,label\n" + "".join(f"{n}.tif,x\n" for n in names[1:]))
    export = {k: ({**v, "files": {s: str(tmp_path / f) for s, f in v["files"].items()}} if k == "split" and "files" in v else v)
              for k, v in export.items()}  # fmt: skip
    if "labels" in export:
        export["labels"] = str(tmp_path / export["labels"])
    _refused(tmp_path, export, words)


@pytest.mark.parametrize("folder", ["test", "val", "Eval"])
def test_class_folders_named_like_splits_are_refused(tmp_path: Path, folder: str):
    synth.generate(tmp_path / "tif", 3, classes=("Forest", "River"))
    shutil.move(tmp_path / "tif" / "River", tmp_path / "tif" / folder)
    _refused(tmp_path, {"format": "imagefolder"}, "reads as split")


def test_dotted_names_are_refused_for_webdataset(tmp_path: Path):
    eurosat(tmp_path / "tif", 3)
    shutil.move(tmp_path / "tif" / "Forest" / "Forest_1.tif", tmp_path / "tif" / "Forest" / "Forest_1.v2.tif")
    _refused(tmp_path, {"format": "webdataset"}, "have a dot before the suffix")


def test_names_with_line_breaks_are_refused(tmp_path: Path):
    eurosat(tmp_path / "tif", 3)
    shutil.move(tmp_path / "tif" / "Forest" / "Forest_1.tif", tmp_path / "tif" / "Forest" / "Forest\n1.tif")
    _refused(tmp_path, {}, "hold a line break")


def test_odd_names_export_and_load(tmp_path: Path):
    """Spaces, quotes, non-ASCII letters, commas and nested folders: exported, listed in
    manifest.csv and loaded."""
    from datasets import load_dataset

    eurosat(tmp_path / "tif", 3)
    odd = ["with space", "quote'single", "Zürich, \"Ærø\" 日本", "a/b/nested"]
    for i, name in enumerate(odd):
        synth.write_tile(tmp_path / "tif" / "Forest" / f"{name}.tif", synth.make_tile("Forest", 50 + i), (0.0, 0.0), 32632)
    run_engine(tmp_path, input_dir="tif", output_dir="out", export={"split": {"ratios": [0.5, 0.5]}})
    root = tmp_path / "out" / "export" / "truecolor"
    rows = manifest(root)
    assert sorted(r["source"] for r in rows if "_" not in Path(r["source"]).name) == sorted(f"Forest/{n}.tif" for n in odd)
    assert any(r["path"].endswith("/Forest/a__b__nested.png") for r in rows)
    for r in rows:
        assert (root / r["path"]).read_bytes() == (tmp_path / "out" / "truecolor" / r["source"].replace(".tif", ".png")).read_bytes()
    ds = load_dataset(str(root))
    assert ds["train"].num_rows + ds["test"].num_rows == 22


def test_ratios_that_do_not_add_up_are_refused_by_planning(tmp_path: Path):
    eurosat(tmp_path / "tif", 3)
    _refused(tmp_path, {"split": {"ratios": [0.5, 0.3, 0.3]}}, "add up to 1")
    assert not (tmp_path / "out").exists()


def test_eurosat_rgb_jpeg_is_gdal_translates_scaling(tmp_path: Path):
    """The preset's pixels before JPEG are those of gdal_translate -scale 0 2750 1 255 (a VRT
    with the same ScaleOffset/ScaleRatio, read by GDAL), and its JPEG is quality 100."""
    tif = tmp_path / "tif" / "Forest" / "Forest_1.tif"
    synth.write_tile(tif, synth.make_tile("Industrial", 3) * 2, (500000.0, 5000000.0), 32632)  # values above 2750 too
    config = tmp_path / "p.yaml"
    config.write_text("products:\n  exact: {preset: eurosat_rgb_jpeg, format: png}\n  eurosat_rgb_jpeg:\n")
    run_engine(tmp_path, "--configfile", str(config), input_dir="tif", output_dir="out")
    with rasterio.open(tif) as src:
        width, height = src.width, src.height
    sources = "".join(
        f'<VRTRasterBand dataType="Byte" band="{i}"><ComplexSource><SourceFilename relativeToVRT="0">{tif}</SourceFilename>'
        f"<SourceBand>{b}</SourceBand><ScaleOffset>1</ScaleOffset><ScaleRatio>{254 / 2750!r}</ScaleRatio></ComplexSource></VRTRasterBand>"
        for i, b in enumerate((4, 3, 2), 1)
    )
    vrt = tmp_path / "scaled.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{sources}</VRTDataset>')
    with rasterio.open(vrt) as src:
        gdal = np.moveaxis(src.read(), 0, -1)
    assert gdal.max() == 255 and gdal.min() >= 1
    assert np.array_equal(iio.imread(tmp_path / "out" / "exact" / "Forest" / "Forest_1.png"), gdal)
    from PIL import Image

    with Image.open(tmp_path / "out" / "eurosat_rgb_jpeg" / "Forest" / "Forest_1.jpg") as jpeg:
        assert jpeg.format == "JPEG" and jpeg.info.get("progressive") is None
        decoded = np.asarray(jpeg.convert("RGB"), dtype=np.int16)
    assert np.abs(decoded - gdal).mean() < 1.0  # quality 100: within JPEG's rounding


def test_the_export_rule_runs_after_the_summary_and_only_when_needed(tmp_path: Path):
    """Under Snakemake: the export job runs after the summary, a rerun does nothing, a changed
    export setting runs only the export job."""
    eurosat(tmp_path / "tif", 3)
    (tmp_path / "a.yaml").write_text("export: {croissant: true}\n")
    run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "a.yaml", input_dir="tif", output_dir="out")
    assert (tmp_path / "out" / "export" / "truecolor" / "croissant.json").exists()
    again = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "a.yaml", input_dir="tif", output_dir="out")
    assert "Nothing to be done" in again.stderr
    (tmp_path / "a.yaml").write_text("export: {croissant: false, format: webdataset}\n")
    changed = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "a.yaml", input_dir="tif", output_dir="out")
    assert "export_dataset" in changed.stderr and "convert_shard" not in changed.stderr, changed.stderr[-3000:]
    root = tmp_path / "out" / "export" / "truecolor"
    assert sorted(p.name for p in root.glob("*.tar")) == ["test-000000.tar", "train-000000.tar", "val-000000.tar"]
    assert not (root / "train").exists(), "the ImageFolder files of the earlier export are left"
    # a small change (one job for its shards, sheets and summary) runs the export after it
    eurosat(tmp_path / "tif", 4, start=4)
    small = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "a.yaml", input_dir="tif", output_dir="out")
    assert "convert_changes" in small.stderr and "export_dataset" in small.stderr, small.stderr[-3000:]
    manifest = (root / "manifest.csv").read_text()
    assert "_7.png" in manifest and len(manifest.splitlines()) == 1 + 7 * len(CLASSES), manifest
    again = run_snakemake(tmp_path, "--configfile", str(REPO / "config" / "config.yaml"), "a.yaml", input_dir="tif", output_dir="out")
    assert "Nothing to be done" in again.stderr


def test_a_products_own_export_setting_comes_before_the_top_level_one():
    """The rule the workflow and `msrgb export --config` share."""
    from msrgb.config.export import export_spec

    config = {"export": {"format": "webdataset"}, "products": {"a": {"export": False}, "b": {"preset": "truecolor"}, "c": None}}
    assert export_spec(config, "a") == (False, "products.a.export")
    assert export_spec(config, "b") == ({"format": "webdataset"}, "export")
    assert export_spec(config, "c") == ({"format": "webdataset"}, "export")
    assert export_spec({"products": ["a"], "export": True}, "a") == (True, "export")
    assert export_spec({"products": ["a"]}, "a") == (None, "export")
