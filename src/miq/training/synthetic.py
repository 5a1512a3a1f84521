"""On-the-fly synthetic defocus of in-focus content: batches of (patch, level) for training.

Each sample: a random crop of an in-focus source (real image or procedural field) with a margin
for the PSF → relative intensity → photons (random brightness and background) → defocus PSF of a
random level (z jittered within the level; convolved through FFTs) → Poisson shot noise + read
noise → random camera gain and offset, quantised to integer DN. Nothing is pre-rendered; every
batch is new.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io.budget import DEFAULT_MEMORY_BUDGET
from ..optics import LevelTable, Optics, defocus_psf
from .procedural import procedural_field

__all__ = ["Source", "SimulationConfig", "DefocusBatches", "load_sources"]


@dataclass
class Source:
    """An in-focus training image: ``data`` float32 (Y, X) relative intensity (0 = background);
    ``group``: the collection it belongs to (its folder), for `DefocusBatches`' weighting."""

    data: np.ndarray
    name: str
    group: str = ""


@dataclass(frozen=True)
class SimulationConfig:
    """Ranges of the synthetic degradation (all sampled log-uniformly unless stated).

    peak_photons : photoelectrons at the brightest structures.
    background_photons : additive background light, photoelectrons.
    read_noise_photons : Gaussian camera read noise σ, photoelectrons.
    gain : DN per photoelectron (paper's augmentation range 0.2–5).
    offset_dn : camera offset in DN (paper's augmentation range 1–1000).
    z_jitter_um : defocus jitter (uniform ±) around each level's nominal z.
    coarse_camera_fraction, coarse_camera_factor : share of samples taken by a camera with
        pixels this many times larger (area-binned) and resampled back to the model's pixel size
        (bilinear), as ``miq --pixel-size`` does for coarse images; the level is unchanged.
    top_level_max_um : the last level also covers more defocus than its nominal z ("at least
        z_top"): a share ``top_level_open_fraction`` of its samples is drawn from
        [z_top + jitter, this], the rest from z_top ± jitter like every other level (so that an
        image at exactly z_top is not on the edge of its class).
    clipped_sensor_fraction, clipped_threshold : share of samples taken by a sensor that records
        nothing below a threshold (the original simulator's model, `miq.optics.degrade`: the
        offset is subtracted before the shot noise, so dim light is lost; also what a camera or
        an export that clips the dark end gives): no read noise, and the blurred light is
        lowered by the background plus ``clipped_threshold`` × peak photons (log-uniform)
        before the Poisson draw, so that sparse backgrounds become exactly flat with single
        photon counts where the blurred signal is faint (lab notebook: training.md, v3).
    """

    peak_photons: tuple[float, float] = (30.0, 5000.0)
    background_photons: tuple[float, float] = (0.5, 300.0)
    read_noise_photons: tuple[float, float] = (0.3, 4.0)
    gain: tuple[float, float] = (0.2, 5.0)
    offset_dn: tuple[float, float] = (1.0, 1000.0)
    z_jitter_um: float = 0.5
    top_level_max_um: float = 30.0
    top_level_open_fraction: float = 0.3
    coarse_camera_fraction: float = 0.2
    coarse_camera_factor: tuple[float, float] = (1.2, 2.0)
    z_grid_step_um: float = 0.25
    clipped_sensor_fraction: float = 0.2
    clipped_threshold: tuple[float, float] = (0.003, 0.1)


def relative_intensity(image: np.ndarray) -> np.ndarray:
    """Background-subtracted intensity scaled so the bright end (99.9th percentile) is 1."""
    data = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(data, [1.0, 99.9])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((data - lo) / (hi - lo), 0.0, None).astype(np.float32)


def load_sources(
    paths: list[str],
    min_side: int,
    *,
    pixel_size_um: float | None = None,
    use_file_pixel_size: bool = True,
    seed: int = 0,
    log=None,
    on_error=None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> list[Source]:
    """Every plane of every file as a training source (planes smaller than ``min_side`` px, or
    constant, skipped).

    Each file is brought to the model's pixel size ``pixel_size_um`` (µm/px) from the pixel size
    it records (`miq.resampling.pixel_size_rule`, the rule rating uses: area-averaging when the
    file is finer, bicubic when coarser; files that record nothing, or ``use_file_pixel_size``
    False, are taken as already at it), so that the simulated defocus is what the optics give
    at that pixel size. Integer planes whose values span at most 256 steps (8-bit files, dim
    16-bit ones) get a uniform dither of ±0.5 DN (seeded by ``seed``) before they are
    scaled, so that their quantisation steps do not become sharp contours in the relative
    intensity; pixels clipped at the type's limits stay as they are (flat, as recorded).
    ``log``: called with one line per resampled file. A file that cannot be read
    (`miq.errors.MiqError`: corrupt, over the memory budget …) raises, or with ``on_error`` is
    left out with one line through it. ``memory_budget``: bytes one file may take to read
    (`miq.io.budget`; default 2 GiB), checked before reading.
    """
    from ..errors import MiqError
    from ..io import ImageSource
    from ..resampling import pixel_size_rule, resample_to_pixel_size

    rng = np.random.default_rng(seed)
    sources = []
    for path in paths:
        try:
            with ImageSource.open(path, memory_budget=memory_budget) as source:
                recorded = source.pixel_size_um
                planes = source.planes(native_integers=True)
        except MiqError as exc:
            if on_error is None:
                raise
            on_error(f"left out of training: {exc}")
            continue
        size, _, resample = (
            pixel_size_rule(None, recorded, use_file_pixel_size, pixel_size_um)
            if pixel_size_um is not None
            else (None, "", False)
        )
        if resample and log:
            log(f"{path}: {size:.4g} µm/px resampled to {pixel_size_um:.4g} µm/px")
        for plane in planes:
            data = _dequantised(plane.data, rng)
            if resample:
                data = resample_to_pixel_size(data, size, pixel_size_um)
            if min(data.shape) >= min_side and data.max() > data.min():
                name = f"{path}[c={plane.c},z={plane.z}]"
                sources.append(Source(relative_intensity(data), name, Path(path).parent.name))
    return sources


def _dequantised(data: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer DN with at most 256 distinct steps between their minimum and maximum, as float32
    with a uniform dither of ±0.5 DN (the value a coarse quantiser recorded stands for an
    interval); other data as float32 unchanged."""
    if data.dtype.kind not in "ui" or data.size == 0:
        return np.asarray(data, dtype=np.float32)
    lo, hi = int(data.min()), int(data.max())
    values = data.astype(np.float32)
    if hi - lo > 255:
        return values
    return values + rng.uniform(-0.5, 0.5, data.shape).astype(np.float32)


def _source_probabilities(sources: list[Source], weighting: str) -> np.ndarray | None:
    """Probability of each source plane under ``weighting`` (see `DefocusBatches`); None when
    every plane is alike (drawn uniformly)."""
    if weighting not in ("plane", "sqrt"):
        raise ValueError(f"source_weighting must be 'plane' or 'sqrt', got {weighting!r}")
    from ..metrics import sqrt_group_weights

    groups = [s.group for s in sources]
    if weighting == "plane" or len(set(groups)) < 2:
        return None
    weights = sqrt_group_weights(groups)
    return weights / weights.sum()


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(lo, hi, n))


class DefocusBatches:
    """Generator of synthetic training batches.

    Parameters
    ----------
    sources : real in-focus images (relative intensity).
    optics, levels : simulator optics and level table.
    patch_size : model input side in px.
    procedural_fraction : share of samples drawn from procedural fields.
    source_weighting : how a real sample picks its source plane: ``"plane"`` (every plane
        alike) or ``"sqrt"`` (each group of sources, e.g. a folder, weighted by the square root
        of its number of planes, shared alike among them: a large collection of similar fields
        counts more than a single image, not in proportion).
    seed : seeds all randomness.
    device : where the blur, the noise draws and the camera are simulated (``"cpu"`` or
        ``"cuda"``); the batches come out there. The crops and the random camera parameters
        are drawn on the CPU either way; the noise stream of a GPU differs from the CPU's.
    """

    def __init__(
        self,
        sources: list[Source],
        *,
        optics: Optics = Optics(),
        levels: LevelTable = LevelTable(),
        config: SimulationConfig = SimulationConfig(),
        patch_size: int = 84,
        procedural_fraction: float = 0.3,
        procedural_pool: int = 64,
        source_weighting: str = "plane",
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        if not sources and procedural_fraction <= 0:
            raise ValueError("no training images and no procedural content: nothing to train on")
        self.rng = np.random.default_rng(seed)
        self.device = torch.device(device)
        self.torch_gen = torch.Generator(device=self.device).manual_seed(seed)
        self.sources = sources
        self.source_p = _source_probabilities(sources, source_weighting)
        self.optics, self.levels, self.config = optics, levels, config
        self.patch = patch_size
        self.margin = optics.psf_width_px // 2
        self.crop = patch_size + 2 * self.margin
        self.procedural_fraction = procedural_fraction if sources else 1.0
        self.z_grid = np.arange(0.0, config.top_level_max_um + 1e-9, config.z_grid_step_um)
        kernels = np.stack([defocus_psf(z, optics) for z in self.z_grid]).astype(np.float32)
        # the kernels' spectra on the crop's grid (n_z, crop, crop // 2 + 1): a crop's circular
        # convolution with a kernel is its linear one on the central patch, which is all it keeps
        self.kernel_spectra = torch.fft.rfft2(
            torch.from_numpy(kernels).to(self.device), s=(self.crop, self.crop)
        )
        self.pool = (
            [
                procedural_field((2 * self.crop, 2 * self.crop), self.rng)
                for _ in range(procedural_pool)
            ]
            if self.procedural_fraction > 0
            else []
        )
        self._refresh_every = 50
        self._calls = 0

    def _crop_from(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape
        s = self.crop
        if h < s or w < s:  # mirror-pad small sources
            image = np.pad(image, ((0, max(0, s - h)), (0, max(0, s - w))), mode="symmetric")
            h, w = image.shape
        y, x = self.rng.integers(0, h - s + 1), self.rng.integers(0, w - s + 1)
        patch = image[y : y + s, x : x + s]
        patch = np.rot90(patch, int(self.rng.integers(4)))
        if self.rng.random() < 0.5:
            patch = patch[:, ::-1]
        return patch

    def _pick_image(self) -> np.ndarray:
        """A random content image: a procedural field or a real source plane."""
        if self.pool and self.rng.random() < self.procedural_fraction:
            return self.pool[int(self.rng.integers(len(self.pool)))]
        if self.source_p is None:
            return self.sources[int(self.rng.integers(len(self.sources)))].data
        return self.sources[int(self.rng.choice(len(self.sources), p=self.source_p))].data

    def sample_z(self, labels: np.ndarray) -> np.ndarray:
        """Defocus in µm for each level label (jittered; the top level is open-ended)."""
        table = np.asarray(self.levels.defocus_um)
        cfg = self.config
        z = table[labels] + self.rng.uniform(-cfg.z_jitter_um, cfg.z_jitter_um, labels.size)
        top = labels == self.levels.n_levels - 1
        beyond = top & (self.rng.random(labels.size) < cfg.top_level_open_fraction)
        z[beyond] = self.rng.uniform(
            table[-1] + cfg.z_jitter_um, cfg.top_level_max_um, int(beyond.sum())
        )
        return np.clip(np.abs(z), 0.0, cfg.top_level_max_um)

    def simulate(self, content: np.ndarray, z_um: np.ndarray, group_size: int = 1) -> torch.Tensor:
        """Degrade relative-intensity crops (B, crop, crop) at defocus z (B,) → DN patches (B, 1, p, p)
        on the simulation's device.

        Consecutive runs of ``group_size`` crops share one camera (photon levels, read noise,
        gain, offset, binning), as the patches of one image do; the noise draws stay per pixel.
        """
        cfg = self.config
        b = content.shape[0]
        groups = b // group_size

        def per_group(values: np.ndarray) -> np.ndarray:
            return np.repeat(values, group_size)

        peak = per_group(_log_uniform(self.rng, cfg.peak_photons, groups))
        background = per_group(_log_uniform(self.rng, cfg.background_photons, groups))
        photons = self._on_device(content) * self._on_device(peak)[:, None, None]
        photons += self._on_device(background)[:, None, None]
        z_index = np.clip(np.rint(z_um / cfg.z_grid_step_um).astype(int), 0, len(self.z_grid) - 1)
        blurred = self._blur(photons, z_index)
        read_noise = _log_uniform(self.rng, cfg.read_noise_photons, groups)
        if cfg.clipped_sensor_fraction > 0:
            clipped = self.rng.random(groups) < cfg.clipped_sensor_fraction
            floor = np.where(
                clipped,
                background[::group_size]
                + _log_uniform(self.rng, cfg.clipped_threshold, groups) * peak[::group_size],
                0.0,
            )
            read_noise = np.where(clipped, 0.0, read_noise)
            blurred = blurred - self._on_device(per_group(floor))[:, None, None]
        noisy = torch.poisson(blurred.clamp_min(0), generator=self.torch_gen)
        read = self._on_device(per_group(read_noise))
        noise = torch.randn(noisy.shape, generator=self.torch_gen, device=self.device)
        noisy = noisy + read[:, None, None] * noise
        gain = self._on_device(per_group(_log_uniform(self.rng, cfg.gain, groups)))
        offset = self._on_device(per_group(_log_uniform(self.rng, cfg.offset_dn, groups)))
        dn = torch.round(noisy * gain[:, None, None] + offset[:, None, None]).clamp(0, 65535)
        return self._coarse_camera(dn[:, None], group_size)

    def _blur(self, photons: torch.Tensor, z_index: np.ndarray) -> torch.Tensor:
        """Crops (B, crop, crop) convolved with the defocus kernels of ``self.z_grid[z_index]``
        (B,): the patches (B, p, p) at their centres, through FFTs on the crop's grid (a circular
        convolution; what wrapped around lies in the first 2·margin rows and columns, cut off)."""
        spectra = self.kernel_spectra[torch.from_numpy(z_index).to(self.device)]
        n, start = self.crop, 2 * self.margin
        convolved = torch.fft.irfft2(torch.fft.rfft2(photons) * spectra, s=(n, n))
        return convolved[:, start : start + self.patch, start : start + self.patch]

    def _on_device(self, values: np.ndarray) -> torch.Tensor:
        """``values`` as float32 on the simulation's device."""
        return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(self.device)

    def _coarse_camera(self, dn: torch.Tensor, group_size: int = 1) -> torch.Tensor:
        """Bin a random share of the groups of ``group_size`` patches (B, 1, p, p) by a random
        factor (one per group) and resample back."""
        cfg = self.config
        chosen = np.flatnonzero(self.rng.random(len(dn) // group_size) < cfg.coarse_camera_fraction)
        p = dn.shape[-1]
        for g in chosen:
            side = max(8, round(p / self.rng.uniform(*cfg.coarse_camera_factor)))
            members = slice(g * group_size, (g + 1) * group_size)
            small = F.interpolate(dn[members], size=(side, side), mode="area")
            dn[members] = F.interpolate(small, size=(p, p), mode="bilinear", align_corners=False)
        return dn

    def next_batch(self, batch_size: int, group_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of simulated DN patches (B, 1, p, p) float32, on the simulation's device, and
        their level labels (B,) int64 (CPU).

        ``group_size`` > 1 makes the batch B / ``group_size`` simulated *images*: each run of
        ``group_size`` consecutive patches is cropped from one content image and shares its
        level, defocus and camera, as the patches of one real image do (for image-level losses).
        """
        if group_size < 1 or batch_size % group_size:
            raise ValueError(
                f"batch size {batch_size} is not a multiple of group size {group_size}"
            )
        self._calls += 1
        if self.pool and self._calls % self._refresh_every == 0:  # keep procedural content fresh
            self.pool[int(self.rng.integers(len(self.pool)))] = procedural_field(
                (2 * self.crop, 2 * self.crop), self.rng
            )
        groups = batch_size // group_size
        group_labels = self.rng.integers(0, self.levels.n_levels, groups)
        content = []
        for _ in range(groups):
            image = self._pick_image()
            content.extend(self._crop_from(image) for _ in range(group_size))
        z = np.repeat(self.sample_z(group_labels), group_size)
        x = self.simulate(np.stack(content), z, group_size)
        return x, torch.from_numpy(np.repeat(group_labels, group_size).astype(np.int64))
