from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def read_png16(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im).astype(np.float64)


@pytest.fixture(scope="session")
def cell_image() -> np.ndarray:
    """The original's 100×100 BBBC006 crop in unit scale (DN/65535)."""
    import tifffile

    return tifffile.imread(FIXTURES / "cell_image.tiff").astype(np.float64) / 65535.0


@pytest.fixture(scope="session")
def sample_image() -> np.ndarray:
    """The bundled BBBC022 Hoechst field, uint16 (520, 696)."""
    from miq.data import sample_image

    return sample_image()


@pytest.fixture(scope="session")
def model():
    import miq

    return miq.load_model(threads=2)


def import_benchmark(name: str):
    """The module ``benchmarks.<name>`` (benchmarks is a package at the repository root, not
    installed with miq)."""
    import importlib
    import sys

    root = str(Path(__file__).resolve().parents[1])
    sys.path.insert(0, root)
    try:
        return importlib.import_module(f"benchmarks.{name}")
    finally:
        sys.path.remove(root)
