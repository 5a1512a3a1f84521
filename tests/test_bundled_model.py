"""The model that ships inside the package: complete metadata, intact files, small, offline."""

from __future__ import annotations

import hashlib
import json

import pytest

from miq.model.package import MODEL_VERSIONS
from miq.model.runtime import BUNDLED_MODEL, BUNDLED_MODELS


@pytest.mark.parametrize("name", sorted(MODEL_VERSIONS))
def test_metadata_is_complete_and_files_match_their_sha256(name):
    meta_path = MODEL_VERSIONS[name]
    meta = json.loads(meta_path.read_text())
    for key in (
        "architecture",
        "architecture_kwargs",
        "optics",
        "level_defocus_um",
        "um_per_level",
        "patch_size",
        "input",
        "output",
        "weights",
        "training",
        "licence",
    ):
        assert key in meta, key
    assert meta["patch_size"] == 84 and meta["n_levels"] == 11
    assert meta["optics"]["numerical_aperture"] == 0.5 and meta["optics"]["pixel_size_um"] == 0.65
    assert "(x - mean) / std" in meta["input"]["normalisation"]
    training = meta["training"]
    assert training["command"].startswith("miq train") and training["steps_completed"] > 0
    assert training["files"] and all(len(f["sha256"]) == 64 for f in training["files"])
    from benchmarks.common import HELD_OUT

    assert not any(h in f["path"] for f in training["files"] for h in HELD_OUT)
    total = 0
    for info in meta["weights"].values():
        payload = (meta_path.parent / info["file"]).read_bytes()
        assert hashlib.sha256(payload).hexdigest() == info["sha256"]
        total += len(payload)
    assert total < 5 * 2**20  # a few MB at most


def test_no_pickle_weights_ship():
    for meta_path in BUNDLED_MODELS.values():
        suffixes = {p.suffix for p in meta_path.parent.iterdir()}
        assert suffixes <= {".json", ".onnx", ".safetensors"}


def test_bundled_models_load_by_name_and_agree_on_blur(sample_image, tmp_path, monkeypatch):
    """Every bundled version loads by its name, ``default`` and ``fast`` by their aliases
    (both fast-v4); each rates the sample in focus and its simulated 16 µm defocus
    (level 8) well out of focus; a path called "fast" still wins over the bundled name."""
    import miq
    from miq.model.package import MODEL_ALIASES, MODEL_VERSIONS
    from miq.optics import Optics, degrade

    default, fast = miq.load_model("default", threads=1), miq.load_model("fast", threads=1)
    assert default.path == BUNDLED_MODEL == MODEL_VERSIONS[MODEL_ALIASES["default"]]
    assert (default.name, fast.name) == ("miq-separable-fast-v4", "miq-separable-fast-v4")
    expected = {
        "v2": ("miq-compact-v2", "compact"),
        "fast-v1": ("miq-separable-fast-v1", "separable"),
        "v3": ("miq-compact-v3", "compact"),
        "fast-v2": ("miq-separable-fast-v2", "separable"),
        "v3-slim": ("miq-compact-slim-v3", "compact"),
        "fast-v3": ("miq-separable-fast-v3", "separable"),
        "fast-v4": ("miq-separable-fast-v4", "separable"),
    }
    assert set(MODEL_VERSIONS) == set(expected)
    blurred = degrade(sample_image / 65535.0, 16.0, optics=Optics(), rng=0)
    for version, (name, architecture) in expected.items():
        model = miq.load_model(version, threads=1)
        assert (model.name, model.package.architecture) == (name, architecture)
        sharp, blur = miq.assess(sample_image, model), miq.assess(blurred, model)
        assert sharp.in_focus and sharp.level <= 2, version
        assert not blur.in_focus and blur.level_mean > 5, version
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fast").mkdir()
    with pytest.raises(miq.errors.ModelError, match="fast/model.json: model not found"):
        miq.load_model("fast")


@pytest.mark.parametrize("name", sorted(MODEL_VERSIONS))
def test_bundled_onnx_is_the_safetensors_network_with_global_pooling(name, sample_image):
    """Each shipped ONNX file computes what its safetensors weights compute in torch (within
    1e-4, float32 rounding between the two runtimes), and pools with ONNX Runtime's global pooling ops (GlobalAveragePool,
    MaxPool over the whole map), not ReduceMean/ReduceMax, which cost a layout reorder."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("safetensors.torch")
    import numpy as np

    import miq
    from miq.assessment import prepare_patches
    from miq.model.network import load_network

    meta_path = MODEL_VERSIONS[name]
    ops = {node.op_type for node in onnx.load(meta_path.parent / "model.onnx").graph.node}
    assert {"GlobalAveragePool", "MaxPool"} <= ops and not ops & {"ReduceMax"}
    model = miq.load_model(name, threads=1)
    network = load_network(model.package)
    patches = prepare_patches(sample_image, model)[1][:32]
    with torch.no_grad():
        expected = torch.softmax(network(torch.from_numpy(patches)[:, None]), dim=1).numpy()
    np.testing.assert_allclose(model.predict(patches, calibrated=False), expected, atol=1e-4)


def test_every_bundled_model_folder_is_package_data():
    """A non-editable install (a wheel) ships only the files pyproject.toml lists as package
    data: every bundled model's folder must be there, or `-m NAME` fails after `pip install .`."""
    from pathlib import Path

    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    listed = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["miq"]
    for name, meta_path in MODEL_VERSIONS.items():
        assert f"model/{meta_path.parent.name}/*" in listed, name
