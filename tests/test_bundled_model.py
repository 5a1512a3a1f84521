"""The model that ships inside the package: complete metadata, intact files, small, offline."""

from __future__ import annotations

import hashlib
import json

from miq.model.runtime import BUNDLED_MODEL


def test_metadata_is_complete_and_files_match_their_sha256():
    meta = json.loads(BUNDLED_MODEL.read_text())
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
    held_out = ("A01_s3", "E05_s6", "POS218", "nuclear_protein_treated", "nuclei_golgi")
    assert not any(h in f["path"] for f in training["files"] for h in held_out)
    total = 0
    for info in meta["weights"].values():
        payload = (BUNDLED_MODEL.parent / info["file"]).read_bytes()
        assert hashlib.sha256(payload).hexdigest() == info["sha256"]
        total += len(payload)
    assert total < 5 * 2**20  # a few MB at most


def test_no_pickle_weights_ship():
    suffixes = {p.suffix for p in BUNDLED_MODEL.parent.iterdir()}
    assert suffixes <= {".json", ".onnx", ".safetensors"}
