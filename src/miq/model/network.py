"""Network definitions (torch). Imported only for training and export, never for inference.

All networks take raw patches ``(B, 1, 84, 84)`` float32 in any intensity scale and start with
per-patch standardisation (subtract the patch mean, divide by its standard deviation), so their
output does not depend on gain or offset, and ONNX exports carry the normalisation with them.
They are plain ``torch.nn.Module`` objects built from JSON-serialisable keyword arguments.

This file depends on torch only (it never imports miq): bioimage.io packages ship it verbatim as
their architecture file (``miq_focus_net.py``; `miq_focus_net` builds the network with
miq's patch calibration on its output).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "PatchStandardize",
    "CompactFocusNet",
    "Stride4FocusNet",
    "SeparableFocusNet",
    "Yang2018Net",
    "CalibratedCompactFocusNet",
    "CalibratedStride4FocusNet",
    "CalibratedSeparableFocusNet",
    "CalibratedYang2018Net",
    "miq_focus_net",
    "build_network",
    "load_network",
    "ARCHITECTURES",
]


class PatchStandardize(nn.Module):
    """(x − mean) / (std + eps·(|mean| + 1e-12)) per patch; a constant patch becomes all zeros."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        centred = x - mean
        std = torch.sqrt((centred * centred).mean(dim=(2, 3), keepdim=True))
        return centred / (std + self.eps * (mean.abs() + 1e-12))


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _stride4_stem(c_out: int) -> nn.Sequential:
    """Non-overlapping 4×4/4 convolution (a complete linear transform of each 4×4 px block), BN,
    ReLU."""
    return nn.Sequential(
        nn.Conv2d(1, c_out, 4, stride=4, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class _MeanMaxPooledNet(nn.Module):
    """Patch standardisation → ``features`` → global mean and max pooling (2·``n_features``) →
    one linear layer to ``n_levels`` logits. The body shared by compact, stride4 and separable."""

    def __init__(self, features: nn.Sequential, n_features: int, n_levels: int) -> None:
        super().__init__()
        self.standardize = PatchStandardize()
        self.features = features
        self.head = nn.Linear(2 * n_features, n_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(self.standardize(x))
        # global pooling ops (not mean/amax over axes): ONNX Runtime runs GlobalAveragePool and
        # GlobalMaxPool in its blocked channel layout, with no reorder before the head
        mean = nn.functional.adaptive_avg_pool2d(f, 1).flatten(1)
        peak = nn.functional.adaptive_max_pool2d(f, 1).flatten(1)
        return self.head(torch.cat([mean, peak], dim=1))


def _stage_channels(
    multiples: Sequence[int], width: int, channels: Sequence[int] | None, count: str
) -> list[int]:
    """Each layer's output channels: ``channels`` as given (as many as ``multiples``, ``count``
    in words, each ≥ 1; ValueError otherwise), or ``width`` times ``multiples``."""
    c = [m * width for m in multiples] if channels is None else [int(n) for n in channels]
    if len(c) != len(multiples) or min(c) < 1:
        raise ValueError(f"channels needs {count} positive channel counts, got {channels}")
    return c


class CompactFocusNet(_MeanMaxPooledNet):
    """Compact all-convolutional defocus classifier (~10 M multiply-adds per 84² patch).

    Layers: 5×5/2 → 3×3/2 → 3×3/1 → 3×3/2 → 3×3/2 convolutions (BN + ReLU), global mean and max
    pooling, one linear layer to ``n_levels`` logits. Receptive field 41 px before the global
    pooling, so blur up to ~30 px across is seen whole.

    ``channels``: the five layers' output channels; default (w, 2w, 2w, 4w, 4w) for ``width`` w.
    (8, 24, 24, 48, 48) has half the multiply-adds of the default (5.4 M) at the same depth and
    receptive field.
    """

    def __init__(
        self,
        n_levels: int = 11,
        width: int = 16,
        patch_size: int = 84,
        channels: Sequence[int] | None = None,
    ) -> None:
        c = _stage_channels((1, 2, 2, 4, 4), width, channels, "five")
        features = nn.Sequential(
            _conv_bn_relu(1, c[0], 5, 2),
            _conv_bn_relu(c[0], c[1], 3, 2),
            _conv_bn_relu(c[1], c[2], 3, 1),
            _conv_bn_relu(c[2], c[3], 3, 2),
            _conv_bn_relu(c[3], c[4], 3, 2),
        )
        super().__init__(features, n_features=c[4], n_levels=n_levels)


class Stride4FocusNet(_MeanMaxPooledNet):
    """Speed-oriented defocus classifier (~3.3 M multiply-adds per 84² patch, a third of compact).

    A non-overlapping 4×4/4 stem (a complete linear transform of each 4×4 px block into
    ``width`` channels, BN + ReLU) → 3×3/2 → 3×3/2 (×2 channels) → 3×3/1 convolutions, global
    mean and max pooling, one linear layer. Receptive field 60 px; feature maps 21², 11², 6², 6².
    """

    def __init__(self, n_levels: int = 11, width: int = 32, patch_size: int = 84) -> None:
        w = width
        features = nn.Sequential(
            _stride4_stem(w),
            _conv_bn_relu(w, w, 3, 2),
            _conv_bn_relu(w, 2 * w, 3, 2),
            _conv_bn_relu(2 * w, 2 * w, 3, 1),
        )
        super().__init__(features, n_features=2 * w, n_levels=n_levels)


def _separable_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Depthwise 3×3 (stride ``stride``), then pointwise 1×1 to ``c_out``; each BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SeparableFocusNet(_MeanMaxPooledNet):
    """Deeper speed-oriented classifier at about `Stride4FocusNet`'s ONNX Runtime cost.

    The stride-4 stem (4×4/4 to ``width`` channels, BN + ReLU), then five depthwise-separable
    blocks at 21², 11², 11², 6², 6² px with ``width``, 2·, 2·, 4·, 4·``width`` channels, global
    mean and max pooling, one linear layer. Receptive field 84 px (the whole patch).

    ``channels``: the stem's and the five blocks' output channels; default ``width`` times
    `STAGE_WIDTHS`. (16, 16, 64, 64, 128, 128) narrows only the 21²-px stage, where a third of
    the default's multiply-adds are.
    """

    #: output channels of the stem and of each block (features.0 … features.5), in units of
    #: ``width`` (`miq.training.prune.prune_separable_state` cuts each stage to its count)
    STAGE_WIDTHS = (1, 1, 2, 2, 4, 4)
    _BLOCK_STRIDES = (1, 2, 1, 2, 1)

    def __init__(
        self,
        n_levels: int = 11,
        width: int = 32,
        patch_size: int = 84,
        channels: Sequence[int] | None = None,
    ) -> None:
        c = _stage_channels(self.STAGE_WIDTHS, width, channels, "six")
        blocks = [
            _separable_bn_relu(c_in, c_out, stride)
            for c_in, c_out, stride in zip(c[:-1], c[1:], self._BLOCK_STRIDES)
        ]
        features = nn.Sequential(_stride4_stem(c[0]), *blocks)
        super().__init__(features, n_features=c[-1], n_levels=n_levels)


class Yang2018Net(nn.Module):
    """The original architecture (Yang et al. 2018, 29 M parameters), for reproducing the paper.

    conv5×5×32 → maxpool 2 → conv5×5×64 → maxpool 2 → FC 1024 → dropout 0.5 → FC ``n_levels``.
    """

    def __init__(self, n_levels: int = 11, patch_size: int = 84) -> None:
        super().__init__()
        self.standardize = PatchStandardize()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = patch_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * side * side, 1024),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(1024, n_levels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.standardize(x)))


def calibrated_probabilities(
    logits: torch.Tensor, class_bias: torch.Tensor, patch_temperature: torch.Tensor
) -> torch.Tensor:
    """softmax((log(max(softmax(logits), 1e-12)) + class_bias) / T) over the last axis; (B, K)."""
    p = torch.softmax(logits, dim=-1)
    z = (torch.log(torch.clamp(p, min=1e-12)) + class_bias) / patch_temperature
    return torch.softmax(z, dim=-1)


def _calibration_buffers(
    module: nn.Module, n_levels: int, class_bias: Sequence[float] | None, patch_temperature: float
) -> None:
    bias = [0.0] * n_levels if class_bias is None else [float(b) for b in class_bias]
    if len(bias) != n_levels or not patch_temperature > 0:
        raise ValueError(
            f"class_bias needs {n_levels} values and patch_temperature must be > 0, got "
            f"{len(bias)} values and {patch_temperature}"
        )
    # not persistent: the state dict holds only the network weights, the calibration is in kwargs
    module.register_buffer("class_bias", torch.tensor(bias, dtype=torch.float32), persistent=False)
    module.register_buffer(
        "patch_temperature", torch.tensor(float(patch_temperature)), persistent=False
    )


class _Calibrated:
    """Mixin for a network class: its logits become miq's calibrated probabilities (B, n_levels).

    Takes the network's own keyword arguments plus ``class_bias`` (n_levels floats, default 0)
    and ``patch_temperature`` (> 0, default 1) of miq's patch calibration.
    """

    def __init__(
        self,
        *,
        class_bias: Sequence[float] | None = None,
        patch_temperature: float = 1.0,
        **architecture_kwargs,
    ) -> None:
        super().__init__(**architecture_kwargs)
        n_levels = [m for m in self.modules() if isinstance(m, nn.Linear)][-1].out_features
        _calibration_buffers(self, n_levels, class_bias, patch_temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        return calibrated_probabilities(logits, self.class_bias, self.patch_temperature)


class CalibratedCompactFocusNet(_Calibrated, CompactFocusNet):
    """`CompactFocusNet` whose output is miq's calibrated probabilities (B, n_levels)."""


class CalibratedStride4FocusNet(_Calibrated, Stride4FocusNet):
    """`Stride4FocusNet` whose output is miq's calibrated probabilities (B, n_levels)."""


class CalibratedSeparableFocusNet(_Calibrated, SeparableFocusNet):
    """`SeparableFocusNet` whose output is miq's calibrated probabilities (B, n_levels)."""


class CalibratedYang2018Net(_Calibrated, Yang2018Net):
    """`Yang2018Net` whose output is miq's calibrated probabilities (B, n_levels)."""


_CALIBRATED = {
    "compact": CalibratedCompactFocusNet,
    "stride4": CalibratedStride4FocusNet,
    "separable": CalibratedSeparableFocusNet,
    "yang2018": CalibratedYang2018Net,
}


def miq_focus_net(architecture: str = "compact", **kwargs) -> nn.Module:
    """Build a calibrated network by name (a key of `ARCHITECTURES`) from JSON keyword
    arguments.

    ``kwargs``: the architecture's own (``n_levels``, ``patch_size``, ``width`` but for yang2018)
    plus ``class_bias`` (n_levels floats) and ``patch_temperature`` (> 0) of miq's patch
    calibration.
    """
    return _lookup(_CALIBRATED, architecture)(**kwargs)


def _lookup(table: dict[str, type[nn.Module]], architecture: str) -> type[nn.Module]:
    """The class registered under ``architecture``; ValueError naming the choices otherwise."""
    try:
        return table[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {sorted(table)}"
        ) from None


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "compact": CompactFocusNet,
    "stride4": Stride4FocusNet,
    "separable": SeparableFocusNet,
    "yang2018": Yang2018Net,
}


def build_network(architecture: str, **kwargs) -> nn.Module:
    """Build a network by name (a key of `ARCHITECTURES`) from JSON-serialisable
    kwargs."""
    return _lookup(ARCHITECTURES, architecture)(**kwargs)


def load_network(package) -> nn.Module:
    """The trained network of a `miq.model.package.ModelPackage`, built from its
    architecture and loaded from its sha256-checked ``model.safetensors``, in eval mode.

    The one loader of trained weights: the torch GPU path, training (``--init-from``,
    ``--teacher``), ONNX re-export and the bioimage.io export all use it. Raises
    `miq.errors.ModelError` naming the weights when they do not fit the architecture.
    """
    from safetensors.torch import load

    from ..errors import ModelError

    payload = package.weight_bytes("safetensors")
    try:
        network = build_network(package.architecture, **package.architecture_kwargs)
        network.load_state_dict(load(payload))
    except Exception as exc:
        weights = package.weight_file("safetensors")
        raise ModelError(f"{weights}: torch cannot load it ({exc})") from None
    return network.eval()
