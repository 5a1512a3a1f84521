"""The napari plug-in (miq.napari): Qt-free logic on a ViewerModel, the manifest, and the dock
widget in a real viewer under Xvfb (pytest-qt + pytest-xvfb + napari's make_napari_viewer).

Needs the napari extra; skipped without it, except when ``CI`` is set (then missing napari,
pytest-qt or a display fails). ``MIQ_TEST_ARTIFACTS``: folder for the viewer screenshots.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest


def _require(module: str, why: str):
    """Import ``module``; skip the tests without it, or fail when CI is set."""
    if os.environ.get("CI") and importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is required when CI is set ({why})", pytrace=False)
    return pytest.importorskip(module, reason=f"{module} not installed ({why})")


napari = _require("napari", "pip install '.[napari]'")

from napari.components import ViewerModel  # noqa: E402

import miq  # noqa: E402
from miq.errors import MiqError  # noqa: E402
from miq.napari import _widget  # noqa: E402
from miq.napari._sample_data import (  # noqa: E402
    DEFOCUS_SERIES_UM,
    defocus_series,
    make_defocus_series,
)
from miq.render import level_colors  # noqa: E402
from miq.runs import focus_curves  # noqa: E402

IN_FOCUS_PLANE = DEFOCUS_SERIES_UM.index(0.0)


def _reddish(rgb: np.ndarray) -> np.ndarray:
    """Pixels whose hue is red/orange (miq's levels 0–1): red well above green and blue."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 50) & (r > g + 40) & (r > b + 40)


def _save_png(rgba: np.ndarray, name: str) -> None:
    folder = os.environ.get("MIQ_TEST_ARTIFACTS")
    if folder:
        from PIL import Image

        Path(folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(rgba)).save(Path(folder) / name)


@pytest.fixture(scope="session")
def series() -> np.ndarray:
    """The sample defocus series (Z, 520, 696) uint16."""
    return defocus_series()


def _plugin_registered() -> bool:
    return any(ep.name == "miq" for ep in importlib.metadata.entry_points(group="napari.manifest"))


@pytest.fixture
def needs_entry_point() -> None:
    if not _plugin_registered():
        msg = "miq's napari.manifest entry point is not installed (reinstall miq)"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


# ---------------------------------------------------------------- logic, no Qt


def test_overlay_rgba_colours_and_alpha(sample_image, model):
    a = miq.assess(sample_image, model)
    rgba = _widget.overlay_rgba(a)
    assert rgba.shape == sample_image.shape + (4,) and rgba.dtype == np.uint8
    colors = level_colors(a.patch_probabilities.shape[-1])
    grid = a.grid
    for i, y in enumerate(grid.ys[:-1]):  # the last row/column overlaps its neighbour
        for j, x in enumerate(grid.xs[:-1]):
            pixel = rgba[y + 1, x + 1]
            if a.patch_valid[i, j]:
                assert tuple(pixel[:3]) == tuple(colors[a.patch_level[i, j]])
                assert pixel[3] == round(255 * float(a.patch_certainty[i, j]))
            else:
                assert pixel[3] == 0
    # the in-focus sample: mostly red/orange where the model is sure
    assert _reddish(rgba[..., :3])[rgba[..., 3] > 128].mean() > 0.8


def test_rate_2d_layer_on_viewer_model(sample_image, model):
    viewer = ViewerModel()
    layer = viewer.add_image(sample_image, name="field", scale=(0.65, 0.65), translate=(3, 7))
    index = _widget.current_plane_index(viewer, layer)
    assert index == ()
    results = _widget.rate_layer_data(layer.data, model, "all", index)  # 2D: one plane
    expected = miq.assess(sample_image, model)
    assert results["mode"] == "current" and results["best"] is None
    row = results["planes"][0]
    assert row["level"] == expected.level
    assert row["level_mean"] == pytest.approx(expected.level_mean)
    assert row["defocus_um"] == pytest.approx(expected.defocus_um)
    assert row["p_in_focus"] == pytest.approx(expected.p_in_focus)
    assert results["overlay"].shape == (520, 696, 4)

    overlay = _widget.show_results(viewer, layer, results)
    assert overlay.name == "field miq levels" and overlay.rgb
    assert overlay.data.shape == (520, 696, 4)
    np.testing.assert_allclose(overlay.scale, layer.scale)
    np.testing.assert_allclose(overlay.translate, layer.translate)
    # a second run replaces the overlay instead of stacking another
    _widget.show_results(viewer, layer, results)
    assert [lyr.name for lyr in viewer.layers] == ["field", "field miq levels"]

    text = _widget.summary_text(results)
    assert f"level {expected.level} (mean {expected.level_mean:.2f}" in text
    assert f"~{expected.defocus_um:.1f} µm" in text
    assert f"certainty {expected.certainty_aggregate:.2f}" in text
    assert f"P(in focus) {expected.p_in_focus:.2f}" in text


def test_stack_all_planes_uses_miq_best_plane_rule(series, model, tmp_path):
    import tifffile

    viewer = ViewerModel()
    layer = viewer.add_image(series, name="stack", scale=(2.0, 0.65, 0.65), translate=(5, 0, 0))
    viewer.dims.set_point(0, 5 + 4 * 2.0)  # looking at the last plane
    assert _widget.current_plane_index(viewer, layer) == (4,)
    results = _widget.rate_layer_data(layer.data, model, "all", (4,))
    assert results["mode"] == "all" and len(results["planes"]) == len(DEFOCUS_SERIES_UM)
    levels = [row["level"] for row in results["planes"]]
    assert levels[IN_FOCUS_PLANE] <= 1 and levels[-1] >= 6  # 0 µm vs 18 µm
    assert results["overlay"].shape == (5, 520, 696, 4)

    # the same best plane and curve as `miq best-focus` on the stack saved as a TIFF
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, series, imagej=True, metadata={"axes": "ZYX"})
    (curve,) = focus_curves([path], model, progress=False)
    assert results["best"] == curve.best and results["rule"] == curve.rule
    assert results["best_index"] == (curve.best_z,)
    np.testing.assert_allclose([r["level_mean"] for r in results["planes"]], curve.level_mean)
    assert results["best"] in (0, 1, 2)  # -4, 0 or +4 µm

    overlay = _widget.show_results(viewer, layer, results)
    assert overlay.data.shape == (5, 520, 696, 4)
    np.testing.assert_allclose(overlay.scale, layer.scale)
    np.testing.assert_allclose(overlay.translate, layer.translate)
    assert viewer.dims.point[0] == pytest.approx(5 + results["best"] * 2.0)
    text = _widget.summary_text(results)
    assert text.startswith(f"best plane {results['best']} (rule {curve.rule})")
    assert f"levels per plane: {', '.join(map(str, levels))}" in text


def test_current_plane_of_stack_is_placed_on_its_plane(series, model):
    viewer = ViewerModel()
    layer = viewer.add_image(series, name="stack", scale=(2.0, 0.65, 0.65), translate=(5, 0, 0))
    viewer.dims.set_point(0, 5 + 3 * 2.0)
    index = _widget.current_plane_index(viewer, layer)
    assert index == (3,)
    results = _widget.rate_layer_data(layer.data, model, "current", index)
    assert results["planes"][0]["level"] == miq.assess(series[3], model).level
    overlay = _widget.show_results(viewer, layer, results)
    assert overlay.data.shape == (1, 520, 696, 4)
    np.testing.assert_allclose(overlay.translate, (5 + 3 * 2.0, 0, 0))
    assert viewer.dims.point[0] == pytest.approx(5 + 3 * 2.0)  # not moved


def test_4d_all_planes_and_bad_arguments(model):
    rng = np.random.default_rng(0)
    data = rng.random((2, 3, 90, 100)).astype(np.float32)
    results = _widget.rate_layer_data(data, model, "all", (1, 2))
    assert [row["index"] for row in results["planes"]] == [(1, 0), (1, 1), (1, 2)]
    assert results["offset"] == (1, 0)
    assert results["overlay"].shape == (1, 3, 90, 100, 4)
    with pytest.raises(ValueError, match="plane_mode"):
        _widget.rate_layer_data(data, model, "some", (0, 0))
    with pytest.raises(ValueError, match="out of range"):
        _widget.rate_layer_data(data, model, "current", (2, 0))
    with pytest.raises(MiqError):
        _widget.rate_layer_data(np.zeros((90, 100)), model)  # constant image


def test_sample_data(series, sample_image):
    ((data, meta, kind),) = make_defocus_series()
    assert kind == "image" and data.shape == (len(DEFOCUS_SERIES_UM),) + sample_image.shape
    assert data.dtype == np.uint16
    np.testing.assert_array_equal(data[IN_FOCUS_PLANE], sample_image)
    np.testing.assert_array_equal(data, series)
    assert meta["metadata"]["defocus_um"] == list(DEFOCUS_SERIES_UM)


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(Path(_widget.__file__).with_name("napari.yaml"))
    manifest.validate_imports()
    assert manifest.name == "miq"
    assert [w.display_name for w in manifest.contributions.widgets] == ["Focus quality (miq)"]
    (sample,) = manifest.contributions.sample_data
    assert sample.display_name == "Defocus series (BBBC022 + simulated defocus)"


def test_manifest_is_installed(needs_entry_point):
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("miq")
    manifest.validate_imports()
    assert manifest.name == "miq"


# ---------------------------------------------------------------- the widget in a real viewer


@pytest.fixture
def qt(request):
    """(``make_napari_viewer``, ``qtbot``) once pytest-qt and a display are there (pytest-xvfb
    starts Xvfb); requested here rather than in test signatures so that their absence skips."""
    _require("pytestqt", "pip install pytest-qt")
    if not os.environ.get("DISPLAY"):
        msg = "no X display: install xvfb and pytest-xvfb"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return request.getfixturevalue("make_napari_viewer"), request.getfixturevalue("qtbot")


def _run_and_wait(qtbot, widget) -> None:
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.run_button.native, Qt.MouseButton.LeftButton)
    assert widget.running or widget.results is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
    assert widget.results is not None, widget.result_label.value


def test_widget_rates_layer_and_paints_overlay(qt, sample_image, model):
    from qtpy.QtCore import Qt

    make_napari_viewer, qtbot = qt
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(sample_image, name="field", scale=(0.65, 0.65))
    widget = _widget.FocusQualityWidget(viewer, model=model)
    viewer.window.add_dock_widget(widget, name="Focus quality (miq)")
    assert widget.layer_combo.value is layer
    viewer.reset_view()
    before = viewer.screenshot(canvas_only=True, flash=False)

    _run_and_wait(qtbot, widget)
    expected = miq.assess(sample_image, model)
    overlay = viewer.layers["field miq levels"]
    assert overlay.data.shape == (520, 696, 4) and overlay.rgb
    np.testing.assert_allclose(overlay.scale, layer.scale)
    assert widget.result_label.value.startswith(f"level {expected.level} (mean ")
    assert widget.result_label.native.text() == widget.result_label.value
    assert widget.layer_combo.value is layer  # the overlay is not offered as an input

    viewer.reset_view()
    after = viewer.screenshot(canvas_only=True, flash=False)
    _save_png(after, "napari_widget_field.png")
    _save_png(before, "napari_widget_field_before.png")
    # the overlay layer is visible on screen: red/orange (levels 0–1) over much of the field,
    # none before it was added (the image itself is gray)
    assert _reddish(before[..., :3]).mean() < 0.001
    assert _reddish(after[..., :3]).mean() > 0.15

    # errors end up in the label, and the widget can run again
    small = viewer.add_image(sample_image[:50, :60], name="too small")
    widget.layer_combo.value = small
    widget.results = None
    qtbot.mouseClick(widget.run_button.native, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.results is None and widget.result_label.value.startswith("error: ")
    assert "too small miq levels" not in viewer.layers and widget.run_button.enabled
    rgb = viewer.add_image(np.zeros((100, 100, 3), np.uint8), name="rgb", rgb=True)
    widget.layer_combo.value = rgb
    widget.run_button.native.click()
    assert not widget.running and "RGB" in widget.result_label.value


def test_widget_from_manifest_on_sample_stack(needs_entry_point, qt, model):
    make_napari_viewer, qtbot = qt
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("miq", "defocus_series")
    (layer,) = viewer.layers
    _dock, widget = viewer.window.add_plugin_dock_widget("miq", "Focus quality (miq)")
    assert isinstance(widget, _widget.FocusQualityWidget)
    widget._model = model  # (the bundled model, already loaded)
    widget.layer_combo.value = layer
    widget.mode_combo.value = "all"
    viewer.dims.set_point(0, 4.0)  # the last plane (18 µm)

    _run_and_wait(qtbot, widget)
    results = widget.results
    overlay = viewer.layers[f"{layer.name} miq levels"]
    assert overlay.data.shape == (5, 520, 696, 4)
    assert results["best"] in (0, 1, 2)
    assert viewer.dims.current_step[0] == results["best"]
    levels = ", ".join(str(row["level"]) for row in results["planes"])
    assert f"best plane {results['best']}" in widget.result_label.value
    assert f"levels per plane: {levels}" in widget.result_label.value

    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    _save_png(shot, "napari_widget_stack_best_plane.png")
    if os.environ.get("MIQ_TEST_ARTIFACTS"):  # the whole window, dock widget and label included
        _save_png(viewer.screenshot(canvas_only=False, flash=False), "napari_window_stack.png")
    assert _reddish(shot[..., :3]).mean() > 0.15
