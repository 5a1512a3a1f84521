"""The "Focus quality (miq)" dock widget and the Qt-free logic behind it.

Pure functions (no Qt needed; they work with `napari.components.ViewerModel`):

* `rate_layer_data` — an image array in, per-plane `miq.ImageAssessment` objects,
  the best plane (miq's best-plane rule) and an RGBA overlay array out.
* `overlay_rgba` — one assessment → per-pixel RGBA overlay.
* `summary_text` — the text the widget's label shows.
* `current_plane_index`, `show_results` — read the viewer's position in a layer, add
  the overlay layer and move the viewer to the best plane.

Overlay: an **Image layer, RGBA uint8 per pixel** (not a Labels layer). Each pixel gets the colour
of its patch's most probable level from `miq.render.level_colors` (level 0 red … 10 blue,
as in miq's overlay PNGs) and an alpha of 255 × the patch certainty (0 for invalid, constant
patches), so uncertain patches fade out, as their borders darken in miq's PNG overlays. The layer
is drawn with ``translucent`` blending at layer opacity 1 over the source image (patch
certainties are rarely above 0.6, so the image stays visible; lower the opacity to taste).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container

if TYPE_CHECKING:  # pragma: no cover
    import napari
    from napari.components import ViewerModel
    from napari.layers import Image

    from miq.assessment import AssessOptions, ImageAssessment
    from miq.model.runtime import FocusModel

__all__ = [
    "PLANE_MODES",
    "FocusQualityWidget",
    "current_plane_index",
    "overlay_rgba",
    "rate_layer_data",
    "show_results",
    "summary_text",
]

#: "current": rate the plane the viewer shows; "all": every plane of the stack axis (axis −3).
PLANE_MODES = ("current", "all")
OVERLAY_SUFFIX = " miq levels"
OVERLAY_OPACITY = 1.0


def overlay_rgba(assessment: ImageAssessment) -> np.ndarray:
    """Per-pixel RGBA overlay of one assessment: (H, W, 4) uint8, H × W = the rated image.

    RGB = `miq.render.level_colors` of the patch's level; A = round(255 × patch
    certainty), 0 where the patch is invalid. Pixels covered by two patches (the shifted last
    row/column) take the later patch, as `miq.tiling.paint` does.
    """
    from miq.render import level_colors
    from miq.tiling import paint

    grid = assessment.grid
    n_levels = assessment.patch_probabilities.shape[-1]
    table = np.zeros((n_levels + 1, 4), np.uint8)  # last row: invalid patch (level −1)
    table[:n_levels, :3] = level_colors(n_levels)
    table[:n_levels, 3] = 255
    levels = paint(assessment.patch_level, grid)
    rgba = table[levels]  # level −1 indexes the transparent last row
    certainty = paint(assessment.patch_certainty.astype(np.float32), grid)
    alpha = np.round(255.0 * np.clip(certainty, 0.0, 1.0)).astype(np.uint8)
    rgba[..., 3] = np.minimum(rgba[..., 3], alpha)
    return rgba


def _plane_row(index: tuple[int, ...], a: ImageAssessment) -> dict[str, Any]:
    return {
        "index": index,
        "level": int(a.level),
        "level_mean": float(a.level_mean),
        "defocus_um": float(a.defocus_um),
        "certainty": float(a.certainty_aggregate),
        "p_in_focus": float(a.p_in_focus),
        "in_focus": bool(a.in_focus),
        "n_patches": int(a.n_patches),
        "n_foreground": int(a.n_foreground),
        "empty": bool(a.empty),
    }


def rate_layer_data(
    data: Any,
    model: FocusModel | None = None,
    plane_mode: str = "current",
    plane_index: Sequence[int] = (),
    *,
    options: AssessOptions | None = None,
) -> dict[str, Any]:
    """Rate a layer's image data with `miq.assess`; no Qt involved.

    Parameters
    ----------
    data : (..., H, W) array-like (numpy, dask, zarr), grayscale; the last two axes are Y, X in
        px (H, W ≥ 84). Leading axes are planes (e.g. Z, or T, Z).
    model : a `miq.FocusModel`; default the bundled one (cached).
    plane_mode : ``"current"`` rates the plane at ``plane_index``; ``"all"`` rates every plane
        along axis −3 (the stack axis), the other leading axes fixed at ``plane_index``. For 2D
        data both rate the one image.
    plane_index : data index of the plane on the leading axes, length ``data.ndim − 2``
        (missing axes count as 0).
    options : `miq.AssessOptions` (in-focus rule, pixel size); default miq's.

    Returns
    -------
    dict with

    * ``mode``: the plane mode used (``"current"`` for 2D data);
    * ``planes``: one dict per rated plane: ``index`` (its leading data index), ``level``,
      ``level_mean``, ``defocus_um`` (µm), ``certainty``, ``p_in_focus``, ``in_focus``,
      ``n_patches``, ``n_foreground`` (the foreground patches the level rests on), ``empty``;
    * ``assessments``: the `miq.ImageAssessment` of each plane;
    * ``best``: position in ``planes`` of the best plane by
      `miq.best_focus.best_plane` (model level plateau refined by the same fine measure
      as ``miq best-focus``), ``None`` unless ``mode == "all"``; ``best_index`` its data index;
      ``rule``: which step of the rule decided;
    * ``overlay``: RGBA uint8 of `overlay_rgba`, shape ``offset``-aligned with the data:
      (1, …, 1, H, W, 4) for one plane, (1, …, 1, Z, H, W, 4) for all planes, with
      ``data.ndim + 1`` axes; ``offset``: the leading data index (length ``data.ndim − 2``) of
      the overlay's first pixel, for placing it over the source (see `show_results`).
    """
    from miq.assessment import AssessOptions, assess
    from miq.best_focus import focus_curve

    if plane_mode not in PLANE_MODES:
        raise ValueError(f"plane_mode must be one of {PLANE_MODES}, got {plane_mode!r}")
    shape = tuple(int(s) for s in data.shape)
    if len(shape) < 2:
        raise ValueError(f"expected an image with at least 2 axes, got shape {shape}")
    n_lead = len(shape) - 2
    index = tuple(int(i) for i in plane_index)[:n_lead]
    index = index + (0,) * (n_lead - len(index))
    for axis, (i, size) in enumerate(zip(index, shape[:n_lead])):
        if not 0 <= i < size:
            raise ValueError(f"plane index {i} out of range for axis {axis} of size {size}")
    options = options or AssessOptions()
    if model is None:
        from miq.model.runtime import default_model

        model = default_model()

    mode = plane_mode if n_lead else "current"
    if mode == "all":
        indices = [index[:-1] + (z,) for z in range(shape[-3])]
        offset = index[:-1] + (0,)
    else:
        indices = [index]
        offset = index

    best, rule = None, ""
    if mode == "all":  # the focus curve of miq best-focus: every plane must rate
        curve = focus_curve(
            (np.asarray(data[idx]) for idx in indices),
            model,
            options=options,
            labels=(f"plane {idx}" for idx in indices),
            keep_assessments=True,
        )
        assessments, best, rule = curve.assessments, curve.best, curve.rule
    else:
        plane = np.asarray(data[index] if index else data)
        assessments = [
            assess(plane, model, options=options, name=f"plane {index}" if index else "image")
        ]
    overlays = np.stack([overlay_rgba(a) for a in assessments])  # (n, H', W', 4)
    if mode == "current":
        overlays = overlays[0]
    overlay = overlays.reshape((1,) * (len(shape) + 1 - overlays.ndim) + overlays.shape)
    return {
        "mode": mode,
        "planes": [_plane_row(i, a) for i, a in zip(indices, assessments)],
        "assessments": assessments,
        "best": best,
        "best_index": None if best is None else indices[best],
        "rule": rule,
        "overlay": overlay,
        "offset": offset,
    }


def summary_text(results: dict[str, Any]) -> str:
    """Text for the widget's label: the whole-image numbers of the rated plane, or of every
    plane and the best one for ``mode == "all"`` (defocus in µm)."""

    def line(row: dict[str, Any]) -> str:
        if row.get("empty"):
            return "empty: nothing above the camera noise (no level, no in/out call)"
        flag = "in focus" if row["in_focus"] else "out of focus"
        return (
            f"level {row['level']} (mean {row['level_mean']:.2f}, ~{row['defocus_um']:.1f} µm)  "
            f"certainty {row['certainty']:.2f}  P(in focus) {row['p_in_focus']:.2f}  {flag}"
        )

    planes = results["planes"]
    if results["mode"] != "all":
        return line(planes[0])
    best = results["best"]
    rows = [
        f"plane {row['index'][-1]}: level {row['level']} · {row['defocus_um']:.1f} µm · "
        f"certainty {row['certainty']:.2f} · P(in focus) {row['p_in_focus']:.2f}"
        for row in planes
    ]
    levels = ", ".join(str(row["level"]) for row in planes)
    return "\n".join(
        [
            f"best plane {planes[best]['index'][-1]} (rule {results['rule']}): {line(planes[best])}",
            f"levels per plane: {levels}",
            *rows,
        ]
    )


def current_plane_index(viewer: ViewerModel, layer: Image) -> tuple[int, ...]:
    """The data index on the layer's leading (non-YX) axes at the viewer's current position,
    rounded and clipped to the layer's shape; () for a 2D layer."""
    n_lead = layer.ndim - 2
    if n_lead <= 0:
        return ()
    position = np.asarray(layer.world_to_data(viewer.dims.point), dtype=np.float64)
    shape = layer.data[0].shape if layer.multiscale else layer.data.shape
    return tuple(int(np.clip(np.round(position[i]), 0, shape[i] - 1)) for i in range(n_lead))


def show_results(viewer: ViewerModel, layer: Image, results: dict[str, Any]) -> Image:
    """Add (or replace) the overlay layer ``"<layer name> miq levels"`` over ``layer`` and, for
    ``mode == "all"``, move the viewer to the best plane. Returns the overlay layer.

    The overlay has the source's scale; its translate is the source's plus ``offset`` × scale on
    the leading axes, so it lies exactly on the rated plane(s). Rotation/shear/affine of the
    source are not copied.
    """
    scale = np.asarray(layer.scale, dtype=np.float64)
    translate = np.asarray(layer.translate, dtype=np.float64).copy()
    n_lead = layer.ndim - 2
    translate[:n_lead] += np.asarray(results["offset"], dtype=np.float64) * scale[:n_lead]
    name = layer.name + OVERLAY_SUFFIX
    if name in viewer.layers:
        viewer.layers.remove(name)
    overlay = viewer.add_image(
        results["overlay"],
        rgb=True,
        name=name,
        scale=scale,
        translate=translate,
        opacity=OVERLAY_OPACITY,
        blending="translucent",
        metadata={"miq": {k: results[k] for k in ("mode", "planes", "best", "best_index", "rule")}},
    )
    if results["best"] is not None:
        best = results["best_index"]
        world_axis0 = viewer.dims.ndim - layer.ndim
        for axis in range(n_lead):
            world = float(layer.translate[axis]) + best[axis] * float(layer.scale[axis])
            viewer.dims.set_point(world_axis0 + axis, world)
    return overlay


def _load_model(threads: int | None) -> FocusModel:
    import miq

    return miq.load_model(threads=threads)


class FocusQualityWidget(Container):
    """Dock widget: pick an image layer and planes, press Run; miq rates it in a worker thread
    (``napari.qt.threading.thread_worker``, the viewer stays responsive), then adds the overlay
    — an RGBA **Image** layer ``"<layer> miq levels"``, colour = patch level as in miq's overlays,
    alpha = patch certainty (see the module docstring) — and shows the whole-image level,
    expected level, defocus (µm), certainty and P(in focus) in a label; for "all planes" also the
    per-plane levels and the best plane, to which the viewer moves.

    Grayscale layers only (2D, or the current plane / all planes along axis −3 of a stack); an
    RGB layer is refused. A multichannel file opened with napari's ``channel_axis`` gives one
    layer per channel: rate each. A multiscale layer is rated at full resolution.

    Parameters
    ----------
    viewer : the napari viewer (injected by napari).
    model : a `miq.FocusModel`; default the bundled model, loaded on the first run.
    threads : inference threads for the default model (None: ONNX Runtime's default).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        model: FocusModel | None = None,
        threads: int | None = None,
    ) -> None:
        from magicgui.widgets import ComboBox, Label, PushButton
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QSizePolicy

        super().__init__(labels=False)
        self._viewer = viewer
        self._model = model
        self._threads = threads
        self._worker = None
        self.results: dict[str, Any] | None = None
        self.layer_combo = ComboBox(label="image", choices=self._image_layer_choices)
        self.mode_combo = ComboBox(
            label="planes",
            choices=[("current plane", "current"), ("all planes (stack)", "all")],
            value="current",
        )
        self.run_button = PushButton(text="Run")
        self.result_label = Label(value="")
        label = self.result_label.native
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # take the dock's spare height (a wrapped multi-line QLabel is otherwise cut short)
        label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.run_button.changed.connect(self.run)
        choices = Container(widgets=[self.layer_combo, self.mode_combo], labels=True)
        choices.margins = (0, 0, 0, 0)
        self.extend([choices, self.run_button, self.result_label])
        events = viewer.layers.events
        for name in ("inserted", "removed", "reordered", "renamed"):
            if hasattr(events, name):
                getattr(events, name).connect(self.reset_choices)

    def _image_layer_choices(self, _widget=None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (layer.name, layer)
            for layer in self._viewer.layers
            if isinstance(layer, Image) and not layer.name.endswith(OVERLAY_SUFFIX)
        ]

    @property
    def running(self) -> bool:
        """True while a rating runs in the worker thread."""
        return self._worker is not None

    def run(self, _value: Any = None) -> None:
        """Start rating the chosen layer in a worker thread (ignored while one runs)."""
        from napari.qt.threading import thread_worker

        layer = self.layer_combo.value
        if self.running:
            return
        if layer is None:
            self.result_label.value = "no image layer"
            return
        if layer.rgb:
            self.result_label.value = "RGB layers are not rated: open the channels as layers"
            return
        data = layer.data[0] if layer.multiscale else layer.data
        index = current_plane_index(self._viewer, layer)
        mode = self.mode_combo.value

        def work() -> dict[str, Any]:
            from miq.errors import MiqError

            try:
                if self._model is None:
                    self._model = _load_model(self._threads)
                return rate_layer_data(data, self._model, mode, index)
            except (MiqError, ValueError) as exc:  # expected: a bad image, shown in the label
                return {"error": str(exc)}  # (anything else goes to napari's notifications too)

        worker = thread_worker(work, start_thread=False)()
        worker.returned.connect(lambda results: self._on_done(layer, results))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.run_button.enabled = False
        self.result_label.value = f"rating {layer.name} …"
        worker.start()

    def _on_done(self, layer: Image, results: dict[str, Any]) -> None:
        if "error" in results:
            self.result_label.value = f"error: {results['error']}"
            return
        self.results = results
        if layer in self._viewer.layers:
            show_results(self._viewer, layer, results)
        self.result_label.value = summary_text(results)

    def _on_error(self, exc: BaseException) -> None:
        self.result_label.value = f"error: {exc}"

    def _on_finished(self) -> None:
        self._worker = None
        self.run_button.enabled = True
