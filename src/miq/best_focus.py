"""The best-focused plane of a z-stack: the model's absolute curve, refined by a fine measure.

Rule (`best_plane`), per stack and channel:

1. The model rates every plane; its expected level (``level_mean``) is an absolute focus curve.
2. The *in-focus plateau* is every plane whose expected level is within ``plateau`` levels
   (default 0.5) of the curve's minimum. A level is ~2 µm of defocus at NA 0.5, so on fine stacks
   (sub-µm steps) many planes share the minimum and the model alone cannot rank them.
3. One plane on the plateau → it is the best (rule ``model``). Several → the plateau plane with
   the highest fine sharpness measure (default CellProfiler's FocusScore, the normalised
   variance) is the best (rule ``model+focus_score``). The measure ranks planes of one stack only,
   where its dependence on gain and content does not matter; the model keeps it from picking a
   sharp-looking plane far from focus (dust, a bright out-of-focus blob).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .assessment import AssessOptions, ImageAssessment, assess
from .errors import MiqError
from .measures import MEASURES, defocus_score

__all__ = [
    "best_plane",
    "sharpness",
    "StackFocus",
    "FocusCurveBuilder",
    "focus_curve",
    "DEFAULT_FINE_MEASURE",
]

DEFAULT_FINE_MEASURE = "focus_score"


def best_plane(
    level_mean, fine_sharpness, *, plateau: float = 0.5, fine_measure: str = "fine measure"
) -> tuple[int, str]:
    """Index of the best plane and the rule that decided (see the module docstring).

    level_mean : (Z,) the model's expected level per plane (lower = sharper).
    fine_sharpness : (Z,) a sharpness measure per plane (higher = sharper).
    """
    levels = np.asarray(level_mean, dtype=np.float64)
    sharpness = np.asarray(fine_sharpness, dtype=np.float64)
    if levels.size == 0:
        raise ValueError("no planes")
    if levels.size == 1:
        return 0, "single plane"
    plateau_planes = np.flatnonzero(levels <= levels.min() + plateau)
    if plateau_planes.size == 1:
        return int(plateau_planes[0]), "model"
    return int(plateau_planes[np.argmax(sharpness[plateau_planes])]), f"model+{fine_measure}"


def sharpness(plane: np.ndarray, fine_measure: str = DEFAULT_FINE_MEASURE) -> float:
    """A plane's sharpness by the fine measure (higher = sharper), as `best_plane` takes
    it: the measure's value, sign-flipped for measures where blurrier scores higher."""
    return -defocus_score(fine_measure, MEASURES[fine_measure](plane))


@dataclass
class StackFocus:
    """The focus curve of one stack (one channel, one time point), its planes in z order.

    ``z`` plane indices, ``tags`` what the caller attached to each plane (e.g. its file),
    ``level_mean`` and ``certainty`` from the model, ``fine`` the fine measure's value (its own
    units), ``best`` an index into these, ``rule`` which step of `best_plane` decided,
    ``assessments`` each plane's `miq.ImageAssessment` (when kept), ``best_data`` the
    best plane's pixels (when kept).
    """

    z: list[int]
    tags: list
    level_mean: np.ndarray
    certainty: np.ndarray
    fine: np.ndarray
    best: int
    rule: str
    assessments: list[ImageAssessment] = field(default_factory=list, repr=False)
    best_data: np.ndarray | None = field(default=None, repr=False)


class FocusCurveBuilder:
    """Builds one stack's focus curve plane by plane (planes may come in any z order and are
    not kept in memory): the model's expected level and certainty and the fine measure per
    plane, then the best plane by `best_plane`.

    ``keep_assessments`` keeps every plane's assessment; ``keep_best`` keeps the pixels of the
    planes that can still turn out best (those on the running in-focus plateau), so that the
    best plane's pixels are at hand without reading the stack again.
    """

    def __init__(
        self,
        model=None,
        *,
        fine_measure: str = DEFAULT_FINE_MEASURE,
        plateau: float = 0.5,
        options: AssessOptions = AssessOptions(),
        keep_assessments: bool = False,
        keep_best: bool = False,
    ) -> None:
        from .model.runtime import default_model

        if fine_measure not in MEASURES:
            raise ValueError(f"unknown measure {fine_measure!r}; choose from {', '.join(MEASURES)}")
        self.model = model or default_model()
        self.fine_measure, self.plateau, self.options = fine_measure, plateau, options
        self.keep_assessments, self.keep_best = keep_assessments, keep_best
        self._rows: list[tuple] = []  # (z, tag, level_mean, certainty, sharpness, assessment)
        self._candidates: dict[int, np.ndarray] = {}  # row number -> pixels (keep_best)

    def add(
        self,
        z: int,
        plane: np.ndarray,
        label: str = "array",
        tag=None,
        options: AssessOptions | None = None,
    ) -> ImageAssessment:
        """Rate one plane (H, W) at z index ``z`` (with ``options`` when this plane needs its
        own, e.g. its file's pixel size); raises `miq.errors.MiqError` when it cannot be rated
        (it is then left out of the curve)."""
        a = assess(plane, self.model, options=options or self.options, name=label)
        sharp = sharpness(plane, self.fine_measure)
        self._rows.append(
            (z, tag, a.level_mean, a.certainty, sharp, a if self.keep_assessments else None)
        )
        if self.keep_best:
            self._keep_if_candidate(len(self._rows) - 1, plane)
        return a

    def _keep_if_candidate(self, row: int, plane: np.ndarray) -> None:
        lowest = min(r[2] for r in self._rows)
        self._candidates[row] = plane
        for kept in list(self._candidates):
            if not self._rows[kept][2] <= lowest + self.plateau:
                del self._candidates[kept]

    def finish(self) -> StackFocus | None:
        """The curve, planes sorted by z; None when no plane could be rated."""
        if not self._rows:
            return None
        order = sorted(range(len(self._rows)), key=lambda i: self._rows[i][0])
        rows = [self._rows[i] for i in order]
        z, tags, levels, certainty, sharp, assessments = (list(x) for x in zip(*rows))
        best, rule = best_plane(levels, sharp, plateau=self.plateau, fine_measure=self.fine_measure)
        return StackFocus(
            z,
            tags,
            np.array(levels),
            np.array(certainty),
            np.array(sharp),
            best,
            rule,
            assessments if self.keep_assessments else [],
            self._candidates.get(order[best]) if self.keep_best else None,
        )


def focus_curve(
    stack: Iterable[np.ndarray],
    model=None,
    *,
    fine_measure: str = DEFAULT_FINE_MEASURE,
    plateau: float = 0.5,
    options: AssessOptions = AssessOptions(),
    labels: Iterable[str] | None = None,
    keep_assessments: bool = False,
    on_error: Callable[[str], None] | None = None,
) -> StackFocus | None:
    """The focus curve and best plane of a z-stack: ``stack`` (Z, H, W) or any iterable of 2D
    planes in z order (read one at a time: a generator keeps memory to one plane).

    Planes that cannot be rated are reported through ``on_error`` (else raised) and left out.
    Returns None when no plane could be rated. ``labels``: how errors name each plane.
    """
    builder = FocusCurveBuilder(
        model,
        fine_measure=fine_measure,
        plateau=plateau,
        options=options,
        keep_assessments=keep_assessments,
    )
    names = iter(labels) if labels is not None else None
    for z, plane in enumerate(stack):
        label = next(names) if names is not None else f"plane {z}"
        try:
            builder.add(z, np.asarray(plane), label)
        except MiqError as exc:
            if on_error is None:
                raise
            on_error(str(exc))
    return builder.finish()
