"""Contact sheets, run summary and the Snakemake HTML report, from real runs."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from conftest import run_engine, run_snakemake

from msrgb import synth
from msrgb.outputs.sheet_lists import SheetGeometry
from msrgb.render.sheets import thumbnail


def parts_of(data, suffixes: dict[str, str], rng) -> list:
    """The records of ``data`` dealt out by input path to 1-4 shards at random, each shard's
    summary part made from its share: what the summary merges."""
    from msrgb.jobs.summary_parts import shard_part
    from msrgb.outputs.state import StateData

    shards = [StateData(envs=dict(data.envs)) for _ in range(rng.randint(1, 4))]
    where: dict[str, StateData] = {}
    for table in ("records", "provenance", "clipping", "radiometry"):
        for key, value in getattr(data, table).items():
            shard = where.setdefault(key[0], rng.choice(shards))
            getattr(shard, table)[key] = value
    for rel, value in data.skipped.items():
        where.setdefault(rel, rng.choice(shards)).skipped[rel] = value
    return [shard_part(shard, suffixes) for shard in shards]


def test_folder_sheets_show_files_in_the_order_people_number_them() -> None:
    """The first files of a folder by name, runs of digits counted as numbers: against the
    order of (text, number, text, ...) keys worked out here for names of any shape."""
    from msrgb.planning.sheet_plan import choose
    from msrgb.sources.discovery import Source, first_by_name

    rng = random.Random(7)
    pieces = ["", "a", "A", "tile_", "é", " ", "-", ".", "x1y", "B0", "_"]
    for _ in range(40):
        names: set[str] = set()
        while len(names) < rng.randint(1, 60):
            numbers = [str(rng.choice([0, 1, 2, 9, 10, 11, 99, 100, 1000000, rng.randint(0, 10**12)])) for _ in range(3)]
            parts = [rng.choice(pieces) + n.zfill(rng.choice([0, 0, 3])) for n in numbers[: rng.randint(0, 3)]]
            names.add("".join(parts) + rng.choice(["", "z"]) + ".tif")
        rels = sorted(f"folder 1/{n}" for n in names)
        want = sorted(rels, key=lambda rel: (_by_numbers(rel), rel))
        per_folder = rng.choice([0, 1, 5, 100])
        sheets, _ = choose([Source(rel, 1, 1) for rel in rels], per_folder, 2)
        assert [s.rel for s in sheets["folder 1"]] == (want[:per_folder] if per_folder else want)
    # folders of names of one shape (a text, a number, a text: ordered by the numbers alone),
    # some with one name of another shape among them
    odd = ["", "x", "a\n7.tif", "a7\nb.tif", "a٣.tif", "a²b.tif", "a1b2.tif", "a.tif", "a1", "aa1.tif"]
    for _ in range(200):
        head, tail = rng.choice(["a", "f a_", "", "1a", "a\n"]), rng.choice([".tif", "", "a", "\na", "b.tif"])
        names = {f"{head}{str(rng.randint(0, 200)).zfill(rng.choice([0, 3]))}{tail}" for _ in range(rng.randint(1, 30))}
        names |= set(rng.sample(odd, rng.choice([0, 0, 1, 2])))
        if rng.random() < 0.2:  # a name that reads as two
            names.add(f"{head}{rng.randint(0, 200)}{tail}\n{head}{rng.randint(0, 200)}{tail}")
        rels = sorted(f"folder 1/{n}" for n in names)
        want = sorted(rels, key=lambda rel: (_by_numbers(rel), rel))
        per_folder = rng.choice([0, 3, 100])
        sheets, _ = choose([Source(rel, 1, 1) for rel in rels], per_folder, 2)
        assert [s.rel for s in sheets["folder 1"]] == (want[:per_folder] if per_folder else want), rels
    # (each of these ends the quick way for names of one shape, which would misorder them)
    for names in (["a1.tif", "a2.tif\na9.tif", "a3.tif", "a4.tif"], ["a1x", "a2x", "ax"], ["a1.tif", "a5.tif", "a٣.tif"]):
        want = sorted(names, key=lambda name: (_by_numbers(name), name))
        assert [s.rel for s in choose([Source(n, 1, 1) for n in sorted(names)], 0, 2)[0]["_top"]] == want
    sheets, _ = choose([Source(f"EuroSAT/Forest_{i}.tif", 1, 1) for i in range(1, 3001)], 100, 2)
    assert [s.rel for s in sheets["EuroSAT"]] == [f"EuroSAT/Forest_{i}.tif" for i in range(1, 101)]
    # names in any order (a summary's, shard after shard), equal numbers in text order
    names = ["a/7.tif", "a/07.tif", "b/1.tif", "a/007.tif", "a/1.tif", "a/10.tif"]
    assert first_by_name(names, 3) == [4, 3, 1] and first_by_name(names, 0) == [4, 3, 1, 0, 5, 2]


def _by_numbers(name: str) -> list[str | int]:
    """``name`` cut into runs of digits (compared as numbers) and the rest (as text), a text
    first (empty for a name that begins with a number)."""
    runs = [(digits, "".join(chars)) for digits, chars in itertools.groupby(name, lambda c: c in "0123456789")]
    key: list[str | int] = [] if runs and not runs[0][0] else [""]
    return key + [int(run) if digits else run for digits, run in runs]


def test_contact_sheets_summary_and_report(tmp_path: Path) -> None:
    tifs = tmp_path / "tif"
    synth.generate(tifs, 13, classes=("Forest", "River", "SeaLake"))  # 13 per folder
    out = tmp_path / "out"
    proc = run_engine(tmp_path, input_dir=str(tifs), output_dir=str(out), contact_sheet_tiles=12)
    assert "msrgb summary" in proc.stderr and "converted this run" in proc.stderr

    # A folder sheet: 12 of the 13 files (the first by number: Forest_1 to Forest_12, where the
    # first by name as text would end at Forest_8 and leave Forest_9 out), 10 per row -> 10 x 2.
    geometry = SheetGeometry(thumb=128)
    sheet = iio.imread(out / "contact_sheets" / "truecolor" / "Forest.png")
    assert sheet.shape == (geometry.size(12)[1], geometry.size(12)[0], 3)
    assert geometry.size(12) == (6 + 10 * 134, 22 + 6 + 2 * 148)
    names = [f"Forest_{i}.tif" for i in range(1, 13)]
    for i, name in enumerate(names):  # every cell holds its image, scaled 2x
        x, y = geometry.origin(i)
        want = thumbnail(out / "truecolor" / "Forest" / name.replace(".tif", ".png"), 128)
        assert np.array_equal(sheet[y : y + 128, x : x + 128], want), name
    below = sheet[geometry.origin(12)[1] :, geometry.origin(12)[0] :]
    assert (below == 255).all(), "no 13th tile"

    # The overview: 5 samples of each of the 3 folders, one row per folder.
    overview = iio.imread(out / "contact_sheets" / "truecolor" / "overview.png")
    assert overview.shape[:2] == (geometry.size(15, 5)[1], geometry.size(15, 5)[0])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["images_per_class"] == {"Forest": 13, "River": 13, "SeaLake": 13}
    assert (summary["images"], summary["converted"], summary["skipped"]) == (39, 39, 0)
    assert summary["wall_seconds"] > 0 and summary["images_per_second"] > 0

    # Incremental: a new River file rebuilds the River sheet (and the overview only if the
    # sample changed), not the others.
    # (a rebuilt sheet is a new file: temporary file + rename; Snakemake touches the others)
    inodes = {p.name: p.stat().st_ino for p in (out / "contact_sheets" / "truecolor").iterdir()}
    shutil.copy(tifs / "River" / "River_1.tif", tifs / "River" / "River_0.tif")
    run_engine(tmp_path, input_dir=str(tifs), output_dir=str(out), contact_sheet_tiles=12)
    changed = {p.name for p in (out / "contact_sheets" / "truecolor").iterdir() if p.stat().st_ino != inodes[p.name]}
    assert "River.png" in changed and not changed & {"Forest.png", "SeaLake.png"}
    assert json.loads((out / "summary.json").read_text())["converted"] == 1

    # The HTML report embeds every contact sheet and the summary, also with a small change
    # pending (which would run as one job: the report shows the sheets' and summary's jobs).
    shutil.copy(tifs / "River" / "River_1.tif", tifs / "River" / "River_00.tif")
    run_snakemake(tmp_path, "--report", "report.html", input_dir=str(tifs), output_dir=str(out), contact_sheet_tiles=12)
    html = (tmp_path / "report.html").read_text()
    for png in (out / "contact_sheets" / "truecolor").iterdir():
        assert base64.b64encode(png.read_bytes()).decode() in html, f"{png.name} not embedded"
    assert "summary.json" in html and "Contact sheets" in html


def test_clipping_summary_lists_the_first_images_by_figure_then_name() -> None:
    """The most clipped and the darkest images, ties broken by name (numbers in names as
    numbers: 9.tif before 10.tif), against sorting every image; images without a record
    (removed) and products not asked for are left out."""
    import random

    from msrgb.jobs.report import CLIP_LIST, clipping_summary
    from msrgb.outputs.state import StateData

    rng = random.Random(7)
    for _ in range(150):
        data = StateData()
        for k in range(rng.randint(0, 40)):
            # texts before the first number of every kind, tying with others or not
            head = rng.choice(["a/", "b/c/", "a/x", "B/", "a/tile_", "line\nbreak/", "a"])
            # numbers repeat, written with and without leading zeros (a/7.tif, a/007.tif tie)
            number = str(rng.choice([k, rng.randint(0, 9)])).zfill(rng.choice([1, 1, 3]))
            rel = f"{head}{number}{rng.choice(['', '', 'b', 'c'])}.tif" if rng.random() < 0.9 else f"{head}none{'x' * k}.tif"
            for product in ("p", "q", "other"):
                values = [rng.choice([0.0, 0.05, 0.0501, 0.5, 1.0]) for _ in range(6)]
                mean = rng.choice([0.0, 10.5, 100.25])
                data.clipping[(rel, product)] = " ".join([*(f"{v:.4f}" for v in values), f"{mean:.2f}"])
                if rng.random() < 0.8:
                    data.records[(rel, product)] = (1, 1, "digest")
        got = clipping_summary(parts_of(data, {"p": ".png", "q": ".jpg"}, rng), {"p": ".png", "q": ".jpg"})
        for product, suffix in (("p", ".png"), ("q", ".jpg")):
            rows = sorted(
                (rel, [float(v) for v in text.split()])
                for (rel, name), text in data.clipping.items()
                if name == product and (rel, name) in data.records
            )
            if not rows:
                assert product not in got
                continue
            summary = got[product]
            worst = sorted(rows, key=lambda r: (-max(r[1][:6]), _by_numbers(r[0]), r[0]))[:CLIP_LIST]
            darkest = sorted(rows, key=lambda r: (r[1][6], _by_numbers(r[0]), r[0]))[:CLIP_LIST]
            assert [m["image"] for m in summary["most_clipped"]] == [r.replace(".tif", suffix) for r, _ in worst]
            assert [m["clipped_low"] + m["clipped_high"] for m in summary["most_clipped"]] == [f[:6] for _, f in worst]
            assert [m["image"] for m in summary["darkest"]] == [r.replace(".tif", suffix) for r, _ in darkest]
            assert summary["images"] == len(rows)
            assert summary["images_clipped_over_5_percent"] == sum(max(f[:6]) > 0.05 for _, f in rows)
            assert summary["mean_brightness"] == round(sum(f[6] for _, f in rows) / len(rows), 2)


def test_the_provenance_manifest_made_in_pieces_is_the_whole_manifest(monkeypatch) -> None:
    """Made a few rows at a time, the manifest holds every image of its product, sorted, with
    the environments it uses in its header: the rows as one table would have them, names that
    need quoting included."""
    import random

    from msrgb.jobs import report
    from msrgb.outputs.state import StateData
    from msrgb.storage import tsv

    monkeypatch.setattr(report, "PROVENANCE_ROWS", 3)
    rng = random.Random(11)
    for _ in range(40):
        data = StateData(envs={"e1": "numpy 2", "e2": "numpy 3", "e9": "unused"})
        for k in range(rng.randint(0, 12)):
            rel = rng.choice(["a", "b/c", 'q"uote', "t\tab", "line\nbreak", "cr\r"]) + f"/{k}.tif"
            for product in ("p", "q"):
                if rng.random() < 0.8:
                    data.records[(rel, product)] = (rng.randint(1, 9), 5, f"digest{k}")
                if rng.random() < 0.8:
                    data.provenance[(rel, product)] = (f"src{k}", f"png{k}", rng.choice(["e1", "e2", "", "e7"]))
                if rng.random() < 0.3:
                    data.radiometry[(rel, product)] = '{"B04": [1e-4, -0.1]}'
        parts = parts_of(data, {"p": ".jpg", "q": ".png"}, rng)
        got = b"".join(report.provenance_pieces("p", "settings-digest", parts)).decode("utf-8")
        keys = sorted(key for key in data.records if key[1] == "p")
        envs = sorted({data.provenance.get(key, ("", "", ""))[2] for key in keys} - {""})
        want = tsv.text(
            [
                ["# msrgb provenance manifest v1", "product p", "settings settings-digest"],
                *[["# env", e, data.envs.get(e, "unknown")] for e in envs],
                report.MANIFEST_COLUMNS,
                *[
                    [rel[: rel.rfind(".")] + ".jpg", data.records[(rel, n)][0], *data.provenance.get((rel, n), ("", "", ""))[:2],
                     data.records[(rel, n)][2], data.provenance.get((rel, n), ("", "", ""))[2], data.radiometry.get((rel, n), "")]
                    for rel, n in keys
                ],
            ]
        )  # fmt: skip
        assert got == want


def test_a_file_is_rewritten_only_when_its_pieces_differ_from_it(tmp_path: Path) -> None:
    """write_if_changed with pieces: the file ends up holding exactly the pieces; it is left
    alone (same inode, same mtime) when it already held them, whatever the pieces' sizes, and
    rewritten when it differs anywhere: in the first piece, the last, a longer or shorter file."""
    import os
    import random

    from msrgb.storage.files import write_if_changed

    rng = random.Random(5)
    path = tmp_path / "f.tsv"
    for case in range(300):
        old = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 30)))
        new = bytearray(old)
        change = rng.choice(["same", "flip", "cut", "extend", "missing"])
        if change == "flip" and new:
            i = rng.randrange(len(new))
            new[i] = ord("c")
        elif change == "cut" and new:
            del new[rng.randrange(len(new)) :]
        elif change == "extend":
            new += b"x" * rng.randint(1, 5)
        cuts = sorted(rng.randint(0, len(new)) for _ in range(rng.randint(0, 4)))
        pieces = [bytes(new[a:b]) for a, b in zip([0, *cuts], [*cuts, len(new)])]
        if change == "missing":
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(old)
            os.utime(path, ns=(1, 1))
        before = path.stat().st_ino if path.exists() else None
        written = write_if_changed(path, iter(pieces))
        assert path.read_bytes() == bytes(new), case
        assert written == (change == "missing" or bytes(new) != old), case
        if not written:
            assert path.stat().st_ino == before and path.stat().st_mtime_ns == 1, case
        assert [p.name for p in tmp_path.iterdir()] == ["f.tsv"], case


def test_a_rebuilt_sheet_copies_unchanged_cells_and_equals_one_drawn_afresh(tmp_path: Path, monkeypatch) -> None:
    """A sheet rebuilt after files were added, changed and removed copies the cells of unchanged
    images from its previous version; the result must be the sheet drawn from nothing, pixel for
    pixel (long names cut with an ellipsis, odd characters, grey cells of missing images, the
    overview's padded rows, another thumbnail size)."""
    import os

    from msrgb.outputs.sheet_lists import SheetGeometry, cells_path, sheet_list_text
    from msrgb.render import sheets
    from msrgb.sources.discovery import Source

    rng = np.random.default_rng(3)
    images = tmp_path / "images"
    names = {"F": [f"F/{'long_' * (i % 4)}{i}_é.tif" for i in range(14)], "G": [f"G/g{i}.tif" for i in range(6)]}

    def make(rel: str) -> None:
        png = images / rel.replace(".tif", ".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        shape = (int(rng.integers(8, 80)), int(rng.integers(8, 80)), 3)
        iio.imwrite(png, rng.integers(0, 256, shape, dtype=np.uint8))

    def manifest(title: str, rels: list[str], geometry: SheetGeometry) -> Path:
        # rewritten in place, as planning does: the list of the sheet's cells stays beside it
        path = tmp_path / f"{title}.tsv"
        path.write_text(sheet_list_text(title, [Source(r, 1, 1) for r in rels], "digest", geometry))
        return path

    def build_both(title: str, rels: list[str], geometry: SheetGeometry, sheet: Path) -> tuple[np.ndarray, np.ndarray]:
        m = manifest(title, rels, geometry)
        os.utime(sheet)  # as Snakemake does to every output of a job at its end
        sheets.build(m, sheet, images, geometry)  # over the previous version: cells copied
        drawn = tmp_path / "fresh"  # the same sheet drawn from nothing
        drawn.mkdir(exist_ok=True)
        shutil.copy(m, drawn / m.name)
        cells_path(drawn / m.name).unlink(missing_ok=True)
        fresh = drawn / sheet.name
        fresh.unlink(missing_ok=True)
        sheets.build(drawn / m.name, fresh, images, geometry)
        return iio.imread(sheet), iio.imread(fresh)

    for rel in names["F"] + names["G"]:
        make(rel)
    geometry = SheetGeometry(thumb=48)
    for title, rels in (("F (12 shown)", names["F"][:12]), ("overview", names["F"][:5] + names["G"][:3])):
        sheet = tmp_path / f"{title}.png"
        sheets.build(manifest(title, rels, geometry), sheet, images, geometry)
        # new files among the shown ones, two images remade, one gone (a grey cell), a name
        # with a quote and a tab
        added = [rel.replace(".tif", "_new.tif") for rel in rels[:3]] + ['F/a "quoted"\tname.tif']
        for rel in added + rels[1:3]:
            make(rel)
        (images / rels[4].replace(".tif", ".png")).unlink(missing_ok=True)
        rels = sorted(rels + added)
        reused, fresh = build_both(title, rels, geometry, sheet)
        assert reused.shape == fresh.shape and np.array_equal(reused, fresh), title
        assert (tmp_path / "fresh" / sheet.name).read_bytes() == sheet.read_bytes()  # no list in the sheet
        # the list beside the manifest names images under the product folder
        cells = json.loads(cells_path(tmp_path / f"{title}.tsv").read_text())["cells"]
        assert {c[0] for c in cells} <= {r.replace(".tif", ".png") for r in rels}
        # the copies are real: an image changed without a new size or time is not read again
        # (drawn afresh, these bytes make a grey cell)
        png = images / rels[0].replace(".tif", ".png")
        st = png.stat()
        png.write_bytes(bytes(st.st_size))
        os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns))
        reused, fresh = build_both(title, rels, geometry, sheet)
        assert not np.array_equal(reused, fresh)
        # a sheet over REUSE_MAX_PIXELS is drawn afresh (no second copy of a huge sheet)
        monkeypatch.setattr(sheets, "REUSE_MAX_PIXELS", 100)
        reused, fresh = build_both(title, rels, geometry, sheet)
        assert np.array_equal(reused, fresh)
        monkeypatch.undo()
        make(rels[0])
        # another thumbnail size: nothing is copied
        bigger = SheetGeometry(thumb=64)
        reused, fresh = build_both(title, rels, bigger, sheet)
        assert np.array_equal(reused, fresh)


def test_a_sheet_with_a_damaged_list_of_cells_is_drawn_afresh(tmp_path: Path) -> None:
    """Whatever the list of a sheet's cells holds (not JSON, entries cut or mistyped, a position
    beyond the old sheet), and whatever the previous sheet file is (another image, cut short),
    the sheet is drawn from its images: the same as one drawn from nothing."""

    from msrgb.outputs.sheet_lists import cells_path, sheet_list_text
    from msrgb.render import sheets
    from msrgb.render.pngenc import encode_png_quick
    from msrgb.sources.discovery import Source

    images = tmp_path / "images"
    (images / "F").mkdir(parents=True)
    rels = [f"F/{i}.tif" for i in range(5)]
    for i, rel in enumerate(rels):
        iio.imwrite(images / rel.replace(".tif", ".png"), np.full((9, 9, 3), 40 * i, dtype=np.uint8))
    layout = SheetGeometry(thumb=32)
    manifest = tmp_path / "F.tsv"
    manifest.write_text(sheet_list_text("F", [Source(r, 1, 1) for r in rels], "digest", layout))
    fresh = tmp_path / "fresh" / "F.png"
    fresh.parent.mkdir()
    shutil.copy(manifest, fresh.parent / "F.tsv")
    sheets.build(fresh.parent / "F.tsv", fresh, images, layout)
    good = json.loads(cells_path(fresh.parent / "F.tsv").read_text())
    geometry, (first, *_) = good["geometry"], good["cells"]
    sheet = tmp_path / "sheet.png"
    listing = cells_path(manifest)

    def old_sheet(data: bytes, cells: object) -> None:
        sheet.write_bytes(data)
        text = cells if isinstance(cells, str) else json.dumps({"sheet": sheets.sheet_version(data), "geometry": geometry, "cells": cells})
        listing.write_text(text)

    blank = encode_png_quick(np.zeros((200, 200, 3), dtype=np.uint8))
    damaged = [
        (blank, "not json"), (blank, "[]"), (blank, json.dumps({"geometry": geometry})), (blank, [[1]]),
        (blank, [["F/0.png", "x", 1, "0.tif", 0, 0]]), (blank, 5),
        (blank, [[*first[:4], 190, 190]]),  # a cell beyond the old sheet
        (b"\x89PNG\r\n\x1a\n cut short", [first]),  # the old sheet is not an image
    ]  # fmt: skip
    for data, cells in damaged:
        old_sheet(data, cells)
        sheets.build(manifest, sheet, images, layout)
        assert np.array_equal(iio.imread(sheet), iio.imread(fresh)), cells
    # the sheet written again since its list was made (same cells, other pixels): not copied
    old_sheet(blank, [[*first[:4], 0, 0]])
    sheet.write_bytes(encode_png_quick(np.full((200, 200, 3), 9, dtype=np.uint8)))
    sheets.build(manifest, sheet, images, layout)
    assert np.array_equal(iio.imread(sheet), iio.imread(fresh))


def test_a_label_too_long_is_cut_to_its_longest_start_that_fits():
    """Labels are cut by halving the length, not a character at a time: the same text as
    shortening one character at a time, for names of any length and width (the sheets' fonts)."""
    import random

    from PIL import Image, ImageDraw

    from msrgb.render import sheets

    def one_at_a_time(draw, text, width, font):
        if draw.textlength(text, font=font) <= width:
            return text
        while text and draw.textlength(text + "…", font=font) > width:
            text = text[:-1]
        return text + "…"

    draw = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /WMil1ü"
    for font in (sheets.font(11), sheets.font(16)):
        for _ in range(400):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
            # fixed widths, and the widths at which a start of the text just fits or just does not
            k = rng.randint(0, len(text))
            edge = int(draw.textlength(text[:k] + "…", font=font))
            for width in (rng.choice([0, 5, 20, 64, 100, 300]), edge, edge - 1, edge + 1):
                assert sheets._fit(draw, text, width, font) == one_at_a_time(draw, text, width, font), (text, width)


def test_provenance_manifest_rows_are_those_of_the_tsv_writer_for_any_name(monkeypatch):
    """The manifest's rows, made as plain lines where no field needs quoting, are byte for byte
    what msrgb.storage.tsv writes for the same rows, in pieces of any size, with names that need
    quoting among them, images without provenance, radiometry, several environments and another
    product's records beside them."""
    import random

    from msrgb.jobs import report
    from msrgb.outputs.state import StateData
    from msrgb.storage import tsv
    from msrgb.storage.files import output_rel

    names = ["a.tif", "b/c.TIF", "tab\there.tif", "line\nbreak.tif", "cr\rhere.tif", 'quote"d.tif', "ü/ß 1.tiff"]
    rng = random.Random(5)
    data = StateData(envs={"e1": "numpy 2", "e2": "numpy 3"})
    for i in range(60):
        rel = f"{rng.choice(names)[:-4]}{i}.tif" if rng.random() < 0.5 else f"plain/{i:03d}.tif"
        for product in ("p", "q"):
            key = (rel, product)
            data.records[key] = (1000 + i, 5, f"digest{product}")
            if rng.random() < 0.8:
                data.provenance[key] = (f"src{i}", f"png{i}", rng.choice(["e1", "e2"]))
            if rng.random() < 0.3:
                data.radiometry[key] = '{"B04": [0.0001, -0.1]}'

    def expected(product: str, suffix: str) -> bytes:  # the rows as the tsv writer writes them
        keys = sorted(key for key in data.records if key[1] == product)
        envs = {data.provenance.get(key, ("", "", ""))[2] for key in keys}
        head = [["# msrgb provenance manifest v1", f"product {product}", "settings d"]]
        head += [["# env", e, data.envs[e]] for e in sorted(envs) if e]
        rows = [
            [output_rel(rel, suffix), data.records[key][0], *data.provenance.get(key, ("", "", "")),
             data.records[key][2], data.radiometry.get(key, "")]
            for key in keys for rel in [key[0]]
        ]  # fmt: skip
        rows = [[r[0], r[1], r[2], r[3], r[5], r[4], r[6]] for r in rows]  # digest before env
        return (tsv.text([*head, report.MANIFEST_COLUMNS]) + tsv.text(rows)).encode("utf-8")

    for size in (1, 3, 7, 10_000):
        monkeypatch.setattr(report, "PROVENANCE_ROWS", size)
        for product, suffix in (("p", ".png"), ("q", ".jpg")):
            parts = parts_of(data, {product: suffix}, rng)
            assert b"".join(report.provenance_pieces(product, "d", parts)) == expected(product, suffix)


def test_a_summary_part_from_the_records_a_job_kept_is_the_part_from_its_state_file(tmp_path: Path):
    """A small change's job hands the summary each shard's part made from the records it kept;
    the summary of other runs makes it from the state file those records were written to. The
    two are the same for any records: names that need quoting, images without provenance, clip
    figures or radiometry, environments, inputs skipped with reasons over several lines."""
    import random

    from msrgb.jobs.summary_parts import shard_part
    from msrgb.outputs.state import StateData, read_state_full, state_text

    names = ["a.tif", "b/c.TIF", "tab\there.tif", "line\nbreak.tif", "cr\rhere.tif", 'quote"d.tif', "ü/ß 1.tiff", "x"]
    rng = random.Random(3)
    suffixes = {"p": ".png", "q": ".jpg"}
    for case in range(40):
        data = StateData(envs={"e1": "numpy 2", "e 2": "numpy\t3"})
        for i in range(rng.randint(0, 30)):
            rel = f"{rng.choice(names)[:-4]}{i}.tif"
            if rng.random() < 0.15:
                data.skipped[rel] = (5, 6, rng.choice(["not a TIFF", "two\nlines", " spaced  out "]))
                continue
            for product in ("p", "q", "other"):
                key = (rel, product)
                data.records[key] = (1000 + i, 7, f"d{product}")
                if rng.random() < 0.8:  # a clip figure only with provenance, radiometry only with both
                    data.provenance[key] = (f"src{i}", f"png{i}", rng.choice(["e1", "e 2", ""]))
                    if rng.random() < 0.8:
                        data.clipping[key] = " ".join(f"{rng.random():.4f}" for _ in range(6)) + f" {rng.uniform(0, 255):.2f}"
                        if rng.random() < 0.3:
                            data.radiometry[key] = '{"B04": [0.0001, -0.1]}'
        state = tmp_path / f"{case}.tsv"
        state.write_text(state_text(**{k: v for k, v in vars(data).items() if k != "legacy"}), encoding="utf-8")
        kept, read = shard_part(data, suffixes), shard_part(read_state_full([state]), suffixes)
        assert kept.envs == read.envs and sorted(kept.skipped) == sorted(read.skipped), case
        for name in suffixes:
            a, b = kept.products[name], read.products[name]
            assert (a.manifest, a.envs, a.clip_rels, a.sample) == (b.manifest, b.envs, b.clip_rels, b.sample), case
            assert (a.clip_figures is None) == (b.clip_figures is None), case
            assert a.clip_figures is None or np.array_equal(a.clip_figures, b.clip_figures), case


def test_a_histogram_is_drawn_again_only_when_an_image_it_shows_changes(tmp_path: Path) -> None:
    """The histogram is made from the images of its sample as their records say they are: a
    run that changes none of them leaves it without reading them; a changed image, a
    deleted histogram or an image without a recorded digest draws it again from the images."""
    from msrgb.config.parse import products_from_dicts
    from msrgb.jobs import part_files, summary_parts
    from msrgb.jobs.report import histogram_image, output_histogram, write_histogram
    from msrgb.outputs.paths import OutputPaths
    from msrgb.planning.sharding import planned_paths

    tifs, out = tmp_path / "tif", tmp_path / "out"
    synth.generate(tifs, 4, classes=("Forest", "River"))
    output = OutputPaths(out)

    def current() -> tuple[list[tuple[str, str]], bytes]:
        """The sample as the records give it, and its histogram made from the images now."""
        n_shards, _ = planned_paths(output)
        parts = [part_files.part_of_state(output.state(n_shards, k), {"truecolor": ".png"}) for k in range(n_shards)]
        chosen = summary_parts.sample(parts, "truecolor")
        images = [out / "truecolor" / rel.replace(".tif", ".png") for rel, _ in chosen]
        title = f"truecolor: values of {len(chosen)} images (red, green, blue; square-root scale)"
        return chosen, histogram_image(output_histogram(images), title)

    histogram = out / "histograms" / "truecolor.png"
    run_engine(tmp_path, input_dir=str(tifs), output_dir=str(out))
    product = products_from_dicts(json.loads(output.products_file().read_text()))[0]
    chosen, drawn = current()
    assert len(chosen) == 8 and all(sha for _, sha in chosen) and histogram.read_bytes() == drawn
    # A change of the inputs (an image in the sample made from other pixels): drawn again.
    shutil.copy(tifs / "River" / "River_2.tif", tifs / "Forest" / "Forest_1.tif")
    run_engine(tmp_path, input_dir=str(tifs), output_dir=str(out))
    chosen, drawn = current()
    assert histogram.read_bytes() == drawn != histogram_image(output_histogram([]), "")
    # An image changed behind the records' back is not looked at while the sample is the same...
    shown = out / "truecolor" / "River" / "River_3.png"
    shown.write_bytes((out / "truecolor" / "Forest" / "Forest_2.png").read_bytes())
    write_histogram(output, product, chosen)
    assert histogram.read_bytes() == drawn != current()[1]
    # ... and is when its digest differs, the histogram is gone, or a digest is not recorded.
    for change in ("digest", "deleted", "unrecorded"):
        shown.write_bytes((out / "truecolor" / "Forest" / f"Forest_{3 + len(change) % 2}.png").read_bytes())
        given = [(rel, sha if "River_3" not in rel else {"digest": "0" * 64, "unrecorded": ""}.get(change, sha)) for rel, sha in chosen]
        if change == "deleted":
            histogram.unlink()
        write_histogram(output, product, given)
        assert histogram.read_bytes() == current()[1], change


def test_the_sheet_of_the_most_clipped_images_is_drawn_again_when_one_of_them_changes(tmp_path: Path) -> None:
    from msrgb.config.parse import products_from_dicts
    from msrgb.jobs.report import write_clipped_sheet
    from msrgb.outputs.paths import OutputPaths

    tifs, out = tmp_path / "tif", tmp_path / "out"
    synth.generate(tifs, 6, classes=("Forest", "River"))
    run_engine(tmp_path, input_dir=str(tifs), output_dir=str(out))
    output = OutputPaths(out)
    product = products_from_dicts(json.loads(output.products_file().read_text()))[0]
    worst = json.loads((out / "summary.json").read_text())["clipping"]["truecolor"]["most_clipped"]
    sheet = out / "clipping" / "truecolor.png"
    drawn = sheet.read_bytes()
    assert len(worst) == 10 and iio.imread(sheet).shape[:2] == SheetGeometry().size(10)[::-1]
    sheet.write_bytes(b"not looked at again")  # what the sheet was drawn from is the same: left
    write_clipped_sheet(output, product, worst, 128)
    assert sheet.read_bytes() == b"not looked at again"
    image = out / "truecolor" / worst[4]["image"]
    for change in ("time", "gone", "list"):  # each the only change since the last drawing
        if change == "time":
            os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1))
        if change == "gone":
            sheet.unlink()
        write_clipped_sheet(output, product, worst[:9] if change == "list" else worst, 128)
        assert sheet.read_bytes() == (drawn if change != "list" else sheet.read_bytes()) != b"not looked at again", change
        if change == "list":
            assert iio.imread(sheet).shape[:2] == SheetGeometry().size(9)[::-1]
        sheet.write_bytes(b"not looked at again")
