"""hist_sd.pp."""

from hist_sd.encoders import Encoder, get_encoder, list_encoders, register_encoder
from hist_sd.pp._features import features
from hist_sd.pp._genes import spatial_genes
from hist_sd.pp._grid import from_grid, grid, to_grid
from hist_sd.pp._normalize import normalize
from hist_sd.pp._tile import tile
from hist_sd.pp._tissue import detect_tissue

__all__: list[str] = [
    "Encoder",
    "detect_tissue",
    "features",
    "from_grid",
    "get_encoder",
    "grid",
    "list_encoders",
    "normalize",
    "register_encoder",
    "spatial_genes",
    "tile",
    "to_grid",
]
