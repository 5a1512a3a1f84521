"""A narrower compact network started from a wider one's weights (`miq.training.prune`,
`miq train --channels ... --init-from`); needs the 'train' extra."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miq.model.network import build_network  # noqa: E402
from miq.training.prune import kept_channels, prune_compact_state  # noqa: E402

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
    "options, message",
    [
        (["--channels", "8,24,24,48"], "five channel counts"),
        (["--channels", "8,24,x,48,48"], "not a whole number"),
        (["--channels", "8,24,24,48,48", "--architecture", "separable"], "compact architecture"),
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
