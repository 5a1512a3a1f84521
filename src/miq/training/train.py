"""Training loop: synthetic defocus on the fly, RPS loss, checkpoints, resume, export."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write
from ..io.budget import DEFAULT_MEMORY_BUDGET
from ..model.lineage import lineage_record
from ..model.network import CompactFocusNet, SeparableFocusNet
from ..optics import LevelTable, Optics
from .export import export_model, file_sha256
from .loss import (
    image_distillation_loss,
    image_distributions,
    image_log_loss,
    image_ranked_probability_score,
    ranked_probability_score,
    soft_ranked_probability_score,
)
from .prune import prune_compact_state, prune_separable_state, separable_channels
from .synthetic import DefocusBatches, SimulationConfig, load_sources

__all__ = ["TrainConfig", "train"]

_IMAGE_LOSSES = {"rps": image_ranked_probability_score, "nll": image_log_loss}


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved next to the model)."""

    architecture: str = "compact"
    architecture_kwargs: dict = field(default_factory=dict)
    steps: int = 20000
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    procedural_fraction: float = 0.3
    max_minutes: float | None = None
    checkpoint_every: int = 500
    init_from: str | None = None
    teacher: str | None = None  # model folder whose predictions the network also learns
    distill_weight: float = 0.7  # share of the loss from the teacher when there is one
    # > 1: each batch is batch_size / image_group_size simulated images (patches sharing content,
    # level and camera), and image_loss_weight × the image_loss (RPS or log loss) of their
    # certainty-weighted whole-image distributions is added to the patch loss
    image_group_size: int = 1
    image_loss_weight: float = 0.0
    image_loss_temperature: float = 1.0  # sharpening of the aggregate, as the image calibration
    image_loss: str = "rps"  # "rps" (ranked probability score) or "nll" (log loss) per image
    # share of the image loss taken from the teacher's *calibrated* whole-image distribution
    # (cross-entropy against it) instead of the true level; needs a teacher
    image_distill_weight: float = 0.0
    threads: int | None = None
    # where the network trains and the defocus is simulated: "cpu", or "cuda" (the blur, noise
    # and camera on the GPU; crops and camera parameters drawn on the CPU, ``threads`` torch
    # threads there)
    device: str = "cpu"
    # bring each training file to the optics' pixel size from the size it records (area-
    # averaging when finer) before defocus is simulated; False: every file taken as at it
    use_file_pixel_size: bool = True
    # how real samples pick their source plane: "plane" (all alike) or "sqrt" (each folder of
    # sources weighted by the square root of its number of planes)
    source_weighting: str = "sqrt"
    patch_size: int = 84
    optics: Optics = field(default_factory=Optics)
    levels: LevelTable = field(default_factory=LevelTable)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def built_from(self) -> list[tuple[str, str]]:
        """The models this run learns from, as ``(reference, how)``: its starting weights and
        its teacher, where given (`miq.model.lineage.lineage_record` takes them)."""
        given = [(self.init_from, "starting weights"), (self.teacher, "teacher")]
        return [(reference, how) for reference, how in given if reference]


def _load_initial_weights(model: torch.nn.Module, path: str) -> str:
    """Start from trained weights (fine-tuning): a model folder (or its ``model.safetensors``,
    checked against the sha256 in the ``model.json`` beside it) or a ``checkpoint.pt``.

    A compact or separable network narrower than the weights starts from them pruned to its
    channels (`miq.training.prune`). Returns how the weights were taken, for the log."""
    from ..model.package import BUNDLED_MODELS, ModelPackage

    source = Path(path)
    if path in BUNDLED_MODELS and not source.exists():  # a bundled model by name, as --model
        source = BUNDLED_MODELS[path].parent
    if not source.exists():
        raise ValueError(f"{path}: no such model folder, model.safetensors or checkpoint.pt")
    beside = source.with_name("model.json") if source.suffix == ".safetensors" else None
    if source.is_dir() or (beside is not None and beside.exists()):
        package = ModelPackage.open(source)
        if beside is not None and package.weight_file("safetensors").resolve() != source.resolve():
            raise ValueError(f"{path}: not the weights {beside} lists")
        from safetensors.torch import load

        state = load(package.weight_bytes("safetensors"))
    elif source.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(source)
    else:
        try:
            state = torch.load(source, weights_only=True, map_location="cpu")["model"]  # data only
        except Exception as exc:  # not a torch file, or no "model" entry: one line, not a trace
            raise ValueError(f"{path}: not a miq checkpoint.pt ({type(exc).__name__})") from None
    how = "as they are"
    if isinstance(model, CompactFocusNet) and _shapes_differ(model.state_dict(), state):
        channels = [int(model.features[i][0].out_channels) for i in range(len(model.features))]
        try:
            state = prune_compact_state(state, channels)
        except ValueError as exc:
            raise ValueError(f"{path}: cannot prune to channels {channels} ({exc})") from None
        how = f"pruned to channels {channels} by batch-norm scale"
    elif isinstance(model, SeparableFocusNet) and _shapes_differ(model.state_dict(), state):
        channels = [int(model.features[0][0].out_channels)]
        channels += [int(block[3].out_channels) for block in model.features[1:]]
        if channels == separable_channels(channels[0]):
            what = f"width {channels[0]}"
        else:
            what = f"channels {channels}"
        try:
            state = prune_separable_state(state, channels)
        except ValueError as exc:
            raise ValueError(f"{path}: cannot prune to {what} ({exc})") from None
        how = f"pruned to {what} by batch-norm scale"
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit this architecture ({exc})") from None
    return how


def _shapes_differ(target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]) -> bool:
    """True when a tensor both state dicts name has different shapes in them."""
    return any(
        name in source and tuple(source[name].shape) != tuple(tensor.shape)
        for name, tensor in target.items()
    )


def _load_teacher(path: str):
    """A trained miq model as a frozen torch network, for distillation, and its package."""
    from ..model.network import load_network
    from ..model.package import ModelPackage

    package = ModelPackage.open(path)
    network = load_network(package)
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network, package


def _stored_calibration(package) -> tuple[torch.Tensor, float, float]:
    """A model package's stored calibration: per-level bias (K,), patch and image temperatures
    (none stored: zeros, 1, 1; a content-dependent image temperature is taken at its centre)."""
    calibration = package.calibration
    return (
        torch.tensor(calibration.class_bias, dtype=torch.float32),
        float(calibration.patch_temperature),
        float(calibration.image_temperature),
    )


def _calibrated_image_distributions(
    logits: torch.Tensor, group_size: int, calibration: tuple[torch.Tensor, float, float]
) -> torch.Tensor:
    """Whole-image distributions (G, K) of groups of ``group_size`` patches' ``logits`` (B, K) as
    ``miq predict`` computes them with a stored calibration (`_stored_calibration`): patch
    bias and temperature, certainty-weighted mean, image temperature."""
    bias, patch_temperature, image_temperature = calibration
    calibrated = (torch.log_softmax(logits, dim=1) + bias) / patch_temperature
    return image_distributions(calibrated, group_size, image_temperature)


def _training_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"`` as a torch device; `miq.errors.MiqError` (one line) when torch
    cannot use a CUDA GPU here."""
    from ..errors import MiqError
    from ..model.runtime import DEVICES

    if name not in DEVICES:
        raise MiqError(f"unknown training device {name!r}; choose {' or '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise MiqError(
            f"--device cuda, but this torch ({torch.__version__}) cannot use a CUDA GPU; install "
            "a CUDA build of torch on a machine with a CUDA driver, or train with --device cpu"
        )
    return torch.device(name)


def _device_description(device: torch.device) -> str:
    """What trained the network, for model.json: "cpu", or "cuda (GPU name)"."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _validation_batch(
    batches: DefocusBatches, n: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch drawn from the training sources with its own seed (monitoring only)."""
    state = (batches.rng.bit_generator.state, batches.torch_gen.get_state())
    batches.rng = np.random.default_rng(seed)
    batches.torch_gen.manual_seed(seed)
    x, y = batches.next_batch(n)
    batches.rng = np.random.default_rng()
    batches.rng.bit_generator.state = state[0]
    batches.torch_gen.set_state(state[1])
    return x, y


def train(
    image_paths: list[str],
    out_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    resume: bool = False,
    log=print,
    command: str | None = None,
    on_error=None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> Path:
    """Train a focus model on in-focus images and export it to ``out_dir``.

    Parameters
    ----------
    image_paths : in-focus image files (every plane is used). May be empty if
        ``config.procedural_fraction`` > 0 (procedural content only).
    out_dir : receives ``checkpoint.pt`` (resumable), ``train_log.csv``, ``train_config.json``
        and the exported model (``model.onnx``, ``model.safetensors``, ``model.json``).
    resume : continue from ``out_dir/checkpoint.pt``.
    on_error : called with one line for each file that cannot be read, which is then left out
        (default: such a file raises `miq.errors.MiqError`).
    memory_budget : bytes one training file may take to read (`miq.io.budget`; default 2 GiB).

    Returns
    -------
    Path of the exported ``model.json``.
    """
    from ..model.network import build_network

    if config.image_loss not in _IMAGE_LOSSES:
        raise ValueError(
            f"image_loss must be one of {sorted(_IMAGE_LOSSES)}, got {config.image_loss!r}"
        )
    if config.image_distill_weight > 0 and not (config.teacher and config.image_loss_weight > 0):
        raise ValueError("image_distill_weight needs a teacher and image_loss_weight > 0")
    device = _training_device(config.device)
    out = Path(out_dir)  # made only once training can start: a failed start leaves no folder
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    margin_side = config.patch_size + 2 * (config.optics.psf_width_px // 2)
    sources = load_sources(
        image_paths,
        min_side=config.patch_size,
        pixel_size_um=config.optics.pixel_size_um if config.use_file_pixel_size else None,
        seed=config.seed,
        log=log,
        on_error=on_error,
        memory_budget=memory_budget,
    )
    if image_paths and not sources and config.procedural_fraction < 1:
        from ..errors import MiqError

        raise MiqError("no plane of the training images could be used")
    log(
        f"training sources: {len(sources)} planes from {len(image_paths)} files; "
        f"procedural fraction {config.procedural_fraction}; crop {margin_side}px"
    )
    batches = DefocusBatches(
        sources,
        optics=config.optics,
        levels=config.levels,
        config=config.simulation,
        patch_size=config.patch_size,
        procedural_fraction=config.procedural_fraction,
        source_weighting=config.source_weighting,
        seed=config.seed,
        device=device,
    )
    val_x, val_y = _validation_batch(batches, 512, seed=config.seed + 1_000_003)
    val_x, val_y = val_x.to(device), val_y.to(device)
    kwargs = dict(config.architecture_kwargs)
    kwargs.setdefault("n_levels", config.levels.n_levels)
    kwargs.setdefault("patch_size", config.patch_size)
    model = build_network(config.architecture, **kwargs)
    if config.init_from and not resume:
        how = _load_initial_weights(model, config.init_from)
        log(f"initial weights: {config.init_from} ({how})")
    model.to(device)
    teacher, teacher_package = _load_teacher(config.teacher) if config.teacher else (None, None)
    if teacher is not None:
        teacher.to(device)
        log(f"distilling from {config.teacher} (weight {config.distill_weight})")
    if config.image_distill_weight > 0:
        bias, patch_t, image_t = _stored_calibration(teacher_package)
        teacher_calibration = (bias.to(device), patch_t, image_t)
        log(
            f"image loss {1 - config.image_distill_weight:g} × true level + "
            f"{config.image_distill_weight:g} × the teacher's calibrated image distribution"
        )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.learning_rate,
        total_steps=config.steps,
        # at least 2 warm-up steps: OneCycleLR divides by zero on a shorter phase (short runs),
        # and on a warm-up ending exactly at step 0 (2-step runs)
        pct_start=0.75 if config.steps <= 2 else min(0.5, max(0.05, 2.5 / config.steps)),
    )
    step, elapsed_before = 0, 0.0
    ckpt_path = out / "checkpoint.pt"
    if resume:
        if not ckpt_path.exists():
            raise FileNotFoundError(f"{ckpt_path}: no checkpoint to resume from")
        # tensors and plain data only, no code; onto the CPU, whichever device wrote them
        ckpt = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        if ckpt.get("total_steps", config.steps) != config.steps:
            raise ValueError(
                f"{ckpt_path}: checkpoint belongs to a {ckpt['total_steps']}-step schedule; "
                f"resume with --steps {ckpt['total_steps']}"
            )
        written_on = ckpt.get("device", "cpu")  # its noise stream belongs to that device's kind
        if written_on != device.type:
            raise ValueError(
                f"{ckpt_path}: checkpoint of a run on {written_on}; resume with --device "
                f"{written_on}"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, elapsed_before = ckpt["step"], ckpt["elapsed_s"]
        batches.rng.bit_generator.state = ckpt["numpy_rng"]
        batches.torch_gen.set_state(ckpt["torch_rng"])
        log(f"resumed at step {step}")
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "train_config.json", "w") as fh:
        fh.write(json.dumps(config.to_dict(), indent=2))
    log_file = open(out / "train_log.csv", "a", encoding="utf-8")
    if step == 0:
        log_file.write("step,loss,val_loss,val_accuracy,val_within_one,lr,elapsed_s\n")
    start = time.monotonic()
    running = 0.0

    def save_checkpoint() -> None:
        with atomic_write(ckpt_path) as fh:
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                    "device": device.type,
                    "total_steps": config.steps,
                    "elapsed_s": elapsed_before + time.monotonic() - start,
                    "numpy_rng": batches.rng.bit_generator.state,
                    "torch_rng": batches.torch_gen.get_state(),
                },
                fh,
            )

    stopped_early = False
    model.train()
    while step < config.steps:
        x, y = batches.next_batch(config.batch_size, config.image_group_size)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss = ranked_probability_score(logits, y)
        if teacher is not None:
            with torch.no_grad():
                teacher_logits = teacher(x)
            alpha = config.distill_weight
            loss = (1 - alpha) * loss + alpha * soft_ranked_probability_score(
                logits, torch.softmax(teacher_logits, dim=1)
            )
        if config.image_loss_weight > 0:
            group, temperature = config.image_group_size, config.image_loss_temperature
            image_loss = _IMAGE_LOSSES[config.image_loss](logits, y, group, temperature)
            beta = config.image_distill_weight
            if beta > 0:
                teacher_image = _calibrated_image_distributions(
                    teacher_logits, group, teacher_calibration
                )
                image_loss = (1 - beta) * image_loss + beta * image_distillation_loss(
                    logits, teacher_image, group, temperature
                )
            loss = loss + config.image_loss_weight * image_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        step += 1
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        elapsed = elapsed_before + time.monotonic() - start
        if step % 100 == 0 or step == config.steps:
            model.eval()
            with torch.no_grad():
                logits = model(val_x)
                val_loss = float(ranked_probability_score(logits, val_y))
                pred = logits.argmax(1)
                acc = float((pred == val_y).float().mean())
                within = float(((pred - val_y).abs() <= 1).float().mean())
            model.train()
            lr = scheduler.get_last_lr()[0]
            log_file.write(
                f"{step},{running:.5f},{val_loss:.5f},{acc:.4f},{within:.4f},{lr:.6g},{elapsed:.1f}\n"
            )
            log_file.flush()
            log(
                f"step {step}/{config.steps}  loss {running:.4f}  val {val_loss:.4f}  "
                f"acc {acc:.3f}  within-1 {within:.3f}  {elapsed / 60:.1f} min"
            )
        if step % config.checkpoint_every == 0:
            save_checkpoint()
        if config.max_minutes is not None and elapsed > 60 * config.max_minutes:
            log(f"time limit of {config.max_minutes} min reached at step {step}")
            stopped_early = True
            break
    save_checkpoint()
    log_file.close()
    model.cpu().eval()  # exported from the CPU, whichever device trained it
    provenance = {
        "command": command or " ".join(sys.argv),
        "steps_completed": step,
        "stopped_early_by_time_limit": stopped_early,
        "training_minutes": round((elapsed_before + time.monotonic() - start) / 60, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} threads={torch.get_num_threads()}".strip(),
        "torch_version": torch.__version__,
        "device": _device_description(device),
        "files": [{"path": p, "sha256": file_sha256(p)} for p in image_paths],
        "procedural_fraction": config.procedural_fraction,
    }
    built_from = config.built_from()
    if built_from:
        provenance["lineage"] = lineage_record(built_from)
    return export_model(model, out, config=config.to_dict(), provenance=provenance)
