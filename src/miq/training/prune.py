"""Channel pruning of a trained compact network, to start a narrower one from it.

`miq train --channels ... --init-from WIDER_MODEL` uses it: each convolution keeps the output
channels whose batch-norm scale |γ| is largest (a channel's BN scale bounds how much it can
contribute after the ReLU), the next layer keeps the matching input channels, and the linear
head keeps the mean- and max-pooled features of the channels kept in the last layer. The result
is a starting point for fine-tuning (ideally with the wider model as ``--teacher``), not a
finished model: removing channels changes the outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

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
        for name in ("weight", "bias", "running_mean", "running_var"):
            pruned[f"{bn}.{name}"] = state[f"{bn}.{name}"][kept]
        pruned[f"{bn}.num_batches_tracked"] = state[f"{bn}.num_batches_tracked"]
        previous = kept
    n_last = state[f"features.{_N_LAYERS - 1}.1.weight"].numel()
    head_columns = torch.cat([previous, previous + n_last])  # [mean pooled, max pooled]
    pruned["head.weight"] = state["head.weight"][:, head_columns]
    pruned["head.bias"] = state["head.bias"]
    return {name: tensor.clone().contiguous() for name, tensor in pruned.items()}
