"""Readers and writers: files in, SpatialData out."""

from hist_sd.io._st import read_st
from hist_sd.io._zarr import read_zarr, write_zarr

__all__ = ["read_st", "read_zarr", "write_zarr"]
