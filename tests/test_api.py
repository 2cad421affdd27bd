"""The notebook API gives the workflow's pixels and bytes."""

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import reference_rgb, run_engine

from msrgb import api
from msrgb.render.recipe import recipe_text


def test_to_rgb_is_the_reference_formula():
    ms = np.random.default_rng(0).integers(0, 8000, size=(64, 64, 13), dtype=np.uint16)
    want = (255 * (ms[..., (3, 2, 1)] / 4000).clip(0, 1)).astype(np.uint8)
    assert np.array_equal(api.to_rgb(ms), want)
    falsecolor = api.to_rgb(ms, "falsecolor")
    assert np.array_equal(falsecolor, (255 * (ms[..., (7, 3, 2)] / 4000).clip(0, 1)).astype(np.uint8))
    custom = api.to_rgb(ms, {"bands": ["B04", "B03", "B02"], "stretch": {"type": "range", "min": 0, "max": 2750, "out_min": 1}})
    assert custom.min() >= 1
    with pytest.raises(ValueError, match=r"expected a \(rows, cols, 13\) array"):
        api.to_rgb(ms[..., :4])
    with pytest.raises(ValueError, match="needs limits"):
        api.to_rgb(ms, {"preset": "truecolor", "stretch": {"type": "percentile", "scope": "dataset"}})


def test_convert_file_writes_the_workflows_bytes(tmp_path: Path, dataset: Path):
    out = tmp_path / "out"
    run_engine(tmp_path, input_dir=str(dataset), output_dir=str(out))
    for tif in sorted(dataset.rglob("*.tif"))[:5]:
        png = tmp_path / "api" / tif.name.replace(".tif", ".png")
        rel = tif.relative_to(dataset).as_posix()
        rgb = api.convert_file(tif, png, rel=rel)
        assert np.array_equal(rgb, reference_rgb(tif))
        assert png.read_bytes() == (out / "truecolor" / tif.relative_to(dataset)).with_suffix(".png").read_bytes()
        recipe = recipe_text(api.product_of("truecolor"), rel)
        assert api.png_bytes(api.to_rgb(api.read_tile(tif)), recipe=recipe) == png.read_bytes()


def test_a_whole_run_from_python(tmp_path: Path, dataset: Path):
    """api.run: the workflow in this process, then a rerun with nothing to do; a wrong setting
    is refused with the schema's words."""
    from msrgb.errors import MsrgbError

    out = tmp_path / "out"
    result = api.run({"input_dir": str(dataset), "output_dir": str(out), "progress": False}, cores=2)
    assert result.summary["converted"] == 31 and result.shards
    for tif in sorted(dataset.rglob("*.tif"))[:3]:
        png = (out / "truecolor" / tif.relative_to(dataset)).with_suffix(".png")
        assert np.array_equal(iio.imread(png), reference_rgb(tif))
    again = api.run({"input_dir": str(dataset), "output_dir": str(out), "progress": False})
    assert not again.shards and not again.parts and again.summary is None
    with pytest.raises(MsrgbError, match="png_compression"):
        api.run({"input_dir": str(dataset), "output_dir": str(out), "png_compression": "zip"})
