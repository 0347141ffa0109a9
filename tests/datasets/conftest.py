"""Fixtures for the dataset tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def her2st_b4(data_dir: Path):
    """``hs.datasets.her2st(["B4"])`` from the mirror, read once (full resolution only: writing the pyramid of
    a whole section to zarr takes ~15 s on 2 cores; the pyramid round trip is tested on a crop in tests/io)."""
    import hist_sd as hs

    return hs.datasets.her2st(["B4"], data_dir=data_dir, scale_factors=None)["B4"]


@pytest.fixture(scope="session")
def her2st_labelled(data_dir: Path):
    """Two annotated sections without image (B1, G2), read once."""
    import hist_sd as hs

    return hs.datasets.her2st(["B1", "G2"], data_dir=data_dir)
