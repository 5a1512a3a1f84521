"""ModelPackage: model.json read once, every weight file sha256-checked, by every loader.

A model folder with one tampered weight file is refused, with one line naming that file, by every
path that loads weights: ONNX Runtime (``predict``), the torch GPU path, ``train --init-from``,
``train --teacher``, ONNX re-export and the bioimage.io export.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import miq
from miq.cli import main
from miq.data import SAMPLE_PATH
from miq.errors import ModelError
from miq.model.package import BUNDLED_MODELS, ModelPackage

SAMPLE = SAMPLE_PATH


@pytest.fixture(params=["model.onnx", "model.safetensors"])
def tampered(request, tmp_path):
    """A copy of the fast bundled model with one byte of one weight file flipped; (folder, name)."""
    folder = tmp_path / "tampered"
    shutil.copytree(BUNDLED_MODELS["fast"].parent, folder)
    weights = folder / request.param
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    return folder, request.param


def _one_error_line(capsys, name: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("miq: error:")]
    assert len(errors) == 1, lines
    assert name in errors[0] and "sha256 does not match" in errors[0], errors[0]
    return errors[0]


def test_package_reads_metadata_once_into_typed_fields():
    package = ModelPackage.open("v3-slim")
    assert package.name == "miq-compact-slim-v3" and package.architecture == "compact"
    assert package.architecture_kwargs["channels"] == [8, 24, 24, 48, 48]
    assert package.patch_size == 84 and package.n_levels == 11 and package.um_per_level == 2.0
    assert package.levels.defocus_um == tuple(2.0 * k for k in range(11))
    assert package.optics.pixel_size_um == 0.65 and package.optics.numerical_aperture == 0.5
    assert package.calibration.fitted and package.calibration.class_bias.shape == (11,)
    # is_bundled: the default bundled model (workers load their own copy), not any shipped one
    assert ModelPackage.open("default").is_bundled and ModelPackage.open("fast").is_bundled
    assert not package.is_bundled and not ModelPackage.open("v2").is_bundled
    model = miq.load_model("fast", threads=1)
    assert model.package.path == BUNDLED_MODELS["fast"] and model.levels == model.package.levels


def test_open_accepts_a_folder_its_json_or_a_weight_file():
    folder = BUNDLED_MODELS["fast"].parent
    for given in (folder, folder / "model.json", folder / "model.onnx", str(folder)):
        assert ModelPackage.open(given).path == folder / "model.json"


def test_predict_refuses_tampered_weights(tampered, tmp_path, capsys):
    folder, name = tampered
    with pytest.raises(ModelError, match="sha256 does not match") as error:
        miq.load_model(folder)
    assert name in str(error.value)
    code = main(["predict", str(SAMPLE), "-o", str(tmp_path / "out"), "-m", str(folder), "-q"])
    assert code == 2
    _one_error_line(capsys, name)
    assert not (tmp_path / "out" / "results.csv").exists()


def test_torch_gpu_path_refuses_tampered_weights(tampered, monkeypatch):
    pytest.importorskip("torch")
    from miq.model import runtime, torch_runner
    from miq.model.network import load_network

    folder, name = tampered
    monkeypatch.setattr(runtime, "_onnxruntime_has_cuda", lambda: False)
    monkeypatch.setattr(torch_runner, "torch_has_cuda", lambda: True)
    with pytest.raises(ModelError, match=f"{name}: sha256 does not match"):
        miq.load_model(folder, device="cuda")
    with pytest.raises(ModelError, match=f"{name}: sha256 does not match"):
        load_network(ModelPackage(folder / "model.json"))


@pytest.mark.parametrize("option", ["--init-from", "--teacher"])
def test_training_refuses_tampered_weights(tampered, option, tmp_path, capsys):
    pytest.importorskip("torch")
    folder, name = tampered
    source = folder / "model.safetensors" if option == "--init-from" else folder
    code = main(
        ["train", str(SAMPLE), "-o", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2"]
        + ["--architecture", "separable", option, str(source)]
    )
    assert code == 2
    _one_error_line(capsys, name)
    assert not (tmp_path / "run" / "model.json").exists()


def test_reexport_refuses_tampered_weights(tampered):
    pytest.importorskip("torch")
    from miq.training.export import reexport_onnx

    folder, name = tampered
    before = (folder / "model.onnx").read_bytes()
    with pytest.raises(ModelError, match=f"{name}: sha256 does not match"):
        reexport_onnx(folder)
    assert (folder / "model.onnx").read_bytes() == before


def test_bioimageio_export_refuses_tampered_weights(tampered, tmp_path, capsys):
    pytest.importorskip("bioimageio.spec")
    folder, name = tampered
    code = main(["export-bioimageio", "-o", str(tmp_path / "x.zip"), "-m", str(folder)])
    assert code == 2
    _one_error_line(capsys, name)
    assert not (tmp_path / "x.zip").exists()


def test_malformed_calibration_is_refused(tmp_path):
    import json

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODELS["fast"].parent, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["calibration"]["class_bias"] = [0.0] * 3
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="'calibration' does not fit an? 11-level model"):
        ModelPackage.open(folder)
    assert np.isfinite(ModelPackage.open("fast").calibration.class_bias).all()


def test_model_option_help_names_every_bundled_model():
    """``--model``'s help lists what each alias means and every version that loads by name, so
    it cannot go stale when the default changes."""
    from miq.cli.help import MODEL_HELP
    from miq.model.package import MODEL_ALIASES, MODEL_VERSIONS

    for name in [*MODEL_ALIASES, *MODEL_VERSIONS]:
        assert name in MODEL_HELP, name
    for alias, version in MODEL_ALIASES.items():
        assert f"both {version}" in MODEL_HELP or f"{alias} ({version})" in MODEL_HELP
