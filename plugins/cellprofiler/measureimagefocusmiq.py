"""CellProfiler 5 plug-in module ``MeasureImageFocusMIQ``: absolute focus quality with miq.

A thin layer over miq's public API (``miq.load_model``, ``miq.assess``,
``miq.render.overlay_image``): every number it records is the one ``miq.assess`` returns for the
same pixels. Put this file in CellProfiler's plug-in folder (Preferences → "CellProfiler plugins
directory") and install ``miq`` into the Python environment that runs CellProfiler.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from cellprofiler_core.constants.measurement import COLTYPE_FLOAT, COLTYPE_INTEGER, IMAGE
from cellprofiler_core.image import Image
from cellprofiler_core.module import Module
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.subscriber import ImageSubscriber
from cellprofiler_core.setting.text import Float, ImageName, Integer, Text

import miq
from miq.assessment import AssessOptions, ImageAssessment
from miq.errors import ImageContentError, MiqError
from miq.model.runtime import FocusModel
from miq.render import overlay_image
from miq.resampling import resample_to_pixel_size

HELP = """\
MeasureImageFocusMIQ
====================

**MeasureImageFocusMIQ** rates how far out of focus an image is, in absolute terms, with the
`miq` deep-learning focus model (a successor of Yang et al. 2018, *Assessing microscope image
focus quality with deep learning*, BMC Bioinformatics 19:77).

Every 84×84 pixel patch gets a probability over 11 defocus levels (level 0 = in focus, level k ≈
2k µm of defocus at NA 0.5 and 0.65 µm per pixel) and a certainty; the patches are combined into
one distribution for the whole image. No thresholds need tuning and each image is rated on its
own, so the numbers compare across plates and experiments. Gain, offset and bit depth do not
change the result (each patch is standardised inside the model).

|

============ ============ ===============
Supports 2D? Supports 3D? Respects masks?
============ ============ ===============
YES          NO           NO
============ ============ ===============

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

All are image measurements named ``ImageFocusMIQ_<Feature>_<ImageName>``:

-  *Level*: the most probable defocus level of the whole image (0 = in focus … 10).
-  *LevelMean*: the expected level (probability-weighted mean, fractional).
-  *DefocusUm*: the expected defocus in µm (LevelMean × the model's µm per level, 2 µm).
-  *Certainty*: certainty of the whole-image distribution, 0 (uniform) to 1 (one level).
-  *PInFocus*: probability that the image is in focus, i.e. of the levels counted as in focus.
-  *InFocus*: 1 if PInFocus ≥ the in-focus threshold, else 0.
-  *Prob_0* … *Prob_10*: the whole-image probability of each level.

An image that cannot be rated (constant, NaN/Inf, smaller than one patch) gets NaN measurements
and a warning in the log; the run goes on.

The optional overlay image is the input (contrast-stretched) with a border around every patch:
hue = level (0 red … 10 blue), brightness = certainty.
"""

LOGGER = logging.getLogger(__name__)

C_FOCUS_MIQ = "ImageFocusMIQ"
# whole-image features and their column types; Prob_<k> columns follow, one per model level
SCALAR_FEATURES: tuple[tuple[str, str], ...] = (
    ("Level", COLTYPE_INTEGER),
    ("LevelMean", COLTYPE_FLOAT),
    ("DefocusUm", COLTYPE_FLOAT),
    ("Certainty", COLTYPE_FLOAT),
    ("PInFocus", COLTYPE_FLOAT),
    ("InFocus", COLTYPE_INTEGER),
)
# level count of the bundled model: used only when a custom model cannot be loaded
DEFAULT_N_LEVELS = 11


@functools.lru_cache(maxsize=4)
def cached_model(path: str, threads: int) -> FocusModel:
    """The miq model at ``path`` ('' = the bundled model), loaded once per process.

    ``threads``: ONNX Runtime inference threads (0 = its default, all cores).
    Raises :class:`miq.errors.ModelError` when the path is not a miq model.
    """
    return miq.load_model(path or None, threads=threads or None)


def assessment_features(assessment: ImageAssessment | None, n_levels: int) -> dict[str, float]:
    """Feature name → value for one image (NaN everywhere when ``assessment`` is None)."""
    if assessment is None:
        features = {name: float("nan") for name, _ in SCALAR_FEATURES}
        features.update({f"Prob_{k}": float("nan") for k in range(n_levels)})
        return features
    features = {
        "Level": int(assessment.level),
        "LevelMean": float(assessment.level_mean),
        "DefocusUm": float(assessment.defocus_um),
        "Certainty": float(assessment.certainty_aggregate),
        "PInFocus": float(assessment.p_in_focus),
        "InFocus": int(bool(assessment.in_focus)),
    }
    features.update({f"Prob_{k}": float(p) for k, p in enumerate(assessment.probabilities)})
    return features


def overlay_rgb(
    pixels: np.ndarray,
    assessment: ImageAssessment | None,
    model: FocusModel,
    options: AssessOptions,
) -> np.ndarray:
    """The overlay of ``miq.render.overlay_image`` without its legend, at the input's size.

    Returns float32 RGB (H, W, 3) in 0–1 for an (H, W) input. When miq resampled the image to
    the model's pixel size, the overlay is drawn on the resampled image and resized back. Without
    an assessment (image not rated) it is the input in gray.
    """
    height, width = pixels.shape
    if assessment is None:
        lo, hi = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        gray = np.nan_to_num((pixels - lo) / (hi - lo)) if hi > lo else np.zeros_like(pixels)
        return np.repeat(np.asarray(gray, np.float32)[:, :, None], 3, axis=2)
    from PIL import Image as PILImage

    shown = pixels
    if assessment.scale != 1.0:
        shown = resample_to_pixel_size(pixels, options.pixel_size_um, model.pixel_size_um)
    picture = overlay_image(shown, assessment).crop((0, 0, shown.shape[1], shown.shape[0]))
    if picture.size != (width, height):
        picture = picture.resize((width, height), PILImage.Resampling.BILINEAR)
    return np.asarray(picture, dtype=np.float32) / 255.0


class MeasureImageFocusMIQ(Module):
    __doc__ = HELP

    module_name = "MeasureImageFocusMIQ"
    category = "Measurement"
    variable_revision_number = 1

    def create_settings(self) -> None:
        """Define the module's settings (the order of :meth:`settings` is the saved order)."""
        self.image_name = ImageSubscriber(
            "Select the image to measure",
            "None",
            doc="A grayscale 2D image, at least 84×84 pixels. Color images are refused.",
        )
        self.use_bundled_model = Binary(
            "Use the bundled model?",
            True,
            doc="""\
Select *Yes* to use the model that ships with miq. Select *No* to give a model of your own
(a folder made by ``miq train`` or ``miq calibrate``, or its ``model.json``).""",
        )
        self.model_path = Text(
            "Model folder or model.json",
            "",
            doc="Path of a miq model folder, its ``model.json`` or its ``model.onnx``.",
        )
        self.in_focus_levels = Integer(
            "Levels counted as in focus",
            3,
            minval=1,
            doc="""\
Levels 0 … N−1 count as in focus when computing *PInFocus*. The default 3 (levels 0–2, up to
about 4 µm of defocus with the bundled model) is the rule of the original Fiji plug-in.""",
        )
        self.in_focus_threshold = Float(
            "In-focus threshold",
            0.5,
            minval=0.0,
            maxval=1.0,
            doc="*InFocus* is 1 when *PInFocus* (a probability, 0–1) is at least this value.",
        )
        self.pixel_size_um = Float(
            "Pixel size (µm, 0 = the model's)",
            0.0,
            minval=0.0,
            doc="""\
The image's pixel size in µm. The levels are defined at the model's pixel size (0.65 µm for
the bundled model); give the real pixel size of images sampled otherwise and miq resamples each
image to the model's pixel size before rating, so that the levels keep their meaning in µm.
0 takes the images to be at the model's pixel size.""",
        )
        self.threads = Integer(
            "Inference threads (0 = all cores)",
            1,
            minval=0,
            doc="""\
CPU threads for the model. CellProfiler already runs one worker per core during an analysis,
so 1 is best there; use 0 (all cores) for a single-process run such as ``cellprofiler -c``.""",
        )
        self.wants_overlay = Binary(
            "Save an overlay image?",
            False,
            doc="""\
Select *Yes* to make an RGB image of the input with a border around every patch: hue = level
(0 red … 10 blue), brightness = certainty. Save it with **SaveImages** or view it downstream.""",
        )
        self.overlay_name = ImageName(
            "Name the overlay image",
            "FocusOverlay",
            doc="Name of the overlay image, for use by later modules.",
        )

    def settings(self) -> list:
        """All settings, in the order they are saved in a pipeline file."""
        return [
            self.image_name,
            self.use_bundled_model,
            self.model_path,
            self.in_focus_levels,
            self.in_focus_threshold,
            self.pixel_size_um,
            self.threads,
            self.wants_overlay,
            self.overlay_name,
        ]

    def visible_settings(self) -> list:
        """Settings shown in the GUI for the current choices."""
        result = [self.image_name, self.use_bundled_model]
        if not self.use_bundled_model.value:
            result.append(self.model_path)
        result += [
            self.in_focus_levels,
            self.in_focus_threshold,
            self.pixel_size_um,
            self.threads,
            self.wants_overlay,
        ]
        if self.wants_overlay.value:
            result.append(self.overlay_name)
        return result

    def model(self) -> FocusModel:
        """The chosen model, loaded once per process and kept for all image sets."""
        path = "" if self.use_bundled_model.value else self.model_path.value.strip()
        return cached_model(path, int(self.threads.value))

    def n_levels(self) -> int:
        """The model's level count (the bundled model's when the chosen one cannot be loaded)."""
        try:
            return self.model().n_levels
        except MiqError:
            return DEFAULT_N_LEVELS

    def assess_options(self) -> AssessOptions:
        """miq's options from the settings."""
        pixel_size = float(self.pixel_size_um.value)
        return AssessOptions(
            in_focus_levels=int(self.in_focus_levels.value),
            in_focus_threshold=float(self.in_focus_threshold.value),
            pixel_size_um=pixel_size if pixel_size > 0 else None,
        )

    def validate_module(self, pipeline) -> None:
        """Refuse a model that cannot be loaded and an in-focus level count it does not have."""
        if not self.use_bundled_model.value and not self.model_path.value.strip():
            raise ValidationError("Give the path of a miq model folder", self.model_path)
        try:
            model = self.model()
        except MiqError as exc:
            raise ValidationError(str(exc), self.model_path) from None
        if self.in_focus_levels.value >= model.n_levels:
            raise ValidationError(
                f"The model has {model.n_levels} levels: count at most {model.n_levels - 1} "
                "as in focus",
                self.in_focus_levels,
            )

    def feature_name(self, feature: str) -> str:
        """The full measurement name, e.g. ``ImageFocusMIQ_Level_DNA``."""
        return f"{C_FOCUS_MIQ}_{feature}_{self.image_name.value}"

    def feature_columns(self) -> list[tuple[str, str]]:
        """(feature, column type) for every measurement this module makes."""
        probs = [(f"Prob_{k}", COLTYPE_FLOAT) for k in range(self.n_levels())]
        return list(SCALAR_FEATURES) + probs

    def run(self, workspace) -> None:
        """Rate one image set's image; record its measurements and (optionally) the overlay."""
        name = self.image_name.value
        image = workspace.image_set.get_image(name, must_be_grayscale=True)
        pixels = image.pixel_data
        model = self.model()
        options = self.assess_options()
        try:
            assessment = miq.assess(pixels, model, options=options, name=name)
        except ImageContentError as exc:
            LOGGER.warning("MeasureImageFocusMIQ: %s; its measurements are NaN", exc)
            assessment = None
        features = assessment_features(assessment, model.n_levels)
        for feature, value in features.items():
            workspace.measurements.add_image_measurement(self.feature_name(feature), value)
        overlay = None
        if self.wants_overlay.value or self.show_window:
            overlay = overlay_rgb(pixels, assessment, model, options)
        if self.wants_overlay.value:
            workspace.image_set.add(self.overlay_name.value, Image(overlay, parent_image=image))
        if self.show_window:
            workspace.display_data.pixels = pixels
            workspace.display_data.overlay = overlay
            workspace.display_data.statistics = [
                (feature, f"{value:.3f}" if isinstance(value, float) else str(value))
                for feature, value in features.items()
            ]

    def display(self, workspace, figure) -> None:
        """Input, overlay and the measurements side by side (GUI only)."""
        data = workspace.display_data
        figure.set_subplots((3, 1))
        figure.subplot_imshow_grayscale(0, 0, data.pixels, title=self.image_name.value)
        figure.subplot_imshow_color(
            1,
            0,
            data.overlay,
            title="Patch level (hue), certainty (brightness)",
            sharexy=figure.subplot(0, 0),
        )
        figure.subplot_table(2, 0, data.statistics, col_labels=("Feature", "Value"))

    def volumetric(self) -> bool:
        """3D images are not supported: the model rates 2D planes."""
        return False

    def get_measurement_columns(self, pipeline) -> list[tuple[str, str, str]]:
        """(object, feature, column type) of every image measurement made."""
        return [
            (IMAGE, self.feature_name(feature), coltype)
            for feature, coltype in self.feature_columns()
        ]

    def get_categories(self, pipeline, object_name: str) -> list[str]:
        """The measurement category, for image measurements only."""
        return [C_FOCUS_MIQ] if object_name == IMAGE else []

    def get_measurements(self, pipeline, object_name: str, category: str) -> list[str]:
        """Feature names (without category and image) of the category."""
        if object_name == IMAGE and category == C_FOCUS_MIQ:
            return [feature for feature, _ in self.feature_columns()]
        return []

    def get_measurement_images(
        self, pipeline, object_name: str, category: str, measurement: str
    ) -> list[str]:
        """The measured image, for the module's own measurements."""
        if measurement in self.get_measurements(pipeline, object_name, category):
            return [self.image_name.value]
        return []
