"""Bytes on disk to planes and metadata, and outputs back to disk; never rates.

* `.source`: `ImageSource`, one input file opened once (planes, lazy bands, pixel
  size, z step, OME-XML), and the one-call helpers `read_planes`, `read_pixel_size`,
  `read_z_step`;
* `.planes`: `Plane` and the checks and intensity maps of a plane in memory; axis orders
  given by users (`parse_axes`) and the hint at a likely axis mix-up (`axis_hint`);
* `.lazy`: planes read on demand, for planes too large to load;
* `.discover`: inputs (files, folders, globs, OME-Zarr plates) to a file list, output names;
* `.write`: atomic writes and CSV tables (cells neutralised against spreadsheet formulas).
"""

from .discover import (
    IMAGE_SUFFIXES,
    file_stem,
    find_images,
    is_zarr,
    zarr_attributes,
    zarr_plate_fields,
)
from .planes import Plane, axis_hint, check_plane, parse_axes, to_unit_range, unit_map
from .source import ImageSource, ReadOptions, read_pixel_size, read_planes, read_z_step
from .write import atomic_write, part_path, read_rows_csv, write_rows_csv

__all__ = [
    "ImageSource",
    "ReadOptions",
    "Plane",
    "read_planes",
    "check_plane",
    "parse_axes",
    "axis_hint",
    "to_unit_range",
    "unit_map",
    "find_images",
    "atomic_write",
    "write_rows_csv",
    "read_rows_csv",
    "read_pixel_size",
    "read_z_step",
    "file_stem",
    "is_zarr",
    "zarr_attributes",
    "zarr_plate_fields",
    "part_path",
    "IMAGE_SUFFIXES",
]
