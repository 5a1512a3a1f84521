"""Physical pixel size and z step recorded in a file's metadata (µm): OME-XML, ImageJ
calibration, OME-Zarr (NGFF) scales. Only sizes with a length unit count."""

from __future__ import annotations

from pathlib import Path

__all__ = ["imagej_calibration", "ome_calibration", "ngff_calibration"]

_UM_PER_UNIT = {
    "um": 1.0,
    "µm": 1.0,
    "\u03bcm": 1.0,  # Greek mu
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "mm": 1e3,
}


def imagej_calibration(tif) -> tuple[float | None, float | None]:
    """(pixel size, z step) in µm from ImageJ metadata with a length unit."""
    meta = tif.imagej_metadata or {}
    unit = str(meta.get("unit", "")).strip().lower().replace("\\u00b5", "µ")
    if unit not in _UM_PER_UNIT:
        return None, None
    scale = _UM_PER_UNIT[unit]
    tag = tif.pages[0].tags.get("XResolution")
    pixel = None
    if tag is not None and tag.value[0] > 0:
        pixel = tag.value[1] / tag.value[0] * scale
    spacing = meta.get("spacing")
    return pixel, float(spacing) * scale if spacing else None


def ome_calibration(xml: str) -> tuple[float | None, float | None]:
    import xml.etree.ElementTree as ET

    for element in ET.fromstring(xml).iter():
        if element.tag.endswith("Pixels"):
            sizes = []
            for axis in ("X", "Z"):
                value = element.get(f"PhysicalSize{axis}")
                unit = element.get(f"PhysicalSize{axis}Unit", "µm").lower()
                sizes.append(float(value) * _UM_PER_UNIT.get(unit, 1.0) if value else None)
            return sizes[0], sizes[1]
    return None, None


_NGFF_UM_PER_UNIT = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "angstrom": 1e-4}


def ngff_calibration(path: Path) -> tuple[float | None, float | None]:
    """(pixel size X, z step) in µm of an OME-Zarr image from its first multiscale level: only
    axes that declare a length unit count (a scale without a unit, as many writers leave the
    default 1.0, records nothing)."""
    from .discover import zarr_attributes

    multiscale = zarr_attributes(path)["multiscales"][0]
    axes = multiscale["axes"]
    scale = next(
        t["scale"]
        for t in multiscale["datasets"][0]["coordinateTransformations"]
        if t["type"] == "scale"
    )
    found: dict[str, float] = {}
    for axis, value in zip(axes, scale):
        factor = _NGFF_UM_PER_UNIT.get(str(axis.get("unit", "")).lower())
        if isinstance(axis, dict) and factor is not None:
            found[str(axis.get("name", "")).lower()] = float(value) * factor
    return found.get("x"), found.get("z")
