"""Procedural in-focus fluorescence-like content, to widen training diversity.

A field is a sum of optional components (nuclei with texture, cytoplasm, filaments, puncta, debris)
over a smooth background, imaged with a small in-focus PSF. Values are relative intensities
(background ~0–0.2, brightest structures ~1); the simulator later turns them into photons.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit

__all__ = ["procedural_field"]


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _nuclei(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Textured ellipses with soft edges; returns (nuclei image, cytoplasm image)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    nuclei = np.zeros(shape, np.float32)
    cyto = np.zeros(shape, np.float32)
    count = int(rng.integers(1, max(2, h * w // 2500)))
    radius_scale = rng.uniform(5, 22)
    texture = 0.5 + 0.5 * np.clip(_smooth_noise(shape, rng.uniform(0.8, 2.5), rng), -2, 2) / 2
    for _ in range(count):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        a = radius_scale * rng.uniform(0.6, 1.4)
        b = a * rng.uniform(0.5, 1.0)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        r = np.sqrt(u * u + v * v)
        edge = rng.uniform(0.03, 0.2)
        body = expit((1.0 - r) / edge)
        nuclei += body * rng.uniform(0.3, 1.0)
        cyto += np.exp(-0.5 * (r / rng.uniform(1.8, 3.5)) ** 2) * rng.uniform(0.05, 0.4)
    nuclei *= rng.uniform(0.4, 1.0) + rng.uniform(0.0, 1.0) * texture
    return nuclei, cyto


def _filaments(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Curved thin lines (microtubule/actin-like) drawn as random walks with smooth turning."""
    h, w = shape
    img = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(3, 60))):
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        angle = rng.uniform(0, 2 * np.pi)
        curvature = rng.uniform(0.0, 0.15)
        steps = int(rng.integers(30, 400))
        brightness = rng.uniform(0.3, 1.0)
        turns = np.cumsum(rng.normal(0, curvature, steps))
        ys = y + np.cumsum(0.7 * np.sin(angle + turns))
        xs = x + np.cumsum(0.7 * np.cos(angle + turns))
        ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        np.add.at(img, (ys[ok].astype(int), xs[ok].astype(int)), brightness)
    return ndimage.gaussian_filter(img, rng.uniform(0.4, 1.2))


def _puncta(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    img = np.zeros(shape, np.float32)
    n = int(rng.integers(5, max(6, shape[0] * shape[1] // 400)))
    ys, xs = rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)
    np.add.at(img, (ys, xs), rng.uniform(0.5, 3.0, n))
    return ndimage.gaussian_filter(img, rng.uniform(0.6, 1.6)) * 6.0


def _debris(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A few bright irregular blobs (dust, dead cells)."""
    seeds = np.zeros(shape, np.float32)
    n = int(rng.integers(1, 6))
    seeds[rng.integers(0, shape[0], n), rng.integers(0, shape[1], n)] = 1.0
    blobs = ndimage.gaussian_filter(seeds, rng.uniform(1.5, 5.0))
    blobs = blobs / (blobs.max() + 1e-12)
    rough = 0.7 + 0.3 * _smooth_noise(shape, 1.0, rng)
    return np.where(blobs > rng.uniform(0.2, 0.5), rough, 0.0).astype(np.float32)


def procedural_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random in-focus fluorescence-like field.

    Parameters
    ----------
    shape : (height, width) in pixels.
    rng : random generator (the only source of randomness).

    Returns
    -------
    float32 array ``shape``, relative intensity with maximum ~1 (0 would be no light).
    """
    img = np.zeros(shape, np.float32)
    kinds = rng.random(5)
    if kinds[0] < 0.55:
        nuclei, cyto = _nuclei(shape, rng)
        img += nuclei + (cyto if kinds[1] < 0.5 else 0.0)
    if kinds[2] < 0.35:
        img += _filaments(shape, rng)
    if kinds[3] < 0.35:
        img += _puncta(shape, rng)
    if kinds[4] < 0.15:
        img += _debris(shape, rng) * rng.uniform(0.5, 2.0)
    if not img.any() and rng.random() < 0.7:  # otherwise: an empty field (background only)
        img += _puncta(shape, rng)
    img = ndimage.gaussian_filter(img, rng.uniform(0.5, 1.0))  # in-focus diffraction blur
    peak = float(img.max())
    if peak > 0:
        img /= peak
    gradient = np.linspace(0, rng.uniform(0, 0.1), shape[1], dtype=np.float32)[None, :]
    background = rng.uniform(0.0, 0.15) + gradient
    return (img + background).astype(np.float32)
