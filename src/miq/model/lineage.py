"""Which in-focus files a model's weights have learned from, through every model it was built
from.

A model fine-tuned from another (``--init-from``), pruned from it, distilled from a teacher
(``--teacher``) or averaged from runs (``miq average-weights``) carries what those models
learned. An image is held out for a model only when neither the model nor any of those
ancestors trained on it: a check that reads only the model's own ``training.files`` calls an
image held out that its starting weights were trained on.

`lineage` follows what ``model.json`` records, in this order:

* ``training.lineage``, written by ``miq train`` and ``miq average-weights`` from the ancestors
  they read (their own files and lineages, complete as of training);
* otherwise (models trained before it was recorded) the references: ``training.base_model``
  (the documented starting model, nested; ``bundled_as`` names a model that ships with miq),
  else ``training.config.init_from``; ``training.config.teacher``; ``training.averaged_from``.
  A reference to a model folder that no longer exists, or to a model whose files were never
  recorded, is listed in `Lineage.unresolved`: what it trained on is unknown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .package import MODEL_VERSIONS, read_description, resolve_model_path

__all__ = ["Lineage", "file_key", "lineage", "lineage_record"]

_BUNDLED_FOLDERS = {path.parent.name: path for path in MODEL_VERSIONS.values()}


def file_key(path: str | os.PathLike) -> str:
    """``folder/name`` of an image path: how training files are matched to evaluation files
    (the data folder may sit elsewhere on another machine)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


@dataclass
class Lineage:
    """What a model and its ancestors trained on.

    Attributes
    ----------
    name : the model's name.
    files : ``folder/name`` of each training image → its recorded ``path`` (and ``sha256``)
        and the ``model`` found first to have trained on it (the model itself before its
        ancestors; the images its own calibration was fitted on count too, as
        ``"<name>'s calibration"``).
    ancestors : each model it was built from that could be read, as ``"name (how)"``.
    unresolved : each reference that could not be read (what it trained on is unknown).
    """

    name: str
    files: dict[str, dict] = field(default_factory=dict)
    ancestors: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    @property
    def trained_on(self) -> dict[str, str]:
        """``folder/name`` of each training image → the model that trained on it."""
        return {key: entry["model"] for key, entry in self.files.items()}

    @property
    def complete(self) -> bool:
        """True when every ancestor's training files are known."""
        return not self.unresolved

    def seen(self, files) -> dict[str, str]:
        """Of ``files`` (image paths), those the model or an ancestor trained on: ``folder/name``
        → the model that did."""
        keys = (file_key(f) for f in files)
        return {k: self.files[k]["model"] for k in keys if k in self.files}

    def _add(self, files, model: str) -> None:
        """Record ``files`` (``training.files`` entries, or ``training.lineage`` ones that name
        their ``model``) as trained on by ``model``, unless an earlier model already was."""
        for entry in files or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
                continue
            key = file_key(entry["path"])
            if key not in self.files:
                kept = {k: entry[k] for k in ("path", "sha256") if k in entry}
                self.files[key] = {**kept, "model": str(entry.get("model") or model)}


def _model_json(reference: str) -> Path | None:
    """The model.json a recorded reference points to, if it exists here: a bundled model's name,
    a model folder, its model.json, a weight or checkpoint file in it, or a bundled model's path
    on the machine that trained it (``src/miq/model/weights_*`` of a checkout)."""
    path = resolve_model_path(reference)
    if path.suffix == "":  # a folder that is not here
        path = path / "model.json"
    elif path.suffix == ".pt":
        path = path.with_name("model.json")
    if path.is_file():
        return path
    folder = path.parent
    if folder.parent.name == "model" and folder.name in _BUNDLED_FOLDERS:
        return _BUNDLED_FOLDERS[folder.name]
    return None


def _calibration_files(metadata: dict) -> list[dict]:
    """The images ``miq calibrate`` fitted the model's calibration on (``calibration.validation
    .files``), as ``training.files``-like entries."""
    calibration = metadata.get("calibration")
    validation = calibration.get("validation") if isinstance(calibration, dict) else None
    files = validation.get("files") if isinstance(validation, dict) else None
    return [{"path": f} for f in files or [] if isinstance(f, str)]


class _Walk:
    def __init__(self, result: Lineage) -> None:
        self.result = result
        self.visited: set[Path] = set()

    def model(self, path: Path, metadata: dict, how: str | None) -> None:
        """One model.json: its own files, then its recorded lineage or its references."""
        path = path.resolve()
        if path in self.visited:
            return
        self.visited.add(path)
        name = str(metadata.get("name", path.parent.name))
        if how is not None:
            self.result.ancestors.append(f"{name} ({how})")
        training = metadata.get("training")
        training = training if isinstance(training, dict) else {}
        self.result._add(training.get("files"), name)
        if how is None:  # the model's own calibration was fitted on images too
            self.result._add(_calibration_files(metadata), f"{name}'s calibration")
        recorded = training.get("lineage")
        if isinstance(recorded, dict):
            self.result._add(recorded.get("files"), name)
            self.result.ancestors += [str(a) for a in recorded.get("ancestors") or []]
            self.result.unresolved += [str(u) for u in recorded.get("unresolved") or []]
            return
        config = training.get("config")
        config = config if isinstance(config, dict) else {}
        base = training.get("base_model")
        if isinstance(base, dict):
            self.entry(base, f"the starting weights of {name}")
        elif config.get("init_from"):
            self.reference(str(config["init_from"]), f"starting weights of {name}")
        teacher = config.get("teacher")
        if teacher and not (isinstance(base, dict) and teacher == config.get("init_from")):
            self.reference(str(teacher), f"teacher of {name}")
        for run in training.get("averaged_from") or []:
            if isinstance(run, dict) and run.get("folder"):
                self.reference(str(run["folder"]), f"averaged into {name}")

    def entry(self, base: dict, how: str) -> None:
        """A documented ancestor (``training.base_model``): a bundled model by ``bundled_as``,
        else its recorded files and its own documented ancestor."""
        bundled = MODEL_VERSIONS.get(str(base.get("bundled_as")))
        metadata = read_description(bundled) if bundled is not None else None
        if metadata is not None:
            self.model(bundled, metadata, how)
            return
        name = str(base.get("name", "an unnamed model"))
        if base.get("files"):
            self.result._add(base["files"], name)
            self.result.ancestors.append(f"{name} ({how})")
        else:
            self.result.unresolved.append(f"{name} ({how}: its training files are not recorded)")
        if isinstance(base.get("base_model"), dict):
            self.entry(base["base_model"], f"the starting weights of {name}")

    def reference(self, reference: str, how: str) -> None:
        path = _model_json(reference)
        metadata = read_description(path) if path is not None else None
        if metadata is None:
            self.result.unresolved.append(f"{reference} ({how}: not found on this machine)")
            return
        self.model(path, metadata, how)


def lineage(model: str | os.PathLike) -> Lineage:
    """The `Lineage` of a model: a bundled model's name, a model folder or its model.json.

    Raises ValueError when the model's own model.json is missing or not a miq model
    description."""
    path = resolve_model_path(model)
    metadata = read_description(path)
    if metadata is None:
        raise ValueError(f"{path}: not a readable model.json")
    result = Lineage(str(metadata.get("name", path.parent.name)))
    _Walk(result).model(path, metadata, None)
    return result


def lineage_record(references: list[tuple[str, str]]) -> dict:
    """``training.lineage`` for a model built from ``references`` (each ``(reference, how)``: a
    bundled model's name, model folder, model.json or weight file, and how it was used, e.g.
    ``"starting weights"``):
    every ancestor's training files (``path``, ``sha256``, ``model``), the ancestors read and
    those that could not be, so that the record holds after the ancestors are deleted."""
    result = Lineage("")
    walk = _Walk(result)
    for reference, how in references:
        walk.reference(reference, how)
    files = list(result.files.values())
    return {"ancestors": result.ancestors, "unresolved": result.unresolved, "files": files}
