"""bioimage.io export: the package validates offline, passes bioimageio.core's model test with
both weight formats, and reproduces miq's calibrated per-patch probabilities."""

from __future__ import annotations

import importlib.util
import socket
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("onnx")
pytest.importorskip("bioimageio.spec")
pytest.importorskip("bioimageio.core")

pytestmark = [
    pytest.mark.needs_torch,
    # bioimageio.spec's cache pre-fill warns about relative paths inside a package; harmless
    pytest.mark.filterwarnings("ignore:Found mapping with 'source':UserWarning"),
]

WEIGHT_FORMATS = ("onnx", "pytorch_state_dict")
TOLERANCE = 1e-4  # probabilities: the export's own check (_EXPORT_TOLERANCE)


def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in this test")


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    """No network for the whole module, and bioimageio's cache in a temporary folder."""
    from bioimageio.spec import settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket.socket, "connect_ex", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        mp.setattr(settings, "cache_path", tmp_path_factory.mktemp("bioimageio-cache"))
        yield


@pytest.fixture(scope="module")
def package(tmp_path_factory, offline) -> Path:
    from miq.export import export_bioimageio

    out = tmp_path_factory.mktemp("bioimageio") / "miq-model.zip"
    assert export_bioimageio(out) == out
    return out


def _read_npy(package: Path, name: str) -> np.ndarray:
    import io

    with zipfile.ZipFile(package) as zf:
        return np.load(io.BytesIO(zf.read(name)))


def _details(summary) -> str:
    return "\n".join(
        f"{d.name}: {d.status}; errors {[e.msg for e in d.errors]}" for d in summary.details
    )


def test_package_content(package):
    with zipfile.ZipFile(package) as zf:
        names = set(zf.namelist())
        readme = zf.read("README.md").decode("utf-8")
    assert {
        "rdf.yaml",
        "README.md",
        "cover.png",
        "test_input.npy",
        "test_output.npy",
        "weights.onnx",
        "weights.pt",
        "miq_focus_net.py",
    } <= names
    assert "## Validation" in readme
    assert "10.1186/s12859-018-2087-4" in readme
    assert "$" not in readme and "<!--" not in readme  # the template filled in, comments left out


def test_package_is_valid_offline(package):
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5

    descr = load_description(package, perform_io_checks=True)
    summary = descr.validation_summary
    assert isinstance(descr, v0_5.ModelDescr), summary.format()
    assert summary.status in ("valid-format", "passed"), summary.format()
    assert all(not d.errors for d in summary.details), _details(summary)
    assert descr.format_version.startswith("0.5.")
    assert descr.license == "BSD-3-Clause"
    assert [a.name for a in descr.authors] == ["miq developers"]
    assert [str(c.doi) for c in descr.cite] == ["10.1186/s12859-018-2087-4"]
    assert descr.weights.onnx is not None and descr.weights.pytorch_state_dict is not None
    (ipt,) = descr.inputs
    (out,) = descr.outputs
    assert [str(a.id) for a in ipt.axes] == ["batch", "channel", "y", "x"]
    assert [a.size for a in ipt.axes[2:]] == [84, 84]
    assert [p.id for p in ipt.preprocessing if p.id != "ensure_dtype"] == [
        "zero_mean_unit_variance"
    ]
    assert out.axes[1].channel_names == [f"level_{i}" for i in range(11)]


@pytest.mark.parametrize("weight_format", WEIGHT_FORMATS)
def test_bioimageio_core_model_test(package, weight_format):
    from bioimageio.core import test_model

    summary = test_model(package, weight_format=weight_format)
    assert summary.status == "passed", _details(summary)


def test_test_output_is_miqs_prediction(package):
    import miq
    from miq.assessment import prepare_patches

    test_input = _read_npy(package, "test_input.npy")
    test_output = _read_npy(package, "test_output.npy")
    assert test_input.shape == (1, 1, 84, 84) and test_input.dtype == np.float32
    assert test_output.shape == (1, 11) and test_output.dtype == np.float32
    model = miq.load_model(threads=1)
    np.testing.assert_allclose(model.predict(test_input[:, 0]), test_output, rtol=0, atol=TOLERANCE)
    # the test input is one of the sample image's patches as miq cuts them
    image = _sample_image()
    _, patches, _, _, _ = prepare_patches(image, model)
    assert any(np.array_equal(p, test_input[0, 0]) for p in patches)


def _sample_image() -> np.ndarray:
    from miq.data import sample_image

    return sample_image()


def test_both_weight_formats_reproduce_miq(package, tmp_path):
    """Every patch of the sample image: package ONNX and torch weights = miq within 1e-4."""
    import onnxruntime as ort
    import torch
    from bioimageio.spec import load_description

    import miq
    from miq.assessment import prepare_patches

    model = miq.load_model(threads=1)
    _, patches, _, _, _ = prepare_patches(_sample_image(), model)
    expected = model.predict(patches)
    x = patches[:, None]
    with zipfile.ZipFile(package) as zf:
        zf.extractall(tmp_path)

    session = ort.InferenceSession(
        str(tmp_path / "weights.onnx"), providers=["CPUExecutionProvider"]
    )
    onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(onnx_out - expected).max() < TOLERANCE

    descr = load_description(package, perform_io_checks=False)
    weights = descr.weights.pytorch_state_dict
    spec = importlib.util.spec_from_file_location(
        "miq_focus_net_pkg", tmp_path / "miq_focus_net.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = getattr(module, str(weights.architecture.callable))(**weights.architecture.kwargs)
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch_out = net.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(torch_out - expected).max() < TOLERANCE
    # the architecture file builds the same network as the bundled model's: same state dict
    from safetensors.torch import load_file

    from miq.model.runtime import BUNDLED_MODEL

    bundled = load_file(BUNDLED_MODEL.parent / "model.safetensors")
    assert state.keys() == bundled.keys()
    assert all(torch.equal(state[k], bundled[k]) for k in state)


def test_missing_dependency_is_one_line_error(monkeypatch, tmp_path):
    from miq.errors import MiqError
    from miq.export import export_bioimageio

    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import now fails
    with pytest.raises(MiqError, match=r"bioimageio\.spec.*pip install 'miq\[bioimageio\]'") as exc:
        export_bioimageio(tmp_path / "model.zip")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "model.zip").exists()


def test_invalid_model_folder(tmp_path):
    from miq.errors import ModelError
    from miq.export import export_bioimageio

    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="model not found"):
        export_bioimageio(tmp_path / "model.zip", tmp_path / "empty")
    assert not (tmp_path / "model.zip").exists()


def test_output_is_a_folder(tmp_path):
    from miq.errors import OutputError
    from miq.export import export_bioimageio

    with pytest.raises(OutputError, match="is a folder"):
        export_bioimageio(tmp_path)


def _bundled_copy(tmp_path: Path, edit) -> Path:
    """A copy of the bundled model folder with its model.json changed by ``edit(metadata)``."""
    import json
    import shutil

    from miq.model.package import BUNDLED_MODEL

    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL.parent, folder)
    metadata = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    edit(metadata)
    (folder / "model.json").write_text(json.dumps(metadata), encoding="utf-8")
    return folder


def test_unsupported_architecture_is_one_line_error(tmp_path):
    from miq.errors import ModelError
    from miq.export import export_bioimageio

    folder = _bundled_copy(tmp_path, lambda m: m.update(architecture="resnet"))
    with pytest.raises(ModelError, match="architecture 'resnet' cannot be exported") as exc:
        export_bioimageio(tmp_path / "model.zip", folder)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "model.zip").exists()


def test_no_safetensors_weights_is_one_line_error(tmp_path):
    from miq.errors import ModelError
    from miq.export import export_bioimageio

    folder = _bundled_copy(tmp_path, lambda m: m["weights"].pop("safetensors"))
    with pytest.raises(
        ModelError, match="lists no safetensors weights .needed for bioimage.io"
    ) as exc:
        export_bioimageio(tmp_path / "model.zip", folder)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "model.zip").exists()
