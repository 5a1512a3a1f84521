"""Channel pruning of a trained compact or separable network, to start a narrower one from it.

`miq train --channels ... --init-from WIDER_MODEL` (compact: five counts; separable: six) and
`miq train --architecture separable --width W --init-from WIDER_MODEL` use it: each
convolution keeps the output channels whose batch-norm scale |γ| is largest (a channel's BN
scale bounds how much it can contribute after the ReLU), the next layer keeps the matching
input channels (a depthwise convolution keeps exactly its input's channels), and the linear
head keeps the mean- and max-pooled features of the channels kept in the last layer. The
result is a starting point for fine-tuning (ideally with the wider model as ``--teacher``),
not a finished model: removing channels changes the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..model.network import SeparableFocusNet

_N_LAYERS = 5  # CompactFocusNet's convolutions, features.0 … features.4
_KERNELS = (5, 3, 3, 3, 3)  # their kernel sizes, px


def kept_channels(bn_scale: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` channels with the largest |BN scale| (C,)."""
    if not 1 <= keep <= bn_scale.numel():
        raise ValueError(f"cannot keep {keep} of {bn_scale.numel()} channels")
    top = torch.topk(bn_scale.abs(), keep).indices
    return torch.sort(top).values


def prune_compact_state(
    state: dict[str, torch.Tensor], channels: Sequence[int]
) -> dict[str, torch.Tensor]:
    """A `miq.model.network.CompactFocusNet` state dict cut down to ``channels`` (five output
    channel counts, each no larger than the source layer's). Raises ValueError naming the
    layer when the source is not a compact network or a layer is too narrow."""
    if len(channels) != _N_LAYERS:
        raise ValueError(f"channels needs {_N_LAYERS} counts, got {list(channels)}")
    pruned: dict[str, torch.Tensor] = {}
    previous: torch.Tensor | None = None  # input channels kept by the layer before
    for layer, keep in enumerate(channels):
        conv, bn = f"features.{layer}.0", f"features.{layer}.1"
        try:
            weight, scale = state[f"{conv}.weight"], state[f"{bn}.weight"]
        except KeyError as missing:
            raise ValueError(f"not a compact network's weights: no {missing}") from None
        n_inputs = 1 if previous is None else len(state[f"features.{layer - 1}.1.weight"])
        if weight.ndim != 4 or weight.shape[1] != n_inputs or weight.shape[2] != _KERNELS[layer]:
            raise ValueError(
                f"not a compact network's weights: {conv}.weight has shape {tuple(weight.shape)}"
            )
        try:
            kept = kept_channels(scale, int(keep))
        except ValueError as exc:
            raise ValueError(f"layer {layer}: {exc}") from None
        weight = weight[kept]
        pruned[f"{conv}.weight"] = weight if previous is None else weight[:, previous]
        _copy_batch_norm(pruned, state, bn, kept)
        previous = kept
    n_last = state[f"features.{_N_LAYERS - 1}.1.weight"].numel()
    return _with_head(pruned, state, previous, n_last)


def _copy_batch_norm(
    pruned: dict[str, torch.Tensor], state: dict[str, torch.Tensor], bn: str, kept: torch.Tensor
) -> None:
    """Put batch-norm layer ``bn``'s scale, shift and running statistics of the ``kept``
    channels into ``pruned``."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        pruned[f"{bn}.{name}"] = state[f"{bn}.{name}"][kept]
    pruned[f"{bn}.num_batches_tracked"] = state[f"{bn}.num_batches_tracked"]


def _with_head(
    pruned: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    kept_last: torch.Tensor,
    n_last: int,
) -> dict[str, torch.Tensor]:
    """``pruned`` plus the linear head cut to the mean- and max-pooled features of the last
    layer's ``kept_last`` channels (of ``n_last``); every tensor a contiguous copy."""
    head_columns = torch.cat([kept_last, kept_last + n_last])  # [mean pooled, max pooled]
    pruned["head.weight"] = state["head.weight"][:, head_columns]
    pruned["head.bias"] = state["head.bias"]
    return {name: tensor.clone().contiguous() for name, tensor in pruned.items()}


#: the separable network's output channels per stage, in units of its width
SEPARABLE_STAGE_WIDTHS = SeparableFocusNet.STAGE_WIDTHS


def separable_channels(width: int) -> list[int]:
    """The separable network's output channels per stage at ``width``."""
    return [width * m for m in SEPARABLE_STAGE_WIDTHS]


def prune_separable_state(
    state: dict[str, torch.Tensor], channels: Sequence[int]
) -> dict[str, torch.Tensor]:
    """A `miq.model.network.SeparableFocusNet` state dict cut down to ``channels`` (the narrow
    network's output channels of the stem and of each block, six counts; `separable_channels`
    of a width). Raises ValueError naming the stage when the source is not a separable network
    or is too narrow."""
    channels = [int(n) for n in channels]
    if len(channels) != len(SEPARABLE_STAGE_WIDTHS):
        raise ValueError(f"needs six channel counts, got {channels}")
    try:
        stem, stem_scale = state["features.0.0.weight"], state["features.0.1.weight"]
    except KeyError as missing:
        raise ValueError(f"not a separable network's weights: no {missing}") from None
    if stem.ndim != 4 or tuple(stem.shape[1:]) != (1, 4, 4):
        raise ValueError(
            f"not a separable network's weights: features.0.0.weight has shape {tuple(stem.shape)}"
        )
    try:
        kept = kept_channels(stem_scale, channels[0])
    except ValueError as exc:
        raise ValueError(f"stem: {exc}") from None
    pruned = {"features.0.0.weight": stem[kept]}
    _copy_batch_norm(pruned, state, "features.0.1", kept)
    for stage in range(1, len(SEPARABLE_STAGE_WIDTHS)):
        block = f"features.{stage}"
        try:
            depthwise, pointwise = state[f"{block}.0.weight"], state[f"{block}.3.weight"]
            scale = state[f"{block}.4.weight"]
        except KeyError as missing:
            raise ValueError(f"not a separable network's weights: no {missing}") from None
        previous = kept
        pruned[f"{block}.0.weight"] = depthwise[previous]  # depthwise: one filter per input
        _copy_batch_norm(pruned, state, f"{block}.1", previous)
        try:
            kept = kept_channels(scale, channels[stage])
        except ValueError as exc:
            raise ValueError(f"block {stage}: {exc}") from None
        pruned[f"{block}.3.weight"] = pointwise[kept][:, previous]
        _copy_batch_norm(pruned, state, f"{block}.4", kept)
    n_last = state[f"features.{len(SEPARABLE_STAGE_WIDTHS) - 1}.4.weight"].numel()
    return _with_head(pruned, state, kept, n_last)
