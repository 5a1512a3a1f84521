"""Reading images into 2D planes, finding input files, and writing outputs atomically.

Files are recognised by their content (magic bytes), not their extension: TIFF (incl. OME-TIFF,
ImageJ hyperstacks, multi-page, LZW/Deflate/PackBits via imagecodecs) through tifffile; PNG, JPEG,
BMP through Pillow. OME-Zarr folders (NGFF 0.4 / zarr v2 and 0.5 / zarr v3; an HCS plate expands
into its fields) and formats of installed bioio plug-ins (e.g. CZI, ND2) through bioio: the
``io`` extra. Every plane comes out as float32 in its original intensity units (DN).
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageContentError, ImageReadError, OutputError

__all__ = [
    "Plane",
    "read_planes",
    "check_plane",
    "to_unit_range",
    "unit_map",
    "find_images",
    "atomic_write",
    "write_rows_csv",
    "read_pixel_size",
    "read_z_step",
    "file_stem",
    "is_zarr",
    "zarr_attributes",
    "zarr_plate_fields",
    "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".btf", ".tf8")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PIL_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM")


@dataclass(frozen=True)
class Plane:
    """One 2D plane of a file: ``data`` (Y, X) in the file's units (DN), float32 (or 8/16-bit
    integers when read with ``native_integers``), with its channel ``c``, z-plane ``z`` and time
    point ``t`` indices.

    (Float64 files with values beyond float32's range are scaled by a power of two.)"""

    data: np.ndarray
    c: int = 0
    z: int = 0
    t: int = 0


def _read_tiff(path: Path) -> tuple[np.ndarray, str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.asarray(), series.axes


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a folder that is a zarr group or array (v2 ``.zgroup``/``.zattrs``, v3 ``zarr.json``)."""
    p = Path(path)
    return p.is_dir() and any((p / n).is_file() for n in ("zarr.json", ".zgroup", ".zattrs"))


def zarr_attributes(path: str | os.PathLike) -> dict:
    """The OME attributes of a zarr group: v2 ``.zattrs``, or v3 ``zarr.json`` → ``attributes``
    (→ ``ome`` in NGFF 0.5). Empty dict when none can be read."""
    import json

    p = Path(path)
    try:
        if (p / "zarr.json").is_file():
            attrs = json.loads((p / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
        elif (p / ".zattrs").is_file():
            attrs = json.loads((p / ".zattrs").read_text(encoding="utf-8"))
        else:
            return {}
    except (OSError, ValueError, AttributeError):
        return {}
    return attrs.get("ome", attrs) if isinstance(attrs, dict) else {}


def zarr_plate_fields(path: str | os.PathLike) -> list[Path] | None:
    """The field images of an OME-Zarr HCS plate (``plate.zarr/A/1/0`` …) in plate order, or
    None when ``path`` is not a plate."""
    plate = zarr_attributes(path).get("plate")
    if not isinstance(plate, dict):
        return None
    fields = []
    for well in plate.get("wells", []):
        well_dir = Path(path) / well["path"]
        images = zarr_attributes(well_dir).get("well", {}).get("images", [])
        fields.extend(well_dir / image["path"] for image in images)
    return fields


def _read_bioio(path: Path) -> tuple[np.ndarray, str]:
    """First scene of an image bioio can read (OME-Zarr, or a format of an installed plug-in)."""
    try:
        from bioio import BioImage
    except ImportError:
        raise ImageReadError(
            f"{path}: reading OME-Zarr (and CZI, ND2 … through bioio) needs the io extra: "
            "pip install 'miq[io]'"
        ) from None
    image = BioImage(path, reader=_zarr_reader(path) if is_zarr(path) else None)
    return np.asarray(image.data), image.dims.order


def _zarr_reader(path: Path):
    """bioio's OME-Zarr reader, named explicitly: plate fields (``B/3/0``) have no ``.zarr``
    suffix for bioio to choose a plug-in by."""
    try:
        from bioio_ome_zarr import Reader
    except ImportError:
        raise ImageReadError(
            f"{path}: reading OME-Zarr needs bioio-ome-zarr (the io extra): pip install 'miq[io]'"
        ) from None
    return Reader


def _read_pillow(path: Path) -> tuple[np.ndarray, str]:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA", "P", "CMYK", "LA", "YCbCr"):
            arr = np.asarray(im.convert("RGBA" if "A" in im.mode else "RGB"))
            return arr, "YXS"
        if im.mode == "I;16" or im.mode.startswith("I;16"):
            return np.asarray(im, dtype=np.uint16), "YX"
        return np.asarray(im), "YX"


def _float32_safe(arr: np.ndarray) -> np.ndarray:
    """Float64 data beyond float32's range (|x| > 1e37 or all |x| < 1e-30) scaled by a power of
    two, so that the float32 planes keep every value finite and distinct; other data unchanged.
    (Ratings do not depend on the intensity scale.)"""
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 4:
        return arr
    finite = np.abs(arr[np.isfinite(arr)])
    peak = float(finite.max()) if finite.size else 0.0
    if peak == 0.0 or 1e-30 <= peak <= 1e37:
        return arr
    return arr * 2.0 ** -np.round(np.log2(peak))


def _to_planes(
    arr: np.ndarray, axes: str, path: Path, native_integers: bool = False
) -> list[Plane]:
    """Split an array with tifffile-style axes into 2D planes indexed by (c, z): float32, or
    8/16-bit integers left as they are with ``native_integers``."""
    if arr.dtype.kind == "c":
        raise ImageContentError(f"{path}: complex-valued image ({arr.dtype}); give a real image")
    if arr.dtype.kind not in "biuf":
        raise ImageContentError(f"{path}: unsupported pixel type {arr.dtype}")
    axes = axes.upper()
    if len(axes) != arr.ndim:
        axes = "Q" * (arr.ndim - 2) + "YX"
    if "S" in axes and arr.shape[axes.index("S")] > 1:
        raise ImageContentError(
            f"{path}: RGB/colour image ({arr.shape[axes.index('S')]} samples per pixel); "
            "miq rates single-channel fluorescence: split the channels first"
        )
    if "Y" not in axes or "X" not in axes:
        raise ImageContentError(f"{path}: no Y/X axes in {axes!r}")
    # Move Y, X last; the other axes are channel (C), z (Z) or time (T); an unnamed axis
    # (pages, Q, I) is z if the file has no Z, else time.
    lead = [i for i, a in enumerate(axes) if a not in "YX"]
    order = lead + [axes.index("Y"), axes.index("X")]
    arr = np.transpose(arr, order)
    lead_axes = [axes[i] for i in lead]
    shape = arr.shape[: len(lead)]
    non_singleton = [(k, a, n) for k, (a, n) in enumerate(zip(lead_axes, shape)) if n > 1]
    role: dict[str, int] = {}
    for k, a, _ in non_singleton:
        name = {"C": "c", "Z": "z", "T": "t"}.get(a)
        if name and name not in role:
            role[name] = k
    for k, _, _ in non_singleton:
        if k in role.values():
            continue
        free = next((r for r in ("z", "t") if r not in role), None)
        if free is None:
            dims = ", ".join(f"{a}={n}" for _, a, n in non_singleton)
            raise ImageContentError(
                f"{path}: {len(non_singleton) + 2}-D image ({dims}); at most time, channel and z "
                "besides Y and X are supported"
            )
        role[free] = k
    planes: list[Plane] = []
    flat = arr.reshape((-1,) + arr.shape[-2:])
    keep = native_integers and flat.dtype.kind in "ui" and flat.dtype.itemsize <= 2
    dtype = flat.dtype if keep else np.float32
    flat = flat if keep else _float32_safe(flat)
    for flat_index, index in enumerate(np.ndindex(*shape) if shape else [()]):
        c, z, t = (int(index[role[r]]) if r in role else 0 for r in ("c", "z", "t"))
        planes.append(Plane(flat[flat_index].astype(dtype, copy=False), c=c, z=z, t=t))
    return planes


def read_planes(path: str | os.PathLike, *, native_integers: bool = False) -> list[Plane]:
    """Read every 2D plane of an image file.

    Parameters
    ----------
    path : image file (format detected from its content).
    native_integers : keep 8- and 16-bit integer planes in their own dtype instead of float32
        (no copy; for rating, which maps every plane to [0, 1] itself).

    Returns
    -------
    list of :class:`Plane`, float32 (Y, X) (or integers, see above) in the file's units, with
    their (t, c, z) indices, in storage order.

    Raises
    ------
    ImageReadError : missing, unreadable, empty or corrupt file, or not an image.
    ImageContentError : readable but unsupported content (RGB, complex, more than 5-D).
    """
    p = Path(path)
    if is_zarr(p):
        if zarr_plate_fields(p) is not None:
            raise ImageReadError(
                f"{p}: an OME-Zarr plate; give it to find_images to get its fields"
            )
        return _to_planes(*_read_any(_read_bioio, p), p, native_integers)
    try:
        with open(p, "rb") as fh:
            head = fh.read(8)
    except IsADirectoryError:
        raise ImageReadError(f"{p}: is a folder, not an image file") from None
    except OSError as exc:
        raise ImageReadError(f"{p}: cannot open ({exc.strerror or exc})") from None
    if not head:
        raise ImageReadError(f"{p}: empty file (0 bytes)")
    if head.startswith(_TIFF_MAGIC):
        reader = _read_tiff
    elif head.startswith(_PIL_MAGIC):
        reader = _read_pillow
    elif p.suffix.lower() not in IMAGE_SUFFIXES and _bioio_reads(p):
        reader = _read_bioio
    else:
        raise ImageReadError(f"{p}: not a TIFF, PNG, JPEG or BMP image (unknown file content)")
    return _to_planes(*_read_any(reader, p), p, native_integers)


def _bioio_reads(path: Path) -> bool:
    """True when bioio is installed and one of its plug-ins claims the file."""
    try:
        import bioio
    except ImportError:
        return False
    try:
        bioio.BioImage.determine_plugin(path)
    except Exception:  # no plug-in for it
        return False
    return True


def _read_any(reader: Callable[[Path], tuple], p: Path) -> tuple[np.ndarray, str]:
    """Run a reader; every failure becomes one :class:`ImageReadError` line naming the file."""
    try:
        arr, axes = reader(p)
    except (ImageReadError, ImageContentError):
        raise
    except MemoryError:
        raise ImageReadError(f"{p}: image too large to load into memory") from None
    except Exception as exc:  # corrupt/truncated files raise many different errors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = msg if len(msg) <= 200 else msg[:197] + "..."
        raise ImageReadError(f"{p}: corrupt or unreadable image ({msg})") from None
    return np.asarray(arr), axes


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


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size in µm recorded in a TIFF: OME ``PhysicalSizeX`` or an ImageJ calibration with
    a length unit. None when the file records none (plain resolution tags in inches, as most
    software writes them by default, are not trusted) or is not a TIFF."""
    return _read_calibration(path)[0]


def read_z_step(path: str | os.PathLike) -> float | None:
    """Z step in µm recorded in a TIFF (OME ``PhysicalSizeZ`` or ImageJ ``spacing`` with a length
    unit); None when not recorded."""
    return _read_calibration(path)[1]


def _read_calibration(path: str | os.PathLike) -> tuple[float | None, float | None]:
    """(pixel size, z step) in µm from OME or ImageJ metadata; None where not recorded."""
    import tifffile

    if is_zarr(path):
        return _bioio_calibration(Path(path))
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                return _ome_calibration(tif.ome_metadata)
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
    except Exception:  # not a TIFF, or unreadable metadata: nothing recorded
        return None, None


def _bioio_calibration(path: Path) -> tuple[float | None, float | None]:
    """(pixel size X, z step) of an OME-Zarr image as bioio reports them (NGFF scales, taken to
    be µm as the NGFF specification recommends)."""
    try:
        from bioio import BioImage

        sizes = BioImage(path, reader=_zarr_reader(path)).physical_pixel_sizes
    except Exception:  # bioio missing or metadata unreadable: nothing recorded
        return None, None
    return (float(sizes.X) if sizes.X else None), (float(sizes.Z) if sizes.Z else None)


def _ome_calibration(xml: str) -> tuple[float | None, float | None]:
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


def check_plane(plane: np.ndarray, name: str, min_side: int) -> tuple[float, float]:
    """Raise :class:`ImageContentError` if a plane cannot be rated; else return its (min, max).

    Checks: 2D, at least ``min_side`` px on each side, all values finite, not constant.
    """
    if plane.ndim != 2:
        raise ImageContentError(f"{name}: expected a 2D plane, got shape {plane.shape}")
    h, w = plane.shape
    if h < min_side or w < min_side:
        raise ImageContentError(
            f"{name}: image is {w}×{h} px, smaller than one {min_side}×{min_side} patch"
        )
    if plane.dtype.kind not in "biu":  # integers are always finite
        finite = np.isfinite(plane)
        if not finite.all():
            n_bad = int(plane.size - np.count_nonzero(finite))
            raise ImageContentError(f"{name}: {n_bad} pixels are NaN or infinite")
    lo, hi = float(plane.min()), float(plane.max())
    if lo == hi:
        raise ImageContentError(
            f"{name}: image is constant (every pixel = {lo:g}); nothing to rate"
        )
    return lo, hi


def to_unit_range(plane: np.ndarray) -> np.ndarray:
    """Map a plane linearly to [0, 1] by its min and max (float32).

    The model standardises every patch itself, so this affine map does not change any result; it
    only keeps float32 arithmetic precise for any input scale (8/16/32-bit, floats, large offsets).
    """
    data = np.asarray(plane)
    return unit_map(data, float(data.min()), float(data.max()))


def unit_map(data: np.ndarray, lo: float, hi: float, out: np.ndarray | None = None) -> np.ndarray:
    """(data − lo) / (hi − lo) as float32 (0 where hi == lo): the map of :func:`to_unit_range`
    with a given range, so a plane read in bands maps exactly as when read whole.

    8- and 16-bit integers (exact in float32) and float32 data are mapped in float32 (faster;
    at most an ulp of the result apart from float64); 32/64-bit integers and float64 in float64,
    so large offsets keep their precision. ``out``: a float32 array of ``data``'s shape to write
    into (``data`` may then be any strided view: it is read once, never copied)."""
    data = np.asarray(data)
    scale = 1.0 / (hi - lo) if hi > lo else 0.0
    kind, size = data.dtype.kind, data.dtype.itemsize
    if out is None:
        out = np.empty(data.shape, np.float32)
    if (kind in "bui" and size <= 2) or (kind == "f" and size <= 4):
        np.subtract(data, np.float32(lo), out=out, dtype=np.float32)
        out *= np.float32(scale)
    else:
        out[...] = (data.astype(np.float64) - lo) * scale
    return out


def find_images(
    inputs: Iterable[str | os.PathLike], on_missing: Callable[[str], None] | None = None
) -> list[Path]:
    """Expand files, folders (recursive, image suffixes only) and glob patterns into a sorted,
    de-duplicated file list. Inputs that match nothing are reported through ``on_missing``.

    An explicitly named file is kept whatever its extension (its content decides later).
    """
    found: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if is_zarr(p):
            matches = _zarr_images(p)
        elif p.is_dir():
            matches = _images_in_folder(p)
        elif p.exists():
            matches = [p]
        elif glob.has_magic(text):
            matches = []
            for m in sorted(Path(m) for m in glob.glob(text, recursive=True)):
                matches.extend(_zarr_images(m) if is_zarr(m) else [m] if m.is_file() else [])
        else:
            matches = []
        if not matches and on_missing is not None:
            on_missing(text)
        found.extend(matches)
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _zarr_images(path: Path) -> list[Path]:
    """An OME-Zarr image itself, or the fields of an HCS plate."""
    fields = zarr_plate_fields(path)
    return [path] if fields is None else fields


def _images_in_folder(folder: Path) -> list[Path]:
    """Image files (by suffix) and OME-Zarr images under a folder, recursively, sorted by path;
    a zarr folder is not searched inside (a plate gives its fields)."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        for d in list(dirs):
            if is_zarr(here / d):
                found.extend(_zarr_images(here / d))
                dirs.remove(d)
        found.extend(
            here / f
            for f in files
            if Path(f).suffix.lower() in IMAGE_SUFFIXES and (here / f).is_file()
        )
    return sorted(found)


def file_stem(path: str | os.PathLike) -> str:
    """Outputs' base name of an input: the file name without its extension (and without ``.ome``
    before it); a field inside an OME-Zarr plate is named by the plate and its path in it
    (``plate.ome.zarr/B/3/0`` → ``plate_B_3_0``)."""
    p = Path(path)
    inside = [i for i, part in enumerate(p.parts[:-1]) if part.lower().endswith(".zarr")]
    if inside:
        top = inside[0]
        return "_".join([file_stem(p.parts[top]), *p.parts[top + 1 :]])
    name = p.name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem.removesuffix(".ome")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a temporary file next to ``path``; on success it is renamed over ``path``.

    A crash or exception leaves any previous ``path`` untouched and no half-written file.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; outputs follow the umask
        text_args = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with open(tmp, mode, **text_args) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _valid_utf8(value):
    """Text with undecodable file-name bytes (kept by Python as surrogates) shown as \\xNN."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def write_rows_csv(path: str | os.PathLike, columns: list[str], rows: Iterable[dict]) -> None:
    """Write dict rows as a UTF-8, comma-separated CSV atomically (missing values empty).

    Always valid UTF-8: bytes of non-UTF-8 file names appear as ``\\xNN``.
    """
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _valid_utf8(v) for k, v in row.items()} for row in rows)
    with atomic_write(path, "w") as fh:
        fh.write(buffer.getvalue())
