"""Training pieces (need the 'train' extra: torch, safetensors, onnx)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miq.model.network import build_network  # noqa: E402
from miq.training.loss import ranked_probability_score  # noqa: E402
from miq.training.procedural import procedural_field  # noqa: E402
from miq.training.synthetic import (  # noqa: E402
    DefocusBatches,
    SimulationConfig,
    Source,
    relative_intensity,
)


def _logits_for(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64).clamp_min(1e-30))


def test_rps_goldens():
    assert float(
        ranked_probability_score(_logits_for([[0.7, 0.3, 0.0]]), torch.tensor([0]))
    ) == pytest.approx(0.09, abs=1e-9)
    for d in range(11):
        one_hot = np.eye(11)[d][None]
        loss = ranked_probability_score(_logits_for(one_hot), torch.tensor([0]))
        assert float(loss) == pytest.approx(d, abs=1e-9)


def test_networks_are_standardised_and_shaped():
    x = torch.rand(4, 1, 84, 84)
    for arch in ("compact", "stride4", "separable", "yang2018"):
        net = build_network(arch).eval()
        with torch.no_grad():
            a, b = net(x), net(x * 7.5 + 300)
        assert a.shape == (4, 11)
        torch.testing.assert_close(
            a, b, atol=1e-3, rtol=1e-3
        )  # gain/offset invariant by construction
    assert sum(p.numel() for p in build_network("yang2018").parameters()) == 28_965_771
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("resnet")


def test_procedural_fields_vary_and_are_finite():
    rng = np.random.default_rng(0)
    fields = [procedural_field((128, 160), rng) for _ in range(6)]
    for f in fields:
        assert (
            f.shape == (128, 160)
            and f.dtype == np.float32
            and np.isfinite(f).all()
            and f.min() >= 0
        )
    assert len({round(float(f.std()), 5) for f in fields}) == 6


def test_synthetic_batches_blur_more_at_higher_levels():
    rng = np.random.default_rng(1)
    src = [Source(relative_intensity(procedural_field((300, 300), rng)), "p")]
    native = SimulationConfig(coarse_camera_fraction=0.0)
    batches = DefocusBatches(src, procedural_fraction=0.0, seed=0, config=native)
    x, y = batches.next_batch(16)
    assert x.shape == (16, 1, 84, 84) and y.shape == (16,) and int(y.max()) <= 10
    assert float(x.min()) >= 0 and torch.equal(x, torch.round(x))  # integer DN
    # with fixed photon budget and camera, a point source spreads out as z grows
    fixed = SimulationConfig(
        peak_photons=(5000, 5000),
        background_photons=(1, 1),
        read_noise_photons=(0.3, 0.3),
        gain=(1, 1),
        offset_dn=(100, 100),
        coarse_camera_fraction=0.0,
    )
    batches = DefocusBatches(src, procedural_fraction=0.0, seed=0, config=fixed)
    point = np.zeros((3, 134, 134), np.float32)
    point[:, 67, 67] = 1.0
    peaks = batches.simulate(point, np.array([0.0, 6.0, 20.0])).amax(dim=(1, 2, 3))
    assert float(peaks[0]) > float(peaks[1]) > float(peaks[2])
    assert float(peaks[0]) > 2000 and float(peaks[2]) < 200


def test_the_fft_blur_is_the_direct_convolution_of_the_crops_centre():
    """`DefocusBatches._blur` (FFTs on the crop's grid) against a direct convolution with each
    patch's kernel: the same patches to float32 rounding."""
    from scipy.signal import fftconvolve

    from miq.optics import defocus_psf

    batches = DefocusBatches([], procedural_fraction=1.0, seed=0)
    rng = np.random.default_rng(7)
    photons = rng.uniform(0, 5000, (6, 134, 134)).astype(np.float32)
    photons[0, 60:70, 40:45] = 20000.0  # a bright block near the patch's edge
    z_index = np.array([0, 4, 23, 40, 80, 120])
    out = batches._blur(torch.from_numpy(photons), z_index).numpy()
    assert out.shape == (6, 84, 84)
    for k, z in enumerate(batches.z_grid[z_index]):
        direct = fftconvolve(photons[k].astype(np.float64), defocus_psf(z), mode="valid")
        np.testing.assert_allclose(out[k], direct, rtol=0, atol=1e-5 * photons[k].max())


def test_coarse_camera_augmentation_smooths_pixel_noise():
    rng = np.random.default_rng(3)
    src = [Source(relative_intensity(procedural_field((300, 300), rng)), "p")]

    def roughness(fraction):
        config = SimulationConfig(coarse_camera_fraction=fraction)
        x, _ = DefocusBatches(src, procedural_fraction=0.0, seed=4, config=config).next_batch(32)
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)
        return float((x[..., 1:] - x[..., :-1]).abs().mean())

    assert roughness(1.0) < 0.8 * roughness(0.0)


def test_level_defocus_sampling_keeps_the_top_level_centred():
    rng = np.random.default_rng(2)
    src = [Source(relative_intensity(procedural_field((300, 300), rng)), "p")]
    batches = DefocusBatches(src, procedural_fraction=0.0, seed=0)
    z = batches.sample_z(np.full(20000, 10))
    near = np.abs(z - 20.0) <= 0.5
    assert 0.65 < near.mean() < 0.75  # 1 − top_level_open_fraction
    assert z.min() >= 19.5 and z.max() <= 30.0 and (z[~near] > 20.5).all()
    z3 = batches.sample_z(np.full(1000, 3))
    assert np.abs(z3 - 6.0).max() <= 0.5


@pytest.fixture
def in_focus_file(tmp_path, sample_image) -> str:
    """The bundled sample field written as a TIFF in the test's folder (one in-focus image)."""
    import tifffile

    path = tmp_path / "in_focus.tif"
    tifffile.imwrite(path, sample_image)
    return str(path)


def test_clipped_sensor_samples_have_flat_floors_with_single_counts():
    """The clipped-sensor share: a sparse field's background becomes exactly its floor (no read
    noise), most pixels of many patches; without it no patch is like that."""
    rng = np.random.default_rng(5)
    field = np.zeros((400, 400), np.float32)
    field[rng.integers(0, 400, 40), rng.integers(0, 400, 40)] = 1.0  # sparse bright spots
    src = [Source(np.maximum(field, 0.0), "sparse")]

    def share_mostly_floor(fraction):
        config = SimulationConfig(clipped_sensor_fraction=fraction, coarse_camera_fraction=0.0)
        x, _ = DefocusBatches(src, procedural_fraction=0.0, seed=6, config=config).next_batch(64)
        x = x.numpy()[:, 0]
        at_floor = (x == x.min(axis=(1, 2), keepdims=True)).mean(axis=(1, 2))
        return float(np.mean(at_floor > 0.5))

    assert share_mostly_floor(0.0) == 0.0
    assert share_mostly_floor(1.0) > 0.3


def test_train_cli_records_the_clipped_sensor_fraction(tmp_path, in_focus_file):
    from miq.cli import main

    out = tmp_path / "m"
    args = ["train", in_focus_file, "-o", str(out), "--batch-size", "8", "--steps", "1"]
    assert main(args + ["--clipped-sensor-fraction", "0"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["config"]["simulation"]["clipped_sensor_fraction"] == 0.0
    with pytest.raises(SystemExit) as exc:  # a usage error, before anything is read
        main(args + ["-o", str(tmp_path / "n"), "--clipped-sensor-fraction", "1.5"])
    assert exc.value.code == 2 and not (tmp_path / "n").exists()


def test_train_export_and_onnx_parity(tmp_path, in_focus_file):
    import miq
    from miq.training.train import TrainConfig, train

    # an interrupted run (time limit after the first step) ...
    config = TrainConfig(
        steps=6, batch_size=8, checkpoint_every=3, procedural_fraction=0.5, max_minutes=0
    )
    train([in_focus_file], tmp_path / "model", config, log=lambda *_: None)
    # ... resumed to the end
    config.max_minutes = None
    messages = []
    meta_path = train(
        [in_focus_file],
        tmp_path / "model",
        config,
        resume=True,
        log=messages.append,
    )
    assert "resumed at step 1" in messages
    meta = json.loads(meta_path.read_text())
    assert meta["training"]["steps_completed"] == 6
    assert meta["training"]["files"][0]["sha256"]
    assert meta["level_defocus_um"] == [2.0 * k for k in range(11)]
    assert (tmp_path / "model" / "train_log.csv").read_text().count("\n") >= 2
    # every written file is readable as any output is (0o666 less the umask): safetensors' own
    # save_file made model.safetensors private (0o600), so a colleague could not load it
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in (tmp_path / "model").iterdir()}
    assert modes == dict.fromkeys(modes, 0o666 & ~mask) and "model.safetensors" in modes
    assert not list((tmp_path / "model").glob(".*"))  # no temporary file left
    # ONNX (runtime) and torch (safetensors) give the same probabilities
    from safetensors.torch import load_file

    net = build_network(meta["architecture"], **meta["architecture_kwargs"]).eval()
    net.load_state_dict(load_file(tmp_path / "model" / "model.safetensors"))
    patches = np.random.default_rng(0).random((5, 84, 84)).astype(np.float32) * 1000
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(patches[:, None])), 1).numpy()
    model = miq.load_model(tmp_path / "model")
    np.testing.assert_allclose(model.predict(patches), expected, atol=1e-5)
    config.steps = 9
    with pytest.raises(ValueError, match="resume with --steps 6"):
        train(
            [in_focus_file],
            tmp_path / "model",
            config,
            resume=True,
            log=lambda *_: None,
        )


def test_corrupted_onnx_is_rejected(tmp_path):
    import shutil

    import miq
    from miq.errors import ModelError
    from miq.model.runtime import BUNDLED_MODEL

    for name in ("model.json", "model.onnx"):
        shutil.copy(BUNDLED_MODEL.parent / name, tmp_path / name)
    with open(tmp_path / "model.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="sha256"):
        miq.load_model(tmp_path)


def test_soft_rps_equals_rps_for_one_hot_and_is_zero_on_itself():
    from miq.training.loss import ranked_probability_score, soft_ranked_probability_score

    logits = torch.randn(6, 11)
    labels = torch.tensor([0, 3, 10, 5, 5, 1])
    one_hot = torch.nn.functional.one_hot(labels, 11).float()
    assert torch.isclose(
        soft_ranked_probability_score(logits, one_hot), ranked_probability_score(logits, labels)
    )
    assert float(soft_ranked_probability_score(logits, torch.softmax(logits, 1))) < 1e-12


def test_distillation_from_the_bundled_model(tmp_path, in_focus_file):
    """A width-8 student trains against the bundled model as teacher and exports."""
    from miq.model.runtime import BUNDLED_MODEL
    from miq.training.train import TrainConfig, train

    config = TrainConfig(
        architecture_kwargs={"width": 8},
        steps=3,
        batch_size=8,
        procedural_fraction=0.5,
        teacher=str(BUNDLED_MODEL.parent),
    )
    messages = []
    meta_path = train([in_focus_file], tmp_path / "student", config, log=messages.append)
    assert any(m.startswith("distilling from") for m in messages)
    meta = json.loads(meta_path.read_text())
    assert meta["architecture_kwargs"]["width"] == 8 and meta["n_parameters"] < 25_000


@pytest.mark.parametrize("architecture", ["stride4", "separable"])
def test_speed_architectures_train_export_and_match_onnx(tmp_path, in_focus_file, architecture):
    """The speed-oriented architectures: 20 steps (a run length whose one-cycle warm-up was a single
    step and divided by zero), export, and ONNX Runtime equal to torch."""
    from safetensors.torch import load_file

    import miq
    from miq.training.train import TrainConfig, train

    config = TrainConfig(architecture=architecture, steps=20, batch_size=4, procedural_fraction=0.5)
    meta_path = train([in_focus_file], tmp_path / "s4", config, log=lambda *_: None)
    meta = json.loads(meta_path.read_text())
    assert meta["architecture"] == architecture and meta["training"]["steps_completed"] == 20
    assert meta["n_parameters"] == sum(p.numel() for p in build_network(architecture).parameters())
    net = build_network(architecture, **meta["architecture_kwargs"]).eval()
    net.load_state_dict(load_file(tmp_path / "s4" / "model.safetensors"))
    patches = np.random.default_rng(1).random((6, 84, 84)).astype(np.float32) * 4000 + 100
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(patches[:, None])), 1).numpy()
    np.testing.assert_allclose(
        miq.load_model(tmp_path / "s4").predict(patches), expected, atol=1e-5
    )


def test_grouped_batches_are_images_sharing_level_content_and_camera():
    """With group_size M, each run of M patches is one simulated image: one level, one content
    image and one camera (so a flat field gives one mean DN per group), groups independent."""
    flat = Source(np.ones((400, 400), np.float32), "flat")
    config = SimulationConfig(coarse_camera_fraction=0.0)
    batches = DefocusBatches([flat], procedural_fraction=0.0, seed=5, config=config)
    x, y = batches.next_batch(48, group_size=12)
    assert x.shape == (48, 1, 84, 84)
    labels = y.reshape(4, 12)
    assert (labels == labels[:, :1]).all()
    means = x.mean(dim=(1, 2, 3)).reshape(4, 12).double()
    within = float((means.std(dim=1) / means.mean(dim=1)).max())  # Poisson noise only
    between = float(means.mean(dim=1).std() / means.mean())  # log-uniform gain, offset, photons
    assert within < 0.01 and between > 0.2
    # independent patches (the default) do not share the camera
    x1, _ = DefocusBatches([flat], procedural_fraction=0.0, seed=5, config=config).next_batch(12)
    spread = x1.mean(dim=(1, 2, 3)).double()
    assert float(spread.std() / spread.mean()) > 0.2
    with pytest.raises(ValueError, match="multiple of group size"):
        batches.next_batch(50, group_size=12)


def test_image_rps_aggregates_patches_by_certainty():
    from miq.training.loss import image_ranked_probability_score

    logits = torch.randn(8, 11, dtype=torch.float64)
    labels = torch.tensor([0, 3, 10, 5, 5, 1, 7, 2])
    # one patch per image: the image RPS is the patch RPS
    assert torch.isclose(
        image_ranked_probability_score(logits, labels, 1), ranked_probability_score(logits, labels)
    )
    # a confident correct patch outweighs a near-uniform wrong one
    sure = torch.full((11,), -20.0, dtype=torch.float64)
    sure[4] = 20.0
    vague = torch.zeros(11, dtype=torch.float64)
    vague[9] = 0.1
    pair = torch.stack([sure, vague])
    loss = float(image_ranked_probability_score(pair, torch.tensor([4, 4]), 2))
    plain_mean = float(
        ranked_probability_score(torch.log((pair.softmax(1).mean(0))[None]), torch.tensor([4]))
    )
    assert loss < 0.01 < plain_mean
    # sharpening (temperature < 1) helps a right but soft aggregate, and gradients flow
    soft = torch.zeros(4, 11, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        soft[:, 6] = 1.0
    group = torch.full((4,), 6)
    sharp = image_ranked_probability_score(soft, group, 4, temperature=0.3)
    assert sharp.item() < image_ranked_probability_score(soft, group, 4).item()
    sharp.backward()
    assert soft.grad is not None and float(soft.grad.abs().sum()) > 0


def test_image_log_loss_is_the_nll_of_the_aggregate():
    from miq.training.loss import image_distributions, image_log_loss

    logits = torch.randn(12, 11, dtype=torch.float64)
    labels = torch.tensor([2] * 4 + [9] * 4 + [0] * 4)
    q = image_distributions(logits, 4, temperature=0.5)
    assert q.shape == (3, 11) and torch.allclose(q.sum(1), torch.ones(3, dtype=torch.float64))
    expected = -torch.log(q[[0, 1, 2], [2, 9, 0]]).mean()
    assert torch.isclose(image_log_loss(logits, labels, 4, 0.5), expected)
    # per patch (group of one, no sharpening) it is the ordinary cross-entropy
    assert torch.isclose(
        image_log_loss(logits, labels, 1), torch.nn.functional.cross_entropy(logits, labels)
    )


@pytest.mark.parametrize("image_loss", ["rps", "nll"])
def test_training_with_an_image_level_loss(tmp_path, in_focus_file, image_loss):
    from miq.training.train import TrainConfig, train

    config = TrainConfig(
        architecture="stride4",
        steps=4,
        batch_size=8,
        procedural_fraction=0.5,
        image_group_size=4,
        image_loss_weight=1.0,
        image_loss_temperature=0.3,
        image_loss=image_loss,
    )
    meta_path = train([in_focus_file], tmp_path / "m", config, log=lambda *_: None)
    saved = json.loads((tmp_path / "m" / "train_config.json").read_text())
    assert saved["image_group_size"] == 4 and saved["image_loss_temperature"] == 0.3
    assert saved["image_loss"] == image_loss
    assert json.loads(meta_path.read_text())["training"]["steps_completed"] == 4


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--image-group-size", "5"], "must be ≥ 1 and divide --batch-size 8"),
        (["--image-loss-weight", "1"], "needs --image-group-size ≥ 2"),
        (["--image-group-size", "4", "--image-loss-temperature", "0"], "must be > 0"),
        (["--image-distill-weight", "2"], "must be in [0, 1]"),
        (
            ["--image-group-size", "4", "--image-loss-weight", "1", "--image-distill-weight", "1"],
            "needs --teacher",
        ),
    ],
)
def test_train_cli_rejects_inconsistent_image_loss_flags(
    tmp_path, in_focus_file, capsys, flags, message
):
    from miq.cli import main

    args = ["train", in_focus_file, "-o", str(tmp_path / "m"), "--batch-size", "8"]
    assert main(args + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "m").exists()


def test_image_distillation_loss_is_the_cross_entropy_to_the_teacher_image():
    from miq.training.loss import image_distillation_loss, image_distributions, image_log_loss

    logits = torch.randn(12, 11, dtype=torch.float64)
    labels = torch.tensor([2] * 4 + [9] * 4 + [0] * 4)
    one_hot = torch.nn.functional.one_hot(labels[::4], 11).double()
    # a one-hot teacher makes it the image log loss
    assert torch.isclose(
        image_distillation_loss(logits, one_hot, 4, 0.3), image_log_loss(logits, labels, 4, 0.3)
    )
    # against its own distribution it is that distribution's entropy, the minimum
    own = image_distributions(logits, 4, 0.3)
    entropy = -(own * torch.log(own)).sum(1).mean()
    assert torch.isclose(image_distillation_loss(logits, own, 4, 0.3), entropy)
    # against another teacher it exceeds that teacher's entropy by the KL divergence (> 0)
    other = image_distributions(logits + torch.randn_like(logits), 4, 0.3)
    other_entropy = -(other * torch.log(other)).sum(1).mean()
    assert image_distillation_loss(logits, other, 4, 0.3) > other_entropy


def test_teacher_image_distribution_is_what_miq_predict_computes(sample_image):
    """The training target of --image-distill-weight equals the bundled model's calibrated
    whole-image distribution at inference (patch calibration, certainty weights, image T)."""
    from miq.assessment import aggregate, prepare_patches
    from miq.model.runtime import BUNDLED_MODEL, FocusModel
    from miq.training.train import (
        _calibrated_image_distributions,
        _load_teacher,
        _stored_calibration,
    )

    model = FocusModel(BUNDLED_MODEL)
    _, patches, valid, _, _ = prepare_patches(sample_image.astype(np.float32), model)
    patches = patches[valid][:12]
    expected = aggregate(model.predict(patches), temperature=model.image_temperature)
    teacher, teacher_package = _load_teacher(str(BUNDLED_MODEL.parent))
    with torch.no_grad():
        logits = teacher(torch.from_numpy(np.ascontiguousarray(patches))[:, None])
    got = _calibrated_image_distributions(
        logits, len(patches), _stored_calibration(teacher_package)
    )
    assert model.image_temperature != 1.0
    np.testing.assert_allclose(got[0].numpy(), expected["probabilities"], atol=1e-4)


def test_training_with_image_distillation(tmp_path, in_focus_file):
    from miq.model.runtime import BUNDLED_MODEL
    from miq.training.train import TrainConfig, train

    config = TrainConfig(
        architecture="separable",
        steps=3,
        batch_size=8,
        procedural_fraction=0.5,
        teacher=str(BUNDLED_MODEL.parent),
        image_group_size=4,
        image_loss_weight=1.0,
        image_loss_temperature=0.3,
        image_loss="nll",
        image_distill_weight=0.5,
    )
    messages = []
    meta_path = train([in_focus_file], tmp_path / "m", config, log=messages.append)
    assert any("teacher's calibrated image distribution" in m for m in messages)
    saved = json.loads((tmp_path / "m" / "train_config.json").read_text())
    assert saved["image_distill_weight"] == 0.5
    assert json.loads(meta_path.read_text())["training"]["steps_completed"] == 3
    with pytest.raises(ValueError, match="needs a teacher"):
        train(
            [in_focus_file],
            tmp_path / "m2",
            TrainConfig(image_group_size=4, image_loss_weight=1.0, image_distill_weight=0.5),
        )


def test_training_sources_are_brought_to_the_model_pixel_size_and_dequantised(tmp_path):
    """A file recording 0.325 µm/px is area-averaged to 0.65 µm/px (half the side) before
    defocus is simulated; 8-bit planes get a ±0.5 DN dither, 16-bit ones with a wide range not."""
    import tifffile

    from miq.training.synthetic import _source_probabilities, load_sources

    rng = np.random.default_rng(0)
    fine = rng.integers(0, 4000, (400, 300)).astype(np.uint16)
    tifffile.imwrite(
        tmp_path / "fine.ome.tif",
        fine,
        ome=True,
        metadata={"axes": "YX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325},
    )
    coarse8 = rng.integers(0, 60, (200, 200)).astype(np.uint8)
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "eight.tif", coarse8)
    lines: list[str] = []
    paths = [str(tmp_path / "fine.ome.tif"), str(tmp_path / "sub" / "eight.tif")]
    fine_src, eight_src = load_sources(paths, 84, pixel_size_um=0.65, log=lines.append)
    assert fine_src.data.shape == (200, 150)
    assert len(lines) == 1 and "0.325 µm/px resampled to 0.65 µm/px" in lines[0]
    (kept,) = load_sources(paths[:1], 84, pixel_size_um=0.65, use_file_pixel_size=False)
    assert kept.data.shape == (400, 300)
    # 60 quantised values without the dither; with it, almost every pixel its own (the darkest
    # 1 % are clipped to 0 by the relative-intensity scaling)
    assert len(np.unique(eight_src.data)) > 0.95 * eight_src.data.size
    assert {fine_src.group, eight_src.group} == {tmp_path.name, "sub"}
    # sqrt weighting: a folder of 9 planes weighs 3× a folder of 1, not 9×
    sources = [eight_src] * 9 + [fine_src]
    p = _source_probabilities(sources, "sqrt")
    assert np.isclose(p[:9].sum(), 0.75) and np.isclose(p[9], 0.25)
    assert _source_probabilities(sources, "plane") is None


def test_train_leaves_out_an_unreadable_file_and_trains_on_the_rest(tmp_path, sample_image, capsys):
    """A corrupt training file is one error line naming it, the model is trained on the other
    files and written, exit 1; when no file can be used, nothing is trained (exit 2)."""
    import tifffile

    from miq.cli import main

    tifffile.imwrite(tmp_path / "good.tif", sample_image)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    args = ["--steps", "2", "--batch-size", "8", "--threads", "1", "--width", "4"]
    files = [str(tmp_path / "broken.tif"), str(tmp_path / "good.tif")]
    assert main(["train", *files, "-o", str(tmp_path / "m"), *args]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "miq: error" in line]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    assert (tmp_path / "m" / "model.json").exists()
    assert main(["train", files[0], "-o", str(tmp_path / "none"), *args]) == 2
    assert "no plane of the training images could be used" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # a run that could not start leaves no folder behind


def test_train_on_cuda_trains_there_or_says_in_one_line_why_not(tmp_path, sample_image, capsys):
    """``miq train --device cuda``: on a machine whose torch has CUDA the network trains on the
    GPU and model.json says so; elsewhere one error line, exit 2 and no output folder. A CPU
    run records "cpu"."""
    import json

    import tifffile
    import torch

    from miq.cli import main

    tifffile.imwrite(tmp_path / "good.tif", sample_image)
    args = ["--steps", "2", "--batch-size", "8", "--threads", "1", "--width", "4"]
    image = str(tmp_path / "good.tif")
    out = tmp_path / "gpu"
    code = main(["train", image, "-o", str(out), *args, "--device", "cuda"])
    if torch.cuda.is_available():
        assert code == 0
        training = json.loads((out / "model.json").read_text())["training"]
        assert training["device"].startswith("cuda")
    else:
        assert code == 2 and not out.exists()
        errors = [line for line in capsys.readouterr().err.splitlines() if "miq: error" in line]
        assert len(errors) == 1 and "--device cuda" in errors[0]
    assert main(["train", image, "-o", str(tmp_path / "cpu"), *args]) == 0
    training = json.loads((tmp_path / "cpu" / "model.json").read_text())["training"]
    assert training["device"] == "cpu" and training["config"]["device"] == "cpu"


def test_a_checkpoint_resumes_only_on_the_device_kind_that_wrote_it(tmp_path, in_focus_file):
    """The simulation's noise stream belongs to its device (a CUDA generator's state is not a
    CPU one's): a checkpoint written on a GPU asks for ``--device cuda`` instead of failing
    inside torch. The GPU's checkpoint is stood in for by relabelling a CPU one."""
    from miq.training.train import TrainConfig, train

    config = TrainConfig(steps=4, batch_size=8, checkpoint_every=2, max_minutes=0)
    train([in_focus_file], tmp_path / "m", config, log=lambda *_: None)
    path = tmp_path / "m" / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["device"] == "cpu"
    checkpoint["device"] = "cuda"
    torch.save(checkpoint, path)
    config.max_minutes = None
    with pytest.raises(ValueError, match="checkpoint of a run on cuda; resume with --device cuda"):
        train([in_focus_file], tmp_path / "m", config, resume=True, log=lambda *_: None)
