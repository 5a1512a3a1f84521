"""OME-Zarr (through bioio, the ``io`` extra) and OME plate metadata (OME-TIFF, OME-Zarr HCS)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from miq.cli import main
from miq.errors import ImageReadError
from miq.io import file_stem, find_images, read_pixel_size, read_planes, read_z_step
from miq.plates import plate_position

pytest.importorskip("bioio_ome_zarr", reason="needs the io extra (pip install 'miq[io]')")


def _write_ome_zarr(path: Path, data: np.ndarray, zarr_format: int = 2, pixel_um: float = 0.65):
    """An OME-Zarr image (C, Z, Y, X) with a z step of 2 µm."""
    from bioio_ome_zarr.writers import OMEZarrWriter

    writer = OMEZarrWriter(
        str(path),
        level_shapes=data.shape,
        dtype=data.dtype,
        zarr_format=zarr_format,
        axes_names=["c", "z", "y", "x"],
        axes_types=["channel", "space", "space", "space"],
        axes_units=[None, "micrometer", "micrometer", "micrometer"],
        physical_pixel_size=[1.0, 2.0, pixel_um, pixel_um],
    )
    writer.write_full_volume(data)


def _field(sample_image, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = rng.integers(0, 200, 2)
    return np.ascontiguousarray(sample_image[y : y + 200, x : x + 300])


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_planes_and_calibration(tmp_path, sample_image, zarr_format):
    data = np.stack([np.stack([_field(sample_image, 3 * c + z) for z in range(3)]) for c in (0, 1)])
    path = tmp_path / "stack.ome.zarr"
    _write_ome_zarr(path, data, zarr_format, pixel_um=0.325)
    planes = read_planes(path)
    assert [(p.t, p.c, p.z) for p in planes] == [(0, c, z) for c in (0, 1) for z in range(3)]
    for p in planes:
        np.testing.assert_array_equal(p.data, data[p.c, p.z].astype(np.float32))
    assert read_pixel_size(path) == pytest.approx(0.325)
    assert read_z_step(path) == pytest.approx(2.0)
    assert find_images([tmp_path]) == [path]  # a zarr folder is one image, not searched inside
    assert file_stem(path) == "stack"


def _write_plate(root: Path, sample_image, layout: dict[str, int]) -> Path:
    """An OME-Zarr HCS plate (NGFF 0.4, zarr v2): ``layout`` maps 'B/3' to its number of fields."""
    plate = root / "screen.ome.zarr"
    plate.mkdir()
    rows = sorted({w.split("/")[0] for w in layout})
    cols = sorted({w.split("/")[1] for w in layout}, key=int)
    wells = []
    for i, (well, n_fields) in enumerate(layout.items()):
        row, col = well.split("/")
        for field in range(n_fields):
            _write_ome_zarr(
                plate / row / col / str(field), _field(sample_image, i * 7 + field)[None, None]
            )
        (plate / row / ".zgroup").write_text('{"zarr_format": 2}')
        (plate / row / col / ".zgroup").write_text('{"zarr_format": 2}')
        (plate / row / col / ".zattrs").write_text(
            json.dumps(
                {"well": {"images": [{"path": str(f)} for f in range(n_fields)], "version": "0.4"}}
            )
        )
        wells.append({"path": well, "rowIndex": rows.index(row), "columnIndex": cols.index(col)})
    (plate / ".zgroup").write_text('{"zarr_format": 2}')
    (plate / ".zattrs").write_text(
        json.dumps(
            {
                "plate": {
                    "name": "screen",
                    "version": "0.4",
                    "rows": [{"name": r} for r in rows],
                    "columns": [{"name": c} for c in cols],
                    "wells": wells,
                    "field_count": max(layout.values()),
                }
            }
        )
    )
    return plate


def test_ome_zarr_plate_fields_wells_and_sites(tmp_path, sample_image):
    plate = _write_plate(tmp_path, sample_image, {"B/3": 2, "C/12": 1})
    fields = find_images([tmp_path])
    assert fields == [plate / "B/3/0", plate / "B/3/1", plate / "C/12/0"]
    assert find_images([plate]) == fields
    positions = [plate_position(f) for f in fields]
    assert [(p.well, p.site) for p in positions] == [("B03", 0), ("B03", 1), ("C12", 0)]
    with pytest.raises(ImageReadError, match="plate"):
        read_planes(plate)

    out = tmp_path / "run"
    assert main(["predict", str(plate), "-o", str(out), "-q", "--report", "--overlays", "all"]) == 0
    with open(out / "results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["well"], r["site"]) for r in rows] == [("B03", "0"), ("B03", "1"), ("C12", "0")]
    assert all(not r["error"] and 0 <= int(r["level"]) <= 10 for r in rows)
    assert {r["overlay"] for r in rows} == {
        "overlays/screen_B_3_0.jpg",
        "overlays/screen_B_3_1.jpg",
        "overlays/screen_C_12_0.jpg",
    }
    with open(out / "wells.csv", encoding="utf-8") as fh:
        assert [(w["well"], w["n_fields"]) for w in csv.DictReader(fh)] == [
            ("B03", "2"),
            ("C12", "1"),
        ]
    assert "<h2>Plate (2 wells)</h2>" in (out / "report.html").read_text(encoding="utf-8")


_OME_PLATE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Plate ID="Plate:0" Name="screen">
    <Well ID="Well:0" Row="3" Column="6">
      <WellSample ID="WellSample:0" Index="0"><ImageRef ID="Image:7"/></WellSample>
      <WellSample ID="WellSample:1" Index="1"><ImageRef ID="Image:0"/></WellSample>
    </Well>
  </Plate>
  <Image ID="Image:0" Name="field">
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" SizeX="300" SizeY="200"
     SizeC="1" SizeZ="1" SizeT="1" PhysicalSizeX="0.65" PhysicalSizeY="0.65">
      <Channel ID="Channel:0:0" SamplesPerPixel="1"/>
      <TiffData IFD="0" PlaneCount="1"/>
    </Pixels>
  </Image>
</OME>"""


def test_ome_tiff_plate_metadata(tmp_path, sample_image):
    path = tmp_path / "exported_field.ome.tif"  # the name says nothing of the well
    tifffile.imwrite(path, _field(sample_image, 1), description=_OME_PLATE_XML, metadata=None)
    position = plate_position(path)
    assert (position.well, position.site) == ("D07", 1)  # Row 3, Column 6 (0-based); 2nd sample
    assert plate_position(path, pattern=r"(?P<well>[A-P]\d\d)") is None  # a pattern: names only
    plain = tmp_path / "plain_E05_s2.tif"
    tifffile.imwrite(plain, _field(sample_image, 2))
    assert plate_position(plain).well == "E05"  # no plate metadata: the name decides


@pytest.mark.parametrize("damage", ["metadata", "chunks"])
def test_damaged_ome_zarr_is_one_error_line(tmp_path, sample_image, capsys, damage):
    good = tmp_path / "in" / "good.ome.zarr"
    bad = tmp_path / "in" / "bad.ome.zarr"
    for path in (good, bad):
        _write_ome_zarr(path, _field(sample_image, 4)[None, None])
    if damage == "metadata":
        (bad / ".zattrs").write_text("{not json")
    else:
        for chunk in (bad / "0").rglob("*"):
            if chunk.is_file() and not chunk.name.startswith("."):
                chunk.write_bytes(b"garbage")
    out = tmp_path / "run"
    assert main(["predict", str(tmp_path / "in"), "-o", str(out), "-q"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("miq: error")]
    assert len(err) == 1 and "bad.ome.zarr" in err[0]
    with open(out / "results.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [bool(r["error"]) for r in rows] == [True, False]  # bad, good: the batch went on


def test_without_the_io_extra_zarr_says_what_to_install(tmp_path, sample_image, monkeypatch):
    path = tmp_path / "image.ome.zarr"
    _write_ome_zarr(path, _field(sample_image, 5)[None, None])
    monkeypatch.setitem(sys.modules, "bioio", None)  # import bioio now fails
    with pytest.raises(ImageReadError, match=r"io extra.*miq\[io\]"):
        read_planes(path)
