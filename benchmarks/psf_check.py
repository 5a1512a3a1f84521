"""The simulator's defocus PSF against a measured bead PSF, and what the difference means at
miq's own optics.

`miq.optics.defocus_psf` is the paraxial scalar model of Yang et al. 2018: defocus phase
½·k·z·(NA/n)²·ρ². Real objectives follow the exact defocus phase k·z·√(n² − NA²ρ²) (scalar
Debye), which blurs more per µm the higher the NA. This compares both with a measured PSF:

1. the bead PSF of ``../shared/data/psf/psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif`` (pyotf,
   Apache-2.0; λ 520 nm, NA 0.85 air, 130 nm pixels, 300 nm planes, focus at plane 12):
   per plane, the radii holding 50 % and 80 % of the light (background: the median of the
   border; centre: the light-weighted centroid around the focal plane's peak), beside the same
   radii of the paraxial simulator and of the exact-phase model with those optics;
2. miq's optics (NA 0.5, 500 nm, 0.65 µm/px): for each level's defocus z, the defocus the
   simulator needs to give the exact-phase model's 50 % radius at z, i.e. how many µm of the
   simulator's scale a real z µm of defocus corresponds to, if a real objective behaves as the
   exact-phase model does on the bead.

Prints both tables and the mean relative error of each model's 50 % radius on the bead planes
at least ``--min-defocus`` µm from focus. Exits 2 when the bead file is missing.

Usage: python -m benchmarks.psf_check [--min-defocus 1.5]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks.common import SHARED_DATA

BEAD_FILE = SHARED_DATA / "psf" / "psf_wl520nm_z300nm_x130nm_na0.85_n1.0.tif"
BEAD_OPTICS = {"wavelength_nm": 520.0, "numerical_aperture": 0.85, "refractive_index": 1.0}
BEAD_PIXEL_UM, BEAD_PLANE_UM, BEAD_FOCUS_PLANE = 0.13, 0.3, 12
RADIUS_PX = 60  # the bead's light is summed within this radius (px of 130 nm)


def exact_phase_profile(
    radii_um: np.ndarray,
    z_um: float,
    wavelength_nm: float,
    numerical_aperture: float,
    refractive_index: float = 1.0,
    n_nodes: int = 800,
) -> np.ndarray:
    """Unnormalised scalar defocus PSF with the exact defocus phase k·z·√(n² − NA²ρ²) at each
    radius (µm), the paraxial model's `miq.optics._radial_profile` otherwise (circular pupil,
    uniform amplitude)."""
    from scipy.special import j0

    from miq.optics import _quadrature_nodes

    rho, weights = _quadrature_nodes(n_nodes)  # the simulator's nodes, computed once per size
    k = 2.0 * np.pi / (wavelength_nm * 1e-3)
    na = numerical_aperture
    phase = np.exp(1j * k * z_um * np.sqrt(refractive_index**2 - (na * rho) ** 2))
    field = (j0(k * na * np.outer(np.ravel(radii_um), rho)) * (phase * rho * weights)).sum(axis=1)
    return (np.abs(field) ** 2).reshape(np.shape(radii_um))


def encircled_radius(image: np.ndarray, radii: np.ndarray, fraction: float) -> float:
    """The radius (units of ``radii``) holding ``fraction`` of ``image``'s light summed over
    ``radii`` ≤ its largest value, by linear interpolation of the cumulative light."""
    order = np.argsort(radii, axis=None)
    r = np.ravel(radii)[order]
    cumulative = np.cumsum(np.ravel(image)[order])
    return float(np.interp(fraction * cumulative[-1], cumulative, r))


def _bead() -> tuple[np.ndarray, np.ndarray]:
    """(planes (Z, Y, X) background-subtracted, radius of every pixel from the bead's centre in
    px, with the pixels beyond `RADIUS_PX` set to an infinite radius)."""
    import tifffile

    stack = tifffile.imread(BEAD_FILE).astype(np.float64)
    border = np.concatenate([stack[:, :20].ravel(), stack[:, -20:].ravel()])
    stack -= np.median(border)
    focus = stack[BEAD_FOCUS_PLANE]
    py, px = np.unravel_index(np.argmax(focus), focus.shape)
    window = focus[py - 5 : py + 6, px - 5 : px + 6].clip(0)
    dy, dx = np.mgrid[-5:6, -5:6]
    cy, cx = py + (window * dy).sum() / window.sum(), px + (window * dx).sum() / window.sum()
    y, x = np.mgrid[: focus.shape[0], : focus.shape[1]]
    radius = np.hypot(y - cy, x - cx)
    return stack, np.where(radius <= RADIUS_PX, radius, np.inf)


def bead_table() -> list[dict]:
    """Per bead plane: z (µm), and the 50 % and 80 % radii (px of 130 nm) measured, paraxial
    (miq's simulator) and exact-phase."""
    from miq.optics import Optics, _radial_profile

    stack, radius = _bead()
    inside = np.isfinite(radius)
    radii_px, counts = _grid(1.0, RADIUS_PX)
    radii_um = radii_px * BEAD_PIXEL_UM
    optics = Optics(**BEAD_OPTICS, pixel_size_um=BEAD_PIXEL_UM)
    rows = []
    for plane in range(len(stack)):
        z = (plane - BEAD_FOCUS_PLANE) * BEAD_PLANE_UM
        paraxial = _radial_profile(radii_um, z, optics) * counts
        exact = exact_phase_profile(radii_um, z, **BEAD_OPTICS) * counts
        row = {"z_um": z}
        for name, light, r in (
            ("measured", stack[plane][inside], radius[inside]),
            ("paraxial", paraxial, radii_px),
            ("exact", exact, radii_px),
        ):
            for fraction in (0.5, 0.8):
                row[f"{name}_r{int(fraction * 100)}"] = encircled_radius(light, r, fraction)
        rows.append(row)
    return rows


def _grid(step_um: float, half_px: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct radii (µm) of a (2·half + 1)² pixel grid of ``step_um`` centred on a pixel,
    within half·step of the centre, and how many pixels lie at each."""
    offsets = np.arange(-half_px, half_px + 1)
    r2 = (offsets[:, None] ** 2 + offsets[None, :] ** 2).ravel()
    unique, counts = np.unique(r2[r2 <= half_px**2], return_counts=True)
    return np.sqrt(unique) * step_um, counts


def _r50(profile_at, z_um: float, radii: np.ndarray, counts: np.ndarray) -> float:
    """The 50 % radius (µm) of a radial profile sampled on a pixel grid (`_grid`)."""
    return encircled_radius(profile_at(radii, z_um) * counts, radii, 0.5)


def miq_optics_table(levels_um: list[float]) -> list[dict]:
    """For each defocus z (µm) at miq's optics: the 50 % radius (µm) of the paraxial simulator
    and of the exact-phase model, and the simulator's z with the exact model's radius."""
    from miq.optics import Optics, _radial_profile

    optics = Optics()
    radii, counts = _grid(optics.pixel_size_um / 4, 4 * 40)  # radii to 26 µm, 0.1625 µm steps

    def paraxial(r, z):
        return _radial_profile(r, z, optics)

    def exact(r, z):
        return exact_phase_profile(
            r, z, optics.wavelength_nm, optics.numerical_aperture, optics.refractive_index
        )

    grid = np.arange(0.0, 1.5 * max(levels_um) + 0.5, 0.5)  # r50 is smooth in z: interpolated
    grid_r50 = np.array([_r50(paraxial, z, radii, counts) for z in grid])
    rows = []
    for z in levels_um:
        r_exact = _r50(exact, z, radii, counts)
        rows.append(
            {
                "z_um": z,
                "paraxial_r50_um": _r50(paraxial, z, radii, counts),
                "exact_r50_um": r_exact,
                "simulator_z_um": float(np.interp(r_exact, grid_r50, grid)),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-defocus", type=float, default=1.5, help="µm, for the summary")
    args = parser.parse_args()
    if not BEAD_FILE.exists():
        print(f"bead PSF not found: {BEAD_FILE}")
        return 2
    rows = bead_table()
    print(f"measured bead PSF: {BEAD_FILE.name} (λ 520 nm, NA 0.85 air, 130 nm px, 300 nm planes)")
    print("radius holding 50 % / 80 % of the light, px of 130 nm:")
    print(f"{'z µm':>6} | {'measured':>13} | {'paraxial (miq)':>14} | {'exact phase':>13}")
    for r in rows:
        print(
            f"{r['z_um']:6.1f} | {r['measured_r50']:5.1f} / {r['measured_r80']:5.1f} | "
            f"{r['paraxial_r50']:6.1f} / {r['paraxial_r80']:5.1f} | "
            f"{r['exact_r50']:5.1f} / {r['exact_r80']:5.1f}"
        )
    far = [r for r in rows if abs(r["z_um"]) >= args.min_defocus - 1e-9]
    for name in ("paraxial", "exact"):
        errors = [(r[f"{name}_r50"] - r["measured_r50"]) / r["measured_r50"] for r in far]
        print(
            f"{name}: 50 % radius vs measured, {len(far)} planes ≥ {args.min_defocus:g} µm from "
            f"focus: mean {np.mean(errors):+.1%}, range {min(errors):+.1%} … {max(errors):+.1%}"
        )
    print(
        "\nmiq's optics (NA 0.5, 500 nm, n 1.0): a real defocus z, if the exact-phase model holds,"
    )
    print("gives the blur (50 % radius) the simulator gives at:")
    print(
        f"{'z µm':>6} {'paraxial r50 µm':>16} {'exact r50 µm':>13} {'simulator z µm':>15} {'ratio':>6}"
    )
    for r in miq_optics_table([2.0 * k for k in range(1, 11)]):
        print(
            f"{r['z_um']:6.1f} {r['paraxial_r50_um']:16.2f} {r['exact_r50_um']:13.2f} "
            f"{r['simulator_z_um']:15.2f} {r['simulator_z_um'] / r['z_um']:6.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
