"""Averaged weights: several training runs from one start, averaged into one network.

Runs fine-tuned from the same starting weights with different seeds end close to one another,
and the mean of their weights rates about like the mean of their outputs (an ensemble) at the
cost of a single network ("model soup": Wortsman et al. 2022, ICML). The batch-norm running
statistics of the averaged network are not the mean of the runs' statistics, so they are
measured again on simulated training batches with the weights fixed, as stochastic weight
averaging does (Izmailov et al. 2018).

`average_models` writes the result as a model folder like `miq.training.train.train` does
(ONNX, safetensors, model.json recording every run it averages); calibrate it afterwards with
`miq calibrate`, as any trained model.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from ..io.budget import DEFAULT_MEMORY_BUDGET
from ..model.lineage import lineage_record
from .export import export_model, file_sha256
from .synthetic import DefocusBatches, SimulationConfig, load_sources

__all__ = ["averaged_state", "reestimate_batch_norm", "average_models"]

_SAME = ("architecture", "architecture_kwargs", "patch_size", "n_levels", "levels", "optics")


def _check_alike(packages: Sequence) -> None:
    """ModelError naming the first run that differs from the first in architecture, patch
    size, levels or optics (weights of different networks or tasks cannot be averaged)."""
    first = packages[0]
    for package in packages[1:]:
        for attribute in _SAME:
            if getattr(package, attribute) != getattr(first, attribute):
                raise ModelError(
                    f"{package.path}: its {attribute.replace('_', ' ')} differs from "
                    f"{first.path}'s; only runs of one network can be averaged"
                )


def averaged_state(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors of state dicts with the same names and
    shapes; integer tensors (batch-norm batch counts) are taken from the first. ValueError
    when the dicts differ in names or shapes."""
    if not states:
        raise ValueError("no state dicts to average")
    first = states[0]
    for i, state in enumerate(states[1:], start=1):
        if state.keys() != first.keys():
            raise ValueError(f"state dict {i} names other tensors than state dict 0")
        for name, tensor in state.items():
            if tensor.shape != first[name].shape:
                raise ValueError(
                    f"state dict {i}: {name} has shape {tuple(tensor.shape)}, "
                    f"not {tuple(first[name].shape)}"
                )
    return {
        name: (
            torch.stack([s[name].double() for s in states]).mean(0).to(tensor.dtype)
            if tensor.is_floating_point()
            else tensor.clone()
        )
        for name, tensor in first.items()
    }


def reestimate_batch_norm(
    network: torch.nn.Module, batches: DefocusBatches, n_batches: int, batch_size: int
) -> int:
    """Replace every batch-norm layer's running mean and variance by their average over
    ``n_batches`` simulated batches of ``batch_size`` patches (weights unchanged; every other
    layer, dropout included, in eval mode). Returns the number of batch-norm layers; the
    network is left in eval mode."""
    layers = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    network.eval()
    if not layers or n_batches <= 0:
        return len(layers)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches, not an exponential one
        layer.train()
    device = next(network.parameters()).device
    with torch.no_grad():
        for _ in range(n_batches):
            x, _ = batches.next_batch(batch_size)
            network(x.to(device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    network.eval()
    return len(layers)


def _simulation(config: dict) -> SimulationConfig:
    """The `SimulationConfig` a run's recorded training config names (defaults where absent)."""
    recorded = dict(config.get("simulation") or {})
    known = SimulationConfig.__dataclass_fields__
    return SimulationConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known}
    )


def _ingredient(package) -> dict:
    training = package.describe("training") or {}
    return {
        "name": package.name,
        "folder": str(package.folder),
        "safetensors_sha256": package.weight_sha256("safetensors"),
        "command": training.get("command"),
        "seed": (training.get("config") or {}).get("seed"),
        "training_minutes": training.get("training_minutes"),
    }


def _union_of_files(packages: Sequence, more: Sequence[dict] = ()) -> list[dict]:
    """Every training file the runs record (``training.files``), then ``more``, each once, in
    order."""
    seen, files = set(), []
    entries = [e for p in packages for e in p.describe("training", "files") or []] + list(more)
    for entry in entries:
        key = (entry.get("path"), entry.get("sha256"))
        if key not in seen:
            seen.add(key)
            files.append(entry)
    return files


def average_models(
    models: Sequence[str],
    out_dir: str | Path,
    image_paths: Sequence[str],
    *,
    bn_batches: int = 40,
    batch_size: int = 128,
    seed: int = 0,
    threads: int | None = None,
    log=print,
    command: str | None = None,
    on_error=None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Path:
    """Average the weights of ``models`` (model folders or bundled names, ≥ 2 runs of one
    network, e.g. one fine-tune with several seeds) and write the result to ``out_dir``.

    Parameters
    ----------
    image_paths : in-focus training images; the averaged network's batch-norm statistics are
        measured on ``bn_batches`` × ``batch_size`` patches simulated from them (plus procedural
        content) as the first run's training config simulates (pixel size, procedural share,
        source weighting, camera ranges), noise seed ``seed``. ``bn_batches`` 0 keeps the mean
        of the runs' statistics (then no images are needed).
    on_error, memory_budget : as for `miq.training.train.train`.

    Returns
    -------
    Path of the written ``model.json``; its ``training`` entry has the first run's config,
    ``averaged_from`` (each run's name, folder, weights sha256, command and seed),
    ``batch_norm`` (how the statistics were measured), ``files`` (every run's training images
    and those the statistics were measured on) and ``lineage`` (`miq.model.lineage`: what the
    runs' own ancestors trained on). Uncalibrated: run `miq calibrate` on it.
    """
    from ..model.network import build_network, load_network
    from ..model.package import ModelPackage

    if len(models) < 2:
        raise ValueError("give at least two runs to average")
    if bn_batches > 0 and batch_size < 2:
        raise ValueError("batch_size must be ≥ 2 to measure batch-norm statistics")
    start = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    packages = [ModelPackage.open(m) for m in models]
    _check_alike(packages)
    first = packages[0]
    states = [load_network(p).state_dict() for p in packages]
    try:
        state = averaged_state(states)
    except ValueError as exc:
        raise ModelError(f"{first.path}: the runs' weights cannot be averaged ({exc})") from None
    network = build_network(first.architecture, **first.architecture_kwargs)
    network.load_state_dict(state)
    config = first.describe("training", "config") or {}
    batch_norm, bn_files = None, []
    if bn_batches > 0:
        sources = load_sources(
            list(image_paths),
            min_side=first.patch_size,
            pixel_size_um=first.pixel_size_um if config.get("use_file_pixel_size", True) else None,
            seed=seed,
            log=log,
            on_error=on_error,
            memory_budget=memory_budget,
        )
        procedural = float(config.get("procedural_fraction", 0.3))
        if not sources and procedural <= 0:
            raise ValueError("no training images for the batch-norm statistics")
        batches = DefocusBatches(
            sources,
            optics=first.optics,
            levels=first.levels,
            config=_simulation(config),
            patch_size=first.patch_size,
            procedural_fraction=procedural,
            source_weighting=config.get("source_weighting", "plane"),
            seed=seed,
        )
        n_layers = reestimate_batch_norm(network, batches, bn_batches, batch_size)
        log(
            f"batch-norm statistics of {n_layers} layers measured on {bn_batches} × "
            f"{batch_size} simulated patches from {len(sources)} planes"
        )
        batch_norm = {
            "batches": bn_batches,
            "batch_size": batch_size,
            "seed": seed,
            "images": len(image_paths),
        }
        bn_files = [{"path": str(p), "sha256": file_sha256(p)} for p in image_paths]
    network.eval()
    minutes = [p.describe("training", "training_minutes") for p in packages]
    provenance = {
        "command": command,
        "averaged_from": [_ingredient(p) for p in packages],
        "batch_norm": batch_norm,
        "steps_completed": first.describe("training", "steps_completed"),
        "training_minutes": round(
            sum(m for m in minutes if isinstance(m, (int, float)))
            + (time.monotonic() - start) / 60,
            1,
        ),
        "machine": f"{platform.machine()} threads={torch.get_num_threads()}",
        "torch_version": torch.__version__,
        "files": _union_of_files(packages, bn_files),
        "lineage": lineage_record([(str(p.folder), "averaged") for p in packages]),
    }
    if not np.isfinite([float(t.abs().max()) for t in network.state_dict().values()]).all():
        raise ModelError(f"{first.path}: averaging gave non-finite weights")
    return export_model(network, out_dir, config=config, provenance=provenance)
