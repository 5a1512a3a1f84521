"""Network definitions (torch). Imported only for training and export, never for inference.

Both networks take raw patches ``(B, 1, 84, 84)`` float32 in any intensity scale and start with
per-patch standardisation (subtract the patch mean, divide by its standard deviation), so their
output does not depend on gain or offset, and ONNX exports carry the normalisation with them.
They are plain ``torch.nn.Module`` objects built from JSON-serialisable keyword arguments.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchStandardize", "CompactFocusNet", "Yang2018Net", "build_network", "ARCHITECTURES"]


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


class CompactFocusNet(nn.Module):
    """Compact all-convolutional defocus classifier (~10 M multiply-adds per 84² patch).

    Layers: 5×5/2 → 3×3/2 → 3×3/1 → 3×3/2 → 3×3/2 convolutions (BN + ReLU), global mean and max
    pooling, one linear layer to ``n_levels`` logits. Receptive field 41 px before the global
    pooling, so blur up to ~30 px across is seen whole.
    """

    def __init__(self, n_levels: int = 11, width: int = 16, patch_size: int = 84) -> None:
        super().__init__()
        w = width
        self.standardize = PatchStandardize()
        self.features = nn.Sequential(
            _conv_bn_relu(1, w, 5, 2),
            _conv_bn_relu(w, 2 * w, 3, 2),
            _conv_bn_relu(2 * w, 2 * w, 3, 1),
            _conv_bn_relu(2 * w, 4 * w, 3, 2),
            _conv_bn_relu(4 * w, 4 * w, 3, 2),
        )
        self.head = nn.Linear(8 * w, n_levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(self.standardize(x))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)


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


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "compact": CompactFocusNet,
    "yang2018": Yang2018Net,
}


def build_network(architecture: str, **kwargs) -> nn.Module:
    """Build a network by name (``"compact"`` or ``"yang2018"``) from JSON-serialisable kwargs."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None
    return cls(**kwargs)
