"""Plate positions from file names and per-well aggregates in `miq predict`."""

from __future__ import annotations

import csv

import pytest
import tifffile

from miq.cli import main
from miq.plates import parse_well, well_aggregates


@pytest.mark.parametrize(
    "name, well, site",
    [
        ("IXMtest_A01_s3_w108F3A6FF-A865.tif", "A01", 3),  # MetaXpress / BBBC022
        ("mcf-z-stacks-03212011_a19_s2_w12703a47b.tif", "A19", 2),  # BBBC006, lower case
        ("BBBC006_z_aligned__a01__s1__w1_10.png", "A01", 1),
        ("r03c12f05p01-ch1sk1fk1fl1.tiff", "C12", 5),  # Opera / Operetta
        ("AS_09125_050116030001_D03f00d0.tif", "D03", 0),  # CellProfiler example plate
        ("plate1_P24.tif", "P24", None),
        ("/data/run/B07/plate1_B07.tif", "B07", None),
    ],
)
def test_built_in_patterns(name, well, site):
    position = parse_well(name)
    assert position is not None and (position.well, position.site) == (well, site)


@pytest.mark.parametrize(
    "name",
    ["01_POS218_D.TIF", "1-162hrhoe2.tif", "cell11G3Dz0p5umON.tif", "scan_Z99.tif", "image.tif"],
)
def test_names_without_a_well(name):
    assert parse_well(name) is None


def test_custom_pattern():
    pattern = r"well-(?P<well>[A-P]\d+)_field(?P<site>\d+)"
    assert parse_well("exp_well-H12_field3.tif", pattern).well == "H12"
    assert parse_well("r2c3.tif", r"r(?P<row>\d+)c(?P<col>\d+)").well == "B03"


def test_well_aggregates():
    rows = [
        {
            "well": "B02",
            "level": "1",
            "level_mean": "1.2",
            "in_focus": "1",
            "certainty": "0.8",
            "error": "",
        },
        {
            "well": "B02",
            "level": "7",
            "level_mean": "6.8",
            "in_focus": "0",
            "certainty": "0.6",
            "error": "",
        },
        {"well": "A10", "level": "", "error": "x.tif: corrupt"},
        {"well": "", "level": "0", "error": ""},
    ]
    a10, b02 = well_aggregates(rows)
    assert (a10["well"], a10["n_fields"], a10["n_rated"], a10["mean_level"]) == ("A10", 1, 0, "")
    assert b02["n_rated"] == 2 and b02["mean_level"] == "4" and b02["worst_level"] == 7
    assert b02["fraction_out_of_focus"] == "0.5"


def test_predict_writes_wells_csv(tmp_path, sample_image, capsys):
    folder = tmp_path / "plate"
    folder.mkdir()
    for name in ("P1_B02_s1.tif", "P1_B02_s2.tif", "P1_A11_s1.tif"):
        tifffile.imwrite(folder / name, sample_image[:200, :300])
    (folder / "P1_A11_s2.tif").write_bytes(b"")
    assert main(["predict", str(folder), "-o", str(tmp_path / "o"), "-q"]) == 1
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(fh)}
    assert (rows["P1_B02_s2.tif"]["well"], rows["P1_B02_s2.tif"]["site"]) == ("B02", "2")
    with open(tmp_path / "o" / "wells.csv", newline="") as fh:
        wells = list(csv.DictReader(fh))
    assert [(w["well"], w["n_fields"], w["n_rated"]) for w in wells] == [
        ("A11", "2", "1"),
        ("B02", "2", "2"),
    ]
    for bad in ("(x", r"[A-P]\d+"):  # not a regex; no named groups
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", str(folder), "-o", str(tmp_path / "o2"), "--well-pattern", bad])
        assert exit_info.value.code == 2
