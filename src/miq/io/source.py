"""One input file, opened once: its planes (eager or lazy), pixel size, z step and OME-XML.

Files are recognised by their content (magic bytes), not their extension: TIFF (incl. OME-TIFF,
ImageJ hyperstacks, multi-page, LZW/Deflate/PackBits via imagecodecs) through tifffile; PNG, JPEG,
BMP through Pillow. OME-Zarr folders (NGFF 0.4 / zarr v2 and 0.5 / zarr v3) and formats of
installed bioio plug-ins (e.g. CZI, ND2) through bioio: the ``io`` extra. Every plane comes out as
float32 in its original intensity units (DN), or in its own 8/16-bit integer type on request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import ImageContentError, ImageReadError, MiqError, install_hint
from .budget import DEFAULT_MEMORY_BUDGET, describe, file_bytes, over_budget
from .calibration import imagej_calibration, ngff_calibration, ome_calibration
from .discover import IMAGE_SUFFIXES, is_zarr, special_file_kind, zarr_plate_fields
from .lazy import LazyPlane, main_series, split_lazy_planes, tiff_lazy_array
from .pillow import read_pillow
from .planes import Plane, axis_hint, fit_axes, parse_axes, samples_as_planes, split_planes

__all__ = ["ImageSource", "ReadOptions", "read_planes", "read_pixel_size", "read_z_step"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PIL_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM")


class ImageSource:
    """An input image file (or OME-Zarr folder), opened once.

    Use as a context manager (``with ImageSource.open(path) as source:``) or call `close`.
    Everything a command needs from the file comes from this one object: `planes` (all 2D
    planes in memory), `lazy_planes` (planes read band by band, for planes too large to
    load), `pixel_size_um`, `z_step_um` and `ome_xml`.

    Attributes
    ----------
    path : the file (or OME-Zarr folder).
    kind : ``"tiff"``, ``"pillow"``, ``"zarr"`` or ``"bioio"`` (the reader chosen by content).
    axes_given : the axis order given at `open` (upper case), or None: the reader's.
    samples_as_channels : the default of `planes`' ``samples_as_channels``, given at `open`.
    memory_budget : bytes reading and rating this file may take (`miq.io.budget`), given at
        `open`: `planes` refuses a file whose planes would not fit, before reading them.
    """

    def __init__(
        self,
        path: Path,
        kind: str,
        axes: str | None = None,
        samples_as_channels: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        self.path, self.kind = path, kind
        self.axes_given, self.samples_as_channels = axes, samples_as_channels
        self.memory_budget = int(memory_budget)
        self._tiff = None  # tifffile.TiffFile, kept open
        self._bioimage = None  # bioio.BioImage
        self._pillow: tuple[np.ndarray, str] | None = None  # a PNG/JPEG/BMP read whole
        # planes per (native_integers, samples_as_channels), or the error reading them
        self._planes: dict[tuple[bool, bool], list[Plane] | MiqError] = {}
        self._lazy: dict[str, list[LazyPlane] | None] = {}  # lazy_planes, once made

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        axes: str | None = None,
        *,
        samples_as_channels: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> ImageSource:
        """Open an image file, its reader chosen by its content.

        Parameters
        ----------
        path : image file or OME-Zarr folder.
        axes : the file's axis order, one letter per dimension from T, Z, C, Y, X, S (e.g.
            ``"YXZ"`` for a stack stored Z last, ``"ZYX"``, ``"CZYX"``, ``"TYX"``, ``"YXS"``),
            replacing the axes the reader reports (for TIFF, those of its series with the
            largest planes, singleton dimensions squeezed). None: the reader's.
        samples_as_channels : the default of `planes`' ``samples_as_channels``: rate the colour
            samples of an RGB image as channels.
        memory_budget : bytes reading and rating the file may take (default 2 GiB).

        Raises
        ------
        ImageReadError : missing, unreadable, empty or corrupt file, not an image, or an OME-Zarr
            plate (whose fields `miq.io.find_images` lists).
        ImageContentError : ``axes`` with unknown or repeated letters, without Y and X, or
            not one letter per dimension of the image.
        """
        p = Path(path)
        if axes is not None:
            try:
                axes = parse_axes(axes)
            except ValueError as exc:
                raise ImageContentError(f"{p}: {exc}") from None
        if is_zarr(p):
            if zarr_plate_fields(p) is not None:
                raise ImageReadError(
                    f"{p}: an OME-Zarr plate; give it to find_images to get its fields"
                )
            kind = "zarr"
        else:
            kind = _sniff(p)
        source = cls(p, kind, axes, samples_as_channels, memory_budget)
        if source.kind == "tiff":
            import tifffile

            source._tiff = _reading(p, lambda: tifffile.TiffFile(p))
        elif source.kind in ("zarr", "bioio"):
            source._bioimage = _reading(p, lambda: _bioimage(p, zarr=source.kind == "zarr"))
        if axes is not None:
            try:
                source.layout()  # checks the axes against the image's dimensions
            except BaseException:
                source.close()
                raise
        return source

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the file and drop the planes read from it."""
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None
        self._pillow = None
        self._planes.clear()
        self._lazy.clear()

    @property
    def name(self) -> str:
        return os.fspath(self.path)

    def planes(
        self, *, native_integers: bool = False, samples_as_channels: bool | None = None
    ) -> list[Plane]:
        """Every 2D plane of the file, with its (t, c, z) indices, in storage order.

        float32 (Y, X) in the file's units, or with ``native_integers`` integer planes (any width)
        in their own dtype (no copy; rating maps every plane to [0, 1] itself). With
        ``samples_as_channels`` (None: as given at `open`), the colour samples of an RGB(A)
        image are its channels (c = 0, 1, 2 for red, green, blue); otherwise colour images are
        refused. Read once per combination of the two and kept until `close`.

        Raises
        ------
        ImageReadError : corrupt or unreadable data.
        ImageContentError : readable but unsupported content (RGB, complex, more than 5-D), or
            planes that would not fit in the memory budget (`whole_bytes`), before reading.
        """
        key = self._planes_key(native_integers, samples_as_channels)
        if key not in self._planes:
            try:
                self._check_whole(native_integers)
                array, axes = _reading(self.path, self._array_and_axes)
                self._planes[key] = split_planes(
                    np.asarray(array), axes, self.path, native_integers, samples_as_channels=key[1]
                )
            except MiqError as exc:  # kept: asking again does not read the file again
                self._planes[key] = exc
        found = self._planes[key]
        if isinstance(found, MiqError):
            raise found
        return found

    def has_planes(
        self, *, native_integers: bool = False, samples_as_channels: bool | None = None
    ) -> bool:
        """True when `planes` has already read the planes, or failed to (e.g. ahead of
        rating)."""
        return self._planes_key(native_integers, samples_as_channels) in self._planes

    def _planes_key(
        self, native_integers: bool, samples_as_channels: bool | None
    ) -> tuple[bool, bool]:
        if samples_as_channels is None:
            samples_as_channels = self.samples_as_channels
        return bool(native_integers), bool(samples_as_channels)

    def lazy_planes(self) -> list[LazyPlane] | None:
        """The planes as windows read on demand (same order and indices as `planes`), or
        None when the file cannot be read lazily (e.g. PNG, RGB, unusual axes, or axes given at
        `open` whose last two are not Y, X: then `planes` reads the file). Made once and kept
        until `close`."""
        if "lazy" not in self._lazy:
            self._lazy["lazy"] = self._make_lazy_planes()
        return self._lazy["lazy"]

    def _make_lazy_planes(self) -> list[LazyPlane] | None:
        try:
            if self._tiff is not None:
                found = tiff_lazy_array(self._tiff, self.path)
                if found is None:
                    return None
                array, _ = found
                axes = self.layout()[1]
                return split_lazy_planes(array, axes) if len(axes) == len(array.shape) else None
            if self._bioimage is not None:
                array = self._bioimage.dask_data
                axes = self.axes_given or self._bioimage.dims.order
                return split_lazy_planes(array, axes) if len(axes) == len(array.shape) else None
        except Exception:  # no lazily readable series: planes() reports the problem
            return None
        return None

    def layout(self) -> tuple[tuple[int, ...], str]:
        """(shape, axes) of the image as its planes are split: the reader's shape (the TIFF
        series with the largest planes, `main_series`; bioio's dims; PNG/JPEG/BMP read whole)
        with the axes given at `open`, or else the reader's (a TIFF's planar samples of integer
        or float data other than 8-bit, or samples of a grey image, are planes, not colours).
        No pixel data read for TIFF.

        Raises
        ------
        ImageReadError : unreadable file.
        ImageContentError : the axes given at `open` do not fit the shape.
        """
        shape, axes = _reading(self.path, self._reader_layout)
        if self.axes_given is not None:
            axes = fit_axes(self.axes_given, shape, self.path)
        return shape, axes

    def axis_hint(self, min_side: int = 84) -> str | None:
        """A likely axis mix-up (see `miq.io.planes.axis_hint`), e.g. ``"last axis has 40
        planes: is Z last? use --axes YXZ"`` for a Z-last stack read as 512 planes of 512 × 40,
        or None when the planes are at least ``min_side`` a side, or nothing fits better, or the
        file cannot be read. To add to the errors of planes smaller than one patch."""
        try:
            shape, axes = self.layout()
        except MiqError:
            return None
        return axis_hint(shape, axes, min_side)

    def whole_bytes(self, native_integers: bool = True) -> int:
        """Bytes that reading every plane at once (`planes`) and rating one of them takes, as
        the file declares its shape and pixel type (`miq.io.budget.file_bytes`); no pixel data
        read. Raises `ImageReadError` for an unreadable file."""
        shape, axes, dtype = _reading(self.path, self._declared)
        return file_bytes(shape, axes, dtype, native_integers, copied=self.kind != "tiff")

    def _declared(self) -> tuple[tuple[int, ...], str, np.dtype]:
        """(shape, axes, pixel type) as the file declares them."""
        shape, axes = self.layout()
        if self._tiff is not None:
            return shape, axes, np.dtype(main_series(self._tiff).dtype)
        if self._bioimage is not None:
            return shape, axes, np.dtype(self._bioimage.dtype)
        return shape, axes, self._read_pillow()[0].dtype

    def _check_whole(self, native_integers: bool) -> None:
        """`ImageContentError` when reading every plane at once would exceed the budget."""
        need = self.whole_bytes(native_integers)
        if need > self.memory_budget:
            shape, _, dtype = self._declared()
            what = f"reading the whole {describe(shape, dtype)} at once"
            raise over_budget(self.name, what, need, self.memory_budget)

    def largest_plane_pixels(self) -> int:
        """Pixels of one plane as the file declares it (0 when it cannot be read lazily)."""
        lazy = self.lazy_planes()
        return lazy[0].shape[0] * lazy[0].shape[1] if lazy else 0

    @cached_property
    def ome_xml(self) -> str | None:
        """The OME-XML of an OME-TIFF (None otherwise)."""
        try:
            if self._tiff is not None and self._tiff.is_ome:
                return self._tiff.ome_metadata or None
        except Exception:  # unreadable metadata: none
            return None
        return None

    @cached_property
    def pixel_size_um(self) -> float | None:
        """Pixel size in µm the file records: OME ``PhysicalSizeX``, an ImageJ calibration with a
        length unit, or OME-Zarr scales. None when it records none (plain resolution tags in
        inches, as most software writes them by default, are not trusted)."""
        return self._calibration[0]

    @cached_property
    def z_step_um(self) -> float | None:
        """Z step in µm the file records (OME ``PhysicalSizeZ``, ImageJ ``spacing`` with a length
        unit, OME-Zarr scales); None when not recorded."""
        return self._calibration[1]

    @cached_property
    def _calibration(self) -> tuple[float | None, float | None]:
        try:
            if self.kind == "zarr":
                return ngff_calibration(self.path)
            if self._tiff is not None:
                if self.ome_xml:
                    return ome_calibration(self.ome_xml)
                return imagej_calibration(self._tiff)
        except Exception:  # unreadable metadata: nothing recorded
            return None, None
        return None, None

    def _reader_layout(self) -> tuple[tuple[int, ...], str]:
        if self._tiff is not None:
            series = main_series(self._tiff)
            return tuple(int(n) for n in series.shape), _tiff_axes(self._tiff)
        if self._bioimage is not None:
            dims = self._bioimage.dims
            return tuple(int(n) for n in dims.shape), dims.order
        array, axes = self._read_pillow()
        return array.shape, axes

    def _array_and_axes(self) -> tuple[np.ndarray, str]:
        """The pixel data and the axes to split them by."""
        shape, axes = self.layout()
        if self._tiff is not None:
            array = main_series(self._tiff).asarray()
        elif self._bioimage is not None:
            array = np.asarray(self._bioimage.data)
        else:
            array = self._read_pillow()[0]
        if self.axes_given is not None and array.shape != shape:
            raise ImageContentError(
                f"{self.path}: image data of shape {array.shape} where {shape} was declared"
            )
        return array, axes

    def _read_pillow(self) -> tuple[np.ndarray, str]:
        if self._pillow is None:
            self._pillow = read_pillow(self.path, self.memory_budget)
        return self._pillow

    def __repr__(self) -> str:
        return f"ImageSource({self.name!r}, {self.kind})"


@dataclass(frozen=True)
class ReadOptions:
    """How a command reads its input files: ``axes`` (the axis order of plain TIFFs, e.g.
    ``"YXZ"``; None: as the file says), ``samples_as_channels`` (rate the colours of RGB
    images as channels c = 0, 1, 2) and ``memory_budget`` (bytes one file may take to read and
    rate; ``--memory-budget``)."""

    axes: str | None = None
    samples_as_channels: bool = False
    memory_budget: int = DEFAULT_MEMORY_BUDGET

    def open(self, path: str | os.PathLike) -> ImageSource:
        """`ImageSource.open` with these options."""
        return ImageSource.open(
            path,
            self.axes,
            samples_as_channels=self.samples_as_channels,
            memory_budget=self.memory_budget,
        )


def read_planes(
    path: str | os.PathLike,
    *,
    native_integers: bool = False,
    axes: str | None = None,
    samples_as_channels: bool = False,
) -> list[Plane]:
    """Read every 2D plane of an image file (see `ImageSource.planes`).

    Parameters
    ----------
    path : image file (format detected from its content).
    native_integers : keep integer planes (any width) in their own dtype instead of float32.
    axes : the file's axis order (e.g. ``"YXZ"``), replacing the reader's (see
        `ImageSource.open`).
    samples_as_channels : rate the colour samples of an RGB(A) image as channels c = 0, 1, 2
        (, 3) instead of refusing it.

    Returns
    -------
    list of `Plane`, float32 (Y, X) (or integers, see above) in the file's units, with
    their (t, c, z) indices, in storage order.

    Raises
    ------
    ImageReadError : missing, unreadable, empty or corrupt file, or not an image.
    ImageContentError : readable but unsupported content (RGB, complex, more than 5-D), or
        ``axes`` that do not fit.
    """
    with ImageSource.open(path, axes, samples_as_channels=samples_as_channels) as source:
        return source.planes(native_integers=native_integers)


def read_pixel_size(path: str | os.PathLike) -> float | None:
    """Pixel size in µm recorded in a file (`ImageSource.pixel_size_um`); None when it
    records none or cannot be read."""
    try:
        with ImageSource.open(path) as source:
            return source.pixel_size_um
    except ImageReadError:
        return None


def read_z_step(path: str | os.PathLike) -> float | None:
    """Z step in µm recorded in a file (`ImageSource.z_step_um`); None when not recorded."""
    try:
        with ImageSource.open(path) as source:
            return source.z_step_um
    except ImageReadError:
        return None


def _sniff(p: Path) -> str:
    """The reader for a file's content; ImageReadError for anything else."""
    special = special_file_kind(p)
    if special:  # never opened: opening a named pipe waits for a writer, forever
        raise ImageReadError(f"{p}: {special}, not an image file")
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
        return "tiff"
    if head.startswith(_PIL_MAGIC):
        return "pillow"
    if p.suffix.lower() not in IMAGE_SUFFIXES and _bioio_reads(p):
        return "bioio"
    raise ImageReadError(f"{p}: not a TIFF, PNG, JPEG or BMP image (unknown file content)")


def _reading(p: Path, read: Callable):
    """Run a reading step; every failure becomes one `ImageReadError` naming the file."""
    try:
        return read()
    except (ImageReadError, ImageContentError):
        raise
    except MemoryError:
        raise ImageReadError(f"{p}: image too large to load into memory") from None
    except Exception as exc:  # corrupt/truncated files raise many different errors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = msg if len(msg) <= 200 else msg[:197] + "..."
        raise ImageReadError(f"{p}: corrupt or unreadable image ({msg})") from None


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


def _bioimage(path: Path, *, zarr: bool):
    """A bioio image: OME-Zarr (its reader named explicitly: plate fields such as ``B/3/0`` have
    no ``.zarr`` suffix to choose a plug-in by), or a format of an installed plug-in."""
    try:
        from bioio import BioImage
    except ImportError:
        raise ImageReadError(
            f"{path}: reading OME-Zarr (and CZI, ND2 … through bioio) needs the io extra: "
            + install_hint("io")
        ) from None
    reader = None
    if zarr:
        try:
            from bioio_ome_zarr import Reader as reader
        except ImportError:
            raise ImageReadError(
                f"{path}: reading OME-Zarr needs bioio-ome-zarr (the io extra): "
                + install_hint("io")
            ) from None
    return BioImage(path, reader=reader)


def _tiff_axes(tif) -> str:
    """The axes of a TIFF's rated series (`main_series`), its samples that are not colours
    as planes (`samples_as_planes`)."""
    series = main_series(tif)
    photometric = int(getattr(series.keyframe, "photometric", 2))
    itemsize = np.dtype(series.dtype).itemsize
    return samples_as_planes(series.axes, photometric, itemsize, ome=tif.is_ome)
