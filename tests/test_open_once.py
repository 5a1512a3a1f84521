"""Every command opens each input file once (miq.io.ImageSource is the one owner of a file).

The readers (tifffile.TiffFile, PIL.Image.open) are wrapped to count how often each input is
opened during one command run.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from miq.cli import main

PLATE_OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
<Plate ID="Plate:0"><Well ID="Well:0" Row="1" Column="2">
<WellSample ID="WellSample:0" Index="0"><ImageRef ID="Image:0"/></WellSample></Well></Plate>
<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="200"
 SizeY="180" SizeC="1" SizeZ="1" SizeT="1" PhysicalSizeX="0.65">
<Channel ID="Channel:0:0" SamplesPerPixel="1"/><TiffData/></Pixels></Image></OME>"""


@pytest.fixture
def opens(monkeypatch) -> collections.Counter:
    """Counts opens per resolved input path while the test runs."""
    counter: collections.Counter = collections.Counter()
    tiff_init = tifffile.TiffFile.__init__
    pil_open = Image.open

    def counting_tiff_init(self, arg, *args, **kwargs):
        if isinstance(arg, (str, os.PathLike)):
            counter[Path(arg).resolve()] += 1
        return tiff_init(self, arg, *args, **kwargs)

    def counting_pil_open(fp, *args, **kwargs):
        if isinstance(fp, (str, os.PathLike)):
            counter[Path(fp).resolve()] += 1
        return pil_open(fp, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", counting_tiff_init)
    monkeypatch.setattr(Image, "open", counting_pil_open)
    return counter


@pytest.fixture
def inputs(tmp_path, sample_image) -> dict[str, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    field = sample_image[:180, :200]
    paths = {
        "plain": folder / "plain_A01_s1.tif",
        "plate": folder / "plate_field.ome.tif",
        "stack": folder / "stack.tif",
        "png": folder / "field.png",
    }
    # every input different, so that no two planes tie in the report's ordering
    tifffile.imwrite(paths["plain"], field)
    tifffile.imwrite(
        paths["plate"], np.roll(field, 40, axis=1), description=PLATE_OME, metadata=None
    )
    stack = np.stack([field, np.roll(field, 3, axis=0), field // 2 + 7])
    tifffile.imwrite(paths["stack"], stack, imagej=True, metadata={"axes": "ZYX"})
    Image.fromarray(np.roll(field, 60, axis=0).astype(np.uint16)).save(paths["png"])
    return paths


def _inputs_opened_once(opens, paths) -> None:
    for path in paths:
        assert opens[path.resolve()] == 1, f"{path.name} opened {opens[path.resolve()]} times"


def test_predict_opens_each_file_once(opens, inputs, tmp_path):
    code = main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q"])
    assert code == 0
    _inputs_opened_once(opens, inputs.values())
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 6  # 4 files, 3 planes in the stack
    assert any(",B03," in row for row in rows)  # the plate position came from the same open


def test_predict_with_rescale_opens_each_file_once(opens, inputs, tmp_path):
    code = main(["predict", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-q", "--rescale"])
    assert code == 0
    _inputs_opened_once(opens, inputs.values())


def test_best_focus_opens_each_file_once(opens, inputs, tmp_path):
    code = main(["best-focus", str(inputs["stack"]), "-o", str(tmp_path / "b"), "--save-best"])
    assert code == 0
    _inputs_opened_once(opens, [inputs["stack"]])
    folder = tmp_path / "planes"
    folder.mkdir()
    for z in range(3):
        tifffile.imwrite(folder / f"z{z}.tif", tifffile.imread(inputs["stack"])[z])
    opens.clear()
    code = main(["best-focus", "--stack-from-files", str(folder), "-o", str(tmp_path / "c")])
    assert code == 0
    _inputs_opened_once(opens, sorted(folder.iterdir()))


def test_measure_opens_each_file_once(opens, inputs, tmp_path):
    assert main(["measure", str(tmp_path / "in"), "-o", str(tmp_path / "m")]) == 0
    _inputs_opened_once(opens, inputs.values())


def test_evaluate_opens_each_file_once(opens, inputs, tmp_path):
    code = main(
        ["evaluate", "--synthetic", str(inputs["plain"]), "--seeds", "1", "--splits", "2"]
        + ["--stack", str(inputs["stack"]), "--z-step", "1", "--best-z", "0"]
        + ["--measures", "plls", "-o", str(tmp_path / "e")]
    )
    assert code == 0
    _inputs_opened_once(opens, [inputs["plain"], inputs["stack"]])


def test_report_without_overlays_opens_each_input_once(opens, inputs, tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    assert main(["predict", str(tmp_path / "in"), "-o", str(run), "-q", "--no-overlays"]) == 0
    opens.clear()
    assert main(["report", str(run)]) == 0
    _inputs_opened_once(opens, inputs.values())  # montage thumbnails come from the inputs
