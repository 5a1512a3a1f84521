"""Averaged weights (`miq.training.average`, ``miq average-weights``; need the 'train' extra)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miq.cli import main  # noqa: E402
from miq.errors import ModelError  # noqa: E402
from miq.training.average import (  # noqa: E402
    average_models,
    averaged_state,
    reestimate_batch_norm,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, sample_image):
    """Two short separable runs from one start (the second with another seed), and one compact
    run: tiny trainings, enough for their weights to differ."""
    import tifffile

    from miq.training.train import TrainConfig, train

    folder = tmp_path_factory.mktemp("runs")
    image = folder / "in_focus.tif"
    tifffile.imwrite(image, sample_image)
    made = {}
    for name, architecture, seed in [
        ("a", "separable", 0),
        ("b", "separable", 1),
        ("c", "compact", 0),
    ]:
        config = TrainConfig(
            architecture=architecture, steps=4, batch_size=8, seed=seed, procedural_fraction=0.5
        )
        train([str(image)], folder / name, config, log=lambda *_: None)
        made[name] = folder / name
    made["image"] = image
    return made


def _state(folder):
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def test_averaged_state_is_the_mean_of_floats_and_keeps_the_first_counts():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    mean = averaged_state([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and mean["w"].dtype == torch.float32
    assert int(mean["n"]) == 3
    with pytest.raises(ValueError, match="shape"):
        averaged_state([a, {"w": torch.zeros(3), "n": torch.tensor(1)}])
    with pytest.raises(ValueError, match="other tensors"):
        averaged_state([a, {"w": torch.zeros(2)}])


def test_two_runs_averaged_without_batch_norm_pass_are_the_mean_of_their_weights(tmp_path, runs):
    import miq

    meta_path = average_models(
        [str(runs["a"]), str(runs["b"])], tmp_path / "avg", [], bn_batches=0, log=lambda *_: None
    )
    a, b, avg = _state(runs["a"]), _state(runs["b"]), _state(tmp_path / "avg")
    differing = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert differing  # the two runs really differ
    for name in a:
        if a[name].is_floating_point():
            torch.testing.assert_close(avg[name], (a[name] + b[name]) / 2, rtol=0, atol=1e-6)
    meta = json.loads(meta_path.read_text())
    ingredients = meta["training"]["averaged_from"]
    assert [i["seed"] for i in ingredients] == [0, 1]
    assert (
        ingredients[0]["safetensors_sha256"]
        == json.loads((runs["a"] / "model.json").read_text())["weights"]["safetensors"]["sha256"]
    )
    assert meta["training"]["batch_norm"] is None
    assert meta["training"]["files"] and "calibration" not in meta
    # the ONNX file rates as the averaged torch network does
    from miq.model.network import build_network

    net = build_network(meta["architecture"], **meta["architecture_kwargs"]).eval()
    net.load_state_dict(avg)
    patches = np.random.default_rng(2).random((5, 84, 84)).astype(np.float32) * 3000 + 50
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(patches[:, None])), 1).numpy()
    np.testing.assert_allclose(
        miq.load_model(tmp_path / "avg").predict(patches), expected, atol=1e-5
    )


def test_one_run_averaged_with_itself_is_itself(tmp_path, runs):
    average_models([str(runs["a"])] * 3, tmp_path / "same", [], bn_batches=0, log=lambda *_: None)
    a, same = _state(runs["a"]), _state(tmp_path / "same")
    for name in a:
        torch.testing.assert_close(same[name], a[name], rtol=0, atol=1e-7)


def test_batch_norm_statistics_are_measured_on_simulated_batches(tmp_path, runs):
    """With the pass the running statistics are those of the simulated batches (a second pass
    over the same batches gives them again), not the runs' mean; the weights stay the mean."""
    from miq.model.network import build_network
    from miq.training.synthetic import DefocusBatches, load_sources

    average_models(
        [str(runs["a"]), str(runs["b"])], tmp_path / "plain", [], bn_batches=0, log=lambda *_: None
    )
    messages = []
    meta_path = average_models(
        [str(runs["a"]), str(runs["b"])],
        tmp_path / "bn",
        [str(runs["image"])],
        bn_batches=3,
        batch_size=16,
        seed=5,
        log=messages.append,
    )
    plain, bn = _state(tmp_path / "plain"), _state(tmp_path / "bn")
    stats = [k for k in plain if k.endswith("running_mean") or k.endswith("running_var")]
    assert stats and all(not torch.allclose(plain[k], bn[k]) for k in stats)
    weights = [k for k in plain if k.endswith("weight") or k.endswith("bias")]
    assert all(torch.equal(plain[k], bn[k]) for k in weights)
    meta = json.loads(meta_path.read_text())
    assert meta["training"]["batch_norm"] == {
        "batches": 3,
        "batch_size": 16,
        "seed": 5,
        "images": 1,
    }
    assert any("batch-norm statistics of 11 layers" in m for m in messages)
    # the same statistics again from the same batches, measured directly: simulated as the
    # first run's training config says (procedural share 0.5, not the default 0.3)
    net = build_network(meta["architecture"], **meta["architecture_kwargs"])
    net.load_state_dict(plain)
    sources = load_sources([str(runs["image"])], 84, pixel_size_um=0.65, seed=5)
    batches = DefocusBatches(sources, procedural_fraction=0.5, source_weighting="sqrt", seed=5)
    assert reestimate_batch_norm(net, batches, 3, 16) == 11
    assert not net.training
    for k in stats:
        torch.testing.assert_close(net.state_dict()[k], bn[k], rtol=1e-5, atol=1e-6)


def test_runs_of_different_networks_are_refused_naming_the_run(tmp_path, runs):
    with pytest.raises(ModelError, match=r"[/\\]c[/\\]model.json: its architecture differs"):
        average_models(
            [str(runs["a"]), str(runs["c"])], tmp_path / "x", [], bn_batches=0, log=print
        )
    assert not (tmp_path / "x").exists()


def test_cli_averages_and_refuses_what_it_cannot_do(tmp_path, runs, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "average-weights",
                str(runs["a"]),
                str(runs["b"]),
                "--images",
                str(runs["image"]),
                "--bn-batches",
                "2",
                "--batch-size",
                "8",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "uncalibrated: run miq calibrate" in capsys.readouterr().out
    assert (out / "model.onnx").exists()
    # an existing model is never overwritten
    assert main(["average-weights", str(runs["a"]), str(runs["b"]), "-o", str(out)]) == 2
    assert "already holds a model.json" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    assert (
        main(["average-weights", str(runs["a"]), str(runs["b"]), "-o", str(tmp_path / "a_file")])
        == 2
    )
    assert "exists and is not a folder" in capsys.readouterr().err
    # one run is not an average
    assert main(["average-weights", str(runs["a"]), "-o", str(tmp_path / "one")]) == 2
    assert "at least two runs" in capsys.readouterr().err
    # the batch-norm pass needs the training images
    assert main(["average-weights", str(runs["a"]), str(runs["b"]), "-o", str(tmp_path / "n")]) == 2
    assert "--bn-batches 0" in capsys.readouterr().err
    # different networks: one line naming the run, exit 2
    code = main(
        [
            "average-weights",
            str(runs["a"]),
            str(runs["c"]),
            "--bn-batches",
            "0",
            "-o",
            str(tmp_path / "d"),
        ]
    )
    assert code == 2 and "architecture differs" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "n").exists()
