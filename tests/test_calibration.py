"""Post-hoc calibration: fitting recovers known distortions; models apply what model.json says."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from miq.assessment import AssessOptions, aggregate, assessment_from_probabilities
from miq.calibration import apply_patch_calibration, fit_image_temperature, fit_patch_calibration
from miq.errors import ModelError
from miq.model.runtime import BUNDLED_MODEL, FocusModel
from miq.tiling import patch_grid


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_patch_calibration_recovers_bias_and_temperature():
    rng = np.random.default_rng(0)
    z = 2.0 * rng.normal(size=(20000, 5))
    true_p = _softmax(z)
    labels = np.array([rng.choice(5, p=p) for p in true_p])
    shift = np.array([0.0, 0.5, -0.3, 1.0, 0.2])
    distorted = _softmax(1.8 * z - shift)  # overconfident and shifted
    bias, t = fit_patch_calibration(distorted, labels)
    assert t == pytest.approx(1.8, rel=0.06)
    assert bias == pytest.approx(shift - shift[0], abs=0.12)
    restored = apply_patch_calibration(distorted, bias, t)
    assert np.abs(restored - true_p).max() < 0.05


def test_image_temperature_sharpens_underconfident_distributions():
    rng = np.random.default_rng(1)
    z = 3.0 * rng.normal(size=(5000, 4))
    labels = np.array([rng.choice(4, p=p) for p in _softmax(z)])
    flat = _softmax(z / 2.5)  # underconfident
    assert fit_image_temperature(flat, labels) == pytest.approx(1 / 2.5, rel=0.08)


def test_aggregate_temperature_keeps_the_level_and_sharpens():
    p = np.array([[0.1, 0.6, 0.3], [0.2, 0.5, 0.3]])
    plain, sharp = aggregate(p), aggregate(p, temperature=0.5)
    assert plain["level"] == sharp["level"] == 1
    assert sharp["probabilities"][1] > plain["probabilities"][1]
    assert sharp["probabilities"].sum() == pytest.approx(1.0)


def test_model_applies_calibration_from_model_json(tmp_path, sample_image):
    folder = tmp_path / "m"
    shutil.copytree(BUNDLED_MODEL.parent, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("calibration", None)
    (folder / "model.json").write_text(json.dumps(meta))
    plain = FocusModel(folder / "model.json")
    patches = np.stack([sample_image[:84, :84], sample_image[100:184, 200:284]]).astype(np.float32)
    raw = plain.predict(patches)
    meta["calibration"] = {"class_bias": [0.0] * 10 + [5.0], "patch_temperature": 1.0}
    (folder / "model.json").write_text(json.dumps(meta))
    shifted = FocusModel(folder / "model.json")
    assert np.allclose(shifted.predict(patches, calibrated=False), raw)
    assert (shifted.predict(patches)[:, 10] > raw[:, 10]).all()
    meta["calibration"] = {"class_bias": [0.0, 1.0]}
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="calibration"):
        FocusModel(folder / "model.json")


def test_calibrate_cli_writes_a_loadable_calibration(tmp_path, sample_image, capsys):
    import tifffile

    from miq.cli import main

    folder = tmp_path / "m"
    shutil.copytree(BUNDLED_MODEL.parent, folder)
    tifffile.imwrite(tmp_path / "val.tif", sample_image[:260, :340])
    assert main(["calibrate", str(tmp_path / "val.tif"), "-m", str(folder)]) == 0
    entry = json.loads((folder / "model.json").read_text())["calibration"]
    assert entry["validation"]["n_images"] == 11 and len(entry["class_bias"]) == 11
    # one plane: a warning line that the fit rests on too few (the run still completes)
    assert entry["validation"]["n_planes"] == 1
    assert "miq: warning: calibrating on 1 in-focus plane(s) only" in capsys.readouterr().err
    assert "to_camera_range" in entry["validation"]["ground_truth"]  # how the images were made
    # one image temperature unless --content-temperature asks (a shadowed flag fitted it always)
    assert "image_temperature_slope" not in entry and "gap" not in entry["validation"]["fit"]
    assert entry["validation"]["after"]["ece"] <= entry["validation"]["before"]["ece"] + 0.05
    model = FocusModel(folder / "model.json")
    assert model.calibrated and model.image_temperature == entry["image_temperature"]
    assert (
        main(["calibrate", str(tmp_path / "val.tif"), "-m", str(folder), "--exclude", "val"]) == 2
    )


def test_calibrate_leaves_out_a_plane_too_small_to_rate(tmp_path, sample_image, capsys):
    """A validation plane smaller than one patch (e.g. a fine image once brought to the model's
    pixel size) is left out in one line; it aborted the whole calibration."""
    import tifffile

    from miq.cli import main

    folder = tmp_path / "m"
    shutil.copytree(BUNDLED_MODEL.parent, folder)
    tifffile.imwrite(tmp_path / "val.tif", sample_image[:260, :340])
    tifffile.imwrite(tmp_path / "tiny.tif", sample_image[:70, :70])
    args = ["calibrate", str(tmp_path / "val.tif"), str(tmp_path / "tiny.tif"), "-m", str(folder)]
    assert main(args) == 0
    left_out = [line for line in capsys.readouterr().out.splitlines() if "left out" in line]
    assert len(left_out) == 1 and "tiny.tif" in left_out[0] and "smaller than one" in left_out[0]
    entry = json.loads((folder / "model.json").read_text())["calibration"]
    assert entry["validation"]["n_images"] == 11


class _Model:  # what assessment_from_probabilities reads of a model
    image_temperature = 1.0
    um_per_level = 2.0


def test_validation_set_aggregates_each_image_as_predict_does():
    from miq.calibration import ValidationSet

    rng = np.random.default_rng(3)
    probs = _softmax(3.0 * rng.normal(size=(60, 11))).astype(np.float32)
    image = np.repeat(np.arange(6), 10)
    valid = rng.random(60) > 0.2
    valid[image == 4] = False  # an image without a valid patch
    probs[image == 5] = 1.0 / 11  # an image whose patches all have certainty 0
    foreground = rng.random(60) > 0.5
    foreground[image == 3] = False  # no foreground patch: all valid patches count
    data = ValidationSet(
        probs, valid, image % 11, image, image_groups=list("aabbbc"), foreground=foreground
    )
    bias, t = rng.normal(size=11), 1.7
    bias[0] = 0.0
    assert data.image_distributions(np.zeros(11), 1.0)[5] == pytest.approx(np.full(11, 1 / 11))
    q = data.image_distributions(bias, t)
    calibrated = apply_patch_calibration(probs, bias, t)
    for i in range(6):
        if i == 4:
            assert not data.rated[i] and np.isnan(q[i]).all()
            continue
        one = image == i
        expected = assessment_from_probabilities(
            patch_grid((84, 84 * 10), 84),
            calibrated[one],
            valid[one],
            _Model,
            AssessOptions(),
            foreground=foreground[one],
        ).probabilities
        assert q[i] == pytest.approx(expected, abs=1e-6)
        used = valid[one] & foreground[one] if i != 3 else valid[one]
        assert q[i] == pytest.approx(aggregate(calibrated[one], used)["probabilities"], abs=1e-6)
    # groups of 2, 3 and 1 images: each group's share ∝ √size
    w = data.image_weights()
    shares = [w[:2].sum(), w[2:5].sum(), w[5:].sum()]
    assert np.array(shares) / shares[2] == pytest.approx([np.sqrt(2), np.sqrt(3), 1.0])


def test_image_level_fit_is_not_pulled_by_patches_whose_level_cannot_be_told():
    """Images of every level, each with 8 informative patches; the images of levels 6-10 also
    have 32 patches (sparse counts, background) that say "sharp" with low certainty. Fitting the
    patches' NLL pushes the top levels' biases up to cover those patches (as for the rejected
    v3 candidate: biases to +8.8) and level 5 reads 6; the image-level fit, which sees what the
    images aggregate to, keeps the images right."""
    from miq.calibration import ValidationSet, fit_image_level_patch_calibration

    rng = np.random.default_rng(4)
    k, per_level = 11, 12
    probs, labels, image = [], [], []
    for i in range(k * per_level):
        level = i % k
        parts = [_softmax(-((np.arange(k) - level) ** 2.0) + 0.5 * rng.normal(size=(8, k)))]
        if level >= 6:
            parts.append(_softmax(-0.6 * np.arange(k) + 0.1 * rng.normal(size=(32, k))))
        n = sum(len(part) for part in parts)
        probs.append(np.vstack(parts))
        labels += [level] * n
        image += [i] * n
    probs = np.vstack(probs).astype(np.float32)
    data = ValidationSet(probs, np.ones(len(probs), bool), labels, image)

    def exact(bias, t):
        return float(np.mean(data.image_distributions(bias, t).argmax(axis=1) == data.image_labels))

    start = fit_patch_calibration(probs, labels)
    fitted = fit_image_level_patch_calibration(data, start)
    assert start[0].max() > 7.0  # the patch fit chases the background patches
    assert exact(*start) < 0.9
    assert exact(*fitted) >= 0.95
    assert fitted[0].max() < start[0].max() - 1.0


def test_content_temperature_softens_images_whose_confident_patches_disagree():
    agree = np.array([[0.05, 0.9, 0.05], [0.05, 0.9, 0.05]])
    disagree = np.array([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]])
    for p in (agree, disagree):
        plain = aggregate(p, temperature=0.8)
        same = aggregate(p, temperature=0.8, temperature_slope=0.0)
        assert same["probabilities"] == pytest.approx(plain["probabilities"], abs=0)
    # the gap: mean patch certainty - certainty of the plain aggregate (0 when they agree)
    from miq.assessment import certainty

    gap = certainty(disagree).mean() - certainty(aggregate(disagree)["probabilities"])
    assert gap > 0.3
    centre = 0.1
    soft = aggregate(disagree, temperature=0.8, temperature_slope=2.0, temperature_centre=centre)
    expected = aggregate(disagree, temperature=0.8 * np.exp(2.0 * (gap - centre)))
    assert soft["probabilities"] == pytest.approx(expected["probabilities"])
    assert soft["certainty_aggregate"] < aggregate(disagree, temperature=0.8)["certainty_aggregate"]
    sharp_agree = aggregate(
        agree, temperature=0.8, temperature_slope=2.0, temperature_centre=centre
    )
    same_t = aggregate(agree, temperature=0.8 * np.exp(2.0 * (0.0 - centre)))
    assert sharp_agree["probabilities"] == pytest.approx(same_t["probabilities"])


def test_content_temperature_fit_recovers_a_known_slope():
    from miq.calibration import fit_content_image_temperature, sharpen

    rng = np.random.default_rng(5)
    n = 20000
    z = 2.0 * rng.normal(size=(n, 6))
    gap = rng.uniform(0.0, 0.6, n)
    truth_t = 0.7 * np.exp(1.5 * (gap - 0.3))  # q^(1/T) is calibrated
    labels = np.array([rng.choice(6, p=p) for p in sharpen(_softmax(z), truth_t)])
    t0, slope, centre = fit_content_image_temperature(_softmax(z), gap, labels)
    assert centre == pytest.approx(gap.mean())
    assert slope == pytest.approx(1.5, abs=0.25)
    assert t0 * np.exp(slope * (0.3 - centre)) == pytest.approx(0.7, rel=0.08)


def test_calibrate_content_temperature_keeps_the_patch_stage_and_is_applied(tmp_path, sample_image):
    import tifffile

    import miq
    from miq.cli import main

    folder = tmp_path / "m"
    shutil.copytree(BUNDLED_MODEL.parent, folder)
    stored = json.loads((folder / "model.json").read_text())["calibration"]
    tifffile.imwrite(tmp_path / "val.tif", sample_image[:260, :340])
    args = ["calibrate", str(tmp_path / "val.tif"), "-m", str(folder)]
    assert main([*args, "--content-temperature", "--keep-patch-calibration"]) == 0
    entry = json.loads((folder / "model.json").read_text())["calibration"]
    assert entry["class_bias"] == stored["class_bias"]
    assert entry["patch_temperature"] == stored["patch_temperature"]
    assert "image_temperature_slope" in entry and "image_temperature_centre" in entry
    assert "kept" in entry["validation"]["fit"] and "certainty gap" in entry["validation"]["fit"]
    model = FocusModel(folder / "model.json")
    assert model.image_temperature_slope == entry["image_temperature_slope"]
    a = miq.assess(sample_image, model)
    used = a.patch_valid.ravel() & a.patch_foreground.ravel()
    expected = aggregate(
        a.patch_probabilities.reshape(-1, 11),
        used,
        temperature=entry["image_temperature"],
        temperature_slope=entry["image_temperature_slope"],
        temperature_centre=entry["image_temperature_centre"],
    )
    assert a.probabilities == pytest.approx(expected["probabilities"])
    # a model without a stored calibration cannot keep one
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("calibration")
    (folder / "model.json").write_text(json.dumps(meta))
    assert main([*args, "--keep-patch-calibration"]) == 2  # nothing could be done
    assert main(["calibrate", str(tmp_path / "val.tif"), "-m", str(tmp_path / "no-model")]) == 2


def test_a_malformed_content_temperature_is_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(BUNDLED_MODEL.parent, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["calibration"]["image_temperature_slope"] = "steep"
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="image_temperature_slope"):
        FocusModel(folder / "model.json")


def test_collect_validation_names_each_image_and_its_source(tmp_path, sample_image):
    """Every validation image keeps its name (file, defocus, seed) and source folder, so that
    errors can be broken down by source (`benchmarks.per_source`)."""
    import tifffile

    from miq.calibration import collect_validation
    from miq.model.runtime import load_model

    (tmp_path / "src").mkdir()
    tifffile.imwrite(tmp_path / "src" / "val.tif", sample_image[:260, :340])
    data = collect_validation(load_model(threads=1), [tmp_path / "src" / "val.tif"], progress=False)
    assert len(data.image_names) == len(data.image_labels) == 11
    assert data.image_names[3].endswith("val.tif @6um seed0") and data.image_labels[3] == 3
    assert set(data.image_groups) == {"src"}


def test_calibrate_writes_a_calibrated_copy_and_never_rewrites_a_shipped_model(
    tmp_path, sample_image, capsys
):
    """A shipped model is refused in place (one line, exit 2, its model.json untouched); with
    -o the copy gets the new calibration and the same verified weights."""
    import tifffile

    from miq.cli import main

    shipped = BUNDLED_MODEL  # what -m default names
    before = shipped.read_bytes()
    tifffile.imwrite(tmp_path / "val.tif", sample_image[:260, :340])
    assert main(["calibrate", str(tmp_path / "val.tif"), "-m", "default"]) == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "-o FOLDER" in message[0]
    out = tmp_path / "mine"
    assert main(["calibrate", str(tmp_path / "val.tif"), "-m", "default", "-o", str(out)]) == 0
    assert shipped.read_bytes() == before
    copy = FocusModel(out / "model.json")
    original = FocusModel(shipped)
    assert copy.image_temperature != original.image_temperature
    assert copy.name == f"{original.name}+mine"  # told apart from the shipped one
    assert copy.package.weight_bytes("onnx") == original.package.weight_bytes("onnx")
    assert json.loads((out / "model.json").read_text())["calibration"]["validation"]["files"] == [
        str(tmp_path / "val.tif")
    ]
    # a folder that already holds something is not overwritten
    assert main(["calibrate", str(tmp_path / "val.tif"), "-m", "default", "-o", str(out)]) != 0
    assert "exists and is not an empty folder" in capsys.readouterr().err
    # a fit that fails (no plane can be rated) leaves no uncalibrated copy, nor its staging
    tifffile.imwrite(tmp_path / "tiny.tif", sample_image[:40, :40])
    failed = tmp_path / "failed"
    assert main(["calibrate", str(tmp_path / "tiny.tif"), "-m", "default", "-o", str(failed)]) == 2
    assert not failed.exists() and not list(tmp_path.glob(".failed.*"))


def test_calibrate_leaves_out_an_unreadable_file_and_uses_the_rest(tmp_path, sample_image, capsys):
    """A corrupt validation file, or one over --memory-budget, is one error line naming it and
    exit 1; the calibration is still fitted on the other files and written."""
    import tifffile

    from miq.cli import main

    tifffile.imwrite(tmp_path / "val.tif", sample_image[:260, :340])
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    out = tmp_path / "mine"
    files = [str(tmp_path / "broken.tif"), str(tmp_path / "val.tif")]
    assert main(["calibrate", *files, "-m", "default", "-o", str(out)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "miq: error" in line]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    entry = json.loads((out / "model.json").read_text())["calibration"]
    assert entry["validation"]["n_images"] == 11  # val.tif's 11 levels
    # over the memory budget (a 3000² plane declared, never read): nothing could be calibrated
    big = tifffile.memmap(tmp_path / "big.tif", shape=(3000, 3000), dtype=np.uint16)
    del big
    budget = ["--memory-budget", "16M", "-o", str(tmp_path / "none")]
    assert main(["calibrate", str(tmp_path / "big.tif"), "-m", "default", *budget]) == 2
    assert "memory budget of 16.0 MiB" in capsys.readouterr().err
