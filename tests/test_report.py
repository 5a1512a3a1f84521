"""miq report: content of the HTML page and its PNGs, and rendering in a real headless Chromium."""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

import miq
from miq.cli import main
from miq.optics import Optics, degrade

ARTIFACTS = os.environ.get("MIQ_TEST_ARTIFACTS")  # CI keeps the screenshot there


@pytest.fixture(scope="module")
def plate_run(tmp_path_factory, sample_image) -> Path:
    """A predict run (with --report) over a small plate: 3 wells × 2 sites at different defocus,
    plus a corrupt file."""
    root = tmp_path_factory.mktemp("plate")
    inputs = root / "inputs"
    inputs.mkdir()
    field = sample_image[:256, :336].astype(np.float64) / 65535.0
    for well, defocus in (("B03", 0.0), ("B04", 8.0), ("C05", 18.0)):
        for site in (1, 2):
            image = field if defocus == 0 else degrade(field, defocus, optics=Optics(), rng=site)
            tifffile.imwrite(
                inputs / f"screen_{well}_s{site}.tif", np.round(image * 65535).astype(np.uint16)
            )
    (inputs / "screen_D07_s1.tif").write_bytes(b"II*\x00 truncated")
    out = root / "run"
    code = main(["predict", str(inputs), "-o", str(out), "-q", "--report", "--threads", "2"])
    assert code == 1  # the corrupt file failed, the rest was rated
    return out


def _rows(run: Path) -> list[dict]:
    with open(run / "results.csv", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_report_content_matches_the_run(plate_run):
    page = (plate_run / "report.html").read_text(encoding="utf-8")
    rows = _rows(plate_run)
    rated = [r for r in rows if not r["error"]]
    n_out = sum(r["in_focus"] == "0" for r in rated)
    assert len(rated) == 6 and n_out >= 2  # 18 µm is far out of focus
    cards = dict(
        (label, int(value))
        for value, label in re.findall(r"<div class='card[^']*'><b>(\d+)</b>([^<]+)</div>", page)
    )
    assert cards == {
        "files": 7,
        "planes rated": 6,
        "in focus": 6 - n_out,
        "out of focus": n_out,
        "empty": 0,
        "files failed": 1,
        "planes failed": 0,
    }
    for section in (
        "Summary",
        "Distributions",
        "Plate (4 wells)",
        "Most in focus (3)",
        "Least in focus (3)",
        f"Fields to re-image ({n_out} out of focus)",
        "Failures (1)",
        "Legend",
        "Configuration and versions",
    ):
        assert f"<h2>{section}</h2>" in page, section
    assert "screen_D07_s1.tif" in page and "corrupt or unreadable" in page
    assert page.count("<svg") == 5  # 3 distributions + 2 plate maps, inline
    assert page.count("data:image/jpeg;base64,") == 6  # 3 + 3 montage thumbnails
    assert miq.load_model().name in page  # the model, from run.json


def test_report_is_self_contained(plate_run):
    page = (plate_run / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    external = re.findall(r"""(?:src|href)\s*=\s*["']?(?!data:|#)([^"'\s>]+)""", page)
    assert external == []
    assert not re.search(r"url\(\s*['\"]?(?!data:|#)", page)


def test_report_pngs_open(plate_run):
    from PIL import Image

    names = {
        "level_histogram",
        "certainty_histogram",
        "certainty_vs_level",
        "plate_mean_level",
        "plate_fraction_out_of_focus",
        "montage_most_in_focus",
        "montage_least_in_focus",
    }
    assert {p.stem for p in (plate_run / "report").glob("*.png")} == names
    for name in names:
        with Image.open(plate_run / "report" / f"{name}.png") as im:
            im.load()
            assert im.width > 200 and im.height > 150
            assert np.asarray(im.convert("L")).std() > 5  # not blank


def test_report_without_wells_or_overlays(tmp_path, sample_image):
    """No plate section without wells; montages fall back to the input images."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    tifffile.imwrite(inputs / "field.tif", sample_image)
    out = tmp_path / "run"
    assert main(["predict", str(inputs), "-o", str(out), "-q", "--no-overlays"]) == 0
    html_path = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(out), "-o", str(html_path)]) == 0
    page = html_path.read_text(encoding="utf-8")
    assert "<h2>Plate" not in page
    assert page.count("data:image/jpeg;base64,") == 2  # one most, one least in focus
    assert (tmp_path / "elsewhere" / "report" / "montage_most_in_focus.png").is_file()


@pytest.mark.parametrize("kind", ["missing", "no_results", "wrong_csv"])
def test_report_refuses_a_folder_that_is_not_a_run(tmp_path, capsys, kind):
    run = tmp_path / "run"
    if kind != "missing":
        run.mkdir()
    if kind == "wrong_csv":
        (run / "results.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run) in err
    assert not (run / "report.html").exists()


# ------------------------------------------------------------- real headless browser


def _chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    paths = _chromium_paths()
    if paths is None:
        message = "Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs them: their absence there is a failure
        pytest.skip(message)
    selenium = pytest.importorskip("selenium")
    del selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1300,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    yield driver
    driver.quit()


def _console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_console_error_check_catches_a_broken_page(browser, tmp_path):
    """The check used below is able to fail: a page with a script error is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefined_function();</script></body></html>")
    browser.get(page.as_uri())
    assert any("undefined_function" in m for m in _console_errors(browser))


def test_report_renders_in_chromium(browser, plate_run, tmp_path):
    from PIL import Image

    browser.get((plate_run / "report.html").as_uri())
    assert _console_errors(browser) == []
    assert browser.title.startswith("miq focus report")
    assert browser.execute_script(
        "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"
    )
    assert browser.execute_script("return document.images.length") == 6
    svg_sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg'))"
        ".map(s => s.getBoundingClientRect().width * s.getBoundingClientRect().height)"
    )
    assert len(svg_sizes) == 5 and min(svg_sizes) > 100 * 100  # every plot laid out, visible
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1300, min(height + 100, 16000))
    shot = tmp_path / "report_screenshot.png"
    assert browser.save_screenshot(str(shot))
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > 2000
    header = np.array([0x1D, 0x35, 0x57])
    assert (np.abs(pixels[:40].astype(int) - header).sum(axis=2) < 10).mean() > 0.5  # CSS applied
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1000  # plots and thumbnails drawn
    if ARTIFACTS:
        Path(ARTIFACTS).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(ARTIFACTS) / shot.name)


def test_report_shows_pixel_sizes(tmp_path, sample_image):
    (tmp_path / "in").mkdir()
    tifffile.imwrite(
        tmp_path / "in" / "calibrated.tif",
        sample_image,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"unit": "um"},
    )
    tifffile.imwrite(tmp_path / "in" / "plain.tif", sample_image)
    run = tmp_path / "run"
    assert main(["predict", str(tmp_path / "in"), "-o", str(run), "-q"]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<h3>Pixel size</h3>" in page
    assert "0.5 µm" in page and "recorded in the file" in page and "none recorded" in page
