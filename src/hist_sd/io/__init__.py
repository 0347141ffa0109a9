"""Readers and writers: files in, SpatialData out."""

from hist_sd.io._cohort import Cohort, read_cohort, read_slide_features
from hist_sd.io._image import image_mpp, read_image, set_image_mpp
from hist_sd.io._st import read_st
from hist_sd.io._visium import read_visium
from hist_sd.io._wsi import read_wsi
from hist_sd.io._zarr import read_zarr, write_zarr

__all__ = ["image_mpp", "read_image", "read_st", "read_visium", "read_wsi", "read_zarr", "set_image_mpp", "write_zarr"]
__all__ += ["Cohort", "read_cohort", "read_slide_features"]
