"""MeasureImageFocusMIQ in a real headless CellProfiler 5 run (cellprofiler_core, no GUI, no Java).

The plug-in is loaded by CellProfiler's own plug-in loader from ``plugins/cellprofiler``. The
pipeline Images → Metadata → NamesAndTypes → Groups → MeasureImageFocusMIQ is built in code,
saved as pipeline text and loaded back (so the module's settings round-trip through a .cppipe),
then run on two 16-bit TIFFs: the bundled in-focus BBBC022 field and the same field defocused by
18 µm with miq's simulator. Only the ImageIO reader is active (Bio-Formats, which needs Java, is
switched off). Run with ``.ci/cellprofiler-test.sh``.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile

import miq
import miq.optics
from miq.assessment import AssessOptions
from miq.data import SAMPLE_PATH

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "cellprofiler"
SAMPLE = SAMPLE_PATH
IMAGE = "DNA"
OVERLAY = "FocusOverlay"
FEATURES = ["Level", "LevelMean", "DefocusUm", "Certainty", "PInFocus", "InFocus"] + [
    f"Prob_{k}" for k in range(11)
]
# image set → {image name: pixel data}, filled by the CaptureImages test module during the run
CAPTURED: dict[int, dict[str, np.ndarray]] = {}


@pytest.fixture(scope="module")
def plugin_class():
    """CellProfiler set up headless with the plug-in folder; the plug-in's Module class."""
    from cellprofiler_core.preferences import set_headless, set_plugin_directory

    set_headless()
    import cellprofiler_core.modules  # noqa: F401  (importing it registers the built-in modules)
    from cellprofiler_core.constants.modules import all_modules
    from cellprofiler_core.module import Module
    from cellprofiler_core.setting.subscriber import ImageSubscriber
    from cellprofiler_core.utilities.core.modules import add_module_for_tst
    from cellprofiler_core.utilities.core.plugins import PLUGIN_STATUS, load_plugins

    set_plugin_directory(str(PLUGIN_DIR), globally=False)
    load_plugins(modules_only=True)
    status = PLUGIN_STATUS.get("measureimagefocusmiq")
    assert status and status["loaded"], status

    class CaptureImages(Module):
        """Test helper: keeps the pixel data of two images of each image set."""

        module_name = "CaptureImages"
        category = "Other"
        variable_revision_number = 1

        def create_settings(self):
            self.input_name = ImageSubscriber("Input image", "None")
            self.overlay_name = ImageSubscriber("Overlay image", "None")

        def settings(self):
            return [self.input_name, self.overlay_name]

        def run(self, workspace):
            number = workspace.measurements.image_set_number
            CAPTURED[number] = {
                name: workspace.image_set.get_image(name).pixel_data.copy()
                for name in (self.input_name.value, self.overlay_name.value)
            }

    add_module_for_tst(CaptureImages)
    return all_modules["MeasureImageFocusMIQ"]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """The bundled in-focus field and a version defocused by 18 µm, as 16-bit TIFFs."""
    raw = tifffile.imread(SAMPLE)
    unit = raw.astype(np.float64) / 65535.0  # unit scale: full scale of a 16-bit camera = 1
    blurred = miq.optics.degrade(unit, 18.0, optics=miq.optics.Optics(), rng=18)
    folder = tmp_path_factory.mktemp("cp_images")
    files = {"in_focus": folder / "A01_s3_in_focus.tif", "defocused": folder / "A01_s3_z18um.tif"}
    tifffile.imwrite(files["in_focus"], raw)
    tifffile.imwrite(files["defocused"], np.round(blurred * 65535).clip(0, 65535).astype(np.uint16))
    return files


@pytest.fixture(scope="module")
def bundled_model():
    return miq.load_model(None, threads=1)


def build_pipeline_text(plugin_class) -> str:
    """The test pipeline, made in code and saved as pipeline (.cppipe) text."""
    from cellprofiler_core.constants.modules.namesandtypes import ASSIGN_ALL
    from cellprofiler_core.pipeline import Pipeline

    pipeline = Pipeline()
    for number, name in enumerate(
        ["Images", "Metadata", "NamesAndTypes", "Groups", "MeasureImageFocusMIQ", "CaptureImages"],
        start=1,
    ):
        module = pipeline.instantiate_module(name)
        module.set_module_num(number)
        pipeline.add_module(module)
    _, _, names_and_types, _, focus, capture = pipeline.modules()
    names_and_types.assignment_method.value = ASSIGN_ALL
    names_and_types.single_image_provider.value = IMAGE
    assert isinstance(focus, plugin_class)
    focus.image_name.value = IMAGE
    focus.wants_overlay.value = True
    focus.overlay_name.value = OVERLAY
    capture.input_name.value = IMAGE
    capture.overlay_name.value = OVERLAY
    text = io.StringIO()
    pipeline.dump(text)
    return text.getvalue()


def run_pipeline(plugin_class, paths: list[Path]):
    """Load the pipeline text and run it headless on ``paths``.

    Returns (measurements, pipeline, events, captured): the pipeline's events (errors would be
    among them) and, per image set, the input and overlay pixel data as CellProfiler had them.
    """
    from cellprofiler_core.constants.reader import AVAILABLE_READERS
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.reader import fill_readers, filter_active_readers

    fill_readers(check_config=False)
    filter_active_readers(["ImageIO"], by_module_name=False)  # no Bio-Formats, no Java
    assert list(AVAILABLE_READERS) == ["ImageIO"]

    pipeline = Pipeline()
    pipeline.loadtxt(io.StringIO(build_pipeline_text(plugin_class)), raise_on_error=True)
    events = []
    pipeline.add_listener(lambda _pipeline, event: events.append(event))
    pipeline.add_urls([path.as_uri() for path in paths])
    CAPTURED.clear()
    measurements = pipeline.run()
    return measurements, pipeline, events, dict(CAPTURED)


def run_errors(events) -> list:
    """The errors among a run's pipeline events."""
    from cellprofiler_core.pipeline.event.run_exception import RunException

    return [
        getattr(e, "error", e) for e in events if isinstance(e, RunException) or hasattr(e, "error")
    ]


@pytest.fixture(scope="module")
def run(plugin_class, image_files):
    """The pipeline run on the in-focus and the defocused file."""
    return run_pipeline(plugin_class, list(image_files.values()))


def image_numbers_by_file(measurements) -> dict[str, int]:
    return {
        measurements["Image", f"FileName_{IMAGE}", n]: n for n in measurements.get_image_numbers()
    }


def measured(measurements, number: int) -> dict[str, float]:
    return {f: measurements["Image", f"ImageFocusMIQ_{f}_{IMAGE}", number] for f in FEATURES}


def expected(assessment) -> dict[str, float]:
    values = {
        "Level": assessment.level,
        "LevelMean": assessment.level_mean,
        "DefocusUm": assessment.defocus_um,
        "Certainty": assessment.certainty_aggregate,
        "PInFocus": assessment.p_in_focus,
        "InFocus": int(assessment.in_focus),
    }
    values.update({f"Prob_{k}": p for k, p in enumerate(assessment.probabilities)})
    return values


def test_pipeline_runs_without_errors(run, image_files):
    measurements, _, events, _ = run
    assert not run_errors(events)
    assert set(image_numbers_by_file(measurements)) == {p.name for p in image_files.values()}


def test_focus_levels(run, image_files):
    measurements, _, _, _ = run
    numbers = image_numbers_by_file(measurements)
    sharp = measured(measurements, numbers[image_files["in_focus"].name])
    blurred = measured(measurements, numbers[image_files["defocused"].name])
    assert sharp["Level"] <= 2 and sharp["PInFocus"] > 0.5 and sharp["InFocus"] == 1
    assert blurred["Level"] >= 7 and blurred["InFocus"] == 0
    for values in (sharp, blurred):
        assert sum(values[f"Prob_{k}"] for k in range(11)) == pytest.approx(1.0, abs=1e-5)
        assert values["DefocusUm"] == pytest.approx(2.0 * values["LevelMean"])


def test_equals_miq_assess_on_the_same_arrays(run, image_files, bundled_model):
    """The measurements are miq.assess's on CellProfiler's pixels (uint16 rescaled to 0–1), and
    miq gives the same on the raw uint16 file (scale invariance)."""
    measurements, _, _, captured = run
    numbers = image_numbers_by_file(measurements)
    for path in image_files.values():
        number = numbers[path.name]
        raw = tifffile.imread(path)
        cp_pixels = captured[number][IMAGE]
        assert cp_pixels.shape == raw.shape and cp_pixels.dtype == np.float32
        np.testing.assert_allclose(cp_pixels, raw / 65535.0, rtol=0, atol=1e-7)
        got = measured(measurements, number)
        same = expected(miq.assess(cp_pixels, bundled_model, options=AssessOptions()))
        for feature in FEATURES:
            assert got[feature] == pytest.approx(same[feature], abs=1e-12), feature
        from_raw = expected(miq.assess(raw, bundled_model, options=AssessOptions()))
        assert from_raw["Level"] == got["Level"] and from_raw["InFocus"] == got["InFocus"]
        for feature in FEATURES:
            assert got[feature] == pytest.approx(from_raw[feature], abs=1e-4), feature


def test_overlay_image(run, image_files):
    measurements, _, _, captured = run
    numbers = image_numbers_by_file(measurements)
    for path in image_files.values():
        pictures = captured[numbers[path.name]]
        overlay = pictures[OVERLAY]
        assert overlay.shape == pictures[IMAGE].shape + (3,)
        assert 0.0 <= overlay.min() and overlay.max() <= 1.0
        colored = np.ptp(overlay, axis=2) > 0.2  # patch borders; the image itself is gray
        assert 0.05 < colored.mean() < 0.6


def test_measurement_columns_match_measurements(run):
    measurements, pipeline, _, _ = run
    columns = [c for c in pipeline.get_measurement_columns() if c[1].startswith("ImageFocusMIQ_")]
    assert sorted(c[1] for c in columns) == sorted(f"ImageFocusMIQ_{f}_{IMAGE}" for f in FEATURES)
    assert {c[0] for c in columns} == {"Image"}
    recorded = set(measurements.get_feature_names("Image"))
    assert all(c[1] in recorded for c in columns)
    focus = pipeline.modules()[4]
    assert focus.get_categories(pipeline, "Image") == ["ImageFocusMIQ"]
    assert focus.get_measurements(pipeline, "Image", "ImageFocusMIQ") == FEATURES
    assert focus.get_measurement_images(pipeline, "Image", "ImageFocusMIQ", "Level") == [IMAGE]


def test_unratable_file_gets_nan_and_the_run_goes_on(plugin_class, image_files, tmp_path):
    """A blank (constant) field among the files: NaN measurements, no error, the rest rated."""
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((200, 300), 1000, np.uint16))
    measurements, _, events, captured = run_pipeline(plugin_class, [blank, image_files["in_focus"]])
    assert not run_errors(events)
    numbers = image_numbers_by_file(measurements)
    assert all(np.isnan(v) for v in measured(measurements, numbers[blank.name]).values())
    assert captured[numbers[blank.name]][OVERLAY].shape == (200, 300, 3)
    assert measured(measurements, numbers[image_files["in_focus"].name])["InFocus"] == 1


def test_no_java_started(run):
    import scyjava

    assert not scyjava.jvm_started()


# --- the module run directly on one image set (settings, edge cases) ---------------------------


def run_module(plugin_class, pixels: np.ndarray, show_window: bool = False, **settings):
    """Run a configured module on one image; (module, workspace)."""
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.workspace import Workspace

    module = plugin_class()
    module.set_module_num(1)
    module.image_name.value = IMAGE
    module.wants_overlay.value = True
    module.overlay_name.value = OVERLAY
    for name, value in settings.items():
        getattr(module, name).value = value
    module.show_window = show_window
    pipeline = Pipeline()
    pipeline.add_module(module)
    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    image_set.add(IMAGE, Image(pixels))
    workspace = Workspace(pipeline, module, image_set, ObjectSet(), Measurements(), image_set_list)
    module.run(workspace)
    return module, workspace


def direct_values(workspace) -> dict[str, float]:
    return {
        f: workspace.measurements.get_current_image_measurement(f"ImageFocusMIQ_{f}_{IMAGE}")
        for f in FEATURES
    }


@pytest.fixture(scope="module")
def unit_image() -> np.ndarray:
    return tifffile.imread(SAMPLE).astype(np.float32) / 65535.0


def test_settings_reach_miq(plugin_class, unit_image, bundled_model):
    """In-focus levels, threshold and pixel size are passed to miq.assess as AssessOptions."""
    settings = {"in_focus_levels": 1, "in_focus_threshold": 0.9, "pixel_size_um": 0.4}
    _, workspace = run_module(plugin_class, unit_image, **settings)
    options = AssessOptions(in_focus_levels=1, in_focus_threshold=0.9, pixel_size_um=0.4)
    want = expected(miq.assess(unit_image, bundled_model, options=options))
    got = direct_values(workspace)
    for feature in FEATURES:
        assert got[feature] == pytest.approx(want[feature], abs=1e-12), feature
    overlay = workspace.image_set.get_image(OVERLAY).pixel_data
    assert overlay.shape == unit_image.shape + (3,)  # drawn on the resampled image, resized back


def test_unratable_image_gives_nan_and_goes_on(plugin_class):
    constant = np.full((200, 300), 0.25, np.float32)
    _, workspace = run_module(plugin_class, constant)
    assert all(np.isnan(v) for v in direct_values(workspace).values())
    assert workspace.image_set.get_image(OVERLAY).pixel_data.shape == (200, 300, 3)


def test_model_is_loaded_once(plugin_class):
    first, second = plugin_class(), plugin_class()
    assert first.model() is second.model()
    second.threads.value = 2
    assert second.model() is not first.model() and second.model() is second.model()


def test_validation(plugin_class):
    from cellprofiler_core.setting import ValidationError

    module = plugin_class()
    module.validate_module(None)
    module.use_bundled_model.value = False
    with pytest.raises(ValidationError):
        module.validate_module(None)
    module.model_path.value = "/nonexistent/model-folder"
    with pytest.raises(ValidationError, match="model not found"):
        module.validate_module(None)
    assert module.n_levels() == 11  # measurement columns still defined
    module.model_path.value = str(Path(miq.__file__).parent / "model" / "weights")
    module.validate_module(None)
    module.in_focus_levels.value = 11
    with pytest.raises(ValidationError, match="11 levels"):
        module.validate_module(None)


def test_visible_settings(plugin_class):
    module = plugin_class()

    def shown(setting) -> bool:
        return any(s is setting for s in module.visible_settings())

    assert not shown(module.model_path) and not shown(module.overlay_name)
    module.use_bundled_model.value = False
    module.wants_overlay.value = True
    assert shown(module.model_path) and shown(module.overlay_name)


def test_display(plugin_class, unit_image):
    """The GUI display gets the image, the overlay and a table (recorded by a stand-in figure)."""
    module, workspace = run_module(plugin_class, unit_image, show_window=True)
    calls = []

    class Figure:
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append((name, args, kwargs))

    module.display(workspace, Figure())
    names = [name for name, _, _ in calls]
    assert names[0] == "set_subplots" and "subplot_imshow_color" in names
    table = next(args for name, args, _ in calls if name == "subplot_table")[2]
    assert [row[0] for row in table] == FEATURES
