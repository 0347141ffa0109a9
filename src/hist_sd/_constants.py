"""Default key names and geometry constants, in one place."""

from __future__ import annotations

from typing import Final

#: Key of hist_sd's per-table metadata in ``table.uns`` (scale, element names).
UNS_KEY: Final = "hist_sd"
#: ``sdata.attrs["hist_sd"][WSI_KEY][image_key]``: the slide file behind a lazily read whole-slide image.
WSI_KEY: Final = "wsi"

# Keys inside ``table.uns["hist_sd"]``.
MPP: Final = "mpp"  #: µm per pixel of the image element at scale 0
SPOT_DIAMETER_UM: Final = "spot_diameter_um"
SPOT_SPACING_UM: Final = "spot_spacing_um"
IMAGE_KEY: Final = "image_key"
SHAPES_KEY: Final = "shapes_key"
TECHNOLOGY: Final = "technology"
COORDINATE_SYSTEM: Final = "coordinate_system"

# Default result keys (DESIGN.md "Conventions").
FEATURES: Final = "X_hist"
PRED: Final = "hist_pred"
TUMOR_PRED: Final = "hist_tumor"
TUMOR: Final = "tumor"
TUMOR_SCORE: Final = "tumor_score"
GRID_UNS: Final = "grid"

# Table conventions.
TABLE_KEY: Final = "table"
REGION_KEY: Final = "region"
INSTANCE_KEY: Final = "spot_id"
SPATIAL: Final = "spatial"
COORDINATE_SYSTEM_DEFAULT: Final = "global"

# Geometry of the technologies (µm).
ST_SPOT_DIAMETER_UM: Final = 100.0
ST_SPOT_SPACING_UM: Final = 200.0
VISIUM_SPOT_DIAMETER_UM: Final = 55.0
VISIUM_SPOT_SPACING_UM: Final = 100.0

#: Environment variable naming a local mirror of the public datasets.
DATA_DIR_ENV: Final = "HIST_SD_DATA_DIR"
#: Environment variable naming the download cache.
CACHE_DIR_ENV: Final = "HIST_SD_CACHE_DIR"

#: Copy-number inference needs at least this many genes with a genomic position (infercnvpy averages windows of
#: ~100 genes; fewer give meaningless profiles).
MIN_CNV_GENES: Final = 1000
