"""A model on disk: ``model.json`` and the weight files it lists, read and checked once.

`ModelPackage` is the one owner of ``model.json``: it resolves a bundled model's name or a
folder, parses the metadata once, checks every listed weight file against its sha256 (a missing,
replaced or corrupt file is refused with one line naming it), and exposes what the rest of miq
needs as typed attributes (levels, optics, calibration, architecture). Nothing else in miq
indexes the metadata dictionary.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..optics import LevelTable, Optics

__all__ = [
    "ModelPackage",
    "Calibration",
    "apply_patch_calibration",
    "read_description",
    "BUNDLED_MODELS",
    "BUNDLED_MODEL",
    "MODEL_VERSIONS",
    "MODEL_ALIASES",
    "MODEL_FORMAT",
]

_WEIGHTS = Path(__file__).parent
#: every model that ships in the package, by version (model cards: docs/explanation/model-*.md)
MODEL_VERSIONS = {
    "v2": _WEIGHTS / "weights" / "model.json",  # miq-compact-v2 (2026-11-26)
    "fast-v1": _WEIGHTS / "weights_fast" / "model.json",  # miq-separable-fast-v1 (2026-11-26)
    "v3": _WEIGHTS / "weights_v3" / "model.json",  # miq-compact-v3 (2026-11-29)
    "fast-v2": _WEIGHTS / "weights_fast_v2" / "model.json",  # miq-separable-fast-v2 (2026-11-29)
    "v3-slim": _WEIGHTS / "weights_v3_slim" / "model.json",  # miq-compact-slim-v3 (2026-11-30)
    "fast-v3": _WEIGHTS / "weights_fast_v3" / "model.json",  # miq-separable-fast-v3 (2026-12-01)
    "fast-v4": _WEIGHTS / "weights_fast_v4" / "model.json",  # miq-separable-fast-v4 (2026-12-02)
}
#: what ``--model default`` / ``--model fast`` (and no ``--model``) mean: both are fast-v4 since
#: 2026-12-02, fast-v3 with its later stages narrowed (pruned from and distilled by it), found
#: non-inferior to fast-v3 at ~0.8 x its time (docs/lab-notebook/width-24-chain.md); fast-v3,
#: fast-v2, v3-slim, v3 and the older models stay loadable by name
MODEL_ALIASES = {"default": "fast-v4", "fast": "fast-v4"}
BUNDLED_MODEL = MODEL_VERSIONS[MODEL_ALIASES["default"]]
#: models that ship in the package, by the name ``--model`` and `ModelPackage.open` accept
BUNDLED_MODELS = {
    **{alias: MODEL_VERSIONS[version] for alias, version in MODEL_ALIASES.items()},
    **MODEL_VERSIONS,
}
MODEL_FORMAT = "miq-model/1"
WEIGHT_KINDS = ("onnx", "safetensors")


def apply_patch_calibration(probabilities: np.ndarray, bias, temperature: float) -> np.ndarray:
    """softmax((log p + bias) / temperature) along the last axis; (N, K) → (N, K) float32."""
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None))
    z = (logp + np.asarray(bias, dtype=np.float64)) / float(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """Post-hoc calibration stored in model.json (see `miq.calibration`): per-level
    ``class_bias`` (K,), ``patch_temperature`` and ``image_temperature``; ``fitted`` is False
    when the model stores none (identity). A content-dependent image temperature
    (``image_temperature_slope`` ≠ 0) is T = image_temperature ·
    exp(slope · (gap − image_temperature_centre)), gap = the mean certainty of the aggregated
    patches − the certainty of their aggregate (`miq.assessment.aggregate`)."""

    class_bias: np.ndarray
    patch_temperature: float = 1.0
    image_temperature: float = 1.0
    fitted: bool = False
    image_temperature_slope: float = 0.0
    image_temperature_centre: float = 0.0


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """``model.json`` of a bundled model's name (``"default"``, ``"fast"`` or a version such as
    ``"v2"``: `BUNDLED_MODELS`; a path of that name wins), a model folder, its ``model.json``
    or its ``model.onnx``; None is the default model."""
    if path is None:
        return BUNDLED_MODEL
    p = Path(path)
    if isinstance(path, str) and path in BUNDLED_MODELS and not p.exists():
        return BUNDLED_MODELS[path]
    if p.is_dir():
        return p / "model.json"
    if p.suffix in (".onnx", ".safetensors"):
        return p.with_name("model.json")
    return p


def read_description(path: str | os.PathLike) -> dict | None:
    """A ``model.json`` parsed without loading or checking its weights (None when it cannot be
    read or is not a miq model description): what a model records about itself, for models
    whose weight files may be gone (`miq.model.lineage` follows a model's ancestors with it)."""
    try:
        metadata = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
        return None
    return metadata


class ModelPackage:
    """A model folder: ``model.json`` parsed once and every weight file sha256-checked.

    Attributes
    ----------
    path : Path of ``model.json``.
    name : the model's name (e.g. ``miq-compact-v2``).
    patch_size : patch side in px.
    n_levels : number of defocus levels K.
    um_per_level : µm of defocus per level.
    levels : `miq.optics.LevelTable`, the defocus (µm) of each level.
    optics : `miq.optics.Optics` the model was trained for (its ``pixel_size_um`` is the
        pixel size the levels are defined at).
    architecture, architecture_kwargs : how `miq.model.network.load_network` builds it.
    calibration : `Calibration`.
    """

    def __init__(self, metadata_path: str | os.PathLike) -> None:
        path = Path(metadata_path)
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not a readable miq model.json ({exc})") from None
        if not isinstance(metadata, dict) or metadata.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"{path}: not a miq model description (format {MODEL_FORMAT} expected)"
            )
        self.path = path
        self._metadata = metadata
        # every entry miq uses is checked here, before any weights are loaded or image read
        self.patch_size = self._integer("patch_size", 8, 1024)
        self.n_levels = self._integer("n_levels", 2, 256)
        self.um_per_level = self._number("um_per_level", metadata.get("um_per_level"))
        self.levels = self._level_table(metadata.get("level_defocus_um"))
        optics = self._entry("optics", dict)
        self._has_optics = bool(optics)
        try:
            self.optics = Optics(**{k: self._optics_value(k, v) for k, v in optics.items()})
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{path}: malformed 'optics' entry ({exc})") from None
        self.architecture = self._entry("architecture", str)
        self.architecture_kwargs = self._entry("architecture_kwargs", dict)
        self.name = str(metadata.get("name", path.parent.name))
        self.n_parameters = metadata.get("n_parameters")
        self.calibration = self._read_calibration(self._entry("calibration", dict))
        weights = self._entry("weights", dict)
        if not any(kind in weights for kind in WEIGHT_KINDS):
            raise ModelError(f"{path}: 'weights' lists no {' or '.join(WEIGHT_KINDS)} file")
        self._weights: dict[str, bytes] = {}
        for kind in WEIGHT_KINDS:
            if kind in weights:
                self._weights[kind] = self._verified(kind)

    def _malformed(self, key: str, what: str, value) -> ModelError:
        shown = json.dumps(value, allow_nan=True)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return ModelError(f"{self.path}: {key!r} must be {what}, got {shown}")

    def _integer(self, key: str, low: int, high: int) -> int:
        """The whole-number entry ``key`` of model.json, checked to lie in [low, high]."""
        value = self._metadata.get(key)
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
        if not ok or not low <= value <= high:
            raise self._malformed(key, f"a whole number from {low} to {high}", value)
        return int(value)

    def _number(self, key: str, value, *, positive: bool = True) -> float:
        """``value`` (the entry ``key``) as a finite float (> 0 when ``positive``)."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > 0 or not positive)
        if not ok:
            what = "a finite number" + (" > 0" if positive else "")
            raise self._malformed(key, what, value)
        return float(value)

    def _entry(self, key: str, kind: type):
        """The optional entry ``key`` of type ``kind`` (its empty value when absent)."""
        value = self._metadata.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            raise self._malformed(key, {dict: "an object", str: "a string"}[kind], value)
        return value

    def _level_table(self, defocus) -> LevelTable:
        """``level_defocus_um``: absent, or n_levels finite numbers (µm), increasing."""
        if not defocus:
            return LevelTable()
        what = f"a list of {self.n_levels} increasing finite numbers (µm)"
        if not isinstance(defocus, list) or len(defocus) != self.n_levels:
            raise self._malformed("level_defocus_um", what, defocus)
        values = [self._number("level_defocus_um", v, positive=False) for v in defocus]
        if any(b <= a for a, b in zip(values, values[1:])):
            raise self._malformed("level_defocus_um", what, defocus)
        return LevelTable(defocus_um=tuple(values))

    def _optics_value(self, key: str, value):
        if key == "psf_width_px":
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok:
                raise self._malformed(f"optics.{key}", "a whole number", value)
            return value
        return self._number(f"optics.{key}", value)

    @classmethod
    def open(cls, model: str | os.PathLike | None = None) -> ModelPackage:
        """The package of a bundled model's name, a folder, ``model.json`` or a weight file
        beside it; None is the default bundled model. Raises `miq.errors.ModelError`."""
        path = resolve_model_path(model)
        if not path.exists():
            raise ModelError(
                f"{path}: model not found (give a model folder or its model.json, or a bundled "
                f"model: {', '.join(BUNDLED_MODELS)})"
            )
        return cls(path)

    @property
    def pixel_size_um(self) -> float:
        """µm per px the levels are defined at (0.65 when the model records no optics)."""
        return self.optics.pixel_size_um

    @property
    def is_bundled(self) -> bool:
        """True for the default bundled model (workers load their own copy)."""
        return self.path.resolve() == BUNDLED_MODEL.resolve()

    @property
    def is_shipped(self) -> bool:
        """True for any model that ships inside the package (`MODEL_VERSIONS`): its files are
        part of the installation and are never rewritten."""
        here = self.path.resolve()
        return any(here == shipped.resolve() for shipped in MODEL_VERSIONS.values())

    @property
    def folder(self) -> Path:
        return self.path.parent

    def copy_to(self, folder: str | os.PathLike, *, name: str | None = None) -> ModelPackage:
        """This model's model.json and weight files (each sha256-checked) copied into
        ``folder`` (created; refused with `miq.errors.ModelError` when it already holds a
        model.json), each written atomically, the copy renamed ``name`` if given; returns the
        copy's package."""
        from ..io import atomic_write

        target = Path(folder)
        if (target / "model.json").exists():
            raise ModelError(
                f"{target}: already holds a model.json; give a new folder for the copy"
            )
        metadata = self._metadata_copy()
        if name:
            metadata["name"] = name
        for kind, payload in self._weights.items():
            with atomic_write(target / metadata["weights"][kind]["file"]) as fh:
                fh.write(payload)
        with atomic_write(target / "model.json", "w") as fh:
            fh.write(json.dumps(metadata, indent=2))
        return ModelPackage(target / "model.json")

    def has_weights(self, kind: str) -> bool:
        return kind in self._weights

    def weight_file(self, kind: str) -> Path:
        """Path of the ``kind`` (``"onnx"`` or ``"safetensors"``) weights."""
        self.weight_bytes(kind)
        return self.path.parent / self._metadata["weights"][kind]["file"]

    def weight_bytes(self, kind: str) -> bytes:
        """The checked bytes of the ``kind`` weights; ModelError when the model lists none."""
        if kind not in self._weights:
            label = "ONNX" if kind == "onnx" else kind
            raise ModelError(f"{self.path}: metadata lists no {label} weights")
        return self._weights[kind]

    def weight_sha256(self, kind: str) -> str | None:
        """The sha256 model.json records for the ``kind`` weights (None when not recorded)."""
        return (self._metadata.get("weights", {}).get(kind) or {}).get("sha256")

    def describe(self, *keys: str):
        """A read-only copy of a descriptive entry of model.json (``"training"``, ``"licence"``,
        ``"input"``, ``"created"`` …), for reports and exports; None when absent."""
        value = self._metadata
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return json.loads(json.dumps(value))

    def _metadata_copy(self) -> dict:
        """The whole parsed model.json (a deep copy: to write an updated model.json)."""
        return json.loads(json.dumps(self._metadata))

    def save_calibration(self, entry: dict) -> None:
        """Store a fitted calibration (see `miq.calibration.calibrate_model`) as the
        ``calibration`` entry of model.json (rewritten atomically)."""
        metadata = self._metadata_copy()
        metadata["calibration"] = entry
        self._save(metadata)

    def save_weight_sha256(self, kind: str) -> None:
        """Record the current sha256 of the ``kind`` weight file in model.json (after the file
        was rewritten, e.g. by `miq.training.export.reexport_onnx`)."""
        metadata = self._metadata_copy()
        weights = self.path.parent / metadata["weights"][kind]["file"]
        metadata["weights"][kind]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        self._save(metadata)

    def _save(self, metadata: dict) -> None:
        from ..io import atomic_write

        with atomic_write(self.path, "w") as fh:
            fh.write(json.dumps(metadata, indent=2))

    def _verified(self, kind: str) -> bytes:
        """The bytes of the ``kind`` weight file, after checking that model.json names it by a
        path inside the model folder and records its sha256, and that the sha256 matches."""
        label = "ONNX" if kind == "onnx" else kind
        info = self._metadata["weights"][kind]
        name = info.get("file") if isinstance(info, dict) else None
        if not isinstance(name, str) or not name:
            raise self._malformed(f"weights.{kind}.file", "a file name", name)
        weights = self.path.parent / name
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or relative.drive:
            raise ModelError(
                f"{self.path}: {label} weights {name!r} are not inside the model folder; "
                "give a file name relative to model.json"
            )
        expected = info.get("sha256")
        if not (isinstance(expected, str) and len(expected) == 64 and _is_hex(expected)):
            raise ModelError(
                f"{self.path}: no valid sha256 recorded for the {label} weights {name!r}; a "
                "model folder must record the sha256 of every weight file (miq train and miq "
                "export write it)"
            )
        try:
            payload = weights.read_bytes()
        except OSError as exc:
            raise ModelError(
                f"{self.path}: {label} weights missing ({exc.strerror or exc})"
            ) from None
        if hashlib.sha256(payload).hexdigest() != expected.lower():
            raise ModelError(
                f"{weights}: sha256 does not match model.json: corrupt or replaced file"
            )
        return payload

    def _read_calibration(self, entry: dict) -> Calibration:
        """The ``calibration`` entry: K finite biases, finite temperatures > 0."""
        bias = entry.get("class_bias")
        if bias is None:
            bias = [0.0] * self.n_levels
        if not isinstance(bias, list) or len(bias) != self.n_levels:
            raise ModelError(
                f"{self.path}: 'calibration' does not fit a {self.n_levels}-level model "
                f"('class_bias' must list {self.n_levels} numbers)"
            )
        values = [self._number("calibration.class_bias", b, positive=False) for b in bias]
        patch_t = self._number("calibration.patch_temperature", entry.get("patch_temperature", 1.0))
        image_t = self._number("calibration.image_temperature", entry.get("image_temperature", 1.0))
        slope, centre = (
            self._number(f"calibration.{key}", entry.get(key, 0.0), positive=False)
            for key in ("image_temperature_slope", "image_temperature_centre")
        )
        return Calibration(
            np.asarray(values, dtype=np.float64), patch_t, image_t, bool(entry), slope, centre
        )

    def __repr__(self) -> str:
        return f"ModelPackage({self.name!r}, {self.path})"
