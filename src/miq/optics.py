"""Defocus point-spread function and physical image degradation (the defocus simulator).

The PSF is the scalar, paraxial defocus model of a circular pupil used by Yang et al. (2018),
"Assessing microscope image focus quality with deep learning", BMC Bioinformatics 19:77::

    PSF(r; z) = | ∫₀¹ J₀(k·(NA/n)·r·ρ) · exp(−i·½·k·ρ²·z·(NA/n)²) · ρ dρ |²,   k = 2π/λ

It is radially symmetric, so it is evaluated once per distinct radius with vectorised
Gauss–Legendre quadrature (no per-pixel loops). Degradation follows the original simulator:
blur (PSF normalised to sum 1, symmetric border), exposure above the sensor offset, and Poisson
noise on photoelectrons. All randomness comes from an explicit generator.

Intensities here are in "unit" scale: 1.0 = full scale (65535 DN for 16-bit data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "Optics",
    "LevelTable",
    "defocus_psf",
    "blur",
    "set_exposure",
    "poisson_noise",
    "restore_offset",
    "degrade",
]

RandomSource = np.random.Generator | np.random.RandomState


@dataclass(frozen=True)
class Optics:
    """Imaging optics the simulator (and a model trained with it) assumes.

    Attributes
    ----------
    wavelength_nm : emission wavelength in nm (vacuum).
    numerical_aperture : objective NA.
    refractive_index : immersion medium index n (enters only through NA/n).
    pixel_size_um : object-space pixel size in µm.
    psf_width_px : PSF kernel side in pixels (odd).
    """

    wavelength_nm: float = 500.0
    numerical_aperture: float = 0.5
    refractive_index: float = 1.0
    pixel_size_um: float = 0.65
    psf_width_px: int = 51

    def __post_init__(self) -> None:
        if self.psf_width_px % 2 != 1 or self.psf_width_px < 1:
            raise ValueError(f"psf_width_px must be a positive odd number, got {self.psf_width_px}")
        for name in ("wavelength_nm", "numerical_aperture", "refractive_index", "pixel_size_um"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class LevelTable:
    """Defocus level → defocus distance table.

    Level k means a defocus of ``defocus_um[k]`` µm (default 0, 2, …, 20 µm: 11 levels, about 3 px
    more blur diameter per level at NA 0.5, 0.65 µm/px). Level 0 is in focus.
    """

    defocus_um: tuple[float, ...] = field(default=tuple(2.0 * k for k in range(11)))

    @property
    def n_levels(self) -> int:
        return len(self.defocus_um)

    @property
    def um_per_level(self) -> float:
        """Mean spacing of the table in µm (used to turn an expected level into µm)."""
        return (self.defocus_um[-1] - self.defocus_um[0]) / max(1, self.n_levels - 1)


@lru_cache(maxsize=4)
def _quadrature_nodes(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1] (computed once: an eigenproblem)."""
    rho, weights = np.polynomial.legendre.leggauss(n_nodes)
    return 0.5 * (rho + 1.0), 0.5 * weights


def _radial_profile(
    radii_um: np.ndarray, z_um: float, optics: Optics, n_nodes: int = 600
) -> np.ndarray:
    """Unnormalised PSF value at each radius (µm) for defocus ``z_um``; same shape as radii."""
    from scipy.special import j0  # scipy is imported lazily to keep `import miq` cheap

    rho, weights = _quadrature_nodes(n_nodes)
    k = 2.0 * np.pi / (optics.wavelength_nm * 1e-3)  # 1/µm
    na_n = optics.numerical_aperture / optics.refractive_index
    phase = np.exp(-0.5j * k * rho**2 * z_um * na_n**2)  # (n_nodes,)
    bessel = j0(k * na_n * np.outer(radii_um.ravel(), rho))  # (n_radii, n_nodes)
    kernel = phase * rho * weights
    # elementwise sums instead of a BLAS matmul: tiny, and immune to BLAS thread oversubscription
    real = (bessel * kernel.real).sum(axis=1)
    imag = (bessel * kernel.imag).sum(axis=1)
    return (real * real + imag * imag).reshape(radii_um.shape)


def defocus_psf(
    z_um: float,
    optics: Optics = Optics(),
    *,
    width_px: int | None = None,
    pixel_size_um: float | None = None,
    normalize: str | None = "sum",
) -> np.ndarray:
    """Defocus PSF sampled on a square pixel grid.

    Parameters
    ----------
    z_um : defocus distance in µm (sign does not matter for this symmetric model).
    optics : wavelength, NA, refractive index, pixel size and default kernel width.
    width_px : kernel side in pixels (odd); default ``optics.psf_width_px``.
    pixel_size_um : sampling step in µm; default ``optics.pixel_size_um``.
    normalize : ``"sum"`` (sum 1, ready to convolve), ``"max"`` (peak 1, as the original's
        ``normalize=True``) or ``None`` (raw |integral|², e.g. 0.25 at the centre for z = 0).

    Returns
    -------
    float64 array (width_px, width_px), centred at pixel ((w−1)/2, (w−1)/2).
    """
    width = optics.psf_width_px if width_px is None else int(width_px)
    if width % 2 != 1 or width < 1:
        raise ValueError(f"PSF width must be a positive odd number of pixels, got {width}")
    step = optics.pixel_size_um if pixel_size_um is None else float(pixel_size_um)
    half = (width - 1) // 2
    offsets = np.arange(-half, half + 1)
    r2 = offsets[:, None] ** 2 + offsets[None, :] ** 2
    unique_r2, inverse = np.unique(r2, return_inverse=True)
    profile = _radial_profile(np.sqrt(unique_r2) * step, float(z_um), optics)
    psf = profile[inverse].reshape(width, width)
    if normalize == "sum":
        psf = psf / psf.sum()
    elif normalize == "max":
        psf = psf / psf.max()
    elif normalize is not None:
        raise ValueError(f"normalize must be 'sum', 'max' or None, got {normalize!r}")
    return psf


def blur(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Convolve a 2D image with a PSF (normalised to sum 1), symmetric border, same size.

    Equivalent to ``scipy.signal.convolve2d(image, psf, 'same', boundary='symm')`` (the original
    simulator) but computed with FFTs.
    """
    from scipy.signal import fftconvolve

    kernel = np.asarray(psf, dtype=np.float64)
    kernel = kernel / kernel.sum()
    kh, kw = kernel.shape
    if kh % 2 != 1 or kw % 2 != 1:
        raise ValueError(f"PSF sides must be odd, got {kernel.shape}")
    ph, pw = kh // 2, kw // 2
    img = np.asarray(image, dtype=np.float64)
    padded = np.pad(img, ((ph, ph), (pw, pw)), mode="symmetric")
    return fftconvolve(padded, kernel, mode="valid")


def set_exposure(
    image: np.ndarray,
    exposure_factor: float,
    *,
    photoelectron_factor: float = 65535.0,
    offset_photoelectrons: float = 100.0,
) -> np.ndarray:
    """Scale the signal above the sensor offset: min(1, (max(0, x·F − O)·e + O) / F).

    ``image`` is in unit scale (1.0 = full scale); F is photoelectrons per unit, O the offset.
    """
    f, o = photoelectron_factor, offset_photoelectrons
    electrons = np.maximum(0.0, np.asarray(image, dtype=np.float64) * f - o)
    return np.minimum(1.0, (electrons * exposure_factor + o) / f)


def restore_offset(dn: np.ndarray, offset_dn: float = 100.0) -> np.ndarray:
    """A plane in DN made fit for `degrade`'s sensor model (offset ``offset_dn``, 1 e⁻/DN).

    `degrade` subtracts the offset before the shot noise, so it expects raw camera data whose
    dark pixels sit on the offset. A plane that reaches below it (8-bit exports,
    background-subtracted or offset-corrected images) has lost its offset: its darkest pixel is
    taken as no light and the offset is put back under it (otherwise its dim background and the
    skirts of blurred objects would be cut off into flat, noiseless floors). A plane at or above
    the offset is returned as it is; the rule is continuous there. Float64, same shape.
    """
    dn = np.asarray(dn, dtype=np.float64)
    return dn - min(float(dn.min()), offset_dn) + offset_dn


def poisson_noise(
    image: np.ndarray,
    rng: RandomSource,
    *,
    photoelectron_factor: float = 65535.0,
    offset_photoelectrons: float = 100.0,
) -> np.ndarray:
    """Shot noise on photoelectrons above the offset: min(1, (Poisson(max(0, x·F − O)) + O) / F).

    ``rng`` is a ``numpy.random.Generator`` or a legacy ``RandomState`` (the latter reproduces the
    original implementation's noise bit for bit).
    """
    f, o = photoelectron_factor, offset_photoelectrons
    lam = np.maximum(0.0, np.asarray(image, dtype=np.float64) * f - o)
    return np.minimum(1.0, (rng.poisson(lam) + o) / f)


def degrade(
    image: np.ndarray,
    z_um: float,
    *,
    optics: Optics = Optics(),
    exposure_factor: float = 1.0,
    photoelectron_factor: float = 65535.0,
    offset_photoelectrons: float = 100.0,
    rng: RandomSource | int | None = 0,
    noise: bool = True,
    psf: np.ndarray | None = None,
) -> np.ndarray:
    """Simulate an image taken ``z_um`` µm out of focus: blur → exposure → Poisson noise.

    Parameters
    ----------
    image : 2D in-focus image in unit scale (1.0 = full scale, e.g. DN/65535).
    z_um : defocus in µm.
    optics : PSF optics (kernel width and pixel size included).
    exposure_factor, photoelectron_factor, offset_photoelectrons : sensor model (see
        `set_exposure`, `poisson_noise`).
    rng : generator, legacy RandomState, or an int seed (seeds a legacy RandomState so results
        match the original simulator).
    noise : apply Poisson noise.
    psf : a kernel (odd sides, px of ``optics.pixel_size_um``; e.g. a measured PSF) to blur with
        instead of the simulator's `defocus_psf` at ``z_um`` (``z_um`` is then unused).

    Returns
    -------
    float64 array, same shape, unit scale, clipped at 1.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"degrade expects a 2D image, got shape {img.shape}")
    out = blur(img, defocus_psf(z_um, optics) if psf is None else psf)
    out = set_exposure(
        out,
        exposure_factor,
        photoelectron_factor=photoelectron_factor,
        offset_photoelectrons=offset_photoelectrons,
    )
    if noise:
        if rng is None or isinstance(rng, (int, np.integer)):
            rng = np.random.RandomState(0 if rng is None else int(rng))
        out = poisson_noise(
            out,
            rng,
            photoelectron_factor=photoelectron_factor,
            offset_photoelectrons=offset_photoelectrons,
        )
    return out
