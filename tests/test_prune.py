"""A narrower compact or separable network started from a wider one's weights
(`miq.training.prune`, `miq train --channels ... --init-from`, `miq train --architecture
separable --width ... --init-from`); needs the 'train' extra."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miq.model.network import build_network  # noqa: E402
from miq.training.prune import (  # noqa: E402
    SEPARABLE_STAGE_WIDTHS,
    kept_channels,
    prune_compact_state,
    prune_separable_state,
    separable_channels,
)

SLIM = [8, 24, 24, 48, 48]


def _wide_network_with_dead_channels(seed: int = 0) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """A default compact network with random weights and running statistics in which, per layer,
    the channels beyond ``SLIM`` are switched off (BN scale and shift 0, so the ReLU outputs 0).
    Returns it (eval mode) and each layer's live channels."""
    generator = torch.Generator().manual_seed(seed)
    net = build_network("compact")
    live_per_layer = []
    with torch.no_grad():
        for layer, keep in enumerate(SLIM):
            conv, bn = net.features[layer][0], net.features[layer][1]
            n = conv.out_channels
            conv.weight.normal_(0, 0.3, generator=generator)
            bn.running_mean.normal_(0, 0.1, generator=generator)
            bn.running_var.uniform_(0.5, 2.0, generator=generator)
            bn.bias.normal_(0, 0.1, generator=generator)
            live = torch.sort(torch.randperm(n, generator=generator)[:keep]).values
            scale = torch.zeros(n)
            scale[live] = torch.rand(keep, generator=generator) + 0.5
            bn.weight.copy_(scale)
            dead = torch.ones(n, dtype=torch.bool)
            dead[live] = False
            bn.bias[dead] = 0.0
            live_per_layer.append(live)
        net.head.weight.normal_(0, 0.3, generator=generator)
    return net.eval(), live_per_layer


def test_pruning_to_the_same_channels_changes_nothing():
    wide, _ = _wide_network_with_dead_channels()
    same = build_network("compact", channels=[16, 32, 32, 64, 64]).eval()
    same.load_state_dict(prune_compact_state(wide.state_dict(), [16, 32, 32, 64, 64]))
    x = torch.randn(5, 1, 84, 84, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(same(x), wide(x))


def test_pruning_keeps_the_live_channels_and_the_outputs():
    """Channels with BN scale 0 contribute nothing; pruning removes exactly those, so the
    narrow network computes the same logits and the head keeps the right pooled features."""
    wide, live = _wide_network_with_dead_channels()
    state = prune_compact_state(wide.state_dict(), SLIM)
    for layer, channels in enumerate(live):
        assert torch.equal(kept_channels(wide.features[layer][1].weight, len(channels)), channels)
    slim = build_network("compact", channels=SLIM).eval()
    slim.load_state_dict(state)
    x = torch.randn(7, 1, 84, 84, generator=torch.Generator().manual_seed(3)) * 50 + 200
    with torch.no_grad():  # float32 sums in another order: ~1e-4 apart on logits of order 1
        torch.testing.assert_close(slim(x), wide(x), rtol=1e-3, atol=1e-3)
    assert sum(p.numel() for p in slim.parameters()) < 0.6 * sum(
        p.numel() for p in wide.parameters()
    )


def test_pruning_refuses_wider_targets_and_other_architectures():
    state = build_network("compact").state_dict()
    with pytest.raises(ValueError, match="layer 0: cannot keep 20 of 16"):
        prune_compact_state(state, [20, 32, 32, 64, 64])
    with pytest.raises(ValueError, match="five|5 counts"):
        prune_compact_state(state, [8, 24, 24, 48])
    with pytest.raises(ValueError, match="not a compact network"):
        prune_compact_state(build_network("separable").state_dict(), SLIM)


def _wide_separable_with_dead_channels(width: int | list[int], seed: int = 0):
    """A width-32 separable network with random weights in which, per stage, only ``width`` ×
    the stage's multiple of channels (or the stage's count, when ``width`` is six counts) are
    live after the pointwise (or stem) BN + ReLU (the others have BN scale and shift 0 there and
    in the next block's depthwise BN). Returns it (eval mode) and each stage's live channels."""
    counts = width if isinstance(width, list) else separable_channels(width)
    generator = torch.Generator().manual_seed(seed)
    net = build_network("separable", width=32)
    live_per_stage = []
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.3, generator=generator)
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
        for stage, keep in enumerate(counts):
            bn = net.features[stage][1 if stage == 0 else 4]
            n = bn.num_features
            live = torch.sort(torch.randperm(n, generator=generator)[:keep]).values
            dead = torch.ones(n, dtype=torch.bool)
            dead[live] = False
            bn.weight[dead] = 0.0
            bn.bias[dead] = 0.0
            if stage + 1 < len(SEPARABLE_STAGE_WIDTHS):  # the next depthwise BN would turn a
                depthwise_bn = net.features[stage + 1][1]  # dead channel into its shift
                depthwise_bn.weight[dead] = 0.0
                depthwise_bn.bias[dead] = 0.0
            live_per_stage.append(live)
        net.head.weight.normal_(0, 0.3, generator=generator)
    return net.eval(), live_per_stage


def test_separable_pruning_keeps_the_live_channels_and_the_outputs():
    """Each stage keeps its channels of largest BN scale; the depthwise convolution after it
    keeps the same ones. With the rest switched off, the width-16 network computes the same
    logits as the width-32 one."""
    wide, live = _wide_separable_with_dead_channels(16)
    state = prune_separable_state(wide.state_dict(), separable_channels(16))
    narrow = build_network("separable", width=16).eval()
    narrow.load_state_dict(state)
    for stage, channels in enumerate(live):
        bn = "features.0.1" if stage == 0 else f"features.{stage}.4"
        torch.testing.assert_close(
            state[f"{bn}.weight"], wide.state_dict()[f"{bn}.weight"][channels]
        )
    x = torch.randn(6, 1, 84, 84, generator=torch.Generator().manual_seed(5)) * 40 + 150
    with torch.no_grad():
        torch.testing.assert_close(narrow(x), wide(x), rtol=1e-3, atol=1e-3)
    assert sum(p.numel() for p in narrow.parameters()) < 0.35 * sum(
        p.numel() for p in wide.parameters()
    )


def test_separable_pruning_to_its_own_width_changes_nothing():
    wide, _ = _wide_separable_with_dead_channels(16)
    same = build_network("separable", width=32).eval()
    same.load_state_dict(prune_separable_state(wide.state_dict(), separable_channels(32)))
    x = torch.randn(3, 1, 84, 84, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        torch.testing.assert_close(same(x), wide(x))


def test_separable_pruning_refuses_wider_targets_and_other_architectures():
    state = build_network("separable", width=16).state_dict()
    with pytest.raises(ValueError, match="stem: cannot keep 32 of 16"):
        prune_separable_state(state, separable_channels(32))
    with pytest.raises(ValueError, match="six channel counts"):
        prune_separable_state(state, [8, 8, 16, 16, 32])
    with pytest.raises(ValueError, match="not a separable network"):
        prune_separable_state(build_network("compact").state_dict(), separable_channels(8))


FIRST_STAGE_16 = [16, 16, 64, 64, 128, 128]


def test_separable_pruning_to_channels_narrows_only_the_stages_asked():
    """Six channel counts cut the 21²-px stage to 16 and keep every later stage whole: the
    later blocks keep their pointwise weights on the kept inputs, and with the rest switched
    off the narrow network computes the wide one's logits."""
    wide, live = _wide_separable_with_dead_channels(FIRST_STAGE_16)
    state = prune_separable_state(wide.state_dict(), FIRST_STAGE_16)
    narrow = build_network("separable", channels=FIRST_STAGE_16).eval()
    narrow.load_state_dict(state)
    assert narrow.features[0][0].out_channels == 16 and narrow.features[5][3].out_channels == 128
    torch.testing.assert_close(
        state["features.2.3.weight"], wide.state_dict()["features.2.3.weight"][:, live[1]]
    )
    torch.testing.assert_close(state["head.weight"], wide.state_dict()["head.weight"])
    x = torch.randn(4, 1, 84, 84, generator=torch.Generator().manual_seed(8)) * 30 + 120
    with torch.no_grad():
        torch.testing.assert_close(narrow(x), wide(x), rtol=1e-3, atol=1e-3)


def test_separable_channels_must_be_six_positive_counts():
    with pytest.raises(ValueError, match="six positive"):
        build_network("separable", channels=[16, 16, 64, 64, 128])
    with pytest.raises(ValueError, match="six positive"):
        build_network("separable", channels=[16, 0, 64, 64, 128, 128])


def test_channels_must_be_five_positive_counts():
    with pytest.raises(ValueError, match="five positive"):
        build_network("compact", channels=[8, 24, 24, 48])
    with pytest.raises(ValueError, match="five positive"):
        build_network("compact", channels=[8, 0, 24, 48, 48])


def test_train_cli_starts_a_slim_network_from_a_wider_model(tmp_path, sample_image, capsys):
    """`miq train --channels 8,24,24,48,48 --init-from WIDE` trains, records the channels in
    model.json and exports an ONNX file that ONNX Runtime runs like torch."""
    import tifffile
    from safetensors.torch import load_file

    import miq
    from miq.cli import main
    from miq.model.package import MODEL_VERSIONS

    image = tmp_path / "in_focus.tif"
    tifffile.imwrite(image, sample_image)
    out = tmp_path / "slim"
    args = ["train", str(image), "-o", str(out), "--batch-size", "4", "--steps", "2"]
    args += ["--channels", "8,24,24,48,48", "--init-from", str(MODEL_VERSIONS["v3"].parent)]
    assert main(args) == 0
    assert "pruned to channels [8, 24, 24, 48, 48]" in capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    assert meta["architecture"] == "compact"
    assert meta["architecture_kwargs"]["channels"] == SLIM
    net = build_network("compact", **meta["architecture_kwargs"]).eval()
    net.load_state_dict(load_file(out / "model.safetensors"))
    patches = np.random.default_rng(2).random((4, 84, 84)).astype(np.float32) * 3000 + 100
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(patches[:, None])), 1).numpy()
    np.testing.assert_allclose(miq.load_model(out).predict(patches), expected, atol=1e-5)


@pytest.mark.parametrize(
    "options, said, recorded",
    [
        (["--width", "16"], "pruned to width 16", ("width", 16)),
        (
            ["--channels", "16,16,64,64,128,128"],
            "pruned to channels [16, 16, 64, 64, 128, 128]",
            ("channels", FIRST_STAGE_16),
        ),
    ],
)
def test_train_cli_starts_a_narrow_separable_network_from_fast_v2(
    tmp_path, sample_image, capsys, options, said, recorded
):
    import tifffile

    import miq
    from miq.cli import main
    from miq.model.package import MODEL_VERSIONS

    image = tmp_path / "in_focus.tif"
    tifffile.imwrite(image, sample_image)
    out = tmp_path / "narrow"
    args = ["train", str(image), "-o", str(out), "--batch-size", "4", "--steps", "2"]
    args += ["--architecture", "separable", *options]
    args += ["--init-from", str(MODEL_VERSIONS["fast-v2"].parent)]
    assert main(args) == 0
    assert said in capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    key, value = recorded
    assert (meta["architecture"], meta["architecture_kwargs"][key]) == ("separable", value)
    assert miq.load_model(out).predict(np.full((2, 84, 84), 7.0, np.float32)).shape == (2, 11)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--channels", "8,24,24,48"], "compact architecture needs 5 channel counts, got 4"),
        (["--channels", "8,24,x,48,48"], "not a whole number"),
        (["--channels", "8,24,24,48,48", "--architecture", "separable"], "needs 6 channel"),
        (["--channels", "8,8,8,8,8", "--architecture", "stride4"], "compact and separable"),
        (["--channels", "8,24,24,48,48", "--width", "8"], "not both"),
    ],
)
def test_train_cli_refuses_bad_channels(tmp_path, sample_image, capsys, options, message):
    import tifffile

    from miq.cli import main

    image = tmp_path / "in_focus.tif"
    tifffile.imwrite(image, sample_image)
    out = tmp_path / "run"
    try:
        code = main(["train", str(image), "-o", str(out), "--steps", "1"] + options)
    except SystemExit as exc:  # argparse's usage error
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (out / "model.json").exists()
